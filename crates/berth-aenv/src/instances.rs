//! Env instances (`/env-instance…`): an instance is a berth sandbox made from an Env, carrying
//! AEnvironment's `aenv.*` labels. Creates (from a registered Env or an inline one) answer at
//! once while the sandbox starts, and the SDK polls; reads come from berth's index.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use berth_api::FieldError;
use berth_api::aenv::{CreateInstanceRequest, Env, EnvInstance, labels, timestamp};
use berth_core::Reason;
use berth_core::stack::StackPlan;
use berth_core::{Caller, Sandbox, SandboxRequest, SandboxSpec, Status, Template, TemplateRef, units};
use berth_store::SandboxFilter;
use chrono::Utc;
use serde_json::{Map, Value};
use tracing::info;

use super::envelope::{AenvError, AenvResult, Success};
use super::envs::{
    aenv_field_name, apply_body, checked_reference, env_of_template, find, json_object, list_selection, split_env_name,
    synthesized_env, to_template,
};
use berth_control::service::{CreateExtras, NotFoundKind, SandboxService, ServiceError};

/// What `DELETE /env-instance/{id}` answers, as AEnvironment does.
const DELETED: &str = "Deleted successfully";

/// AEnvironment's status of a sandbox. `Running` only once the sandbox has an address, since
/// the SDK talks to `ip` as soon as it reads `Running`.
pub fn instance_status(sandbox: &Sandbox) -> &'static str {
    match sandbox.status {
        Status::Running if sandbox.ip.as_deref().is_some_and(|ip| !ip.is_empty()) => "Running",
        Status::Running | Status::Creating => "Creating",
        Status::Pending => "Pending",
        Status::Paused | Status::Hibernated => "Paused",
        Status::Failed => "Failed",
        Status::Stopping | Status::Terminated => "Terminated",
    }
}

/// Whether the instance is gone for AEnvironment: deleted or expired (berth keeps the record
/// for a while; AEnvironment's engines forget it). One that ended by itself stays visible, so
/// a waiting SDK reads `Failed` or `Terminated` instead of polling a 404.
fn is_gone(sandbox: &Sandbox) -> bool {
    sandbox.pool.is_some()
        || (sandbox.status.is_ended()
            && matches!(
                sandbox.status_reason,
                Some(Reason::Deleted | Reason::Expired | Reason::Recycled)
            ))
}

/// The instance object of sections 2.2 and 8: every field present, `env` whole or null.
pub fn instance_view(sandbox: &Sandbox, env: Option<Env>) -> EnvInstance {
    let label = |key: &str| sandbox.spec.labels.get(key).cloned();
    EnvInstance {
        id: sandbox.id.to_string(),
        env,
        status: instance_status(sandbox).to_owned(),
        created_at: timestamp(sandbox.created_at),
        updated_at: timestamp(sandbox.updated_at),
        ip: sandbox.ip.clone().unwrap_or_default(),
        ttl: label(labels::TTL).unwrap_or_else(|| units::format_duration(sandbox.spec.ttl)),
        owner: label(labels::OWNER).unwrap_or_else(|| sandbox.owner.clone()),
        labels: sandbox.spec.labels.clone(),
    }
}

/// The Env of a sandbox: its template's, else one made up from its spec under the name and
/// version of its `aenv.*` labels (an inline Env, or a template deleted since); null for a
/// sandbox that is neither.
fn env_of_sandbox(sandbox: &Sandbox, templates: &HashMap<String, Template>) -> Option<Env> {
    if let Some(template) = sandbox.template.as_ref().and_then(|key| templates.get(key)) {
        return Some(env_of_template(template));
    }
    let from_template = sandbox.template.as_deref().and_then(|key| TemplateRef::parse(key).ok());
    let name = sandbox
        .spec
        .labels
        .get(labels::ENV_NAME)
        .cloned()
        .or_else(|| from_template.as_ref().map(|reference| reference.name.clone()))?;
    let version = sandbox
        .spec
        .labels
        .get(labels::VERSION)
        .cloned()
        .or_else(|| from_template.as_ref().map(|reference| reference.tag.clone()))
        .unwrap_or_default();
    let mut env = synthesized_env(&name, &version, &sandbox.spec);
    env.created_at = timestamp(sandbox.created_at);
    env.updated_at = timestamp(sandbox.created_at);
    Some(env)
}

/// The templates the sandboxes were made from, by `name:tag`, read once for a whole answer.
async fn templates_of(service: &SandboxService, sandboxes: &[Sandbox]) -> Result<HashMap<String, Template>, AenvError> {
    let mut templates = HashMap::new();
    if sandboxes.iter().any(|sandbox| sandbox.template.is_some()) {
        for template in service.list_templates().await? {
            templates.insert(template.reference().to_string(), template);
        }
    }
    Ok(templates)
}

/// A create's field error, named as the field of `POST /env-instance` it came from.
fn request_field_error(error: FieldError) -> FieldError {
    let field = match error.field.as_str() {
        "template" => "envName".to_owned(),
        "command" | "command[0]" => "arguments".to_owned(),
        other if other.starts_with("volumes") => other
            .replacen("volumes", "mount_points", 1)
            .replace(".name", ".id")
            .replace(".path", ".local_dir"),
        other => aenv_field_name(other),
    };
    FieldError {
        field,
        message: error.message,
    }
}

/// SDK 0.1.7's `mount_points` as berth volume mounts: the caller's volume `id`, whole, at
/// `local_dir`. A `remote_dir` inside the volume is refused: the engine mounts whole volumes.
fn volumes_of(mount_points: &[berth_api::aenv::MountPoint]) -> Result<Vec<berth_core::VolumeMount>, AenvError> {
    let mut errors = Vec::new();
    for (index, point) in mount_points.iter().enumerate() {
        let remote = point.remote_dir.as_deref().unwrap_or("/").trim();
        if !remote.trim_matches('/').is_empty() {
            errors.push(FieldError {
                field: format!("mount_points[{index}].remote_dir"),
                message: format!(
                    "`{remote}`: berth mounts a whole volume; give \"/\" (or leave it out) and use the subdirectory inside local_dir"
                ),
            });
        }
    }
    if !errors.is_empty() {
        return Err(AenvError::invalid_fields(&errors));
    }
    Ok(mount_points
        .iter()
        .map(|point| berth_core::VolumeMount {
            name: point.id.clone(),
            path: point.local_dir.clone(),
            read_only: point.read_only,
        })
        .collect())
}

/// A text field of the request, with "" meaning absent (the SDK sends empty strings).
fn non_empty(text: Option<&String>) -> Option<String> {
    text.map(|text| text.trim())
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

/// The Env an instance is made from, with the template it resolves to (stored, or validated
/// from an inline Env) and whether that template is stored.
struct Source {
    env: Env,
    template: Template,
    registered: bool,
}

async fn source_of(
    service: &SandboxService,
    request: &CreateInstanceRequest,
    body: &Map<String, Value>,
) -> Result<Source, AenvError> {
    if let Some(env_name) = &request.env_name {
        let (name, version) = split_env_name(env_name.trim())?;
        checked_reference(name, version)?;
        let template = find(service, name, version).await?;
        return Ok(Source {
            env: env_of_template(&template),
            template,
            registered: true,
        });
    }
    if body.contains_key("name") {
        // An inline Env: registers nothing, the instance is made from its spec.
        let mut env = Env::default();
        apply_body(&mut env, body)?;
        if env.version.is_empty() {
            env.version = berth_core::template::DEFAULT_TAG.to_owned();
        }
        let template = to_template(&env, &service.config().policy, Utc::now())?;
        let env = env_of_template(&template);
        return Ok(Source {
            env,
            template,
            registered: false,
        });
    }
    Err(AenvError::bad_request(
        "Invalid request parameters: envName is required (name@version of a registered Env), or send an inline Env \
         with name, version and deployConfig",
    ))
}

/// `POST /env-instance`: creates an instance of a registered Env (`envName`) or of an inline
/// Env, answering at once with the instance `Pending`.
pub async fn create_instance(
    State(service): State<Arc<SandboxService>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> AenvResult<EnvInstance> {
    let body = json_object(&body)?;
    let request: CreateInstanceRequest = serde_json::from_value(Value::Object(body.clone()))
        .map_err(|error| AenvError::bad_request(format!("Invalid request parameters: {error}")))?;
    let Source {
        env,
        template,
        registered,
    } = source_of(&service, &request, &body).await?;
    let arguments = request.arguments.clone().unwrap_or_default();
    let command = match (&template.spec.command, arguments.is_empty()) {
        (_, true) => None,
        (Some(command), false) => Some(command.iter().chain(&arguments).cloned().collect::<Vec<_>>()),
        (None, false) => {
            return Err(AenvError::invalid_fields(&[FieldError {
                field: "arguments".into(),
                message: format!(
                    "berth appends arguments to the Env's command, and {} defines none: set deployConfig.command \
                     (an argv array, berth's extension) in the Env, or leave arguments out",
                    env.reference()
                ),
            }]));
        }
    };
    let ttl = request
        .ttl
        .as_ref()
        .map(ToString::to_string)
        .filter(|ttl| !ttl.trim().is_empty());
    let owner = non_empty(request.owner.as_ref());
    // AEnvironment's `owner` is a label shown back (often an e-mail); the sandbox belongs to the
    // caller's owner — or, for an admin, to the one it names.
    let berth_owner = Some(match &owner {
        Some(named) if caller.is_admin() => named.clone(),
        _ => caller.owner.clone(),
    });
    let variables = request.environment_variables.clone().unwrap_or_default();
    let user_labels = request.labels.clone().unwrap_or_default();
    let volumes = volumes_of(request.mount_points.as_deref().unwrap_or_default())?;
    if let Some(compose_file) = env.compose_file() {
        let stack = plan_stack(compose_file, &template, &variables, &arguments)?;
        let main = stack.main().cloned().unwrap_or_else(|| stack.services[0].clone());
        let mut stack_request = request_from_spec(&template.spec, user_labels, ttl.as_ref(), berth_owner);
        stack_request.image = Some(main.image);
        stack_request.command = main.command;
        stack_request.env = main.environment;
        stack_request.ports = main.ports;
        stack_request.volumes = volumes;
        let extras = CreateExtras {
            system_labels: system_labels(&env, &template, owner, ttl),
            stack: Some(stack),
        };
        return create_from(&service, stack_request, extras, env).await;
    }
    let sandbox_request = if registered {
        SandboxRequest {
            template: Some(template.reference().to_string()),
            command,
            env: variables,
            labels: user_labels,
            ttl: ttl.clone().map(berth_api::NumberOrString::String),
            owner: berth_owner,
            volumes,
            ..SandboxRequest::default()
        }
    } else {
        let mut inline = request_from_spec(&template.spec, user_labels, ttl.as_ref(), berth_owner);
        inline.env.extend(variables);
        inline.volumes = volumes;
        if command.is_some() {
            inline.command = command;
        }
        inline
    };
    let extras = CreateExtras {
        system_labels: system_labels(&env, &template, owner, ttl),
        stack: None,
    };
    create_from(&service, sandbox_request, extras, env).await
}

/// A native request repeating `spec` (an Env that is not a registered template, or a compose
/// stack, runs from it) with the instance's labels over the spec's, its TTL (else the spec's)
/// and owner.
fn request_from_spec(
    spec: &SandboxSpec,
    user_labels: BTreeMap<String, String>,
    ttl: Option<&String>,
    owner: Option<String>,
) -> SandboxRequest {
    let mut labels = spec.labels.clone();
    labels.extend(user_labels);
    SandboxRequest {
        image: Some(spec.image.clone()),
        command: spec.command.clone(),
        env: spec.env.clone(),
        labels,
        ports: spec.ports.clone(),
        cpu: Some(berth_api::NumberOrString::String(format!(
            "{}m",
            spec.resources.cpu_millis
        ))),
        memory: Some(berth_api::NumberOrString::String(
            spec.resources.memory_bytes.to_string(),
        )),
        disk: spec
            .resources
            .disk_bytes
            .map(|bytes| berth_api::NumberOrString::String(bytes.to_string())),
        ttl: Some(berth_api::NumberOrString::String(
            ttl.cloned().unwrap_or_else(|| units::format_duration(spec.ttl)),
        )),
        owner,
        network: Some(spec.network.to_request()),
        ..SandboxRequest::default()
    }
}

/// AEnvironment's `aenv.*` labels of a new instance (section 2.3).
fn system_labels(
    env: &Env,
    template: &Template,
    owner: Option<String>,
    ttl: Option<String>,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::ENV_NAME.to_owned(), env.name.clone()),
        (labels::VERSION.to_owned(), env.version.clone()),
        (labels::OWNER.to_owned(), owner.unwrap_or_default()),
        (
            labels::TTL.to_owned(),
            ttl.unwrap_or_else(|| units::format_duration(template.spec.ttl)),
        ),
        (labels::CREATED_AT.to_owned(), timestamp(Utc::now())),
    ])
}

async fn create_from(
    service: &Arc<SandboxService>,
    request: SandboxRequest,
    extras: CreateExtras,
    env: Env,
) -> AenvResult<EnvInstance> {
    let created = service
        .create_with(request, extras, None, false)
        .await
        .map_err(|error| match error {
            ServiceError::Validation(errors) => {
                let errors: Vec<FieldError> = errors.0.into_iter().map(request_field_error).collect();
                AenvError::invalid_fields(&errors)
            }
            other => other.into(),
        })?;
    info!(sandbox = %created.sandbox.id, env = %env.reference(), "AEnvironment instance created");
    Ok(Success(instance_view(&created.sandbox, Some(env))))
}

/// The stack of a compose Env: `${VAR}`s take the Env's variables overridden by the instance's,
/// and the main service also receives them (the SDK's `envNAME`/`envversion` included), with
/// `arguments` appended to its command.
fn plan_stack(
    compose_file: &str,
    template: &Template,
    variables: &BTreeMap<String, String>,
    arguments: &[String],
) -> Result<StackPlan, AenvError> {
    let mut values = template.spec.env.clone();
    values.extend(variables.clone());
    let mut stack = berth_compose::plan(compose_file, &values).map_err(|error| {
        AenvError::invalid_fields(&[FieldError {
            field: "deployConfig.composeFile".into(),
            message: error.to_string(),
        }])
    })?;
    let reserved: Vec<String> = stack
        .services
        .iter()
        .flat_map(|service| {
            service
                .labels
                .keys()
                .filter(|key| key.starts_with(berth_core::sandbox::label_keys::RESERVED_PREFIX))
                .map(move |key| format!("services.{}.labels.{key}", service.name))
        })
        .collect();
    if !reserved.is_empty() {
        return Err(AenvError::invalid_fields(&[FieldError {
            field: "deployConfig.composeFile".into(),
            message: format!(
                "labels with the reserved `berth.` prefix are set by berth only: remove {}",
                reserved.join(", ")
            ),
        }]));
    }
    let main_name = stack.main_service.clone();
    let main = stack
        .services
        .iter_mut()
        .find(|service| service.name == main_name)
        .ok_or_else(|| AenvError::bad_request(format!("the compose file has no main service `{main_name}`")))?;
    main.environment.extend(values);
    if !arguments.is_empty() {
        match &mut main.command {
            Some(command) => command.extend(arguments.iter().cloned()),
            None => {
                return Err(AenvError::invalid_fields(&[FieldError {
                    field: "arguments".into(),
                    message: format!(
                        "berth appends arguments to the main service's command, and service `{main_name}` of the \
                         compose file sets none: give it a `command`, or leave arguments out"
                    ),
                }]));
            }
        }
    }
    Ok(stack)
}

pub(crate) fn instance_not_found(id: &str) -> AenvError {
    AenvError::not_found(format!("Instance not found: {id}"))
}

/// The sandbox of an instance id, unless it is unknown or gone.
async fn live_instance(service: &SandboxService, id: &str) -> Result<Sandbox, AenvError> {
    if id == "list" {
        return Err(AenvError::not_found(
            "no instance `list`: list instances with GET /env-instance/*/list (or /env-instance/{name[@version]}/list)",
        ));
    }
    match service.get_latest(id).await {
        Ok(sandbox) if !is_gone(&sandbox) => Ok(sandbox),
        Ok(_)
        | Err(ServiceError::NotFound {
            kind: NotFoundKind::Sandbox,
            ..
        }) => Err(instance_not_found(id)),
        Err(error) => Err(error.into()),
    }
}

/// `GET /env-instance/{id}`.
pub async fn get_instance(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
) -> AenvResult<EnvInstance> {
    let sandbox = live_instance(&service, &id).await?;
    let templates = templates_of(&service, std::slice::from_ref(&sandbox)).await?;
    let env = env_of_sandbox(&sandbox, &templates);
    Ok(Success(instance_view(&sandbox, env)))
}

/// `POST /env-instance/{id}/presign-url` (SDK 0.1.7): `{port, expiration_time_in_minutes}` →
/// `{url}`, a link through berth's proxy to that port of the sandbox that works without a key
/// until it expires (5 minutes unless asked), for as long as the caller's key is usable.
pub async fn presign_url(
    State(service): State<Arc<SandboxService>>,
    Extension(caller): Extension<Caller>,
    scheme: Option<Extension<berth_api::ServedScheme>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> AenvResult<Value> {
    let body = json_object(&body)?;
    let port = match body.get("port") {
        Some(Value::Number(port)) => port
            .as_u64()
            .and_then(|port| u16::try_from(port).ok())
            .filter(|port| *port > 0),
        _ => None,
    }
    .ok_or_else(|| {
        AenvError::invalid_fields(&[FieldError {
            field: "port".into(),
            message: "is required: the sandbox's TCP port to reach, 1-65535".into(),
        }])
    })?;
    let minutes = match body.get("expiration_time_in_minutes") {
        None | Some(Value::Null) => 5.0,
        Some(Value::Number(minutes)) => minutes.as_f64().unwrap_or(-1.0),
        Some(_) => -1.0,
    };
    let most = berth_control::presign::MAX_VALIDITY.as_secs_f64() / 60.0;
    if !(minutes > 0.0 && minutes <= most) {
        return Err(AenvError::invalid_fields(&[FieldError {
            field: "expiration_time_in_minutes".into(),
            message: format!("must be a number of minutes above 0 and at most {most}"),
        }]));
    }
    live_instance(&service, &id).await?;
    let validity = std::time::Duration::from_secs_f64(minutes * 60.0);
    let (token, expires_at) = service.presign(&caller, &id, port, validity).await?;
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("localhost");
    let scheme = scheme.map_or("http", |Extension(scheme)| scheme.0);
    Ok(Success(serde_json::json!({
        "url": format!("{scheme}://{host}/p/{token}/"),
        "expires_at": timestamp(expires_at),
    })))
}

/// `DELETE /env-instance/{id}`: answers at once; the container is removed in the background.
pub async fn delete_instance(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
) -> AenvResult<&'static str> {
    live_instance(&service, &id).await?;
    match service.delete_in_background(&id).await {
        Ok(_) => Ok(Success(DELETED)),
        Err(ServiceError::NotFound {
            kind: NotFoundKind::Sandbox,
            ..
        }) => Err(instance_not_found(&id)),
        Err(error) => Err(error.into()),
    }
}

/// `GET /env-instance/{name|name@version|*}/list`: the instances (sandboxes made through this
/// surface), oldest first; `data` is always an array.
pub async fn list_instances(
    State(service): State<Arc<SandboxService>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> AenvResult<Vec<EnvInstance>> {
    let (name, version) = list_selection(&id, query.as_deref());
    let mut filter = SandboxFilter {
        include_ended: true,
        pooled: Some(false),
        owner: (!caller.is_admin()).then(|| caller.owner.clone()),
        ..SandboxFilter::default()
    };
    if let Some(version) = version {
        filter.labels.insert(labels::VERSION.to_owned(), version);
    }
    let sandboxes: Vec<Sandbox> = service
        .list(&filter, None, usize::MAX)
        .items
        .into_iter()
        .filter(|sandbox| !is_gone(sandbox))
        .filter(|sandbox| match (&name, sandbox.spec.labels.get(labels::ENV_NAME)) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(wanted), Some(name)) => wanted == name,
        })
        .collect();
    let templates = templates_of(&service, &sandboxes).await?;
    Ok(Success(
        sandboxes
            .iter()
            .map(|sandbox| instance_view(sandbox, env_of_sandbox(sandbox, &templates)))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use berth_core::spec::NumberOrString;
    use berth_core::{SpecPolicy, TemplateRequest};

    use super::*;

    fn sandbox(status: Status, ip: Option<&str>) -> Sandbox {
        let spec = SandboxRequest {
            image: Some("busybox".into()),
            ttl: Some(NumberOrString::String("10m".into())),
            ..SandboxRequest::default()
        }
        .validate(&SpecPolicy::default())
        .unwrap();
        let mut sandbox = Sandbox::new_pending(spec, "alice".into(), "local".into(), None, Utc::now());
        sandbox.status = status;
        sandbox.ip = ip.map(str::to_owned);
        sandbox
    }

    #[test]
    fn statuses_map_onto_aenvironments() {
        assert_eq!(
            instance_status(&sandbox(Status::Running, Some("172.17.0.2"))),
            "Running"
        );
        assert_eq!(instance_status(&sandbox(Status::Running, None)), "Creating");
        assert_eq!(instance_status(&sandbox(Status::Pending, None)), "Pending");
        assert_eq!(instance_status(&sandbox(Status::Creating, None)), "Creating");
        assert_eq!(instance_status(&sandbox(Status::Failed, None)), "Failed");
        assert_eq!(instance_status(&sandbox(Status::Stopping, None)), "Terminated");
        assert_eq!(instance_status(&sandbox(Status::Terminated, None)), "Terminated");
        assert_eq!(instance_status(&sandbox(Status::Paused, Some("x"))), "Paused");
    }

    #[test]
    fn deleted_and_expired_instances_are_gone_but_crashed_ones_are_not() {
        let mut ended = sandbox(Status::Terminated, None);
        ended.status_reason = Some(Reason::Expired);
        assert!(is_gone(&ended));
        ended.status_reason = Some(Reason::Deleted);
        assert!(is_gone(&ended));
        let mut failed = sandbox(Status::Failed, None);
        failed.status_reason = Some(Reason::Exited);
        assert!(!is_gone(&failed));
        assert!(!is_gone(&sandbox(Status::Stopping, None)));
    }

    #[test]
    fn the_view_has_every_field_and_reads_the_aenv_labels() {
        let mut running = sandbox(Status::Running, Some("172.17.0.9"));
        running.spec.labels.insert(labels::TTL.into(), "30m".into());
        running
            .spec
            .labels
            .insert(labels::OWNER.into(), "bob@example.com".into());
        let view = serde_json::to_value(instance_view(&running, None)).unwrap();
        for key in [
            "id",
            "env",
            "status",
            "created_at",
            "updated_at",
            "ip",
            "ttl",
            "owner",
            "labels",
        ] {
            assert!(view.get(key).is_some(), "{key} missing: {view}");
        }
        assert_eq!(view["env"], Value::Null);
        assert_eq!(view["ttl"], "30m");
        assert_eq!(view["owner"], "bob@example.com");
        assert_eq!(view["ip"], "172.17.0.9");
        let plain = instance_view(&sandbox(Status::Pending, None), None);
        assert_eq!(
            (plain.ttl.as_str(), plain.owner.as_str(), plain.ip.as_str()),
            ("10m", "alice", "")
        );
    }

    #[test]
    fn an_instance_env_is_its_template_or_made_up_whole() {
        let template = TemplateRequest {
            name: Some("swe".into()),
            tag: Some("1.0".into()),
            image: Some("busybox".into()),
            ..TemplateRequest::default()
        }
        .validate(&SpecPolicy::default(), None, Utc::now())
        .unwrap();
        let mut made = sandbox(Status::Running, Some("1.2.3.4"));
        made.template = Some("swe:1.0".into());
        let templates = HashMap::from([("swe:1.0".to_owned(), template)]);
        assert_eq!(env_of_sandbox(&made, &templates).unwrap().id, "swe-1.0");
        let orphaned = env_of_sandbox(&made, &HashMap::new()).unwrap();
        assert_eq!((orphaned.name.as_str(), orphaned.version.as_str()), ("swe", "1.0"));
        assert_eq!(orphaned.image(), Some("busybox"));
        assert!(env_of_sandbox(&sandbox(Status::Running, None), &HashMap::new()).is_none());
    }

    #[test]
    fn env_names_are_strict_and_lists_select_by_name_and_version() {
        assert_eq!(split_env_name("swe@1.0").unwrap(), ("swe", "1.0"));
        for bad in ["swe", "@1", "swe@", "a@b@c"] {
            let error = split_env_name(bad).unwrap_err();
            assert!(
                error.message.starts_with("Invalid EnvName format"),
                "{bad}: {}",
                error.message
            );
        }
        assert_eq!(list_selection("*", None), (None, None));
        assert_eq!(list_selection("*", Some("envName=swe")), (Some("swe".into()), None));
        assert_eq!(
            list_selection("*", Some("envName=swe%401.0")),
            (Some("swe".into()), Some("1.0".into()))
        );
        assert_eq!(list_selection("swe", None), (Some("swe".into()), None));
        assert_eq!(list_selection("swe@2", None), (Some("swe".into()), Some("2".into())));
    }

    #[test]
    fn create_errors_are_named_as_the_request_fields() {
        let renamed = |field: &str| {
            request_field_error(FieldError {
                field: field.into(),
                message: String::new(),
            })
            .field
        };
        assert_eq!(renamed("env.A"), "environment_variables.A");
        assert_eq!(renamed("command"), "arguments");
        assert_eq!(renamed("template"), "envName");
        assert_eq!(renamed("labels.x"), "labels.x");
        assert_eq!(renamed("ttl"), "ttl");
    }
}
