//! What a sandbox may reach beyond itself: the egress policy a client asks for
//! ([`NetworkRequest`]) and the validated one a spec keeps ([`NetworkPolicy`]).
//!
//! Two policies are enforced today: `allow` (the engine's default network; other sandboxes are
//! kept apart as the server's `--sandbox-network` says) and `deny` (a network with no way out:
//! nothing but what berth initiates reaches the sandbox, and it resolves no names). Allow and
//! deny lists (`{"allow": [...], "deny": [...]}`) are refused with a 422 saying so, rather than
//! accepted and not held.

use serde::{Deserialize, Serialize};

use crate::field::FieldError;

/// The `network` field of a sandbox or template request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NetworkRequest {
    /// `"allow"` (anything the engine's network reaches) or `"deny"` (nothing but what berth
    /// initiates: proxy, gateway, readiness probes and exec keep working); the server's default
    /// when omitted.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "deny"))]
    pub egress: Option<serde_json::Value>,
}

/// How much of the outside a sandbox reaches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Egress {
    /// Whatever the engine's network reaches.
    #[default]
    Allow,
    /// Nothing: no route out, no name resolution; only connections berth opens to the sandbox.
    Deny,
}

impl Egress {
    pub fn as_str(self) -> &'static str {
        match self {
            Egress::Allow => "allow",
            Egress::Deny => "deny",
        }
    }
}

impl std::str::FromStr for Egress {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "allow" => Ok(Egress::Allow),
            "deny" => Ok(Egress::Deny),
            other => Err(format!("`{other}` is not an egress policy: use \"allow\" or \"deny\"")),
        }
    }
}

/// The policy in force for one sandbox, as its validated spec keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkPolicy {
    pub egress: Egress,
}

impl NetworkPolicy {
    /// Whether this is what a record without the field means (records older than the policy).
    pub fn is_open(&self) -> bool {
        self.egress == Egress::Allow
    }

    /// The request that validates back to this policy (a template's, laid under a create).
    pub fn to_request(&self) -> NetworkRequest {
        NetworkRequest {
            egress: Some(serde_json::Value::String(self.egress.as_str().to_owned())),
        }
    }
}

impl NetworkRequest {
    /// The policy asked for, or `default` where the request leaves it out.
    pub fn validate(request: Option<&Self>, default: Egress) -> Result<NetworkPolicy, FieldError> {
        let Some(egress) = request.and_then(|request| request.egress.as_ref()) else {
            return Ok(NetworkPolicy { egress: default });
        };
        let refuse = |message: String| FieldError {
            field: "network.egress".to_owned(),
            message,
        };
        match egress {
            serde_json::Value::String(mode) => mode.parse().map(|egress| NetworkPolicy { egress }).map_err(refuse),
            serde_json::Value::Object(_) => Err(refuse(
                "allow and deny lists are not enforced by this server: use \"allow\" or \"deny\"".to_owned(),
            )),
            other => Err(refuse(format!("expected \"allow\" or \"deny\", got {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(egress: serde_json::Value) -> NetworkRequest {
        NetworkRequest { egress: Some(egress) }
    }

    #[test]
    fn a_mode_is_parsed_and_an_omitted_one_is_the_servers_default() {
        assert_eq!(
            NetworkRequest::validate(Some(&request(serde_json::json!("deny"))), Egress::Allow),
            Ok(NetworkPolicy { egress: Egress::Deny })
        );
        assert_eq!(
            NetworkRequest::validate(Some(&request(serde_json::json!("allow"))), Egress::Deny),
            Ok(NetworkPolicy { egress: Egress::Allow })
        );
        assert_eq!(
            NetworkRequest::validate(None, Egress::Deny),
            Ok(NetworkPolicy { egress: Egress::Deny })
        );
        assert_eq!(
            NetworkRequest::validate(Some(&NetworkRequest::default()), Egress::Allow),
            Ok(NetworkPolicy { egress: Egress::Allow })
        );
    }

    #[test]
    fn anything_else_is_refused_on_the_field_with_what_is_accepted() {
        for bad in [
            serde_json::json!("open"),
            serde_json::json!(true),
            serde_json::json!({"allow": ["allowed.test"]}),
        ] {
            let error = NetworkRequest::validate(Some(&request(bad.clone())), Egress::Allow).unwrap_err();
            assert_eq!(error.field, "network.egress", "{bad}");
            assert!(error.message.contains("\"deny\""), "{bad}: {}", error.message);
        }
    }

    #[test]
    fn the_policy_reads_back_as_it_was_written_and_a_missing_one_is_open() {
        let policy = NetworkPolicy { egress: Egress::Deny };
        let written = serde_json::to_value(policy).unwrap();
        assert_eq!(written, serde_json::json!({"egress": "deny"}));
        assert_eq!(serde_json::from_value::<NetworkPolicy>(written).unwrap(), policy);
        assert!(NetworkPolicy::default().is_open());
    }
}
