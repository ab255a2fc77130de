//! Who the client is, and the admin's keys, quotas and audit log: `/v1/whoami`, `/v1/keys`,
//! `/v1/quotas`, `/v1/audit`.

use berth_api::identity::{AuditList, CreatedKey, KeyList, KeyRequest, QuotaList, QuotaRequest, QuotaView, WhoAmI};

use crate::{BerthClient, ClientError, join_segments};

impl BerthClient {
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.send_json(self.http.get(join_segments(&self.base, &["v1", "whoami"])))
            .await
    }

    /// Makes a key; the answer holds its secret, shown this once.
    pub async fn create_key(&self, request: &KeyRequest) -> Result<CreatedKey, ClientError> {
        self.send_json(self.http.post(join_segments(&self.base, &["v1", "keys"])).json(request))
            .await
    }

    pub async fn list_keys(&self) -> Result<KeyList, ClientError> {
        self.send_json(self.http.get(join_segments(&self.base, &["v1", "keys"])))
            .await
    }

    pub async fn revoke_key(&self, id: &str) -> Result<(), ClientError> {
        self.send(self.http.delete(join_segments(&self.base, &["v1", "keys", id])))
            .await
            .map(drop)
    }

    pub async fn set_quota(&self, owner: &str, request: &QuotaRequest) -> Result<QuotaView, ClientError> {
        self.send_json(
            self.http
                .put(join_segments(&self.base, &["v1", "quotas", owner]))
                .json(request),
        )
        .await
    }

    pub async fn list_quotas(&self) -> Result<QuotaList, ClientError> {
        self.send_json(self.http.get(join_segments(&self.base, &["v1", "quotas"])))
            .await
    }

    /// Audit entries from `since` (RFC 3339; the server's default when `None`), of `owner` when given.
    pub async fn audit(
        &self,
        since: Option<&str>,
        owner: Option<&str>,
        limit: usize,
    ) -> Result<AuditList, ClientError> {
        let mut url = join_segments(&self.base, &["v1", "audit"]);
        {
            let mut query = url.query_pairs_mut();
            if let Some(since) = since {
                query.append_pair("since", since);
            }
            if let Some(owner) = owner {
                query.append_pair("owner", owner);
            }
            query.append_pair("limit", &limit.to_string());
        }
        self.send_json(self.http.get(url)).await
    }
}
