//! `/v1/templates` and `/v1/pools` handlers: templates created, replaced, read and deleted, their
//! images built from a streamed build context, and the state of their warm pools.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::{BuildLine, PoolList, Problem, ProblemKind, TemplateList, TemplateRequest, TemplateView};
use bytes::Bytes;
use futures::StreamExt;

use crate::error::ApiError;
use crate::files::{TAR, content_length, is_tar, relay};
use crate::json::ApiJson;
use crate::sandboxes::QueryParams;
use berth_control::service::{BuildOptions, SandboxService};

const BUILD_DESCRIPTION: &str = "Builds the template's image with the engine's classic builder from the body, a \
tar build context (`Content-Type: application/x-tar`, the body streams to the engine; larger than the server's \
`--max-file-size`: 413), as `docker build` would: `dockerfile` names the Dockerfile inside the context (default \
`Dockerfile`), `buildarg=KEY=VALUE` (repeatable) sets an `ARG`. The image is tagged with the template's `image` \
when that is a plain local reference (no registry host, no digest), else `berth-template/<name>:<tag>`, and \
labelled `berth.template=<name>:<tag>`; a FROM image must be on the engine or pullable. Once the context is taken \
the answer is 200 with `application/x-ndjson`, streamed as the build runs: `{\"log\": \"…\"}` per line of output, \
then `{\"done\": {\"image\": …, \"image_id\": …}}` — the template now runs that image (its `error` cleared, its \
pool refilled from it) — or `{\"error\": \"<the build's message>\"}`. A client that disconnects cancels the build.";

/// Create a template; with a `pool`, the leader starts filling it at once.
#[utoipa::path(
    post,
    path = "/v1/templates",
    tag = "templates",
    request_body = TemplateRequest,
    responses(
        (status = 201, body = TemplateView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A template with this name and tag exists: use PUT", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_template(
    State(service): State<Arc<SandboxService>>,
    ApiJson(request): ApiJson<TemplateRequest>,
) -> Result<Response, ApiError> {
    let template = service.create_template(&request).await?;
    let mut response = (StatusCode::CREATED, Json(service.template_view(&template))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/templates/{}", template.reference())) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Every template, by name and tag.
#[utoipa::path(get, path = "/v1/templates", tag = "templates", responses((status = 200, body = TemplateList)))]
pub async fn list_templates(State(service): State<Arc<SandboxService>>) -> Result<Json<TemplateList>, ApiError> {
    let templates = service.list_templates().await?;
    Ok(Json(TemplateList {
        items: templates
            .iter()
            .map(|template| service.template_view(template))
            .collect(),
    }))
}

/// One template, with its pool's state.
#[utoipa::path(
    get,
    path = "/v1/templates/{reference}",
    tag = "templates",
    params(("reference" = String, Path, description = "`name` (tag `latest`) or `name:tag`")),
    responses(
        (status = 200, body = TemplateView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_template(
    State(service): State<Arc<SandboxService>>,
    Path(reference): Path<String>,
) -> Result<Json<TemplateView>, ApiError> {
    let template = service.get_template(&reference).await?;
    Ok(Json(service.template_view(&template)))
}

/// Create or replace a template. Idle pooled sandboxes made from an older spec are replaced.
#[utoipa::path(
    put,
    path = "/v1/templates/{reference}",
    tag = "templates",
    params(("reference" = String, Path, description = "`name` (tag `latest`, or the body's `tag`) or `name:tag`")),
    request_body = TemplateRequest,
    responses(
        (status = 200, body = TemplateView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_template(
    State(service): State<Arc<SandboxService>>,
    Path(reference): Path<String>,
    ApiJson(request): ApiJson<TemplateRequest>,
) -> Result<Json<TemplateView>, ApiError> {
    let template = service.put_template(&reference, &request).await?;
    Ok(Json(service.template_view(&template)))
}

/// Delete a template. Its idle pooled sandboxes are removed; sandboxes made from it keep running.
#[utoipa::path(
    delete,
    path = "/v1/templates/{reference}",
    tag = "templates",
    params(("reference" = String, Path, description = "`name` (tag `latest`) or `name:tag`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_template(
    State(service): State<Arc<SandboxService>>,
    Path(reference): Path<String>,
) -> Result<StatusCode, ApiError> {
    service.delete_template(&reference).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The warm pools: ready, refilling and claimed sandboxes per template.
#[utoipa::path(get, path = "/v1/pools", tag = "templates", responses((status = 200, body = PoolList)))]
pub async fn list_pools(State(service): State<Arc<SandboxService>>) -> Result<Json<PoolList>, ApiError> {
    let templates = service.list_templates().await?;
    Ok(Json(PoolList {
        items: templates
            .iter()
            .filter_map(|template| service.pool_view(template))
            .collect(),
    }))
}

/// Build the template's image from a Dockerfile and a tar build context, streaming its output.
#[utoipa::path(
    post,
    path = "/v1/templates/{reference}/build",
    tag = "templates",
    description = BUILD_DESCRIPTION,
    params(
        ("reference" = String, Path, description = "`name` (tag `latest`) or `name:tag`"),
        ("dockerfile" = Option<String>, Query, description = "Path of the Dockerfile inside the context (default `Dockerfile`)"),
        ("buildarg" = Option<Vec<String>>, Query, description = "`KEY=VALUE` for an `ARG` of the Dockerfile (repeatable)"),
    ),
    request_body(content((String = "application/x-tar"))),
    responses(
        (status = 200, description = "The build's output, one JSON object per line, ending with `done` or `error`", content((BuildLine = "application/x-ndjson"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over the server's file size limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/x-tar`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid options, or the engine refused the context (e.g. no Dockerfile at that path)", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
        (status = 504, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn build_template(
    State(service): State<Arc<SandboxService>>,
    Path(reference): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // First, so that every refusal below still lets the client read its answer.
    let context = relay(body);
    let params = QueryParams::parse(query.as_deref(), &["dockerfile", "buildarg"])?;
    if !is_tar(&headers) {
        return Err(ApiError::new(
            ProblemKind::UnsupportedMediaType,
            format!("a build context is a tar stream: send it with `Content-Type: {TAR}`"),
        ));
    }
    let mut build_args = BTreeMap::new();
    for pair in params.all("buildarg") {
        match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => build_args.insert(key.to_owned(), value.to_owned()),
            _ => {
                return Err(ApiError::field(
                    ProblemKind::Validation,
                    "buildarg",
                    format!("`{pair}` is not KEY=VALUE"),
                ));
            }
        };
    }
    let length = content_length(&headers)?;
    let options = BuildOptions {
        dockerfile: params.single("dockerfile").map(str::to_owned),
        build_args,
    };
    let lines = service.build_template(&reference, options, context, length).await?;
    let body = lines.map(|line| {
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        Ok::<_, Infallible>(Bytes::from(bytes))
    });
    let mut response = Body::from_stream(body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(response)
}
