//! The Env registry (`/env/…`): an AEnvironment Env is a berth template — `name` is the
//! template's name, `version` its tag — carrying the Env document as given. Here: reading Env
//! bodies (camelCase or snake_case keys), mapping an Env onto a template spec and back, the
//! `name@version`, list-selector and field-name helpers the instance and service handlers
//! share, and the registry's handlers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use berth_api::aenv::{AENV_PORT, Artifact, ENV_STATUS_READY, ENV_STATUS_RELEASED, Env, EnvExists, timestamp};
use berth_api::{FieldError, NumberOrString};
use berth_core::spec::SandboxSpec;
use berth_core::template::{validate_name, validate_tag};
use berth_core::{NetworkRequest, SpecPolicy, Template, TemplateRequest, ValidationErrors, units};
use berth_store::StoreError;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tracing::info;

use super::envelope::{AenvError, AenvResult, Success};
use berth_control::service::{NotFoundKind, SandboxService, ServiceError};

/// The image of a template registered from a compose-only Env (no image of its own): compose
/// stacks are not run yet, and a template needs an image. `scratch` can never be pulled, so a
/// native create from such a template fails clearly instead of running something else.
const COMPOSE_PLACEHOLDER_IMAGE: &str = "scratch";

/// Keys whose camelCase form (`POST /env/`) and snake_case form (what the registry returns)
/// both name one Env field; the camelCase one wins when a body has both, as in AEnvironment.
const TWO_SPELLINGS: [(&str, &str); 4] = [
    ("codeUrl", "code_url"),
    ("buildConfig", "build_config"),
    ("testConfig", "test_config"),
    ("deployConfig", "deploy_config"),
];

/// The body as a JSON object, or a 400 saying why not.
pub(super) fn json_object(body: &[u8]) -> Result<Map<String, Value>, AenvError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(AenvError::bad_request(
            "Invalid request parameters: the body must be a JSON object",
        )),
        Err(error) => Err(AenvError::bad_request(format!(
            "Invalid request parameters: the body is not JSON: {error}"
        ))),
    }
}

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// The value of an Env field in `body` under either spelling (camelCase first), with the
/// spelling found; `null` counts as absent.
fn lookup<'a>(body: &'a Map<String, Value>, key: &str) -> Option<(&'a str, &'a Value)> {
    let spellings = TWO_SPELLINGS
        .iter()
        .find(|(camel, snake)| *camel == key || *snake == key)
        .map_or([key, key], |(camel, snake)| [*camel, *snake]);
    spellings
        .iter()
        .find_map(|spelling| body.get_key_value(*spelling))
        .filter(|(_, value)| !value.is_null())
        .map(|(spelling, value)| (spelling.as_str(), value))
}

/// Lays the Env fields present in `body` over `env`, type-checking each and naming every bad
/// one. `id`, timestamps and unknown keys are ignored: the server owns those.
pub(super) fn apply_body(env: &mut Env, body: &Map<String, Value>) -> Result<(), AenvError> {
    let errors = apply_fields(env, body);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AenvError::invalid_fields(&errors))
    }
}

fn apply_fields(env: &mut Env, body: &Map<String, Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, slot) in [
        ("name", &mut env.name),
        ("version", &mut env.version),
        ("description", &mut env.description),
        ("code_url", &mut env.code_url),
    ] {
        match lookup(body, key) {
            None => {}
            Some((_, Value::String(text))) => *slot = text.clone(),
            Some((spelling, _)) => errors.push(field_error(spelling, "must be a string")),
        }
    }
    if let Some((spelling, value)) = lookup(body, "status") {
        match value.as_i64() {
            Some(status) => env.status = status,
            None => errors.push(field_error(
                spelling,
                "must be an integer (0 Init … 6 Ready, 7 Released, 8 Failed)",
            )),
        }
    }
    if let Some((spelling, value)) = lookup(body, "tags") {
        match serde_json::from_value::<Vec<String>>(value.clone()) {
            Ok(tags) => env.tags = tags,
            Err(_) => errors.push(field_error(spelling, "must be an array of strings")),
        }
    }
    if let Some((spelling, value)) = lookup(body, "artifacts") {
        match serde_json::from_value::<Vec<Artifact>>(value.clone()) {
            Ok(artifacts) => env.artifacts = artifacts,
            Err(error) => errors.push(field_error(
                spelling,
                format!("must be an array of {{\"id\", \"type\", \"content\"}} objects with string values ({error})"),
            )),
        }
    }
    for (key, slot) in [
        ("build_config", &mut env.build_config),
        ("test_config", &mut env.test_config),
        ("deploy_config", &mut env.deploy_config),
    ] {
        match lookup(body, key) {
            None => {}
            Some((_, Value::Object(map))) => *slot = map.clone(),
            Some((spelling, _)) => errors.push(field_error(spelling, "must be an object")),
        }
    }
    errors
}

/// The Env a `POST /env/` body describes; `name` and `version` are required.
pub(super) fn env_from_body(body: &Map<String, Value>) -> Result<Env, AenvError> {
    let mut env = Env::default();
    let mut errors = apply_fields(&mut env, body);
    if env.name.is_empty() && !errors.iter().any(|error| error.field == "name") {
        errors.push(field_error("name", "is required, e.g. \"swe-env\""));
    }
    if env.version.is_empty() && !errors.iter().any(|error| error.field == "version") {
        errors.push(field_error("version", "is required, e.g. \"1.0.0\""));
    }
    if errors.is_empty() {
        Ok(env)
    } else {
        Err(AenvError::invalid_fields(&errors))
    }
}

/// A quantity of `deploy_config` (`cpu`, `memory`, `ttl`): a string or a number; "" is absent.
fn quantity(deploy: &Map<String, Value>, key: &str, errors: &mut Vec<FieldError>) -> Option<NumberOrString> {
    match deploy.get(key)? {
        Value::Null => None,
        Value::String(text) if text.trim().is_empty() => None,
        Value::String(text) => Some(NumberOrString::String(text.trim().to_owned())),
        Value::Number(number) => number.as_f64().map(NumberOrString::Number),
        _ => {
            errors.push(field_error(
                &format!("deployConfig.{key}"),
                "must be a string or a number",
            ));
            None
        }
    }
}

/// A string map of `deploy_config` (`environment_variables`, `labels`…); numbers and booleans
/// are taken as their text, as AEnvironment's Go code formats them.
fn string_map(deploy: &Map<String, Value>, key: &str, errors: &mut Vec<FieldError>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match deploy.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                match value {
                    Value::String(text) => {
                        out.insert(name.clone(), text.clone());
                    }
                    Value::Number(_) | Value::Bool(_) => {
                        out.insert(name.clone(), value.to_string());
                    }
                    _ => errors.push(field_error(&format!("deployConfig.{key}.{name}"), "must be a string")),
                }
            }
        }
        Some(_) => errors.push(field_error(
            &format!("deployConfig.{key}"),
            "must be an object of strings",
        )),
    }
    out
}

/// The container ports: `ports` (array), else `port`, else `service.port` (the CLI's config
/// convention), else 8081, where AEnvironment images serve.
fn ports(deploy: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Vec<u16> {
    let port_of = |value: &Value| value.as_u64().and_then(|port| u16::try_from(port).ok());
    if let Some(list) = deploy.get("ports").filter(|value| !value.is_null()) {
        let parsed: Option<Vec<u16>> = list.as_array().and_then(|items| items.iter().map(port_of).collect());
        return match parsed {
            Some(ports) => ports,
            None => {
                errors.push(field_error(
                    "deployConfig.ports",
                    "must be an array of port numbers, e.g. [8081]",
                ));
                Vec::new()
            }
        };
    }
    let single = deploy
        .get("port")
        .map(|value| ("deployConfig.port", value))
        .or_else(|| {
            deploy
                .get("service")
                .and_then(|service| service.get("port"))
                .map(|value| ("deployConfig.service.port", value))
        })
        .filter(|(_, value)| !value.is_null());
    match single {
        None => vec![AENV_PORT],
        Some((field, value)) => match port_of(value) {
            Some(port) => vec![port],
            None => {
                errors.push(field_error(field, "must be a port number, e.g. 8081"));
                Vec::new()
            }
        },
    }
}

/// The template request an Env stands for: image from `deployConfig.imageName` or the first
/// image artifact; `cpu`, `memory`, `ttl`; variables from `environmentVariables`, `env` and
/// `environment_variables` (merged in that order); `labels`; ports; and berth's extension
/// `deployConfig.command` (an argv array), since AEnvironment Envs run their image's CMD.
pub fn template_request(env: &Env) -> Result<TemplateRequest, Vec<FieldError>> {
    let deploy = &env.deploy_config;
    let mut errors = Vec::new();
    let image = match env.image() {
        Some(image) => Some(image.to_owned()),
        None if env.compose_file().is_some() => Some(COMPOSE_PLACEHOLDER_IMAGE.to_owned()),
        None => {
            errors.push(field_error(
                "artifacts",
                "no image: set deployConfig.imageName, or add an artifact {\"type\": \"image\", \"content\": \"<image>\"}",
            ));
            None
        }
    };
    let cpu = quantity(deploy, "cpu", &mut errors);
    let memory = quantity(deploy, "memory", &mut errors);
    let ttl = quantity(deploy, "ttl", &mut errors);
    let mut variables = BTreeMap::new();
    for key in ["environmentVariables", "env", "environment_variables"] {
        variables.extend(string_map(deploy, key, &mut errors));
    }
    let labels = string_map(deploy, "labels", &mut errors);
    let command = match deploy.get("command") {
        None | Some(Value::Null) => None,
        Some(value) => match serde_json::from_value::<Vec<String>>(value.clone()) {
            Ok(command) => Some(command),
            Err(_) => {
                errors.push(field_error(
                    "deployConfig.command",
                    "must be an array of strings, e.g. [\"python3\", \"-m\", \"aenv.main\", \"/app/src\"]",
                ));
                None
            }
        },
    };
    let ports = ports(deploy, &mut errors);
    let network = match deploy.get("network") {
        None | Some(Value::Null) => None,
        Some(value) => match serde_json::from_value::<NetworkRequest>(value.clone()) {
            Ok(network) => Some(network),
            Err(_) => {
                errors.push(field_error(
                    "deployConfig.network",
                    "must be an object like {\"egress\": \"deny\"}",
                ));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(TemplateRequest {
        name: Some(env.name.clone()),
        tag: Some(env.version.clone()),
        image,
        command,
        env: variables,
        labels,
        ports,
        cpu,
        memory,
        ttl,
        network,
        ..TemplateRequest::default()
    })
}

/// A template field error, named as the Env field it came from.
fn env_field_error(env: &Env, error: FieldError) -> FieldError {
    let field = match error.field.as_str() {
        "name" => {
            return field_error(
                "name",
                format!(
                    "{} (berth keeps an Env as a template, and template names are DNS labels)",
                    error.message
                ),
            );
        }
        "tag" => "version".to_owned(),
        "image" if env.deploy_config.contains_key("imageName") => "deployConfig.imageName".to_owned(),
        "image" => "artifacts".to_owned(),
        other => match other.strip_prefix("env.") {
            Some(variable) => format!("deployConfig.environment_variables.{variable}"),
            None => format!("deployConfig.{other}"),
        },
    };
    FieldError {
        field,
        message: error.message,
    }
}

/// The template an Env registers as, validated against the server's policy, with the Env
/// document kept on it.
pub fn to_template(env: &Env, policy: &SpecPolicy, now: DateTime<Utc>) -> Result<Template, AenvError> {
    let request = template_request(env).map_err(|errors| AenvError::invalid_fields(&errors))?;
    let mut template = request
        .validate(policy, None, now)
        .map_err(|ValidationErrors(errors)| {
            let errors: Vec<FieldError> = errors.into_iter().map(|error| env_field_error(env, error)).collect();
            AenvError::invalid_fields(&errors)
        })?;
    let mut document = env.clone();
    document.id = env_id(&env.name, &env.version);
    document.created_at = timestamp(now);
    document.updated_at = timestamp(now);
    template.env_document = serde_json::to_value(&document).ok();
    Ok(template)
}

fn env_id(name: &str, version: &str) -> String {
    format!("{name}-{version}")
}

/// The Env a template stands for: its document when it was registered as one (with the
/// template's name, tag and times, which are authoritative), else one made up from its spec.
pub fn env_of_template(template: &Template) -> Env {
    let document = template
        .env_document
        .clone()
        .and_then(|document| serde_json::from_value::<Env>(document).ok());
    let mut env = match document {
        Some(env) => env,
        None => synthesized_env(&template.name, &template.tag, &template.spec),
    };
    env.name = template.name.clone();
    env.version = template.tag.clone();
    env.id = env_id(&template.name, &template.tag);
    env.created_at = timestamp(template.created_at);
    env.updated_at = timestamp(template.updated_at);
    env
}

/// A complete Env made up from a sandbox spec (a native template, or an inline Env whose
/// document was not kept): one image artifact, the spec in `deploy_config`, status Ready.
pub fn synthesized_env(name: &str, version: &str, spec: &SandboxSpec) -> Env {
    let mut deploy_config = Map::new();
    deploy_config.insert("imageName".into(), json!(spec.image));
    deploy_config.insert("cpu".into(), json!(units::format_cpu(spec.resources.cpu_millis)));
    deploy_config.insert(
        "memory".into(),
        json!(units::format_memory(spec.resources.memory_bytes)),
    );
    deploy_config.insert("ttl".into(), json!(units::format_duration(spec.ttl)));
    deploy_config.insert("environment_variables".into(), json!(spec.env));
    deploy_config.insert("ports".into(), json!(spec.ports));
    if let Some(command) = &spec.command {
        deploy_config.insert("command".into(), json!(command));
    }
    if !spec.network.is_open() {
        deploy_config.insert("network".into(), json!(spec.network.to_request()));
    }
    Env {
        id: env_id(name, version),
        name: name.to_owned(),
        version: version.to_owned(),
        status: ENV_STATUS_READY,
        artifacts: vec![Artifact {
            id: String::new(),
            kind: "image".into(),
            content: spec.image.clone(),
        }],
        deploy_config,
        ..Env::default()
    }
}

/// `name@version` split in two; anything else is a 400 naming the expected form.
pub(super) fn split_env_name(env_name: &str) -> Result<(&str, &str), AenvError> {
    match env_name.split_once('@') {
        Some((name, version)) if !name.is_empty() && !version.is_empty() && !version.contains('@') => {
            Ok((name, version))
        }
        _ => Err(AenvError::bad_request(format!(
            "Invalid EnvName format: `{env_name}`: envName must be name@version, e.g. swe-env@1.0.0"
        ))),
    }
}

/// A native request's field as AEnvironment names it: `env.X` is `environment_variables.X`.
pub(super) fn aenv_field_name(field: &str) -> String {
    match field.strip_prefix("env.") {
        Some(variable) => format!("environment_variables.{variable}"),
        None => field.to_owned(),
    }
}

/// `name` and `version` of a path, checked: berth can only hold names that are DNS labels.
pub(super) fn checked_reference(name: &str, version: &str) -> Result<(), AenvError> {
    let mut errors = Vec::new();
    if let Err(message) = validate_name(name) {
        errors.push(field_error(
            "name",
            format!("`{name}` {message} (berth keeps an Env as a template, and template names are DNS labels)"),
        ));
    }
    if let Err(message) = validate_tag(version) {
        errors.push(field_error("version", format!("`{version}` {message}")));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AenvError::invalid_fields(&errors))
    }
}

fn env_not_found(name: &str, version: &str) -> AenvError {
    AenvError::not_found(format!("Environment not found: {name}@{version}"))
}

/// The stored template of `name@version`, or a 404 envelope.
pub(super) async fn find(service: &SandboxService, name: &str, version: &str) -> Result<Template, AenvError> {
    checked_reference(name, version)?;
    service
        .find_template(name, version)
        .await?
        .ok_or_else(|| env_not_found(name, version))
}

/// `POST /env/`: registers an Env; 409 when `name@version` exists.
pub async fn create_env(State(service): State<Arc<SandboxService>>, body: Bytes) -> AenvResult<bool> {
    let env = env_from_body(&json_object(&body)?)?;
    let template = to_template(&env, &service.config().policy, Utc::now())?;
    match service.insert_template(&template).await {
        Ok(()) => {}
        Err(ServiceError::Store(StoreError::TemplateExists { name, tag })) => {
            return Err(AenvError::conflict(format!(
                "Environment {name}@{tag} already exists: change it with PUT /env/{name}/{tag}"
            )));
        }
        Err(error) => return Err(error.into()),
    }
    info!(env = %env.reference(), image = %template.spec.image, "AEnvironment env registered");
    Ok(Success(true))
}

/// `GET /env/`: every Env, i.e. every template (native ones shown as made-up Envs).
pub async fn list_envs(State(service): State<Arc<SandboxService>>) -> AenvResult<Vec<Env>> {
    let templates = service.list_templates().await?;
    Ok(Success(templates.iter().map(env_of_template).collect()))
}

/// `GET /env/{name}/{version}`.
pub async fn get_env(
    State(service): State<Arc<SandboxService>>,
    Path((name, version)): Path<(String, String)>,
) -> AenvResult<Env> {
    let template = find(&service, &name, &version).await?;
    Ok(Success(env_of_template(&template)))
}

/// `PUT /env/{name}/{version}`: the body's fields replace the Env's; 403 for a Released Env.
pub async fn put_env(
    State(service): State<Arc<SandboxService>>,
    Path((name, version)): Path<(String, String)>,
    body: Bytes,
) -> AenvResult<bool> {
    let body = json_object(&body)?;
    let existing = find(&service, &name, &version).await?;
    let mut env = env_of_template(&existing);
    if env.status == ENV_STATUS_RELEASED {
        return Err(AenvError::forbidden(format!(
            "Environment {name}@{version} is released and can no longer be changed: register a new version"
        )));
    }
    apply_body(&mut env, &body)?;
    let mut errors = Vec::new();
    if env.name != name {
        errors.push(field_error(
            "name",
            format!("`{}` differs from `{name}` in the path", env.name),
        ));
    }
    if env.version != version {
        errors.push(field_error(
            "version",
            format!("`{}` differs from `{version}` in the path", env.version),
        ));
    }
    if !errors.is_empty() {
        return Err(AenvError::invalid_fields(&errors));
    }
    let now = Utc::now();
    let mut template = to_template(&env, &service.config().policy, now)?;
    template.created_at = existing.created_at;
    template.pool = existing.pool;
    if let Some(document) = template.env_document.as_mut() {
        document["created_at"] = json!(timestamp(existing.created_at));
    }
    match service.replace_template(&template).await {
        Ok(()) => {}
        Err(ServiceError::Store(StoreError::TemplateNotFound { .. })) => return Err(env_not_found(&name, &version)),
        Err(error) => return Err(error.into()),
    }
    info!(env = %env.reference(), "AEnvironment env updated");
    Ok(Success(true))
}

/// `GET /env/{name}/{version}/exists`: `{exists, status}`.
pub async fn env_exists(
    State(service): State<Arc<SandboxService>>,
    Path((name, version)): Path<(String, String)>,
) -> AenvResult<EnvExists> {
    checked_reference(&name, &version)?;
    let template = service.find_template(&name, &version).await?;
    Ok(Success(match template {
        Some(template) => EnvExists {
            exists: true,
            status: env_of_template(&template).status,
        },
        None => EnvExists {
            exists: false,
            status: 0,
        },
    }))
}

/// `DELETE /env/{name}/{version}`: the template goes; instances made from it keep running.
pub async fn delete_env(
    State(service): State<Arc<SandboxService>>,
    Path((name, version)): Path<(String, String)>,
) -> AenvResult<bool> {
    checked_reference(&name, &version)?;
    match service.delete_template(&format!("{name}:{version}")).await {
        Ok(()) => Ok(Success(true)),
        Err(ServiceError::NotFound {
            kind: NotFoundKind::Template,
            ..
        }) => Err(env_not_found(&name, &version)),
        Err(error) => Err(error.into()),
    }
}

/// The name and version a list selects: `*` (all, or `?envName=`), `name` or `name@version`.
pub(super) fn list_selection(id: &str, query: Option<&str>) -> (Option<String>, Option<String>) {
    let selector = if id == "*" {
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .find(|(key, _)| key == "envName")
            .map(|(_, value)| value.trim().to_owned())
            .filter(|value| !value.is_empty() && value != "*")
    } else {
        Some(id.to_owned())
    };
    match selector {
        None => (None, None),
        Some(selector) => match selector.split_once('@') {
            Some((name, version)) => (
                Some(name.to_owned()),
                Some(version.to_owned()).filter(|version| !version.is_empty()),
            ),
            None => (Some(selector), None),
        },
    }
}

#[cfg(test)]
mod tests {
    use berth_core::units::{GIB, MIB};

    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn registered(value: Value) -> Result<Template, AenvError> {
        let env = env_from_body(&body(value))?;
        to_template(&env, &SpecPolicy::default(), Utc::now())
    }

    #[test]
    fn a_camel_case_env_maps_onto_a_template() {
        let template = registered(json!({
            "name": "swe-env",
            "version": "1.0.0",
            "tags": ["swe"],
            "codeUrl": "oss://code.tgz",
            "status": 6,
            "artifacts": [{"id": "a", "type": "Image", "content": "reg/swe:1"}],
            "buildConfig": {"dockerfile": "Dockerfile"},
            "deployConfig": {
                "cpu": "1C",
                "memory": "2G",
                "ttl": "1h",
                "environmentVariables": {"A": "1"},
                "env": {"B": 2},
                "environment_variables": {"A": "3"},
                "labels": {"team": "rl"}
            }
        }))
        .unwrap();
        assert_eq!((template.name.as_str(), template.tag.as_str()), ("swe-env", "1.0.0"));
        let spec = &template.spec;
        assert_eq!(spec.image, "reg/swe:1");
        assert_eq!(spec.resources.cpu_millis, 1000);
        assert_eq!(spec.resources.memory_bytes, 2 * GIB);
        assert_eq!(spec.ttl, std::time::Duration::from_secs(3600));
        assert_eq!(
            spec.env,
            BTreeMap::from([("A".into(), "3".into()), ("B".into(), "2".into())])
        );
        assert_eq!(spec.labels, BTreeMap::from([("team".into(), "rl".into())]));
        assert_eq!(spec.ports, vec![AENV_PORT]);
        assert_eq!(spec.command, None);
        let env = env_of_template(&template);
        assert_eq!(env.id, "swe-env-1.0.0");
        assert_eq!(env.code_url, "oss://code.tgz");
        assert_eq!(env.tags, ["swe"]);
        assert_eq!(env.status, 6);
        assert_eq!(env.build_config["dockerfile"], "Dockerfile");
        assert_eq!(env.deploy_config["memory"], "2G");
    }

    #[test]
    fn image_name_wins_and_millicores_are_thousandths() {
        let template = registered(json!({
            "name": "a",
            "version": "v1",
            "artifacts": [{"type": "image", "content": "reg/other:1"}],
            "deploy_config": {"imageName": "reg/mine:2", "cpu": "500m", "memory": "2Gi", "command": ["sleep", "60"], "port": 9000}
        }))
        .unwrap();
        assert_eq!(template.spec.image, "reg/mine:2");
        assert_eq!(template.spec.resources.cpu_millis, 500);
        assert_eq!(template.spec.resources.memory_bytes, 2 * GIB);
        assert_eq!(template.spec.command, Some(vec!["sleep".to_owned(), "60".to_owned()]));
        assert_eq!(template.spec.ports, vec![9000]);
        let numeric = registered(
            json!({"name": "b", "version": "1", "deployConfig": {"imageName": "x", "cpu": 2, "memory": "512M"}}),
        )
        .unwrap();
        assert_eq!(numeric.spec.resources.cpu_millis, 2000);
        assert_eq!(numeric.spec.resources.memory_bytes, 512 * MIB);
    }

    #[test]
    fn an_envs_network_policy_becomes_its_templates_and_a_bad_one_names_the_field() {
        let sealed = registered(
            json!({"name": "a", "version": "1", "deployConfig": {"imageName": "x", "network": {"egress": "deny"}}}),
        )
        .unwrap();
        assert_eq!(sealed.spec.network.egress, berth_core::Egress::Deny);
        let open = registered(json!({"name": "a", "version": "1", "deployConfig": {"imageName": "x"}})).unwrap();
        assert_eq!(open.spec.network.egress, berth_core::Egress::Allow);
        for (bad, field) in [
            (json!({"egress": "nope"}), "deployConfig.network.egress"),
            (json!("deny"), "deployConfig.network"),
        ] {
            let refused =
                registered(json!({"name": "a", "version": "1", "deployConfig": {"imageName": "x", "network": bad}}))
                    .unwrap_err();
            assert!(refused.message.contains(field), "{bad}: {}", refused.message);
        }
    }

    #[test]
    fn bad_envs_name_the_env_fields() {
        let missing_image = registered(json!({"name": "a", "version": "1"})).unwrap_err();
        assert_eq!(missing_image.status.as_u16(), 400);
        assert!(
            missing_image.message.contains("artifacts: no image"),
            "{}",
            missing_image.message
        );

        let bad_name =
            registered(json!({"name": "My_Env", "version": "1", "deployConfig": {"imageName": "x"}})).unwrap_err();
        assert!(
            bad_name.message.contains("name: `My_Env`") && bad_name.message.contains("DNS labels"),
            "{}",
            bad_name.message
        );

        let bad_values = registered(json!({
            "name": "a",
            "version": "1 0",
            "deployConfig": {"imageName": "x", "cpu": "lots", "memory": [1], "ttl": "1d", "command": "sleep"}
        }))
        .unwrap_err();
        for field in ["deployConfig.memory", "deployConfig.command"] {
            assert!(bad_values.message.contains(field), "{field}: {}", bad_values.message);
        }
        let bad_quantities = registered(json!({
            "name": "a",
            "version": "1 0",
            "deployConfig": {"imageName": "x", "cpu": "lots", "ttl": "1d"}
        }))
        .unwrap_err();
        for field in ["version", "deployConfig.cpu", "deployConfig.ttl"] {
            assert!(
                bad_quantities.message.contains(&format!("{field}: ")),
                "{field}: {}",
                bad_quantities.message
            );
        }

        let missing = env_from_body(&body(json!({"status": "ready"}))).unwrap_err();
        for field in ["status", "name", "version"] {
            assert!(missing.message.contains(field), "{field}: {}", missing.message);
        }
        let no_name = env_from_body(&body(json!({"deployConfig": {}}))).unwrap_err();
        assert!(no_name.message.contains("name: is required"), "{}", no_name.message);
    }

    #[test]
    fn a_compose_env_is_kept_with_its_compose_file() {
        let template = registered(json!({
            "name": "stack",
            "version": "1",
            "deployConfig": {"composeFile": "services:\n  main:\n    image: x\n"}
        }))
        .unwrap();
        assert_eq!(template.spec.image, COMPOSE_PLACEHOLDER_IMAGE);
        assert!(env_of_template(&template).compose_file().is_some());
    }

    #[test]
    fn a_native_template_reads_as_a_complete_env() {
        let template = TemplateRequest {
            name: Some("py".into()),
            tag: Some("3".into()),
            image: Some("python:3".into()),
            command: Some(vec!["python3".into()]),
            ..TemplateRequest::default()
        }
        .validate(&SpecPolicy::default(), None, Utc::now())
        .unwrap();
        let env = env_of_template(&template);
        assert_eq!(env.id, "py-3");
        assert_eq!(env.image(), Some("python:3"));
        assert_eq!(env.status, ENV_STATUS_READY);
        assert_eq!(env.deploy_config["command"], json!(["python3"]));
        assert!(!env.created_at.is_empty() && !env.updated_at.is_empty());
        // What it reads as maps back onto the same spec.
        let again = to_template(&env, &SpecPolicy::default(), Utc::now()).unwrap();
        assert_eq!(again.spec, template.spec);
    }

    #[test]
    fn references_must_be_dns_labels() {
        assert!(checked_reference("swe-env", "1.0.0").is_ok());
        let error = checked_reference("SWE_env", "1.0.0").unwrap_err();
        assert_eq!(error.status.as_u16(), 400);
        assert!(error.message.contains("DNS labels"), "{}", error.message);
        assert!(checked_reference("swe", "a/b").unwrap_err().message.contains("version"));
    }
}
