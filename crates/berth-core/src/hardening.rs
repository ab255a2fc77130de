//! How tightly one sandbox is confined beyond berth's fixed baseline: the OCI runtime it runs
//! under (`runc`, gVisor's `runsc`, `crun`, whatever the engine offers) and the opt-in
//! hardening of its container (read-only root filesystem, no capabilities at all).
//!
//! The baseline every sandbox gets whatever it asks for — no privilege escalation, `NET_RAW`
//! dropped, never privileged, the engine's default seccomp profile (berth never asks for
//! `unconfined`) — lives with the engine adapter; this module holds only what a client chooses.

use serde::{Deserialize, Serialize};

use crate::field::FieldError;

/// Opt-in confinement, as a client asks for it and as the validated spec keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Hardening {
    /// The root filesystem is mounted read-only; `/tmp` is a writable tmpfs (within the
    /// sandbox's memory limit).
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only_rootfs: bool,
    /// Every Linux capability is dropped, also from root inside the sandbox.
    #[serde(default, skip_serializing_if = "is_false")]
    pub drop_all_capabilities: bool,
}

impl Hardening {
    /// Nothing beyond the baseline: how a spec without the field reads.
    pub fn is_baseline(&self) -> bool {
        *self == Hardening::default()
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Longest runtime name accepted (Docker's own names are short; this only bounds the input).
const MAX_RUNTIME_NAME: usize = 64;

/// Checks the shape of a runtime name; whether the engine offers it is the control plane's
/// check, against what the engine reports.
pub fn check_runtime_name(name: &str) -> Result<(), FieldError> {
    let well_formed = !name.is_empty()
        && name.len() <= MAX_RUNTIME_NAME
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if well_formed {
        Ok(())
    } else {
        Err(FieldError {
            field: "runtime".to_owned(),
            message: format!(
                "`{name}` is not a runtime name: use the name the engine registers it under, such as runc, runsc \
                 (gVisor) or crun (letters, digits, . _ -, at most {MAX_RUNTIME_NAME})"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_names_are_checked_for_shape() {
        for good in ["runc", "runsc", "crun", "io.containerd.runsc.v1", "kata-qemu"] {
            assert!(check_runtime_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-runc", "run c", "../runc", "runc;id", &"r".repeat(65)] {
            let error = check_runtime_name(bad).expect_err(bad);
            assert_eq!(error.field, "runtime");
            assert!(error.message.contains("runsc"), "{}", error.message);
        }
    }

    #[test]
    fn the_baseline_is_left_out_of_the_wire_form() {
        assert_eq!(
            serde_json::to_value(Hardening::default()).unwrap(),
            serde_json::json!({})
        );
        let strict: Hardening =
            serde_json::from_value(serde_json::json!({"read_only_rootfs": true, "drop_all_capabilities": true}))
                .unwrap();
        assert!(!strict.is_baseline());
        let typo = serde_json::from_value::<Hardening>(serde_json::json!({"read_only": true}));
        assert!(typo.unwrap_err().to_string().contains("read_only"));
    }
}
