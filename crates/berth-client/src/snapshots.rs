//! Snapshots and forks: take a sandbox's snapshot (`POST /v1/sandboxes/{id}/snapshots`), list,
//! read and delete snapshots (`/v1/snapshots`), and fork a sandbox into new ones
//! (`POST /v1/sandboxes/{id}/fork`).

use berth_api::{ForkRequest, ForkResponse, SnapshotList, SnapshotRequest, SnapshotView};
use reqwest::Url;

use crate::{BerthClient, ClientError, join_segments, sandbox_url};

impl BerthClient {
    /// `POST /v1/sandboxes/{id}/snapshots`: commits the sandbox's filesystem (and records its
    /// spec) as a snapshot; a conflict (409) unless it is Running or Paused.
    pub async fn create_snapshot(
        &self,
        sandbox_id: &str,
        request: &SnapshotRequest,
    ) -> Result<SnapshotView, ClientError> {
        self.send_json(
            self.http
                .post(sandbox_url(&self.base, sandbox_id, Some("snapshots")))
                .json(request),
        )
        .await
    }

    /// `GET /v1/snapshots`: the key's owner's snapshots, or (an admin's key) every owner's or
    /// `owner`'s; newest first.
    pub async fn list_snapshots(&self, owner: Option<&str>) -> Result<Vec<SnapshotView>, ClientError> {
        let mut url = join_segments(&self.base, &["v1", "snapshots"]);
        if let Some(owner) = owner {
            url.query_pairs_mut().append_pair("owner", owner);
        }
        let list: SnapshotList = self.send_json(self.http.get(url)).await?;
        Ok(list.snapshots)
    }

    /// `GET /v1/snapshots/{id}`: another owner's is a 404.
    pub async fn get_snapshot(&self, id: &str) -> Result<SnapshotView, ClientError> {
        self.send_json(self.http.get(snapshot_url(&self.base, id))).await
    }

    /// `DELETE /v1/snapshots/{id}`: a conflict (409) while something still needs it.
    pub async fn delete_snapshot(&self, id: &str) -> Result<(), ClientError> {
        self.send(self.http.delete(snapshot_url(&self.base, id)))
            .await
            .map(drop)
    }

    /// `POST /v1/sandboxes/{id}/fork`: `count` new sandboxes from one snapshot of it; each child
    /// is made on its own, so the answer holds the ones that run and a problem per failure.
    pub async fn fork(&self, sandbox_id: &str, count: u32) -> Result<ForkResponse, ClientError> {
        self.send_json(
            self.http
                .post(sandbox_url(&self.base, sandbox_id, Some("fork")))
                .json(&ForkRequest { count }),
        )
        .await
    }
}

fn snapshot_url(base: &Url, id: &str) -> Url {
    join_segments(base, &["v1", "snapshots", id])
}
