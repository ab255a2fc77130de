//! The sandbox record (what the store keeps and the API reports), its id and berth's labels.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::reason::Reason;
use crate::spec::SandboxSpec;
use crate::status::Status;

/// Labels berth puts on every engine object it creates. The `berth.` prefix is reserved.
pub mod label_keys {
    pub const MANAGED: &str = "berth.managed";
    pub const SANDBOX: &str = "berth.sandbox";
    pub const OWNER: &str = "berth.owner";
    /// Which berth deployment manages the object: servers act only on their own cluster's objects.
    pub const CLUSTER: &str = "berth.cluster";
    /// On every engine object of a compose stack (containers, network, volumes): the sandbox id.
    /// Only the main service's container carries `berth.managed` and `berth.sandbox`, so the
    /// other services are never mistaken for sandboxes of their own.
    pub const STACK: &str = "berth.stack";
    /// The compose service a stack's container runs.
    pub const STACK_SERVICE: &str = "berth.stack.service";
    pub use crate::labels::RESERVED_PREFIX;
}

/// A sandbox id: 16 lowercase hex characters, random. Unique per store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SandboxId(String);

impl SandboxId {
    pub const LEN: usize = 16;

    pub fn generate() -> Self {
        let value: u64 = rand::random();
        SandboxId(format!("{value:016x}"))
    }

    /// Accepts exactly the form [`SandboxId::generate`] produces.
    pub fn parse(text: &str) -> Option<Self> {
        let well_formed =
            text.len() == Self::LEN && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        well_formed.then(|| SandboxId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SandboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One published port: the container's TCP port and where the engine published it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    pub container_port: u16,
    pub host_ip: String,
    pub host_port: u16,
}

/// Everything berth knows about one sandbox. The store persists it whole; the API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sandbox {
    pub id: SandboxId,
    pub status: Status,
    /// Why the sandbox is in its status, for ended and failed ones. Kept as its plain string.
    pub status_reason: Option<Reason>,
    /// What went wrong, in words, when the reason alone does not say it: the engine's error for
    /// `create_failed` and `image_not_found`, the last probe failure for `readiness_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// The last exit's code: the one that ended it, or, while it runs under `restart`, the one
    /// that made the engine restart it.
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// How many times its main process was restarted under its `restart` policy.
    #[serde(default)]
    pub restarts: u32,
    /// The newest snapshot taken of it (`POST /v1/sandboxes/{id}/snapshots` or a fork).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_snapshot: Option<String>,
    pub owner: String,
    /// Name of the engine the sandbox runs on.
    pub engine: String,
    pub spec: SandboxSpec,
    pub container_id: Option<String>,
    pub ip: Option<String>,
    pub ports: Vec<PortBinding>,
    /// Set when the create carried an `Idempotency-Key`; unique per owner.
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The template it was made from (`name:tag`), if any.
    #[serde(default)]
    pub template: Option<String>,
    /// While it waits in a warm pool unclaimed: the pool's template (`name:tag`). Cleared by the
    /// claim, which makes it an ordinary sandbox of the claimer.
    #[serde(default)]
    pub pool: Option<String>,
    /// Since when it sleeps for being idle (paused, then perhaps hibernated), or since its last
    /// renewal while asleep: the time its wake adds to the deadline unless `ttl_counts_idle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asleep_since: Option<DateTime<Utc>>,
}

impl Sandbox {
    /// A new record in `Pending`, expiring `spec.ttl` after `now`.
    pub fn new_pending(
        spec: SandboxSpec,
        owner: String,
        engine: String,
        idempotency_key: Option<String>,
        now: DateTime<Utc>,
    ) -> Self {
        // Saturates instead of panicking on TTLs beyond chrono's range.
        let expires_at = chrono::Duration::from_std(spec.ttl)
            .ok()
            .and_then(|ttl| now.checked_add_signed(ttl))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Sandbox {
            id: SandboxId::generate(),
            status: Status::Pending,
            status_reason: None,
            status_message: None,
            exit_code: None,
            oom_killed: false,
            restarts: 0,
            last_snapshot: None,
            owner,
            engine,
            spec,
            container_id: None,
            ip: None,
            ports: Vec::new(),
            idempotency_key,
            created_at: now,
            updated_at: now,
            started_at: None,
            expires_at,
            ended_at: None,
            template: None,
            pool: None,
            asleep_since: None,
        }
    }

    /// The labels the engine object carries: the user's plus berth's own.
    pub fn engine_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.spec.labels.clone();
        labels.insert(label_keys::MANAGED.into(), "true".into());
        labels.insert(label_keys::SANDBOX.into(), self.id.to_string());
        labels.insert(label_keys::OWNER.into(), self.owner.clone());
        labels
    }

    /// The deadline no renewal may pass (`max_lifetime` after `created_at`, which a claim from a
    /// pool resets); `None` without a limit.
    pub fn lifetime_ends_at(&self) -> Option<DateTime<Utc>> {
        let limit = chrono::Duration::from_std(self.spec.max_lifetime?).ok()?;
        self.created_at.checked_add_signed(limit)
    }

    /// When its expiry is due: its deadline, except while it sleeps for being idle with time
    /// asleep not counting, when only its `max_lifetime` (if any) can end it.
    pub fn expiry_deadline(&self) -> DateTime<Utc> {
        if self.asleep_since.is_some() && !self.spec.ttl_counts_idle {
            return self.lifetime_ends_at().unwrap_or(DateTime::<Utc>::MAX_UTC);
        }
        self.expires_at
    }

    /// Wakes the record from an idle sleep at `now`: unless time asleep counts, the deadline
    /// moves on by the time slept, never past the `max_lifetime`.
    pub fn wake(&mut self, now: DateTime<Utc>) {
        let Some(since) = self.asleep_since.take() else {
            return;
        };
        if self.spec.ttl_counts_idle {
            return;
        }
        let slept = (now - since).max(chrono::Duration::zero());
        let moved = self
            .expires_at
            .checked_add_signed(slept)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.expires_at = match self.lifetime_ends_at() {
            Some(ends_at) => moved.min(ends_at.max(self.expires_at)),
            None => moved,
        };
    }

    /// Moves to an ended status with a reason, stamping `ended_at`. Returns false (and changes
    /// nothing) when the sandbox had already ended.
    pub fn end(&mut self, status: Status, reason: Reason, now: DateTime<Utc>) -> bool {
        debug_assert!(status.is_ended());
        if self.status.is_ended() {
            return false;
        }
        self.status = status;
        self.status_reason = Some(reason);
        self.ended_at = Some(now);
        self.updated_at = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        for _ in 0..100 {
            let id = SandboxId::generate();
            assert_eq!(SandboxId::parse(id.as_str()), Some(id));
        }
    }

    #[test]
    fn a_ttl_beyond_the_calendar_saturates_instead_of_panicking() {
        let policy = crate::SpecPolicy {
            max_ttl: std::time::Duration::MAX,
            ..Default::default()
        };
        let request = crate::SandboxRequest {
            image: Some("busybox".into()),
            ttl: Some(crate::field::NumberOrString::String(u64::MAX.to_string())),
            ..Default::default()
        };
        let spec = request.validate(&policy).unwrap();
        let sandbox = Sandbox::new_pending(spec, "me".into(), "local".into(), None, Utc::now());
        assert_eq!(sandbox.expires_at, DateTime::<Utc>::MAX_UTC);
        assert_eq!(sandbox.status, Status::Pending);
    }

    #[test]
    fn engine_labels_carry_berths_own_keys() {
        let request = crate::SandboxRequest {
            image: Some("busybox".into()),
            labels: [("team".to_owned(), "ml".to_owned())].into(),
            ..Default::default()
        };
        let spec = request.validate(&crate::SpecPolicy::default()).unwrap();
        let sandbox = Sandbox::new_pending(spec, "alice".into(), "local".into(), None, Utc::now());
        let labels = sandbox.engine_labels();
        assert_eq!(labels["team"], "ml");
        assert_eq!(labels[label_keys::MANAGED], "true");
        assert_eq!(labels[label_keys::SANDBOX], sandbox.id.as_str());
        assert_eq!(labels[label_keys::OWNER], "alice");
    }

    #[test]
    fn the_reason_is_stored_as_its_plain_string() {
        let spec = crate::SandboxRequest {
            image: Some("busybox".into()),
            ..Default::default()
        }
        .validate(&crate::SpecPolicy::default())
        .unwrap();
        let mut sandbox = Sandbox::new_pending(spec, "me".into(), "local".into(), None, Utc::now());
        assert!(sandbox.end(Status::Failed, Reason::CreateInterrupted, Utc::now()));
        let mut json = serde_json::to_value(&sandbox).unwrap();
        assert_eq!(json["status_reason"], "create_interrupted");

        // A record as berth wrote it when the reason was a string reads back the same.
        json["status_reason"] = "oom_killed".into();
        let read: Sandbox = serde_json::from_value(json).unwrap();
        assert_eq!(read.status_reason, Some(Reason::OomKilled));
    }

    fn text(value: &str) -> crate::field::NumberOrString {
        crate::field::NumberOrString::String(value.to_owned())
    }

    fn sleeper(ttl_counts_idle: bool, max_lifetime: Option<&str>) -> Sandbox {
        let spec = crate::SandboxRequest {
            image: Some("busybox".into()),
            ttl: Some(text("10m")),
            max_lifetime: max_lifetime.map(text),
            idle_timeout: Some(text("1m")),
            ttl_counts_idle: Some(ttl_counts_idle),
            ..Default::default()
        }
        .validate(&crate::SpecPolicy::default())
        .unwrap();
        Sandbox::new_pending(spec, "me".into(), "local".into(), None, Utc::now())
    }

    #[test]
    fn time_asleep_moves_the_deadline_on_unless_it_counts() {
        let mut sandbox = sleeper(false, None);
        let deadline = sandbox.expires_at;
        let since = sandbox.created_at + chrono::Duration::minutes(2);
        sandbox.asleep_since = Some(since);
        assert_eq!(
            sandbox.expiry_deadline(),
            DateTime::<Utc>::MAX_UTC,
            "asleep, nothing expires it"
        );
        sandbox.wake(since + chrono::Duration::minutes(30));
        assert_eq!(sandbox.expires_at, deadline + chrono::Duration::minutes(30));
        assert_eq!(sandbox.asleep_since, None);
        assert_eq!(sandbox.expiry_deadline(), sandbox.expires_at);

        let mut counted = sleeper(true, None);
        let deadline = counted.expires_at;
        counted.asleep_since = Some(counted.created_at);
        assert_eq!(
            counted.expiry_deadline(),
            deadline,
            "time asleep counts: the deadline holds"
        );
        counted.wake(counted.created_at + chrono::Duration::minutes(30));
        assert_eq!(counted.expires_at, deadline);
    }

    #[test]
    fn the_max_lifetime_bounds_a_sleeper_and_its_wake() {
        let mut sandbox = sleeper(false, Some("20m"));
        let ends_at = sandbox.lifetime_ends_at().unwrap();
        sandbox.asleep_since = Some(sandbox.created_at);
        assert_eq!(sandbox.expiry_deadline(), ends_at);
        sandbox.wake(sandbox.created_at + chrono::Duration::hours(5));
        assert_eq!(sandbox.expires_at, ends_at);
    }

    #[test]
    fn malformed_ids_are_refused() {
        for text in ["", "ABCDEF0123456789", "0123", "0123456789abcdeg", "../../etc/passwd"] {
            assert_eq!(SandboxId::parse(text), None, "{text}");
        }
    }
}
