//! From the checked document to the plan: typing with `docker-compose-types`, then each
//! service's fields parsed into berth's own types, the main service and the start order.

use std::collections::BTreeMap;

use berth_core::spec::NumberOrString;
use berth_core::units::{parse_cpu_millis, parse_duration, parse_memory_bytes};
use docker_compose_types as compose;
use serde_norway::Value;

use crate::{
    ComposeError, Condition, Dependency, Healthcheck, RestartPolicy, ServicePlan, StackPlan, VolumeMount, order, words,
};

/// The label that marks the main service (the one an instance's address points at).
pub const MAIN_SERVICE_LABEL: &str = "aenv.main";

/// Types the prepared document and builds the plan; `variables` fill value-less environment entries.
pub(crate) fn plan_document(document: Value, variables: &BTreeMap<String, String>) -> Result<StackPlan, ComposeError> {
    let compose: compose::Compose =
        serde_path_to_error::deserialize(document).map_err(|error| ComposeError::Format {
            path: error.path().to_string(),
            message: error.inner().to_string(),
        })?;
    let volumes: Vec<String> = compose.volumes.0.keys().cloned().collect();

    let mut declared = Vec::with_capacity(compose.services.0.len());
    for (name, service) in compose.services.0 {
        let service = service.ok_or_else(|| ComposeError::MissingImage { service: name.clone() })?;
        declared.push(service_plan(&name, service, &volumes, variables)?);
    }

    let main_service = main_service(&declared)?;
    let graph: Vec<(&str, Vec<&str>)> = declared
        .iter()
        .map(|service| {
            let needs = service.depends_on.iter().map(|d| d.service.as_str()).collect();
            (service.name.as_str(), needs)
        })
        .collect();
    let order = order::start_order(&graph)?;
    let mut slots: Vec<Option<ServicePlan>> = declared.into_iter().map(Some).collect();
    let services = order.into_iter().filter_map(|index| slots[index].take()).collect();
    Ok(StackPlan {
        services,
        volumes,
        main_service,
    })
}

fn main_service(services: &[ServicePlan]) -> Result<String, ComposeError> {
    let labelled: Vec<String> = services
        .iter()
        .filter(|service| {
            service
                .labels
                .get(MAIN_SERVICE_LABEL)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        })
        .map(|service| service.name.clone())
        .collect();
    match labelled.as_slice() {
        [] => services.first().map(|s| s.name.clone()).ok_or(ComposeError::NoServices),
        [only] => Ok(only.clone()),
        _ => Err(ComposeError::SeveralMainServices { services: labelled }),
    }
}

fn service_plan(
    name: &str,
    service: compose::Service,
    declared_volumes: &[String],
    variables: &BTreeMap<String, String>,
) -> Result<ServicePlan, ComposeError> {
    let image = service
        .image
        .filter(|image| !image.trim().is_empty())
        .ok_or_else(|| ComposeError::MissingImage {
            service: name.to_string(),
        })?;
    // The fields are converted in this order so that the first error reported stays the same.
    let command = command_words(name, service.command)?;
    let entrypoint = entrypoint_words(name, service.entrypoint)?;
    let environment = environment(service.environment, variables);
    let ports = distinct_container_ports(name, service.ports)?;
    let volumes = volume_mounts(name, service.volumes, declared_volumes)?;
    let depends_on = dependencies(name, service.depends_on)?;
    let healthcheck = service
        .healthcheck
        .map(|check| healthcheck(check, &field_path(name, "healthcheck")))
        .transpose()?;
    let labels = labels(service.labels);
    let (cpu_millis, memory_bytes) = resource_limits(name, service.deploy)?;
    let restart = service
        .restart
        .map(|text| restart_policy(&text))
        .transpose()
        .map_err(|message| invalid(name, "restart", message))?;

    Ok(ServicePlan {
        name: name.to_string(),
        image,
        command,
        entrypoint,
        environment,
        ports,
        volumes,
        depends_on,
        healthcheck,
        labels,
        cpu_millis,
        memory_bytes,
        restart,
        working_dir: service.working_dir,
        user: service.user,
    })
}

/// Where `field` of service `service` sits in the document, as errors name it.
fn field_path(service: &str, field: &str) -> String {
    format!("services.{service}.{field}")
}

fn invalid(service: &str, field: &str, message: String) -> ComposeError {
    ComposeError::Invalid {
        path: field_path(service, field),
        message,
    }
}

fn split_words(service: &str, field: &str, text: &str) -> Result<Vec<String>, ComposeError> {
    words::split(text).ok_or_else(|| invalid(service, field, format!("`{text}` leaves a quote open; close it")))
}

fn command_words(service: &str, command: Option<compose::Command>) -> Result<Option<Vec<String>>, ComposeError> {
    Ok(match command {
        None => None,
        Some(compose::Command::Simple(text)) => Some(split_words(service, "command", &text)?),
        Some(compose::Command::Args(args)) => Some(args),
    })
}

fn entrypoint_words(
    service: &str,
    entrypoint: Option<compose::Entrypoint>,
) -> Result<Option<Vec<String>>, ComposeError> {
    Ok(match entrypoint {
        None => None,
        Some(compose::Entrypoint::Simple(text)) => Some(split_words(service, "entrypoint", &text)?),
        Some(compose::Entrypoint::List(args)) => Some(args),
    })
}

fn environment(entries: compose::Environment, variables: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut environment = BTreeMap::new();
    match entries {
        compose::Environment::List(entries) => {
            for entry in entries {
                match entry.split_once('=') {
                    Some((key, value)) => {
                        environment.insert(key.to_string(), value.to_string());
                    }
                    None => inherit(&mut environment, &entry, variables),
                }
            }
        }
        compose::Environment::KvPair(pairs) => {
            for (key, value) in pairs {
                match value {
                    Some(value) => {
                        environment.insert(key, value.to_string());
                    }
                    None => inherit(&mut environment, &key, variables),
                }
            }
        }
    }
    environment
}

/// A value-less environment entry takes the caller's variable, or is left out (compose's rule,
/// with the caller's variables in place of the shell's).
fn inherit(environment: &mut BTreeMap<String, String>, key: &str, variables: &BTreeMap<String, String>) {
    if let Some(value) = variables.get(key) {
        environment.insert(key.to_string(), value.clone());
    }
}

fn distinct_container_ports(service: &str, entries: compose::Ports) -> Result<Vec<u16>, ComposeError> {
    let mut ports = Vec::new();
    let container_ports: Vec<(usize, Result<u16, String>)> = match entries {
        compose::Ports::Short(entries) => entries.iter().map(|e| container_port(e)).enumerate().collect(),
        compose::Ports::Long(entries) => entries.iter().map(|p| Ok(p.target)).enumerate().collect(),
    };
    for (index, port) in container_ports {
        let port = port.map_err(|message| invalid(service, &format!("ports[{index}]"), message))?;
        if port == 0 {
            return Err(invalid(
                service,
                &format!("ports[{index}]"),
                "port 0 is not a port; use 1-65535".into(),
            ));
        }
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    Ok(ports)
}

fn volume_mounts(
    service: &str,
    entries: Vec<compose::Volumes>,
    declared_volumes: &[String],
) -> Result<Vec<VolumeMount>, ComposeError> {
    let mut volumes = Vec::with_capacity(entries.len());
    for (index, volume) in entries.into_iter().enumerate() {
        let field = format!("volumes[{index}]");
        let mount = volume_mount(volume);
        if !declared_volumes.contains(&mount.volume) {
            return Err(invalid(
                service,
                &field,
                format!(
                    "volume `{}` is not declared; add it under the top-level `volumes:` section",
                    mount.volume
                ),
            ));
        }
        if !mount.container_path.starts_with('/') {
            return Err(invalid(
                service,
                &field,
                format!(
                    "`{}` is not an absolute container path; mount the volume at /…",
                    mount.container_path
                ),
            ));
        }
        volumes.push(mount);
    }
    Ok(volumes)
}

/// The mount as written, short (`VOLUME:PATH[:ro]`) or long form; [`volume_mounts`] checks it.
fn volume_mount(volume: compose::Volumes) -> VolumeMount {
    match volume {
        compose::Volumes::Simple(text) => {
            let mut parts = text.splitn(3, ':');
            let volume = parts.next().unwrap_or_default().to_string();
            let container_path = parts.next().unwrap_or_default().to_string();
            let read_only = parts.next() == Some("ro");
            VolumeMount {
                volume,
                container_path,
                read_only,
            }
        }
        compose::Volumes::Advanced(advanced) => VolumeMount {
            volume: advanced.source.unwrap_or_default(),
            container_path: advanced.target,
            read_only: advanced.read_only,
        },
    }
}

fn dependencies(service: &str, depends_on: compose::DependsOnOptions) -> Result<Vec<Dependency>, ComposeError> {
    Ok(match depends_on {
        compose::DependsOnOptions::Simple(names) => names
            .into_iter()
            .map(|service| Dependency {
                service,
                condition: Condition::Started,
            })
            .collect(),
        compose::DependsOnOptions::Conditional(map) => {
            let mut dependencies = Vec::with_capacity(map.len());
            for (dependency, options) in map {
                let condition = match options.condition.as_str() {
                    "" | "service_started" => Condition::Started,
                    "service_healthy" => Condition::Healthy,
                    "service_completed_successfully" => Condition::CompletedSuccessfully,
                    other => {
                        return Err(invalid(
                            service,
                            &format!("depends_on.{dependency}.condition"),
                            format!(
                                "`{other}` is not a condition; use service_started, service_healthy or service_completed_successfully"
                            ),
                        ));
                    }
                };
                dependencies.push(Dependency {
                    service: dependency,
                    condition,
                });
            }
            dependencies
        }
    })
}

fn labels(labels: compose::Labels) -> BTreeMap<String, String> {
    match labels {
        compose::Labels::List(entries) => entries
            .into_iter()
            .map(|entry| match entry.split_once('=') {
                Some((key, value)) => (key.to_string(), value.to_string()),
                None => (entry, String::new()),
            })
            .collect(),
        compose::Labels::Map(map) => map.into_iter().collect(),
    }
}

/// `deploy.resources.limits` as thousandths of a CPU and bytes of memory.
fn resource_limits(service: &str, deploy: Option<compose::Deploy>) -> Result<(Option<u64>, Option<u64>), ComposeError> {
    let limits = deploy
        .and_then(|deploy| deploy.resources)
        .and_then(|resources| resources.limits);
    let (cpus, memory) = limits.map(|limits| (limits.cpus, limits.memory)).unwrap_or_default();
    let cpu_millis = cpus
        .map(|cpus| parse_cpu_millis(&NumberOrString::String(cpus)))
        .transpose()
        .map_err(|message| invalid(service, "deploy.resources.limits.cpus", message))?;
    let memory_bytes = memory
        .map(|memory| parse_memory_bytes(&NumberOrString::String(memory)))
        .transpose()
        .map_err(|message| invalid(service, "deploy.resources.limits.memory", message))?;
    Ok((cpu_millis, memory_bytes))
}

/// The container port of a short-form port: `"8080"`, `"8080/tcp"`, `"HOST:CONTAINER"`,
/// `"IP:HOST:CONTAINER"` or `"IP::CONTAINER"`; the host side is berth's to choose.
fn container_port(entry: &str) -> Result<u16, String> {
    let without_protocol = entry.split_once('/').map_or(entry, |(port, _)| port);
    let container = without_protocol.rsplit(':').next().unwrap_or_default();
    container.trim().parse::<u16>().map_err(|_| {
        format!(
            "`{entry}` has no container port; write CONTAINER, HOST:CONTAINER or IP:HOST:CONTAINER with a port 1-65535"
        )
    })
}

fn healthcheck(check: compose::Healthcheck, path: &str) -> Result<Healthcheck, ComposeError> {
    let invalid = |field: &str, message: String| ComposeError::Invalid {
        path: format!("{path}.{field}"),
        message,
    };
    let test = match check.test {
        None => Vec::new(),
        Some(compose::HealthcheckTest::Single(command)) => vec!["CMD-SHELL".to_string(), command],
        Some(compose::HealthcheckTest::Multiple(test)) => test,
    };
    if let Some(kind) = test.first()
        && !matches!(kind.as_str(), "CMD" | "CMD-SHELL" | "NONE")
    {
        return Err(invalid(
            "test",
            format!("starts with `{kind}`; start it with CMD, CMD-SHELL or NONE, or write it as one string"),
        ));
    }
    let duration = |field: &str, value: Option<String>| {
        value
            .map(|text| parse_duration(&NumberOrString::String(text)))
            .transpose()
            .map_err(|message| invalid(field, message))
    };
    let retries = match check.retries {
        0 => None,
        positive => Some(u32::try_from(positive).map_err(|_| {
            invalid(
                "retries",
                format!("`{positive}` is not a number of retries; use a whole number from 1"),
            )
        })?),
    };
    Ok(Healthcheck {
        test,
        interval: duration("interval", check.interval)?,
        timeout: duration("timeout", check.timeout)?,
        retries,
        start_period: duration("start_period", check.start_period)?,
    })
}

fn restart_policy(text: &str) -> Result<RestartPolicy, String> {
    let policy = match text {
        "no" => RestartPolicy::No,
        "always" => RestartPolicy::Always,
        "unless-stopped" => RestartPolicy::UnlessStopped,
        "on-failure" => RestartPolicy::OnFailure(None),
        other => {
            let retries = other
                .strip_prefix("on-failure:")
                .and_then(|count| count.parse::<u32>().ok());
            match retries {
                Some(retries) => RestartPolicy::OnFailure(Some(retries)),
                None => {
                    return Err(format!(
                        "`{text}` is not a restart policy; use no, always, on-failure, on-failure:N or unless-stopped"
                    ));
                }
            }
        }
    };
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ports_come_from_every_short_form() {
        assert_eq!(container_port("8080"), Ok(8080));
        assert_eq!(container_port("8080/tcp"), Ok(8080));
        assert_eq!(container_port("9000:80"), Ok(80));
        assert_eq!(container_port("127.0.0.1:9000:80"), Ok(80));
        assert_eq!(container_port("127.0.0.1::80"), Ok(80));
        assert_eq!(container_port("[::1]:9000:80"), Ok(80));
        assert!(
            container_port("http")
                .unwrap_err()
                .contains("`http` has no container port")
        );
        assert!(container_port("70000").is_err());
    }

    #[test]
    fn restart_policies_parse() {
        assert_eq!(restart_policy("no"), Ok(RestartPolicy::No));
        assert_eq!(restart_policy("always"), Ok(RestartPolicy::Always));
        assert_eq!(restart_policy("unless-stopped"), Ok(RestartPolicy::UnlessStopped));
        assert_eq!(restart_policy("on-failure"), Ok(RestartPolicy::OnFailure(None)));
        assert_eq!(restart_policy("on-failure:5"), Ok(RestartPolicy::OnFailure(Some(5))));
        assert!(
            restart_policy("sometimes")
                .unwrap_err()
                .contains("`sometimes` is not a restart policy")
        );
        assert!(restart_policy("on-failure:x").is_err());
    }
}
