//! Where a request carries a berth API key — `Authorization: Bearer`, `X-API-Key`, the
//! `access_token` query parameter, a `berth.bearer.<key>` WebSocket subprotocol — and taking it
//! out, so that no path forwarding a request into a sandbox (the API's gate, the MCP gateway)
//! can pass it on.

use axum::http::{HeaderMap, HeaderValue, Uri, header};
use berth_core::identity::is_secret;

/// The query parameter a browser client may carry its key in (browsers cannot set headers on
/// WebSockets and event streams).
pub const KEY_QUERY_PARAMETER: &str = "access_token";
/// A WebSocket subprotocol `berth.bearer.<key>` carries a browser client's key.
pub const KEY_SUBPROTOCOL_PREFIX: &str = "berth.bearer.";
/// E2B's SDK sends its key in this header.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The key the request carries for the API's gate, removed from it wherever it was: a berth
/// key (see [`take_berth_key`]), else whatever bearer token or `X-API-Key` it sends, which the
/// gate then refuses.
pub fn take_credential(headers: &mut HeaderMap, uri: &mut Uri) -> Option<String> {
    let found = take_berth_key(headers, uri);
    // Something that is no berth key, and nothing else: it is refused (and so never forwarded).
    found
        .or_else(|| bearer(headers))
        .or_else(|| header_text(headers, API_KEY_HEADER))
}

/// The berth key the request carries, taken out wherever it was; anything that is not a berth
/// key (a token of the sandbox's own server) stays in place.
pub fn take_berth_key(headers: &mut HeaderMap, uri: &mut Uri) -> Option<String> {
    let mut found = None;
    if let Some(secret) = bearer(headers).filter(|token| is_secret(token)) {
        headers.remove(header::AUTHORIZATION);
        found = Some(secret);
    }
    if let Some(secret) = header_text(headers, API_KEY_HEADER).filter(|value| is_secret(value)) {
        headers.remove(API_KEY_HEADER);
        found = found.or(Some(secret));
    }
    if let Some(secret) = strip_query_key(uri) {
        found = found.or(Some(secret));
    }
    if let Some(secret) = strip_subprotocol_key(headers) {
        found = found.or(Some(secret));
    }
    found
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(|value| value.trim().to_owned())
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = header_text(headers, header::AUTHORIZATION.as_str())?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

fn strip_query_key(uri: &mut Uri) -> Option<String> {
    let query = uri.query()?;
    let mut secret = None;
    let kept: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .filter_map(|(name, value)| {
            if name == KEY_QUERY_PARAMETER {
                secret = Some(value.into_owned());
                None
            } else {
                Some((name.into_owned(), value.into_owned()))
            }
        })
        .collect();
    let secret = secret?;
    let mut rebuilt = uri.path().to_owned();
    if !kept.is_empty() {
        rebuilt.push('?');
        rebuilt.push_str(
            &form_urlencoded::Serializer::new(String::new())
                .extend_pairs(kept)
                .finish(),
        );
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = rebuilt.parse().ok();
    if let Ok(stripped) = Uri::from_parts(parts) {
        *uri = stripped;
    }
    Some(secret)
}

fn strip_subprotocol_key(headers: &mut HeaderMap) -> Option<String> {
    let offered = header_text(headers, header::SEC_WEBSOCKET_PROTOCOL.as_str())?;
    let mut secret = None;
    let kept: Vec<&str> = offered
        .split(',')
        .map(str::trim)
        .filter(|protocol| match protocol.strip_prefix(KEY_SUBPROTOCOL_PREFIX) {
            Some(key) => {
                secret = Some(key.to_owned());
                false
            }
            None => true,
        })
        .collect();
    let secret = secret?;
    headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
    if let Ok(value) = HeaderValue::from_str(&kept.join(", "))
        && !kept.is_empty()
    {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    Some(secret)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test: a panic is a failed assertion")]

    use super::*;

    const KEY: &str = "bk_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn every_credential_form_is_taken_out_of_the_request() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {KEY}")).unwrap(),
        );
        let mut uri: Uri = "/v1/sandboxes".parse().unwrap();
        assert_eq!(take_credential(&mut headers, &mut uri).as_deref(), Some(KEY));
        assert!(headers.get(header::AUTHORIZATION).is_none());

        let mut headers = HeaderMap::new();
        headers.insert(API_KEY_HEADER, HeaderValue::from_static(KEY));
        let mut uri: Uri = format!("/v1/sandboxes/x/proxy/80/a?b=1&{KEY_QUERY_PARAMETER}={KEY}&c=2")
            .parse()
            .unwrap();
        assert_eq!(take_credential(&mut headers, &mut uri).as_deref(), Some(KEY));
        assert!(headers.is_empty());
        assert_eq!(uri.to_string(), "/v1/sandboxes/x/proxy/80/a?b=1&c=2");

        let mut headers = HeaderMap::new();
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(&format!("berth, {KEY_SUBPROTOCOL_PREFIX}{KEY}")).unwrap(),
        );
        let mut uri: Uri = "/v1/sandboxes/x/exec/ws".parse().unwrap();
        assert_eq!(take_credential(&mut headers, &mut uri).as_deref(), Some(KEY));
        assert_eq!(headers[header::SEC_WEBSOCKET_PROTOCOL], "berth");
    }

    #[test]
    fn an_applications_own_header_is_left_alone_when_the_key_comes_another_way() {
        let mut headers = HeaderMap::new();
        headers.insert(API_KEY_HEADER, HeaderValue::from_static("the-apps-own-key"));
        let mut uri: Uri = format!("/p?{KEY_QUERY_PARAMETER}={KEY}").parse().unwrap();
        assert_eq!(take_credential(&mut headers, &mut uri).as_deref(), Some(KEY));
        assert_eq!(headers[API_KEY_HEADER], "the-apps-own-key");
        assert_eq!(uri.to_string(), "/p");
    }
}
