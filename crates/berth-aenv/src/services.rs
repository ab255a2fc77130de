//! Env services (`/env-service…`): AEnvironment's long-running services on berth. A service is
//! a stored record (`berth_core::EnvService`); its replicas are berth sandboxes that the
//! leader's controller (`crate::env_services`) keeps, behind a balancer whose `host:port` is the
//! `service_url`. Here: reading and checking the bodies, the records' writes and the answers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use berth_api::FieldError;
use berth_api::aenv::{CreateServiceRequest, EnvService as EnvServiceView, UpdateServiceRequest, timestamp};
use berth_core::env_service::{DEFAULT_SERVICE_PORT, MAX_REPLICAS};
use berth_core::spec::NumberOrString;
use berth_core::{Caller, EnvService, EnvServiceId, Reason, ServiceStatus, Template, units};
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tracing::info;

use super::envelope::{AenvError, AenvResult, Success};
use super::envs::{
    aenv_field_name, checked_reference, env_of_template, find, json_object, list_selection, split_env_name,
};
use crate::env_services::{available_replicas, live_replicas, replica_request};
use berth_control::service::{NotFoundKind, SandboxService, ServiceError};

/// What `DELETE /env-service/{id}` answers, as AEnvironment does.
const DELETED: &str = "Deleted successfully";
/// Attempts of a read-change-write of a service that others write too (the controller).
const WRITE_ATTEMPTS: usize = 10;

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Field `key` of `body` as a `T`; `null` is absent; a wrong type is an error naming the field.
fn typed<T: DeserializeOwned>(
    body: &Map<String, Value>,
    key: &str,
    expected: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let value = body.get(key).filter(|value| !value.is_null())?;
    match serde_json::from_value(value.clone()) {
        Ok(parsed) => Some(parsed),
        Err(_) => {
            errors.push(field_error(key, format!("must be {expected}")));
            None
        }
    }
}

/// A text field, "" meaning absent (AEnvironment's clients send empty strings).
fn text(body: &Map<String, Value>, key: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    typed::<String>(body, key, "a string", errors)
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

fn create_request(body: &Map<String, Value>) -> Result<CreateServiceRequest, AenvError> {
    let mut errors = Vec::new();
    let request = CreateServiceRequest {
        env_name: text(body, "envName", &mut errors),
        service_name: text(body, "service_name", &mut errors),
        replicas: typed(body, "replicas", "an integer, e.g. 2", &mut errors),
        environment_variables: typed(
            body,
            "environment_variables",
            "an object of strings, e.g. {\"LOG\": \"debug\"}",
            &mut errors,
        ),
        owner: text(body, "owner", &mut errors),
        pvc_name: text(body, "pvc_name", &mut errors),
        mount_path: text(body, "mount_path", &mut errors),
        storage_size: text(body, "storage_size", &mut errors),
        port: typed(body, "port", "a port number, e.g. 8081", &mut errors),
        cpu_request: text(body, "cpu_request", &mut errors),
        cpu_limit: text(body, "cpu_limit", &mut errors),
        memory_request: text(body, "memory_request", &mut errors),
        memory_limit: text(body, "memory_limit", &mut errors),
        ephemeral_storage_request: text(body, "ephemeral_storage_request", &mut errors),
        ephemeral_storage_limit: text(body, "ephemeral_storage_limit", &mut errors),
    };
    if errors.is_empty() {
        Ok(request)
    } else {
        Err(AenvError::invalid_fields(&errors))
    }
}

fn update_request(body: &Map<String, Value>) -> Result<UpdateServiceRequest, AenvError> {
    let mut errors = Vec::new();
    let request = UpdateServiceRequest {
        replicas: typed(body, "replicas", "an integer, e.g. 2", &mut errors),
        image: text(body, "image", &mut errors),
        environment_variables: typed(
            body,
            "environment_variables",
            "an object of strings, e.g. {\"LOG\": \"debug\"}",
            &mut errors,
        ),
    };
    if errors.is_empty() {
        Ok(request)
    } else {
        Err(AenvError::invalid_fields(&errors))
    }
}

fn replicas_in_range(replicas: i64, errors: &mut Vec<FieldError>) -> Option<u32> {
    match u32::try_from(replicas) {
        Ok(replicas) if replicas <= MAX_REPLICAS => Some(replicas),
        _ => {
            errors.push(field_error(
                "replicas",
                format!("`{replicas}` is out of range: use 0 to {MAX_REPLICAS}"),
            ));
            None
        }
    }
}

/// The same rule as a sandbox's owner: 1-63 letters, digits and `- _ . @`.
fn check_owner(owner: &str, errors: &mut Vec<FieldError>) {
    let valid = owner.len() <= 63 && owner.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if !valid {
        errors.push(field_error(
            "owner",
            format!("`{owner}` is not an owner name: use 1-63 letters, digits and - _ . @"),
        ));
    }
}

/// Checks that a replica of `record` can be made from `template` within the server's policy,
/// naming each bad value by the request field it came from.
fn check_replica(service: &SandboxService, record: &EnvService, template: &Template) -> Result<(), AenvError> {
    let policy = &service.config().policy;
    let request = replica_request(record, template, policy.max_ttl);
    match request.validate(policy) {
        Ok(_) => Ok(()),
        Err(errors) => {
            let renamed: Vec<FieldError> = errors
                .0
                .into_iter()
                .map(|error| {
                    let field = match error.field.as_str() {
                        "cpu" => "cpu_limit".to_owned(),
                        "memory" => "memory_limit".to_owned(),
                        other => aenv_field_name(other),
                    };
                    FieldError {
                        field,
                        message: error.message,
                    }
                })
                .collect();
            Err(AenvError::invalid_fields(&renamed))
        }
    }
}

/// The service as AEnvironment's model has it: every field present, `env` whole or null.
fn view(service: &SandboxService, record: &EnvService, template: Option<&Template>) -> EnvServiceView {
    let host = service.config().service_host;
    EnvServiceView {
        id: record.id.to_string(),
        env: template.map(env_of_template),
        status: record.status.to_string(),
        created_at: timestamp(record.created_at),
        updated_at: timestamp(record.updated_at),
        replicas: record.replicas,
        available_replicas: available_replicas(service, &record.id),
        service_url: record
            .listen_port
            .map(|port| SocketAddr::new(host, port).to_string())
            .unwrap_or_default(),
        owner: record.owner.clone(),
        environment_variables: record.environment_variables.clone(),
        pvc_name: record.pvc_name.clone(),
    }
}

async fn template_of(service: &SandboxService, record: &EnvService) -> Result<Option<Template>, AenvError> {
    Ok(service.find_template(&record.env_name, &record.env_version).await?)
}

pub(crate) fn service_not_found(id: &str) -> AenvError {
    AenvError::not_found(format!(
        "Service not found: {id} (list services with GET /env-service/*/list)"
    ))
}

/// The stored service `id`, unless it is unknown or being deleted.
async fn live_service(service: &SandboxService, id: &str) -> Result<EnvService, AenvError> {
    let Some(service_id) = EnvServiceId::parse(id) else {
        return Err(service_not_found(id));
    };
    match service.get_env_service(&service_id).await? {
        Some(record) if record.status != ServiceStatus::Terminated => Ok(record),
        _ => Err(service_not_found(id)),
    }
}

/// `POST /env-service`: records a service of a registered Env; the leader's controller starts
/// its replicas and its balancer. Answers at once with the service `Pending`.
pub async fn create_service(
    State(service): State<Arc<SandboxService>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> AenvResult<EnvServiceView> {
    let body = json_object(&body)?;
    let request = create_request(&body)?;
    let Some(env_name) = &request.env_name else {
        return Err(AenvError::bad_request(
            "Invalid request parameters: envName is required (name@version of a registered Env, see GET /env/)",
        ));
    };
    let (name, version) = split_env_name(env_name)?;
    checked_reference(name, version)?;

    let mut errors = Vec::new();
    if request.storage_size.is_some() {
        errors.push(field_error(
            "storage_size",
            "berth's Docker engine has no persistent volumes for services yet: leave storage_size (and the \
             volume it would create) out",
        ));
    }
    let replicas = replicas_in_range(request.replicas.unwrap_or(1), &mut errors);
    let port = match request.port {
        None => None,
        Some(port) => match u16::try_from(port) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                errors.push(field_error("port", format!("`{port}` is not a port: use 1 to 65535")));
                None
            }
        },
    };
    // A member's service (and its replicas) is its own owner's; an admin may name another.
    let owner = match request.owner.clone() {
        Some(named) if caller.is_admin() => named,
        _ => caller.owner.clone(),
    };
    check_owner(&owner, &mut errors);
    let mut limit = |key: &str, value: &Option<String>, parse: fn(&NumberOrString) -> Result<u64, String>| {
        value
            .as_ref()
            .and_then(|text| match parse(&NumberOrString::String(text.clone())) {
                Ok(parsed) => Some(parsed),
                Err(message) => {
                    errors.push(field_error(key, message));
                    None
                }
            })
    };
    let cpu_millis = limit("cpu_limit", &request.cpu_limit, units::parse_cpu_millis);
    let memory_bytes = limit("memory_limit", &request.memory_limit, units::parse_memory_bytes);
    if !errors.is_empty() {
        return Err(AenvError::invalid_fields(&errors));
    }

    let template = find(&service, name, version).await?;
    let env = env_of_template(&template);
    if env.compose_file().is_some() {
        return Err(AenvError::not_implemented(format!(
            "compose stacks cannot run as services: Env {} defines deployConfig.composeFile; an env-service runs \
             single-container Envs (deployConfig.imageName or an image artifact)",
            env.reference()
        )));
    }
    let accepted: BTreeMap<String, String> = [
        ("cpu_request", &request.cpu_request),
        ("memory_request", &request.memory_request),
        ("ephemeral_storage_request", &request.ephemeral_storage_request),
        ("ephemeral_storage_limit", &request.ephemeral_storage_limit),
        ("mount_path", &request.mount_path),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.clone().map(|value| (key.to_owned(), value)))
    .collect();
    let now = Utc::now();
    let host = service.config().service_host;
    let listen_port = berth_gateway::balancer::free_port(host).await.map_err(|error| {
        AenvError::from(ServiceError::InvalidState(format!(
            "cannot find a free port on the service host {host}: {error}"
        )))
    })?;
    let record = EnvService {
        id: EnvServiceId::generate(),
        env_name: template.name.clone(),
        env_version: template.tag.clone(),
        service_name: request.service_name.clone().unwrap_or_default(),
        replicas: replicas.unwrap_or(1),
        image: None,
        environment_variables: request.environment_variables.clone().unwrap_or_default(),
        owner,
        port: port
            .or_else(|| template.spec.ports.first().copied())
            .unwrap_or(DEFAULT_SERVICE_PORT),
        cpu_millis,
        memory_bytes,
        accepted,
        pvc_name: request.pvc_name.clone().unwrap_or_default(),
        status: ServiceStatus::Pending,
        status_reason: None,
        listen_port: Some(listen_port),
        generation: 1,
        revision: 1,
        created_at: now,
        updated_at: now,
    };
    check_replica(&service, &record, &template)?;
    service.insert_env_service(&record).await?;
    info!(service = %record.id, env = %record.env_reference(), replicas = record.replicas, "AEnvironment env-service created");
    Ok(Success(view(&service, &record, Some(&template))))
}

/// `GET /env-service/{id}`.
pub async fn get_service(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
) -> AenvResult<EnvServiceView> {
    let record = live_service(&service, &id).await?;
    let template = template_of(&service, &record).await?;
    Ok(Success(view(&service, &record, template.as_ref())))
}

/// `GET /env-service/{name|name@version|*}/list`: services of an Env (`*`: all, or `?envName=`),
/// oldest first; `data` is always an array.
pub async fn list_services(
    State(service): State<Arc<SandboxService>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> AenvResult<Vec<EnvServiceView>> {
    let (name, version) = list_selection(&id, query.as_deref());
    let (name, version) = (name.as_deref(), version.as_deref());
    let records: Vec<EnvService> = service
        .list_env_services()
        .await?
        .into_iter()
        .filter(|record| record.status != ServiceStatus::Terminated)
        .filter(|record| caller.may_access(&record.owner))
        .filter(|record| name.is_none_or(|name| record.env_name == name))
        .filter(|record| version.is_none_or(|version| record.env_version == version))
        .collect();
    let mut templates: BTreeMap<(String, String), Template> = BTreeMap::new();
    if !records.is_empty() {
        for template in service.list_templates().await? {
            templates.insert((template.name.clone(), template.tag.clone()), template);
        }
    }
    Ok(Success(
        records
            .iter()
            .map(|record| {
                let template = templates.get(&(record.env_name.clone(), record.env_version.clone()));
                view(&service, record, template)
            })
            .collect(),
    ))
}

/// `PUT /env-service/{id}`: `replicas`, `image` and `environment_variables` (which replaces the
/// service's own variables; the Env's stay). A new image or new variables start a rollout, one
/// replica at a time; a new count scales one replica at a time.
pub async fn update_service(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
    body: Bytes,
) -> AenvResult<EnvServiceView> {
    let body = json_object(&body)?;
    let request = update_request(&body)?;
    let mut errors = Vec::new();
    let replicas = request
        .replicas
        .and_then(|replicas| replicas_in_range(replicas, &mut errors));
    if !errors.is_empty() {
        return Err(AenvError::invalid_fields(&errors));
    }
    for _ in 0..WRITE_ATTEMPTS {
        let mut record = live_service(&service, &id).await?;
        let template = find(&service, &record.env_name, &record.env_version)
            .await
            .map_err(|_| {
                AenvError::conflict(format!(
                    "Env {} of service {id} is no longer registered: register it again (POST /env/) before \
                     updating the service",
                    record.env_reference()
                ))
            })?;
        let before = record.clone();
        if let Some(replicas) = replicas {
            record.replicas = replicas;
        }
        if let Some(image) = &request.image {
            record.image = Some(image.clone());
        }
        if let Some(variables) = &request.environment_variables {
            record.environment_variables = variables.clone();
        }
        let rollout = record.image != before.image || record.environment_variables != before.environment_variables;
        if rollout {
            record.generation += 1;
        }
        if record == before {
            return Ok(Success(view(&service, &record, Some(&template))));
        }
        check_replica(&service, &record, &template)?;
        if matches!(record.status, ServiceStatus::Running | ServiceStatus::Failed) {
            record.status = ServiceStatus::Updating;
            record.status_reason = None;
        }
        if write_next_revision(&service, &mut record).await? {
            info!(service = %record.id, replicas = record.replicas, generation = record.generation, "AEnvironment env-service updated");
            return Ok(Success(view(&service, &record, Some(&template))));
        }
    }
    Err(AenvError::conflict(format!(
        "service {id} is changing too often to update: try again"
    )))
}

/// Writes `record` as its next revision and wakes the controller; `false` when another write
/// came first.
async fn write_next_revision(service: &SandboxService, record: &mut EnvService) -> Result<bool, AenvError> {
    record.next_revision(Utc::now());
    Ok(service.update_env_service(record, true).await?)
}

/// `DELETE /env-service/{id}` (`?deleteStorage=` accepted: berth keeps no storage for services):
/// the service is marked `Terminated`, every replica removed (in the background) and the record
/// forgotten; the leader's controller closes its balancer and finishes what a crash interrupts.
pub async fn delete_service(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
) -> AenvResult<&'static str> {
    let mut marked = None;
    for _ in 0..WRITE_ATTEMPTS {
        let mut record = live_service(&service, &id).await?;
        record.status = ServiceStatus::Terminated;
        record.status_reason = Some(Reason::Deleted.to_string());
        if write_next_revision(&service, &mut record).await? {
            marked = Some(record.id);
            break;
        }
    }
    let Some(id) = marked else {
        return Err(AenvError::conflict(format!(
            "service {id} is changing too often to delete: try again"
        )));
    };
    for replica in live_replicas(&service).remove(id.as_str()).unwrap_or_default() {
        match service.delete_in_background(replica.id.as_str()).await {
            Ok(_)
            | Err(ServiceError::NotFound {
                kind: NotFoundKind::Sandbox,
                ..
            }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    service.delete_env_service(&id).await?;
    info!(service = %id, "AEnvironment env-service deleted");
    Ok(Success(DELETED))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_create_body_reads_aenvironments_fields_and_names_bad_ones() {
        let request = create_request(&object(json!({
            "envName": "swe@1.0",
            "replicas": 2,
            "environment_variables": {"A": "1"},
            "owner": "",
            "port": 9000,
            "cpu_limit": "500m",
            "unknown": true
        })))
        .unwrap();
        assert_eq!(request.env_name.as_deref(), Some("swe@1.0"));
        assert_eq!(request.replicas, Some(2));
        assert_eq!(request.owner, None, "\"\" is absent");
        assert_eq!(request.port, Some(9000));
        let error = create_request(&object(json!({"envName": "swe@1", "replicas": "two", "port": [1]}))).unwrap_err();
        assert!(
            error.message.contains("replicas: must be an integer"),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("port: must be a port number"),
            "{}",
            error.message
        );
    }

    #[test]
    fn replicas_and_owners_are_checked() {
        let mut errors = Vec::new();
        assert_eq!(replicas_in_range(3, &mut errors), Some(3));
        assert_eq!(replicas_in_range(0, &mut errors), Some(0));
        assert_eq!(replicas_in_range(-1, &mut errors), None);
        assert_eq!(replicas_in_range(i64::from(MAX_REPLICAS) + 1, &mut errors), None);
        assert_eq!(errors.len(), 2);
        assert!(errors.iter().all(|error| error.field == "replicas"));
        let mut errors = Vec::new();
        check_owner("", &mut errors);
        check_owner("bob@example.com", &mut errors);
        assert!(errors.is_empty());
        check_owner("no spaces", &mut errors);
        assert_eq!(errors[0].field, "owner");
    }

    #[test]
    fn env_names_are_strict() {
        assert_eq!(split_env_name("swe@1.0").unwrap(), ("swe", "1.0"));
        for bad in ["swe", "@1", "swe@", "a@b@c"] {
            assert!(split_env_name(bad).is_err(), "{bad}");
        }
    }
}
