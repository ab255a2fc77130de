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

/// An address range, `10.0.0.0/8` or `fc00::/7`: the host bits of the address must be zero, so
/// that what is written is what is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub address: core::net::IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// The ranges a sandbox on a guarded network does not reach unless the server says otherwise:
    /// RFC 1918, the carrier-grade NAT range and IPv6 unique local addresses.
    pub const DEFAULT_PRIVATE: [&'static str; 5] = [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
    ];
    /// The ranges no guarded sandbox ever reaches: link-local, where cloud metadata services
    /// answer.
    pub const LINK_LOCAL: [&'static str; 2] = ["169.254.0.0/16", "fe80::/10"];

    pub fn is_ipv4(&self) -> bool {
        self.address.is_ipv4()
    }

    /// Whether `address` is in the range.
    pub fn contains(&self, address: core::net::IpAddr) -> bool {
        match (self.address, address) {
            (core::net::IpAddr::V4(range), core::net::IpAddr::V4(address)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(range) & mask == u32::from(address) & mask
            }
            (core::net::IpAddr::V6(range), core::net::IpAddr::V6(address)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(range) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (address, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a CIDR range: write it as 10.0.0.0/8 or fc00::/7"))?;
        let address: core::net::IpAddr = address
            .parse()
            .map_err(|_| format!("`{text}`: `{address}` is not an IP address"))?;
        let most = if address.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|prefix| *prefix <= most)
            .ok_or_else(|| format!("`{text}`: the prefix length must be a number from 0 to {most}"))?;
        let cidr = Cidr { address, prefix };
        let network = match address {
            core::net::IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                core::net::IpAddr::V4((u32::from(v4) & mask).into())
            }
            core::net::IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                core::net::IpAddr::V6((u128::from(v6) & mask).into())
            }
        };
        if network != address {
            return Err(format!("`{text}` has host bits set: the range is {network}/{prefix}"));
        }
        Ok(cidr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_match_and_refuse_what_is_not_one() {
        let private: Cidr = "172.16.0.0/12".parse().unwrap();
        assert!(private.contains("172.31.255.1".parse().unwrap()));
        assert!(!private.contains("172.32.0.1".parse().unwrap()));
        assert!(!private.contains("fc00::1".parse().unwrap()));
        let unique_local: Cidr = "fc00::/7".parse().unwrap();
        assert!(unique_local.contains("fd12::1".parse().unwrap()));
        assert_eq!(unique_local.to_string(), "fc00::/7");
        let everything: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains("203.0.113.9".parse().unwrap()));
        for range in Cidr::DEFAULT_PRIVATE.iter().chain(&Cidr::LINK_LOCAL) {
            assert!(range.parse::<Cidr>().is_ok(), "{range}");
        }
        for (bad, says) in [
            ("10.0.0.0", "not a CIDR range"),
            ("10.0.0.1/8", "the range is 10.0.0.0/8"),
            ("10.0.0.0/33", "from 0 to 32"),
            ("example.test/8", "not an IP address"),
        ] {
            let error = bad.parse::<Cidr>().unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

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
