//! berth's domain: sandbox specs, records, templates, statuses, label rules and unit parsers. No IO, no async.

pub mod env_service;
pub mod error_chain;
pub mod field;
pub mod hardening;
pub mod identity;
pub mod labels;
pub mod network;
pub mod readiness;
pub mod reason;
pub mod sandbox;
pub mod spec;
pub mod stack;
pub mod status;
pub mod template;
pub mod units;
pub mod volume;

pub use env_service::{EnvService, EnvServiceId, ServiceStatus};
pub use field::{FieldError, NumberOrString, ValidationErrors};
pub use hardening::Hardening;
pub use identity::{ApiKey, AuditEntry, Caller, KeyId, Quota, QuotaExceeded, Role, Usage};
pub use network::{Cidr, Egress, NetworkPolicy, NetworkRequest};
pub use readiness::{ProbeCheck, ReadinessProbe, ReadinessRequest};
pub use reason::Reason;
pub use sandbox::{PortBinding, Sandbox, SandboxId};
pub use spec::{Resources, Restart, SandboxRequest, SandboxSpec, SpecPolicy};
pub use status::Status;
pub use template::{PoolSpec, Template, TemplateRef, TemplateRequest};
pub use volume::VolumeMount;
