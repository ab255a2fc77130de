//! Whether the engine offers the OCI runtime a sandbox or template asks for, and a disk limit
//! when one is asked for, checked before anything is recorded so that a wrong ask is a 422
//! saying what the engine offers, not a sandbox that fails on the engine.

use std::collections::BTreeSet;
use std::sync::Mutex;

use berth_core::{FieldError, ValidationErrors};
use berth_runtime::EngineSecurity;

use super::{SandboxService, ServiceError};

/// The runtimes the engine was last seen to offer. Read from the engine on the first ask and
/// again whenever a name is not among them, so a runtime registered while berth runs is found
/// without a restart, and the common case costs no engine call.
#[derive(Debug, Default)]
pub(crate) struct OfferedRuntimes {
    known: Mutex<BTreeSet<String>>,
}

impl OfferedRuntimes {
    fn contains(&self, name: &str) -> bool {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(name)
    }

    fn replace(&self, names: &[String]) {
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *known = names.iter().cloned().collect();
    }
}

impl SandboxService {
    /// What the engine offers to confine sandboxes, read from it now.
    pub async fn engine_security(&self) -> Result<EngineSecurity, ServiceError> {
        let security = self.runtime.security().await.map_err(|error| ServiceError::Engine {
            error,
            sandbox_id: None,
        })?;
        self.offered_runtimes.replace(&security.runtimes);
        Ok(security)
    }

    /// `Ok` when `runtime` is absent (the engine's default) or offered by the engine.
    pub(crate) async fn check_runtime_offered(&self, runtime: Option<&str>) -> Result<(), ServiceError> {
        let Some(name) = runtime else {
            return Ok(());
        };
        if self.offered_runtimes.contains(name) {
            return Ok(());
        }
        let security = self.engine_security().await?;
        if security.runtimes.iter().any(|offered| offered == name) {
            return Ok(());
        }
        Err(ServiceError::Validation(ValidationErrors(vec![FieldError {
            field: "runtime".to_owned(),
            message: format!(
                "engine `{}` offers no runtime `{name}`: use one of {} (or omit the field for its default, {})",
                self.runtime.name(),
                security.runtimes.join(", "),
                security.default_runtime
            ),
        }])))
    }

    /// `Ok` when no disk limit is asked for, or the engine's storage driver enforces one.
    pub(crate) async fn check_disk_limit_offered(&self, disk_bytes: Option<u64>) -> Result<(), ServiceError> {
        if disk_bytes.is_none() {
            return Ok(());
        }
        match self.engine_security().await?.disk_limit {
            Ok(()) => Ok(()),
            Err(why) => Err(ServiceError::Validation(ValidationErrors(vec![FieldError {
                field: "disk".to_owned(),
                message: format!(
                    "engine `{}` cannot limit a sandbox's disk: {why}; omit `disk`, or run berth on an engine whose \
                     storage can",
                    self.runtime.name()
                ),
            }]))),
        }
    }
}
