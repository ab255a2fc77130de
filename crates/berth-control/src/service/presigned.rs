//! Presigned URLs to a port of a sandbox: made for a caller who may reach the sandbox, and
//! honoured only while the key that made them is usable and still reaches it.

use std::time::Duration;

use berth_core::Caller;
use chrono::{DateTime, Utc};

use super::{SandboxService, ServiceError};
use crate::config::AuthMode;
use crate::presign::{Grant, MAX_VALIDITY};

impl SandboxService {
    /// The token of a presigned URL to `port` of sandbox `id`, valid for `validity` (at most a
    /// week), made by `caller` (whom the gate has already let reach the sandbox), and its expiry.
    pub async fn presign(
        &self,
        caller: &Caller,
        id: &str,
        port: u16,
        validity: Duration,
    ) -> Result<(String, DateTime<Utc>), ServiceError> {
        if port == 0 {
            return Err(ServiceError::invalid("port", "0 is not a port: use 1-65535".into()));
        }
        if validity.is_zero() || validity > MAX_VALIDITY {
            return Err(ServiceError::invalid(
                "expiration",
                format!(
                    "a presigned URL lasts more than 0s and at most {}s",
                    MAX_VALIDITY.as_secs()
                ),
            ));
        }
        let sandbox = self.get_latest(id).await?;
        if sandbox.status.is_ended() {
            return Err(ServiceError::InvalidState(format!(
                "sandbox {id} is {}: nothing to reach",
                sandbox.status
            )));
        }
        let now = Utc::now();
        let seconds = i64::try_from(validity.as_secs().max(1)).unwrap_or(i64::MAX);
        let expires_at = DateTime::from_timestamp(now.timestamp().saturating_add(seconds), 0).unwrap_or(now);
        let grant = Grant {
            sandbox_id: sandbox.id.clone(),
            port,
            expires_at,
            key_id: caller.key_id.clone(),
        };
        Ok((self.config.presigner.sign(&grant), expires_at))
    }

    /// Whether `grant` (its signature and expiry checked) is still honoured: its key exists, is
    /// neither revoked nor expired, and still reaches the sandbox. The refusal says why, in words
    /// that reveal nothing of other owners.
    pub async fn honours(&self, grant: &Grant) -> Result<(), String> {
        let refused = "the presigned URL's key no longer reaches this sandbox".to_owned();
        let Some(key_id) = &grant.key_id else {
            return match self.config.auth {
                AuthMode::None => Ok(()),
                AuthMode::Keys => Err(refused),
            };
        };
        let key = match self.store.get_key(key_id).await {
            Ok(Some(key)) => key,
            Ok(None) => return Err(refused),
            Err(error) => return Err(format!("the presigned URL cannot be checked now: {error}")),
        };
        if key.check_usable(Utc::now()).is_err() {
            return Err(refused);
        }
        let owner = self.owner_of(grant.sandbox_id.as_str()).await;
        if key.role == berth_core::Role::Admin || owner.as_deref() == Some(key.owner.as_str()) {
            Ok(())
        } else {
            Err(refused)
        }
    }
}
