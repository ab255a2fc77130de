//! Persistent volumes (`/v1/volumes`): make, list, read and delete an owner's volumes.

use berth_api::{VolumeList, VolumeRequest, VolumeView};
use reqwest::Url;

use crate::{BerthClient, ClientError, join_segments};

impl BerthClient {
    /// `POST /v1/volumes`: makes a volume (of `request.owner`, else the key's owner); a
    /// conflict (409) if the owner has one of that name.
    pub async fn create_volume(&self, request: &VolumeRequest) -> Result<VolumeView, ClientError> {
        self.send_json(
            self.http
                .post(join_segments(&self.base, &["v1", "volumes"]))
                .json(request),
        )
        .await
    }

    /// `GET /v1/volumes`: the key's owner's volumes, or (an admin's key) every owner's or
    /// `owner`'s.
    pub async fn list_volumes(&self, owner: Option<&str>) -> Result<Vec<VolumeView>, ClientError> {
        let mut url = join_segments(&self.base, &["v1", "volumes"]);
        if let Some(owner) = owner {
            url.query_pairs_mut().append_pair("owner", owner);
        }
        let list: VolumeList = self.send_json(self.http.get(url)).await?;
        Ok(list.volumes)
    }

    /// `GET /v1/volumes/{name}`.
    pub async fn get_volume(&self, name: &str, owner: Option<&str>) -> Result<VolumeView, ClientError> {
        self.send_json(self.http.get(volume_url(&self.base, name, owner))).await
    }

    /// `DELETE /v1/volumes/{name}`: a conflict (409) while a live sandbox mounts it.
    pub async fn delete_volume(&self, name: &str, owner: Option<&str>) -> Result<(), ClientError> {
        self.send(self.http.delete(volume_url(&self.base, name, owner)))
            .await
            .map(drop)
    }
}

fn volume_url(base: &Url, name: &str, owner: Option<&str>) -> Url {
    let mut url = join_segments(base, &["v1", "volumes", name]);
    if let Some(owner) = owner {
        url.query_pairs_mut().append_pair("owner", owner);
    }
    url
}
