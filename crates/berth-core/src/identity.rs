//! Who calls berth: API key records (never their secret), roles, the caller a request acts as,
//! and per-owner quotas with the usage of live sandboxes they are checked against.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::sandbox::Sandbox;

/// Every API key secret starts with it: `bk_` and 64 lowercase hex digits (256 random bits).
/// Hex, so that clients which insist on `<prefix>_<hex>` keys can send the same secret.
pub const SECRET_PREFIX: &str = "bk_";
/// Hex digits after [`SECRET_PREFIX`].
pub const SECRET_HEX_DIGITS: usize = 64;

/// Whether `text` has the form of a berth secret (checked before any lookup, and by every path
/// that must strip a secret before forwarding a request).
pub fn is_secret(text: &str) -> bool {
    text.strip_prefix(SECRET_PREFIX).is_some_and(|hex| {
        hex.len() == SECRET_HEX_DIGITS && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// What a key may do: an admin sees and manages everything (keys, quotas, templates, every
/// owner's sandboxes); a member only its own owner's sandboxes, env-services and processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(format!("`{other}` is not a role: use admin or member")),
        }
    }
}

/// A key's public id: 16 lowercase hex characters, safe to show and log (unlike the secret).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    pub const LEN: usize = 16;

    pub fn generate() -> Self {
        let value: u64 = rand::random();
        KeyId(format!("{value:016x}"))
    }

    /// Accepts exactly the form [`KeyId::generate`] produces.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.len() == Self::LEN && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| KeyId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stored record of an API key. The secret itself is never kept: only `hash`, the
/// lowercase hex SHA-256 of it, by which a presented secret is found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: KeyId,
    pub owner: String,
    pub role: Role,
    pub hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Why a key that exists does not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    Revoked,
    Expired,
}

impl ApiKey {
    /// Whether the key authenticates at `now`.
    pub fn check_usable(&self, now: DateTime<Utc>) -> Result<(), KeyRefusal> {
        if self.revoked_at.is_some() {
            return Err(KeyRefusal::Revoked);
        }
        if self.expires_at.is_some_and(|expires_at| expires_at <= now) {
            return Err(KeyRefusal::Expired);
        }
        Ok(())
    }
}

/// Who a request acts as, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `None` when the server runs without authentication (`--auth none`).
    pub key_id: Option<KeyId>,
    pub owner: String,
    pub role: Role,
}

impl Caller {
    /// The caller of a server that runs without authentication: an admin, as every caller was
    /// before keys existed.
    pub fn unauthenticated(owner: &str) -> Self {
        Caller {
            key_id: None,
            owner: owner.to_owned(),
            role: Role::Admin,
        }
    }

    pub fn of_key(key: &ApiKey) -> Self {
        Caller {
            key_id: Some(key.id.clone()),
            owner: key.owner.clone(),
            role: key.role,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether this caller may see (and act on) what `owner` owns.
    pub fn may_access(&self, owner: &str) -> bool {
        self.is_admin() || self.owner == owner
    }
}

/// Limits on what one owner's live sandboxes may hold together. `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub sandboxes: Option<u64>,
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
}

impl Quota {
    pub fn is_unlimited(&self) -> bool {
        self.sandboxes.is_none() && self.cpu_millis.is_none() && self.memory_bytes.is_none()
    }

    /// Whether `asked` fits beside `used`; the first limit it would pass otherwise.
    pub fn admit(&self, used: &Usage, asked: &Usage) -> Result<(), QuotaExceeded> {
        let checks = [
            (QuotaKind::Sandboxes, self.sandboxes, used.sandboxes, asked.sandboxes),
            (QuotaKind::Cpu, self.cpu_millis, used.cpu_millis, asked.cpu_millis),
            (
                QuotaKind::Memory,
                self.memory_bytes,
                used.memory_bytes,
                asked.memory_bytes,
            ),
        ];
        for (kind, limit, used, asked) in checks {
            if let Some(limit) = limit
                && asked > 0
                && used.saturating_add(asked) > limit
            {
                return Err(QuotaExceeded {
                    kind,
                    limit,
                    used,
                    asked,
                });
            }
        }
        Ok(())
    }
}

/// Which limit of a [`Quota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaKind {
    Sandboxes,
    Cpu,
    Memory,
}

impl QuotaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaKind::Sandboxes => "sandboxes",
            QuotaKind::Cpu => "cpu",
            QuotaKind::Memory => "memory",
        }
    }
}

/// A create refused because it would pass `kind`'s limit. CPU is in thousandths of a CPU and
/// memory in bytes, as in [`Quota`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quota `{}` exceeded: limit {limit}, in use {used}, asked {asked}", kind.as_str())]
pub struct QuotaExceeded {
    pub kind: QuotaKind,
    pub limit: u64,
    pub used: u64,
    pub asked: u64,
}

/// What live sandboxes hold: how many, and their CPU and memory limits summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub sandboxes: u64,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

impl Usage {
    /// What one sandbox counts: itself, and the CPU and memory of every container it runs. A
    /// compose stack counts each service; a service without limits counts as its main one.
    pub fn of(sandbox: &Sandbox) -> Usage {
        let main = &sandbox.spec.resources;
        let mut usage = Usage {
            sandboxes: 1,
            cpu_millis: main.cpu_millis,
            memory_bytes: main.memory_bytes,
        };
        if let Some(stack) = &sandbox.spec.stack {
            for service in stack
                .services
                .iter()
                .filter(|service| service.name != stack.main_service)
            {
                usage.cpu_millis = usage
                    .cpu_millis
                    .saturating_add(service.cpu_millis.unwrap_or(main.cpu_millis));
                usage.memory_bytes = usage
                    .memory_bytes
                    .saturating_add(service.memory_bytes.unwrap_or(main.memory_bytes));
            }
        }
        usage
    }

    /// The sum over the live (not ended) sandboxes among `sandboxes`.
    pub fn of_live<'a>(sandboxes: impl IntoIterator<Item = &'a Sandbox>) -> Usage {
        sandboxes
            .into_iter()
            .filter(|sandbox| !sandbox.status.is_ended())
            .fold(Usage::default(), |total, sandbox| total.plus(&Usage::of(sandbox)))
    }

    pub fn plus(&self, other: &Usage) -> Usage {
        Usage {
            sandboxes: self.sandboxes.saturating_add(other.sandboxes),
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
        }
    }
}

/// One line of the audit log: a mutating request, or a refused authentication. Never holds a
/// secret: a key appears only by its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub time: DateTime<Utc>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub key_id: Option<KeyId>,
    pub owner: Option<String>,
    pub role: Option<Role>,
    /// The method and the route, e.g. `POST /v1/sandboxes`, or `authenticate`.
    pub action: String,
    /// The sandbox, key, template… the request named, when it named one.
    pub target: Option<String>,
    /// The HTTP status of the answer.
    pub status: u16,
    /// The peer address of the connection.
    pub client: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_admits_up_to_its_limit_and_names_the_first_it_would_pass() {
        let quota = Quota {
            sandboxes: Some(2),
            cpu_millis: Some(3000),
            memory_bytes: None,
        };
        let one = Usage {
            sandboxes: 1,
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
        };
        assert_eq!(quota.admit(&one, &one), Ok(()));
        let refused = quota.admit(&one.plus(&one), &one).unwrap_err();
        assert_eq!(refused.kind, QuotaKind::Sandboxes);
        assert_eq!((refused.limit, refused.used, refused.asked), (2, 2, 1));
        let big = Usage {
            sandboxes: 1,
            cpu_millis: 2500,
            memory_bytes: 0,
        };
        assert_eq!(quota.admit(&one, &big).unwrap_err().kind, QuotaKind::Cpu);
        assert!(Quota::default().admit(&one, &big).is_ok());
    }

    #[test]
    fn a_revoked_or_expired_key_does_not_authenticate() {
        let now = Utc::now();
        let mut key = ApiKey {
            id: KeyId::generate(),
            owner: "team-a".into(),
            role: Role::Member,
            hash: "00".into(),
            created_at: now,
            expires_at: Some(now + chrono::Duration::seconds(5)),
            revoked_at: None,
            last_used_at: None,
        };
        assert_eq!(key.check_usable(now), Ok(()));
        assert_eq!(
            key.check_usable(now + chrono::Duration::seconds(5)),
            Err(KeyRefusal::Expired)
        );
        key.revoked_at = Some(now);
        assert_eq!(key.check_usable(now), Err(KeyRefusal::Revoked));
    }

    #[test]
    fn key_ids_parse_only_what_generate_makes() {
        let id = KeyId::generate();
        assert_eq!(KeyId::parse(id.as_str()), Some(id));
        assert_eq!(KeyId::parse("ABCDEF0123456789"), None);
        assert_eq!(KeyId::parse("abc"), None);
    }

    #[test]
    fn roles_read_and_print_their_names() {
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert_eq!(Role::Member.to_string(), "member");
        assert!("root".parse::<Role>().unwrap_err().contains("admin or member"));
    }
}
