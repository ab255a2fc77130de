//! The AEnvironment Env registry (`/env/…`): register, list, read and delete Envs. Answers come
//! in AEnvironment's `{success, code, message, data}` envelope; a failure becomes
//! [`ClientError::Status`] with the envelope's message.

use berth_api::aenv::{Env, Envelope};
use reqwest::Url;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{BerthClient, ClientError, join_segments};

impl BerthClient {
    /// `POST /env/`: registers the Env `document` (camelCase or snake_case keys); a conflict
    /// (409) if its `name@version` exists.
    pub async fn create_env(&self, document: &Value) -> Result<(), ClientError> {
        let _: Value = self
            .send_envelope(self.http.post(envs_url(&self.base)).json(document))
            .await?;
        Ok(())
    }

    /// `GET /env/`: every Env.
    pub async fn list_envs(&self) -> Result<Vec<Env>, ClientError> {
        self.send_envelope(self.http.get(envs_url(&self.base))).await
    }

    /// `GET /env/{name}/{version}`.
    pub async fn get_env(&self, name: &str, version: &str) -> Result<Env, ClientError> {
        self.send_envelope(self.http.get(env_url(&self.base, name, version)))
            .await
    }

    /// `DELETE /env/{name}/{version}`: instances made from it keep running.
    pub async fn delete_env(&self, name: &str, version: &str) -> Result<(), ClientError> {
        let _: Value = self
            .send_envelope(self.http.delete(env_url(&self.base, name, version)))
            .await?;
        Ok(())
    }

    /// Sends and unwraps the envelope's `data`; `success: false` or a non-2xx status is an
    /// error carrying the envelope's message.
    async fn send_envelope<T: DeserializeOwned>(&self, builder: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let (status, body) = self.exchange(builder).await?;
        unwrap_envelope(status, &body)
    }
}

fn unwrap_envelope<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, ClientError> {
    let envelope: Envelope<T> = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(error) if (200..300).contains(&status) => {
            return Err(ClientError::Decode(format!(
                "the answer is not an AEnvironment envelope: {error}"
            )));
        }
        Err(_) => {
            return Err(ClientError::Status {
                status,
                body: String::from_utf8_lossy(body).into_owned(),
            });
        }
    };
    match envelope.data {
        Some(data) if envelope.success && (200..300).contains(&status) => Ok(data),
        _ if envelope.success && (200..300).contains(&status) => {
            Err(ClientError::Decode("the answer has no `data`".to_owned()))
        }
        _ => Err(ClientError::Status {
            status: if (200..300).contains(&status) {
                envelope.code
            } else {
                status
            },
            body: envelope.message,
        }),
    }
}

fn envs_url(base: &Url) -> Url {
    // AEnvironment's registry path ends in a slash: an empty last segment.
    join_segments(base, &["env", ""])
}

/// The URL of one Env; name and version stay one path segment each whatever they contain.
fn env_url(base: &Url, name: &str, version: &str) -> Url {
    join_segments(base, &["env", name, version])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_base_url;

    #[test]
    fn env_urls_keep_name_and_version_in_their_segments() {
        let base = parse_base_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(envs_url(&base).as_str(), "http://127.0.0.1:8080/env/");
        assert_eq!(
            env_url(&base, "swe", "1.0.0").as_str(),
            "http://127.0.0.1:8080/env/swe/1.0.0"
        );
        assert_eq!(
            env_url(&base, "a/b", "?").as_str(),
            "http://127.0.0.1:8080/env/a%2Fb/%3F"
        );
    }

    #[test]
    fn envelopes_unwrap_to_data_or_the_message() {
        let ok: bool = unwrap_envelope(200, br#"{"success":true,"code":0,"message":"","data":true}"#).unwrap();
        assert!(ok);
        let missing = unwrap_envelope::<Env>(
            404,
            br#"{"success":false,"code":404,"message":"Environment not found: a@1","data":null}"#,
        )
        .unwrap_err();
        assert!(missing.is_not_found());
        assert!(missing.to_string().contains("Environment not found: a@1"), "{missing}");
        let plain = unwrap_envelope::<Env>(502, b"bad gateway").unwrap_err();
        assert_eq!(plain.status(), Some(502));
    }
}
