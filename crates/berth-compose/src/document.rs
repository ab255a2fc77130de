//! The raw document before typing: parsing, `x-*` removal, interpolation, the allowlist check
//! of every key, and the scalar normalisation the typed model needs.

use std::collections::BTreeMap;

use serde_norway::{Mapping, Value};

use crate::ComposeError;
use crate::interpolate::{InterpolationError, interpolate};

const TOP_LEVEL_KEYS: &[&str] = &["version", "name", "services", "volumes", "networks"];
const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "ports",
    "expose",
    "volumes",
    "depends_on",
    "healthcheck",
    "labels",
    "deploy",
    "restart",
    "working_dir",
    "user",
    "networks",
];
const HEALTHCHECK_KEYS: &[&str] = &["test", "interval", "timeout", "retries", "start_period"];
const PORT_KEYS: &[&str] = &["target", "published", "host_ip", "protocol"];
const VOLUME_MOUNT_KEYS: &[&str] = &["type", "source", "target", "read_only"];
const DEFAULT_NETWORK: &str = "default";

/// Parses `yaml` and returns the document interpolated, checked and ready to type.
pub(crate) fn prepare(yaml: &str, variables: &BTreeMap<String, String>) -> Result<Value, ComposeError> {
    let mut document: Value = serde_norway::from_str(yaml).map_err(|e| ComposeError::Yaml(e.to_string()))?;
    document.apply_merge().map_err(|e| ComposeError::Yaml(e.to_string()))?;
    let Value::Mapping(top) = &mut document else {
        return Err(ComposeError::Format {
            path: "(top level)".into(),
            message: "expected a mapping with a `services:` section".into(),
        });
    };
    drop_extensions(top);
    match top.get_mut("services") {
        Some(Value::Mapping(services)) if !services.is_empty() => {
            for (_, service) in services.iter_mut() {
                if let Value::Mapping(service) = service {
                    drop_extensions(service);
                }
            }
        }
        _ => return Err(ComposeError::NoServices),
    }
    interpolate_values(&mut document, "", yaml, variables)?;
    let unsupported = unsupported_paths(&document);
    if !unsupported.is_empty() {
        return Err(ComposeError::Unsupported { paths: unsupported });
    }
    normalise_scalars(&mut document);
    Ok(document)
}

fn drop_extensions(mapping: &mut Mapping) {
    mapping.retain(|key, _| !key.as_str().is_some_and(|k| k.starts_with("x-")));
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Interpolates every string value (never keys, as compose does), naming the path and, when
/// it can be found in the source, the line of a failing value.
fn interpolate_values(
    value: &mut Value,
    path: &str,
    source: &str,
    variables: &BTreeMap<String, String>,
) -> Result<(), ComposeError> {
    match value {
        Value::String(text) => {
            *text = interpolate(text, variables).map_err(|error| interpolation_error(error, path, text, source))?;
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                interpolate_values(item, &format!("{path}[{index}]"), source, variables)?;
            }
        }
        Value::Mapping(mapping) => {
            for (key, item) in mapping.iter_mut() {
                interpolate_values(item, &child(path, &key_text(key)), source, variables)?;
            }
        }
        Value::Tagged(tagged) => interpolate_values(&mut tagged.value, path, source, variables)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

fn interpolation_error(error: InterpolationError, path: &str, text: &str, source: &str) -> ComposeError {
    // Values carry no positions once parsed; the line is found by looking for the value's own
    // text, which is exact for the plain and quoted one-line scalars compose files use.
    let line_of = |needle: &str| {
        source
            .lines()
            .position(|line| !needle.is_empty() && line.contains(needle))
            .map(|index| index + 1)
    };
    let located = |needle: &str| match line_of(needle) {
        Some(line) => format!("line {line} ({path})"),
        None => path.to_string(),
    };
    match error {
        InterpolationError::Unterminated { fragment } => ComposeError::UnterminatedVariable {
            location: located(&fragment),
        },
        InterpolationError::Required { variable, message } => ComposeError::RequiredVariable {
            location: located(text.lines().next().unwrap_or_default()),
            message: if message.is_empty() {
                "it is not set".to_string()
            } else {
                message
            },
            variable,
        },
        InterpolationError::Invalid { reason } => ComposeError::BadSubstitution {
            location: located(text.lines().next().unwrap_or_default()),
            reason,
        },
    }
}

/// Every path the document uses that berth does not implement, in document order.
fn unsupported_paths(document: &Value) -> Vec<String> {
    let mut paths = Vec::new();
    let Value::Mapping(top) = document else {
        return paths;
    };
    for (key, value) in top {
        let key = key_text(key);
        match key.as_str() {
            "volumes" => check_top_level_volumes(value, &mut paths),
            "networks" => check_networks(value, "networks", &mut paths),
            "services" => {
                if let Value::Mapping(services) = value {
                    for (name, service) in services {
                        check_service(service, &format!("services.{}", key_text(name)), &mut paths);
                    }
                }
            }
            other if TOP_LEVEL_KEYS.contains(&other) => {}
            other => paths.push(other.to_string()),
        }
    }
    paths
}

fn check_top_level_volumes(value: &Value, paths: &mut Vec<String>) {
    let Value::Mapping(volumes) = value else { return };
    for (name, options) in volumes {
        if let Value::Mapping(options) = options {
            for option in options.keys() {
                paths.push(format!("volumes.{}.{}", key_text(name), key_text(option)));
            }
        }
    }
}

/// Only the default network, without settings, is accepted.
fn check_networks(value: &Value, path: &str, paths: &mut Vec<String>) {
    match value {
        Value::Sequence(names) => {
            for name in names {
                let name = key_text(name);
                if name != DEFAULT_NETWORK {
                    paths.push(format!("{path}.{name}"));
                }
            }
        }
        Value::Mapping(networks) => {
            for (name, settings) in networks {
                let name = key_text(name);
                if name != DEFAULT_NETWORK {
                    paths.push(format!("{path}.{name}"));
                } else if let Value::Mapping(settings) = settings {
                    for setting in settings.keys() {
                        paths.push(format!("{path}.{name}.{}", key_text(setting)));
                    }
                }
            }
        }
        _ => {}
    }
}

fn check_allowed_keys(value: &Value, allowed: &[&str], path: &str, paths: &mut Vec<String>) {
    if let Value::Mapping(mapping) = value {
        for key in mapping.keys() {
            let key = key_text(key);
            if !allowed.contains(&key.as_str()) {
                paths.push(format!("{path}.{key}"));
            }
        }
    }
}

fn check_service(service: &Value, path: &str, paths: &mut Vec<String>) {
    let Value::Mapping(service) = service else { return };
    for (key, value) in service {
        let key = key_text(key);
        let key_path = format!("{path}.{key}");
        match key.as_str() {
            "networks" => check_networks(value, &key_path, paths),
            "volumes" => check_service_volumes(value, &key_path, paths),
            "ports" => check_ports(value, &key_path, paths),
            "healthcheck" => check_allowed_keys(value, HEALTHCHECK_KEYS, &key_path, paths),
            "depends_on" => {
                if let Value::Mapping(dependencies) = value {
                    for (name, options) in dependencies {
                        check_allowed_keys(options, &["condition"], &child(&key_path, &key_text(name)), paths);
                    }
                }
            }
            "deploy" => check_deploy(value, &key_path, paths),
            other if SERVICE_KEYS.contains(&other) => {}
            _ => paths.push(key_path),
        }
    }
}

fn check_deploy(deploy: &Value, path: &str, paths: &mut Vec<String>) {
    let Value::Mapping(deploy) = deploy else { return };
    for (key, value) in deploy {
        let key = key_text(key);
        let key_path = format!("{path}.{key}");
        match key.as_str() {
            "replicas" => {
                if value.as_u64() != Some(1) {
                    paths.push(format!("{key_path} (berth runs one container per service)"));
                }
            }
            "resources" => {
                check_allowed_keys(value, &["limits"], &key_path, paths);
                if let Some(limits) = value.get("limits") {
                    check_allowed_keys(limits, &["cpus", "memory"], &format!("{key_path}.limits"), paths);
                }
            }
            _ => paths.push(key_path),
        }
    }
}

fn check_ports(ports: &Value, path: &str, paths: &mut Vec<String>) {
    let Value::Sequence(ports) = ports else { return };
    for (index, port) in ports.iter().enumerate() {
        let entry_path = format!("{path}[{index}]");
        match port {
            Value::String(text) => {
                if let Some((_, protocol)) = text.split_once('/')
                    && protocol != "tcp"
                {
                    paths.push(format!("{entry_path} ({protocol})"));
                }
                if text.rsplit(':').next().is_some_and(|container| container.contains('-')) {
                    paths.push(format!("{entry_path} (port range)"));
                }
            }
            Value::Mapping(_) => {
                check_allowed_keys(port, PORT_KEYS, &entry_path, paths);
                if let Some(protocol) = port.get("protocol").and_then(Value::as_str)
                    && protocol != "tcp"
                {
                    paths.push(format!("{entry_path}.protocol ({protocol})"));
                }
            }
            _ => {}
        }
    }
}

/// Named volumes only: a host path (`/…`, `./…`, `~/…`), an anonymous volume or any other
/// mount type would reach outside the stack.
fn check_service_volumes(volumes: &Value, path: &str, paths: &mut Vec<String>) {
    let Value::Sequence(volumes) = volumes else { return };
    for (index, volume) in volumes.iter().enumerate() {
        let entry_path = format!("{path}[{index}]");
        match volume {
            Value::String(text) => {
                let parts: Vec<&str> = text.split(':').collect();
                match parts.as_slice() {
                    [_container_path] => paths.push(format!("{entry_path} (anonymous volume {text}: name it)")),
                    [source, _target, rest @ ..] => {
                        if is_host_path(source) {
                            paths.push(format!("{entry_path} (bind mount of {source})"));
                        }
                        match rest {
                            [] | ["ro" | "rw"] => {}
                            _ => paths.push(format!("{entry_path} (mode {})", rest.join(":"))),
                        }
                    }
                    [] => {}
                }
            }
            Value::Mapping(_) => {
                check_allowed_keys(volume, VOLUME_MOUNT_KEYS, &entry_path, paths);
                let kind = volume.get("type").and_then(Value::as_str).unwrap_or_default();
                if kind != "volume" {
                    paths.push(format!("{entry_path}.type ({kind})"));
                } else {
                    match volume.get("source").and_then(Value::as_str) {
                        None | Some("") => paths.push(format!("{entry_path} (anonymous volume: give it a source)")),
                        Some(source) if is_host_path(source) => {
                            paths.push(format!("{entry_path} (bind mount of {source})"));
                        }
                        Some(_) => {}
                    }
                }
            }
            _ => {}
        }
    }
}

/// Compose's rule: a source that looks like a path is a bind mount, anything else a volume name.
pub(crate) fn is_host_path(source: &str) -> bool {
    source.starts_with(['/', '.', '~']) || source.contains(['/', '\\'])
}

/// Turns the scalars YAML may write as numbers or booleans into the strings the typed model
/// expects (`user: 1000`, `ports: [8080]`, `cpus: 0.5`, `aenv.main: true`), as compose does.
fn normalise_scalars(document: &mut Value) {
    let Some(Value::Mapping(services)) = document.get_mut("services") else {
        return;
    };
    for (_, service) in services.iter_mut() {
        let Value::Mapping(service) = service else { continue };
        for key in ["image", "user", "working_dir", "restart"] {
            if let Some(value) = service.get_mut(key) {
                stringify(value);
            }
        }
        for key in ["ports", "expose", "command", "entrypoint", "labels"] {
            if let Some(Value::Sequence(items)) = service.get_mut(key) {
                items.iter_mut().for_each(stringify);
            }
        }
        if let Some(Value::Mapping(labels)) = service.get_mut("labels") {
            labels.values_mut().for_each(stringify);
        }
        if let Some(healthcheck) = service.get_mut("healthcheck") {
            if let Some(Value::Sequence(test)) = healthcheck.get_mut("test") {
                test.iter_mut().for_each(stringify);
            }
            for key in ["interval", "timeout", "start_period"] {
                if let Some(value) = healthcheck.get_mut(key) {
                    stringify(value);
                }
            }
        }
        if let Some(limits) = service
            .get_mut("deploy")
            .and_then(|deploy| deploy.get_mut("resources"))
            .and_then(|resources| resources.get_mut("limits"))
        {
            for key in ["cpus", "memory"] {
                if let Some(value) = limits.get_mut(key) {
                    stringify(value);
                }
            }
        }
    }
}

fn stringify(value: &mut Value) {
    let text = match value {
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        _ => return,
    };
    *value = Value::String(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsupported(yaml: &str) -> Vec<String> {
        match prepare(yaml, &BTreeMap::new()) {
            Err(ComposeError::Unsupported { paths }) => paths,
            other => panic!("expected an unsupported-keys error, got {other:?}"),
        }
    }

    #[test]
    fn extension_fields_are_ignored_and_anchors_merge() {
        let yaml = "x-common: &common\n  restart: always\nservices:\n  web:\n    <<: *common\n    image: nginx\n    x-note: ${UNTERMINATED\n";
        let document = prepare(yaml, &BTreeMap::new()).unwrap();
        assert_eq!(document["services"]["web"]["restart"], Value::String("always".into()));
        assert!(document.get("x-common").is_none());
    }

    #[test]
    fn every_unsupported_key_is_listed_in_document_order() {
        let yaml = r#"
services:
  db:
    image: postgres
    build: .
    privileged: true
    cap_add: [NET_ADMIN]
    volumes:
      - /var/lib/data:/data
      - ./conf:/etc/conf:ro
      - data:/ok
      - data:/ok2:z
      - /anonymous
      - type: bind
        source: /etc
        target: /etc
      - type: volume
        source: data
        target: /x
        volume: {nocopy: true}
    networks: [default, backend]
    deploy:
      replicas: 3
      resources:
        limits: {cpus: "1", pids: 10}
        reservations: {memory: 1G}
    healthcheck: {test: [CMD, "true"], disable: true}
    depends_on:
      web: {condition: service_started, restart: true}
    ports: ["53:53/udp", "8000-8010:8000-8010", {target: 80, mode: host}]
  web:
    image: nginx
    network_mode: host
    secrets: [token]
volumes:
  data: {external: true}
networks:
  backend: {}
secrets:
  token: {file: ./token}
"#;
        assert_eq!(
            unsupported(yaml),
            vec![
                "services.db.build",
                "services.db.privileged",
                "services.db.cap_add",
                "services.db.volumes[0] (bind mount of /var/lib/data)",
                "services.db.volumes[1] (bind mount of ./conf)",
                "services.db.volumes[3] (mode z)",
                "services.db.volumes[4] (anonymous volume /anonymous: name it)",
                "services.db.volumes[5].type (bind)",
                "services.db.volumes[6].volume",
                "services.db.networks.backend",
                "services.db.deploy.replicas (berth runs one container per service)",
                "services.db.deploy.resources.reservations",
                "services.db.deploy.resources.limits.pids",
                "services.db.healthcheck.disable",
                "services.db.depends_on.web.restart",
                "services.db.ports[0] (udp)",
                "services.db.ports[1] (port range)",
                "services.db.ports[2].mode",
                "services.web.network_mode",
                "services.web.secrets",
                "volumes.data.external",
                "networks.backend",
                "secrets",
            ]
        );
    }

    #[test]
    fn the_default_network_and_one_replica_are_accepted() {
        let yaml = "services:\n  web:\n    image: nginx\n    networks: {default: }\n    deploy: {replicas: 1}\nnetworks:\n  default:\n";
        assert!(prepare(yaml, &BTreeMap::new()).is_ok());
    }

    #[test]
    fn interpolation_errors_name_the_line_and_path() {
        let yaml = "services:\n  web:\n    image: nginx\n    environment:\n      A: \"${OOPS\"\n";
        let error = prepare(yaml, &BTreeMap::new()).unwrap_err();
        assert_eq!(
            error,
            ComposeError::UnterminatedVariable {
                location: "line 5 (services.web.environment.A)".into()
            }
        );
        assert!(
            error
                .to_string()
                .starts_with("line 5 (services.web.environment.A): `${` is not closed")
        );

        let yaml = "services:\n  web:\n    image: ${IMAGE:?name the image}\n";
        let error = prepare(yaml, &BTreeMap::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 3 (services.web.image): variable `IMAGE` is required: name the image; set it in the instance's environment variables"
        );
    }

    #[test]
    fn a_file_without_services_is_refused() {
        assert_eq!(
            prepare("volumes: {}\n", &BTreeMap::new()).unwrap_err(),
            ComposeError::NoServices
        );
        assert_eq!(
            prepare("services: {}\n", &BTreeMap::new()).unwrap_err(),
            ComposeError::NoServices
        );
        assert!(matches!(
            prepare("- a\n", &BTreeMap::new()),
            Err(ComposeError::Format { .. })
        ));
        assert!(matches!(
            prepare("services: [\n", &BTreeMap::new()),
            Err(ComposeError::Yaml(_))
        ));
    }

    #[test]
    fn host_paths_are_recognised() {
        for path in ["/data", "./data", "../data", "~/data", "sub/dir", "C:\\data"] {
            assert!(is_host_path(path), "{path}");
        }
        for name in ["data", "pg-data", "my_volume.1"] {
            assert!(!is_host_path(name), "{name}");
        }
    }
}
