//! `/v1/volumes` handlers: an owner's persistent volumes, made, listed, read and deleted. A
//! member acts on its own owner's; an admin on anyone's, named by `owner`.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use berth_api::{Problem, VolumeList, VolumeRequest, VolumeView};
use berth_control::service::{SandboxService, VolumeInfo};
use berth_core::Caller;

use crate::error::ApiError;
use crate::json::ApiJson;
use crate::sandboxes::{QueryParams, owner_for};

fn view(volume: VolumeInfo) -> VolumeView {
    VolumeView {
        name: volume.name,
        owner: volume.owner,
        created_at: volume.created_at,
        mounted_by: volume.mounted_by,
    }
}

/// The owner a volume route acts for: `?owner=` from an admin, else the caller's own.
fn owner_in_query(caller: &Caller, query: Option<&str>) -> Result<String, ApiError> {
    let params = QueryParams::parse(query, &["owner"])?;
    owner_for(caller, params.single("owner").map(str::to_owned))
}

/// Make a volume. It outlives every sandbox that mounts it (`volumes: [{name, path}]` in a
/// create) until it is deleted, and only its owner's sandboxes can mount it.
#[utoipa::path(
    post,
    path = "/v1/volumes",
    tag = "volumes",
    request_body = VolumeRequest,
    responses(
        (status = 201, description = "Made", body = VolumeView),
        (status = 400, description = "Malformed body or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A member named another owner", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The owner has a volume of that name, or keeps the most volumes allowed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or owner", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Engine unavailable; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_volume(
    State(service): State<Arc<SandboxService>>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<VolumeRequest>,
) -> Result<Response, ApiError> {
    let owner = owner_for(&caller, request.owner)?;
    let volume = service.create_volume(&owner, &request.name).await?;
    let location = format!("/v1/volumes/{}", volume.name);
    let mut response = (StatusCode::CREATED, Json(view(volume))).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The caller's volumes (an admin's: every owner's, or one owner's with `owner`).
#[utoipa::path(
    get,
    path = "/v1/volumes",
    tag = "volumes",
    params(("owner" = Option<String>, Query, description = "Only this owner's (admins); a member always gets its own")),
    responses(
        (status = 200, body = VolumeList),
        (status = 400, description = "Unknown query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_volumes(
    State(service): State<Arc<SandboxService>>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Json<VolumeList>, ApiError> {
    let params = QueryParams::parse(query.as_deref(), &["owner"])?;
    let owner = if caller.is_admin() {
        params.single("owner").map(str::to_owned)
    } else {
        Some(caller.owner.clone())
    };
    let volumes = service.list_volumes(owner.as_deref()).await?;
    Ok(Json(VolumeList {
        volumes: volumes.into_iter().map(view).collect(),
    }))
}

/// One volume, with the live sandboxes that mount it.
#[utoipa::path(
    get,
    path = "/v1/volumes/{name}",
    tag = "volumes",
    params(
        ("name" = String, Path, description = "Volume name"),
        ("owner" = Option<String>, Query, description = "Whose volume (admins); default the caller's owner"),
    ),
    responses(
        (status = 200, body = VolumeView),
        (status = 403, description = "A member named another owner", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_volume(
    State(service): State<Arc<SandboxService>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<VolumeView>, ApiError> {
    let owner = owner_in_query(&caller, query.as_deref())?;
    Ok(Json(view(service.get_volume(&owner, &name).await?)))
}

/// Delete a volume and its data. Refused (409) while a live sandbox mounts it.
#[utoipa::path(
    delete,
    path = "/v1/volumes/{name}",
    tag = "volumes",
    params(
        ("name" = String, Path, description = "Volume name"),
        ("owner" = Option<String>, Query, description = "Whose volume (admins); default the caller's owner"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "A member named another owner", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Mounted by a live sandbox", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_volume(
    State(service): State<Arc<SandboxService>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<StatusCode, ApiError> {
    let owner = owner_in_query(&caller, query.as_deref())?;
    service.delete_volume(&owner, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(owner: &str, role: berth_core::Role) -> Caller {
        Caller {
            owner: owner.into(),
            role,
            key_id: None,
        }
    }

    #[test]
    fn a_member_acts_on_its_own_volumes_and_an_admin_on_the_one_it_names() {
        let member = caller("team-a", berth_core::Role::Member);
        assert_eq!(owner_in_query(&member, None).unwrap(), "team-a");
        assert_eq!(owner_in_query(&member, Some("owner=team-a")).unwrap(), "team-a");
        let ApiError(problem) = owner_in_query(&member, Some("owner=team-b")).unwrap_err();
        assert_eq!(problem.status, 403);
        let admin = caller("ops", berth_core::Role::Admin);
        assert_eq!(owner_in_query(&admin, Some("owner=team-b")).unwrap(), "team-b");
        assert_eq!(owner_in_query(&admin, None).unwrap(), "ops");
        assert!(owner_in_query(&admin, Some("name=x")).is_err());
    }
}
