//! Presigned URLs: a time-limited token that lets whoever holds it reach one port of one sandbox
//! through berth's proxy without an API key. The token names the sandbox, the port, its expiry
//! and the key that made it, sealed with an HMAC under the deployment's URL-signing secret; it is
//! honoured only while it has not expired and that key is still usable and still the sandbox
//! owner's (or an admin's).

use std::path::Path;

use berth_core::{KeyId, SandboxId};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// The key id a token carries when the server runs without authentication.
pub const OPEN_KEY: &str = "open";

/// Bytes of the URL-signing secret.
pub const SECRET_BYTES: usize = 32;

/// The longest a presigned URL may be valid for: a week.
pub const MAX_VALIDITY: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub sandbox_id: SandboxId,
    pub port: u16,
    pub expires_at: DateTime<Utc>,
    /// The key that made it; `None` for a server without authentication.
    pub key_id: Option<KeyId>,
}

/// Why a token is not honoured. Deliberately coarse: a holder learns nothing about the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the presigned URL is malformed")]
    Malformed,
    #[error("the presigned URL's signature does not match")]
    BadSignature,
    #[error("the presigned URL has expired")]
    Expired,
}

/// Signs and checks tokens under one secret.
#[derive(Clone)]
pub struct Presigner {
    secret: [u8; SECRET_BYTES],
}

impl std::fmt::Debug for Presigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Presigner(..)")
    }
}

impl Presigner {
    pub fn new(secret: [u8; SECRET_BYTES]) -> Self {
        Presigner { secret }
    }

    /// A secret of its own, for a process whose tokens no other process needs to honour.
    pub fn random() -> Self {
        Presigner::new(rand::random())
    }

    /// The secret in `path` (64 hex digits), made there (mode 0600) when the file is missing.
    pub fn from_file(path: &Path, create: bool) -> std::io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => parse_secret(text.trim()).map(Presigner::new).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} must hold {} hex digits", path.display(), SECRET_BYTES * 2),
                )
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && create => {
                let secret: [u8; SECRET_BYTES] = rand::random();
                write_private(path, &hex(&secret))?;
                Ok(Presigner::new(secret))
            }
            Err(error) => Err(error),
        }
    }

    fn signature(&self, payload: &str) -> String {
        hex(&self.mac(payload))
    }

    /// HMAC-SHA256 (RFC 2104) of `payload` under the secret, domain-separated from any other
    /// use of it.
    fn mac(&self, payload: &str) -> [u8; 32] {
        const BLOCK: usize = 64;
        let mut key = [0u8; BLOCK];
        key[..SECRET_BYTES].copy_from_slice(&self.secret);
        let inner_pad: Vec<u8> = key.iter().map(|byte| byte ^ 0x36).collect();
        let outer_pad: Vec<u8> = key.iter().map(|byte| byte ^ 0x5c).collect();
        let inner = Sha256::new()
            .chain_update(&inner_pad)
            .chain_update(b"berth-presign\0")
            .chain_update(payload.as_bytes())
            .finalize();
        Sha256::new()
            .chain_update(&outer_pad)
            .chain_update(inner)
            .finalize()
            .into()
    }

    /// The token of `grant`: `<sandbox>.<port>.<expiry, unix seconds>.<key id>.<signature>`, all
    /// of it URL-safe in one path segment.
    pub fn sign(&self, grant: &Grant) -> String {
        let key = grant.key_id.as_ref().map_or(OPEN_KEY, KeyId::as_str);
        let payload = format!(
            "{}.{}.{}.{key}",
            grant.sandbox_id,
            grant.port,
            grant.expires_at.timestamp()
        );
        let signature = self.signature(&payload);
        format!("{payload}.{signature}")
    }

    /// What `token` grants at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Grant, Refusal> {
        let (payload, signature) = token.rsplit_once('.').ok_or(Refusal::Malformed)?;
        let mut parts = payload.split('.');
        let (Some(sandbox), Some(port), Some(expiry), Some(key), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Malformed);
        };
        let sandbox_id = SandboxId::parse(sandbox).ok_or(Refusal::Malformed)?;
        let port: u16 = port.parse().ok().filter(|port| *port > 0).ok_or(Refusal::Malformed)?;
        let expiry: i64 = expiry.parse().map_err(|_| Refusal::Malformed)?;
        let expires_at = DateTime::from_timestamp(expiry, 0).ok_or(Refusal::Malformed)?;
        let key_id = match key {
            OPEN_KEY => None,
            other => Some(KeyId::parse(other).ok_or(Refusal::Malformed)?),
        };
        let signature = parse_hex(signature).ok_or(Refusal::Malformed)?;
        let expected = self.mac(payload);
        // Every byte compared, whatever differs first: the time taken says nothing of the secret.
        let differs = signature.len() != expected.len()
            || signature.iter().zip(&expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0;
        if differs {
            return Err(Refusal::BadSignature);
        }
        if expires_at <= now {
            return Err(Refusal::Expired);
        }
        Ok(Grant {
            sandbox_id,
            port,
            expires_at,
            key_id,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok())
        .collect()
}

fn parse_secret(text: &str) -> Option<[u8; SECRET_BYTES]> {
    parse_hex(text)?.try_into().ok()
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(expires_at: DateTime<Utc>) -> Grant {
        Grant {
            sandbox_id: SandboxId::parse("0123456789abcdef").unwrap(),
            port: 8080,
            expires_at,
            key_id: KeyId::parse("fedcba9876543210"),
        }
    }

    #[test]
    fn a_token_grants_what_it_was_signed_for_until_it_expires() {
        let signer = Presigner::random();
        let now = Utc::now();
        let expires_at = DateTime::from_timestamp(now.timestamp() + 60, 0).unwrap();
        let token = signer.sign(&grant(expires_at));
        assert!(token.starts_with("0123456789abcdef.8080."), "{token}");
        assert_eq!(signer.verify(&token, now), Ok(grant(expires_at)));
        assert_eq!(signer.verify(&token, expires_at), Err(Refusal::Expired));
    }

    #[test]
    fn a_changed_token_or_another_secret_is_refused() {
        let signer = Presigner::random();
        let now = Utc::now();
        let token = signer.sign(&grant(now + chrono::Duration::minutes(5)));
        assert_eq!(Presigner::random().verify(&token, now), Err(Refusal::BadSignature));
        let other_port = token.replacen(".8080.", ".8081.", 1);
        assert_eq!(signer.verify(&other_port, now), Err(Refusal::BadSignature));
        let other_sandbox = token.replacen("0123456789abcdef", "0123456789abcdee", 1);
        assert_eq!(signer.verify(&other_sandbox, now), Err(Refusal::BadSignature));
        let (payload, _) = token.rsplit_once('.').unwrap();
        let later = payload.split('.').nth(2).unwrap().parse::<i64>().unwrap() + 3600;
        let extended = token.replacen(&format!(".{}.", later - 3600), &format!(".{later}."), 1);
        assert_eq!(signer.verify(&extended, now), Err(Refusal::BadSignature));
        for malformed in [
            "",
            "x",
            "a.b.c.d.e",
            &format!("{payload}.zz"),
            &format!("{payload}.extra.{}", "00"),
        ] {
            assert_eq!(signer.verify(malformed, now), Err(Refusal::Malformed), "{malformed}");
        }
    }

    #[test]
    fn the_mac_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2 has a 4-byte key; zero-padded to 32 bytes it is the same HMAC key.
        // Its message is prefixed here with berth's domain tag, so compare against a digest of
        // the same construction computed by hand.
        let mut secret = [0u8; SECRET_BYTES];
        secret[..4].copy_from_slice(b"Jefe");
        let signer = Presigner::new(secret);
        let mac = signer.mac("what do ya want for nothing?");
        let mut key = [0u8; 64];
        key[..4].copy_from_slice(b"Jefe");
        let ipad: Vec<u8> = key.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = key.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::new()
            .chain_update(&ipad)
            .chain_update(b"berth-presign\0what do ya want for nothing?")
            .finalize();
        let outer: [u8; 32] = Sha256::new().chain_update(&opad).chain_update(inner).finalize().into();
        assert_eq!(mac, outer);
        // Without the tag it is RFC 4231's expected value: the construction is HMAC.
        let inner = Sha256::new()
            .chain_update(&ipad)
            .chain_update(b"what do ya want for nothing?")
            .finalize();
        let plain: [u8; 32] = Sha256::new().chain_update(&opad).chain_update(inner).finalize().into();
        assert_eq!(
            hex(&plain),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_secret_file_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("url-signing.key");
        assert!(Presigner::from_file(&path, false).is_err());
        let made = Presigner::from_file(&path, true).unwrap();
        let read = Presigner::from_file(&path, false).unwrap();
        let token = made.sign(&grant(Utc::now() + chrono::Duration::minutes(1)));
        assert!(read.verify(&token, Utc::now()).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex").unwrap();
        assert!(Presigner::from_file(&path, true).is_err());
    }
}
