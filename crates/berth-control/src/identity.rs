//! Who is calling, and what they may take: API keys (made with a secret shown once, listed,
//! revoked), the check of a presented secret against the store through a cache short enough
//! that a revocation or expiry on any process bites within a second, the first admin key of an
//! empty store, per-owner quotas with their default, and the audit log (a JSON-lines file, the
//! store, a metric).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_core::{ApiKey, AuditEntry, Caller, KeyId, Quota, Role, identity::KeyRefusal};
use berth_store::{Store, StoreError};
use chrono::Utc;
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use crate::metrics::Metrics;

pub use berth_core::identity::{SECRET_HEX_DIGITS, SECRET_PREFIX};

/// How long a key read from the store is trusted before it is read again: the bound on how
/// late a revocation or expiry made by another process takes effect.
const KEY_CACHE_FOR: Duration = Duration::from_millis(500);

/// How often one process records a key's last use (it is shown, not enforced).
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Most keys the cache holds before it is emptied (a flood of made-up secrets cannot grow it).
const KEY_CACHE_MAX: usize = 10_000;

/// A new key and its secret, which exists only here: the store keeps its hash.
#[derive(Debug)]
pub struct NewKey {
    pub key: ApiKey,
    pub secret: String,
}

/// Why a request did not authenticate. Never carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no API key: send `Authorization: Bearer <key>`")]
    Missing,
    #[error("the API key is malformed: berth keys look like bk_ followed by 64 hex digits")]
    Malformed,
    #[error("the API key is not known")]
    Unknown,
    #[error("the API key was revoked")]
    Revoked,
    #[error("the API key has expired")]
    Expired,
    #[error("API keys cannot be checked now: {0}")]
    Unavailable(String),
}

impl AuthFailure {
    /// The metric label of the failure.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::Unknown => "unknown",
            AuthFailure::Revoked => "revoked",
            AuthFailure::Expired => "expired",
            AuthFailure::Unavailable(_) => "unavailable",
        }
    }
}

struct CachedKey {
    key: Option<ApiKey>,
    fetched: Instant,
    touched: Option<Instant>,
}

/// Keys, quotas and the audit log of one process, over the shared store.
pub struct Identity {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    cache: Mutex<HashMap<String, CachedKey>>,
    default_quota: Quota,
    /// The `--audit-log` file, once the server opened it.
    audit_file: Mutex<Option<std::fs::File>>,
}

impl Identity {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>, default_quota: Quota) -> Self {
        Identity {
            store,
            metrics,
            cache: Mutex::default(),
            default_quota,
            audit_file: Mutex::new(None),
        }
    }

    /// Opens (creating, appending, mode 0600) the file every audit entry is also written to.
    pub fn open_audit_log(&self, path: &Path) -> std::io::Result<()> {
        let file = open_audit_file(path)?;
        *self
            .audit_file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(file);
        Ok(())
    }

    /// The lowercase hex SHA-256 of a secret: what the store keeps and looks keys up by. A
    /// plain hash suffices because secrets are 256 random bits, not passwords.
    pub fn hash(secret: &str) -> String {
        let digest = Sha256::digest(secret.as_bytes());
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    fn generate_secret() -> String {
        let bytes: [u8; SECRET_HEX_DIGITS / 2] = rand::random();
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        format!("{SECRET_PREFIX}{hex}")
    }

    /// The caller a presented secret stands for.
    pub async fn authenticate(&self, secret: &str) -> Result<Caller, AuthFailure> {
        let outcome = self.check(secret).await;
        if let Err(failure) = &outcome {
            self.metrics.count_auth_failure(failure.reason());
        }
        outcome
    }

    /// [`authenticate`](Self::authenticate) without counting a failure: for routes that are open
    /// to everyone and only show more to a caller with a key.
    pub async fn check_quietly(&self, secret: &str) -> Result<Caller, AuthFailure> {
        self.check(secret).await
    }

    async fn check(&self, secret: &str) -> Result<Caller, AuthFailure> {
        if !berth_core::identity::is_secret(secret) {
            return Err(AuthFailure::Malformed);
        }
        let hash = Self::hash(secret);
        let key = match self.cached(&hash) {
            Some(key) => key,
            None => {
                let key = self
                    .store
                    .key_by_hash(&hash)
                    .await
                    .map_err(|error| AuthFailure::Unavailable(error.to_string()))?;
                self.remember(&hash, key.clone());
                key
            }
        };
        let key = key.ok_or(AuthFailure::Unknown)?;
        key.check_usable(Utc::now()).map_err(|refusal| match refusal {
            KeyRefusal::Revoked => AuthFailure::Revoked,
            KeyRefusal::Expired => AuthFailure::Expired,
        })?;
        self.touch_if_due(&hash, &key);
        Ok(Caller::of_key(&key))
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedKey>> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key cached for `hash` while still fresh; `Some(None)` for a fresh "no such key".
    fn cached(&self, hash: &str) -> Option<Option<ApiKey>> {
        let cache = self.lock_cache();
        let entry = cache.get(hash)?;
        (entry.fetched.elapsed() < KEY_CACHE_FOR).then(|| entry.key.clone())
    }

    fn remember(&self, hash: &str, key: Option<ApiKey>) {
        let mut cache = self.lock_cache();
        if cache.len() >= KEY_CACHE_MAX {
            cache.clear();
        }
        let touched = cache.get(hash).and_then(|entry| entry.touched);
        cache.insert(
            hash.to_owned(),
            CachedKey {
                key,
                fetched: Instant::now(),
                touched,
            },
        );
    }

    /// Records the key's use in the background, at most every [`TOUCH_EVERY`] per process.
    fn touch_if_due(&self, hash: &str, key: &ApiKey) {
        {
            let mut cache = self.lock_cache();
            let Some(entry) = cache.get_mut(hash) else {
                return;
            };
            if entry.touched.is_some_and(|touched| touched.elapsed() < TOUCH_EVERY) {
                return;
            }
            entry.touched = Some(Instant::now());
        }
        let store = Arc::clone(&self.store);
        let id = key.id.clone();
        tokio::spawn(async move {
            if let Err(error) = store.touch_key(&id, Utc::now()).await {
                debug!(key = %id, %error, "cannot record the key's last use");
            }
        });
    }

    /// Makes a key for `owner`; the secret is in the answer and nowhere else.
    pub async fn create_key(
        &self,
        owner: &str,
        role: Role,
        expires_in: Option<Duration>,
    ) -> Result<NewKey, StoreError> {
        let now = Utc::now();
        let secret = Self::generate_secret();
        let expires_at = match expires_in {
            Some(duration) => Some(
                now + chrono::Duration::from_std(duration)
                    .map_err(|_| StoreError::Other("the expiry is too far away".into()))?,
            ),
            None => None,
        };
        let key = ApiKey {
            id: KeyId::generate(),
            owner: owner.to_owned(),
            role,
            hash: Self::hash(&secret),
            created_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        self.store.insert_key(&key).await?;
        Ok(NewKey { key, secret })
    }

    pub async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        self.store.list_keys().await
    }

    pub async fn get_key(&self, id: &KeyId) -> Result<Option<ApiKey>, StoreError> {
        self.store.get_key(id).await
    }

    /// Revokes the key; this process stops accepting it at once, the others within
    /// [`KEY_CACHE_FOR`]. Returns whether it exists.
    pub async fn revoke_key(&self, id: &KeyId) -> Result<bool, StoreError> {
        let exists = self.store.revoke_key(id, Utc::now()).await?;
        self.lock_cache()
            .retain(|_, entry| entry.key.as_ref().is_none_or(|key| key.id != *id));
        Ok(exists)
    }

    /// On a store with no key at all, makes the first admin key (owner `admin`) and writes
    /// its secret to `path` (mode 0600). `None` when keys exist already.
    pub async fn bootstrap_admin_key(&self, path: &Path) -> Result<Option<(ApiKey, PathBuf)>, BootstrapError> {
        if !self.store.list_keys().await?.is_empty() {
            return Ok(None);
        }
        let new = self.create_key("admin", Role::Admin, None).await?;
        write_secret_file(path, &new.secret).map_err(|source| BootstrapError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Some((new.key, path.to_path_buf())))
    }

    /// The quota `owner` is held to: its own, else the server's default.
    pub async fn quota_of(&self, owner: &str) -> Result<Quota, StoreError> {
        Ok(self
            .store
            .get_quota(owner)
            .await?
            .unwrap_or_else(|| self.default_quota.clone()))
    }

    /// The owner's own quota; `None` when the default applies.
    pub async fn own_quota(&self, owner: &str) -> Result<Option<Quota>, StoreError> {
        self.store.get_quota(owner).await
    }

    pub fn default_quota(&self) -> &Quota {
        &self.default_quota
    }

    pub async fn set_quota(&self, owner: &str, quota: &Quota) -> Result<(), StoreError> {
        self.store.set_quota(owner, quota).await
    }

    pub async fn delete_quota(&self, owner: &str) -> Result<bool, StoreError> {
        self.store.delete_quota(owner).await
    }

    pub async fn list_quotas(&self) -> Result<Vec<(String, Quota)>, StoreError> {
        self.store.list_quotas().await
    }

    /// Records one audited request: a line in the audit file, a row in the store, a count.
    /// A failure to record is logged, never turned into a failure of the request.
    pub async fn audit(&self, entry: AuditEntry) {
        let outcome = match entry.status {
            200..=399 => "ok",
            401 | 403 | 404 | 429 => "denied",
            _ => "failed",
        };
        self.metrics.count_audit(&entry.action, outcome);
        {
            let mut file = self
                .audit_file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(file) = file.as_mut() {
                match serde_json::to_string(&entry) {
                    // One write per line, so concurrent servers appending to one file never interleave.
                    Ok(line) => {
                        if let Err(error) = file.write_all(format!("{line}\n").as_bytes()) {
                            warn!(%error, "cannot append to the audit log");
                        }
                    }
                    Err(error) => warn!(%error, "cannot encode an audit entry"),
                }
            }
        }
        if let Err(error) = self.store.append_audit(&entry).await {
            warn!(%error, action = %entry.action, "cannot store an audit entry");
        }
    }

    pub async fn list_audit(
        &self,
        since: chrono::DateTime<Utc>,
        owner: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.store.list_audit(since, owner, limit).await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot make the first admin key: {0}")]
    Store(#[from] StoreError),
    #[error("cannot write the admin key to {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

fn open_audit_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Writes `secret` to a new file readable by its owner only, replacing any older one whole.
fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    let temporary = path.with_extension("key.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.create(true).write(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    writeln!(file, "{secret}")?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_hex_of_256_bits_and_hash_to_hex() {
        let secret = Identity::generate_secret();
        assert!(berth_core::identity::is_secret(&secret), "{secret}");
        assert_ne!(secret, Identity::generate_secret());
        let hash = Identity::hash(&secret);
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&secret[3..]));
        assert!(!berth_core::identity::is_secret("bk_ABC"));
        assert!(!berth_core::identity::is_secret(&secret.to_uppercase()));
        assert!(!berth_core::identity::is_secret(&secret.replace("bk_", "xx_")));
    }
}
