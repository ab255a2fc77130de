//! The web dashboard at `/ui`: the page, script and stylesheet built from `web/` (by
//! `scripts/build-ui.sh` into `crates/berth-http/ui/`) and embedded in the binary. They are open,
//! as they hold no secret: the page asks for an API key and sends it with every call it makes.
//! Any other path under `/ui` (not an asset) answers the page, whose own router draws it.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::ProblemKind;

use crate::error::ApiError;

/// One embedded file: its path under `/ui/`, its media type and its bytes.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

/// Every file the build writes (the web build names them without hashes, so this list is
/// fixed; the UI check fails when the build writes any other).
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../ui/index.html"),
    },
    Asset {
        path: "assets/berth.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../ui/assets/berth.js"),
    },
    Asset {
        path: "assets/berth.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../ui/assets/berth.css"),
    },
];

/// Only this origin's scripts and connections (the API, its event stream and WebSockets);
/// inline styles because xterm.js sizes its rows with them; never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The dashboard's page.
#[utoipa::path(
    get,
    path = "/ui",
    tag = "ui",
    description = "The web dashboard (HTML; no key needed to load it, as it holds none: it asks for an API key and \
sends it as `Authorization: Bearer` with each call, and as a `berth.bearer.<key>` subprotocol on the exec WebSocket). \
Its script and stylesheet are under `/ui/assets/`; any other path under `/ui/` answers this page.",
    responses((status = 200, description = "The dashboard's page", content_type = "text/html"))
)]
pub async fn page() -> Response {
    serve(&ASSETS[0])
}

/// A file under `/ui/`: an asset, or the page for any path that names none (a page of the
/// dashboard's own router, reloaded or linked to).
pub async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|asset| asset.path == path) {
        Some(asset) => serve(asset),
        None if path.starts_with("assets/") => {
            ApiError::new(ProblemKind::NotFound, format!("no dashboard asset `/ui/{path}`")).into_response()
        }
        None => serve(&ASSETS[0]),
    }
}

fn serve(asset: &'static Asset) -> Response {
    let mut response = (StatusCode::OK, asset.bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    // The names carry no hash: a browser asks again each time rather than keep an old script.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test: a panic is a failed assertion")]

    use super::*;

    async fn get(path: &str) -> Response {
        asset(Path(path.to_owned())).await
    }

    #[tokio::test]
    async fn assets_have_their_types_and_other_paths_the_page() {
        let script = get("assets/berth.js").await;
        assert_eq!(script.status(), StatusCode::OK);
        assert_eq!(script.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(
            get("assets/berth.css").await.headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
        for path in ["", "sandboxes/abc", "templates"] {
            let response = get(path).await;
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "text/html; charset=utf-8",
                "{path}"
            );
            assert!(response.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        }
        assert_eq!(get("assets/missing.js").await.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_page_loads_the_embedded_script_and_stylesheet_only() {
        let page = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        assert!(page.contains("/ui/assets/berth.js"), "{page}");
        assert!(page.contains("/ui/assets/berth.css"), "{page}");
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no CDN: {page}"
        );
    }

    #[test]
    fn every_built_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        let mut built = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    built.push(path.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/"));
                }
            }
        }
        built.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|asset| asset.path.to_owned()).collect();
        embedded.sort();
        assert_eq!(
            built, embedded,
            "add the new file to ASSETS (or name it as the others in web/vite.config.ts)"
        );
    }
}
