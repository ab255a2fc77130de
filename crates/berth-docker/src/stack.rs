//! Translating a compose stack's plan into Docker objects: the names of its network, volumes and
//! containers, their labels, and each service's create body (berth's hardening from `spec`, plus
//! the stack's network, volumes, healthcheck and restart policy). Pure functions, no IO.

use std::collections::HashMap;
use std::time::Duration;

use berth_core::SandboxId;
use berth_core::sandbox::label_keys;
use berth_core::stack::{Healthcheck, RestartPolicy, ServicePlan, StackPlan};
use berth_runtime::{ContainerRequest, RuntimeError};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, Mount, MountType, NetworkingConfig,
    RestartPolicy as DockerRestartPolicy, RestartPolicyNameEnum,
};

use crate::spec;

/// The stack's private network, where every service is reachable by its name.
pub(crate) fn network_name(sandbox_id: &SandboxId) -> String {
    format!("berth-{sandbox_id}")
}

/// A named volume of the stack: private to it, whatever the compose file calls it.
pub(crate) fn volume_name(sandbox_id: &SandboxId, volume: &str) -> String {
    format!("berth-{sandbox_id}-{volume}")
}

/// The main service's container has the sandbox's usual name; the others add their service's.
pub(crate) fn container_name(request: &ContainerRequest, plan: &StackPlan, service: &ServicePlan) -> String {
    if service.name == plan.main_service {
        spec::container_name(request)
    } else {
        format!("berth-{}-{}", request.sandbox_id, service.name)
    }
}

/// The labels of the stack's network and volumes: which stack, which deployment, whose.
pub(crate) fn object_labels(request: &ContainerRequest) -> HashMap<String, String> {
    let mut labels = HashMap::from([(label_keys::STACK.to_owned(), request.sandbox_id.to_string())]);
    for key in [label_keys::CLUSTER, label_keys::OWNER] {
        if let Some(value) = request.labels.get(key) {
            labels.insert(key.to_owned(), value.clone());
        }
    }
    labels
}

/// The `berth.stack=<id>` label filter that finds every object of one stack.
pub(crate) fn stack_filter(sandbox_id: &SandboxId) -> HashMap<&'static str, Vec<String>> {
    HashMap::from([("label", vec![format!("{}={sandbox_id}", label_keys::STACK)])])
}

/// The create body of one service of the stack.
pub(crate) fn service_body(
    request: &ContainerRequest,
    plan: &StackPlan,
    service: &ServicePlan,
    publish_host_ip: &str,
) -> Result<ContainerCreateBody, RuntimeError> {
    let is_main = service.name == plan.main_service;
    // A compose file cannot set berth's own keys (the server refuses them; this is the backstop).
    let mut labels: std::collections::BTreeMap<String, String> = service
        .labels
        .iter()
        .filter(|(key, _)| !key.starts_with(label_keys::RESERVED_PREFIX))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    for (key, value) in &request.labels {
        let sandbox_only = key == label_keys::MANAGED || key == label_keys::SANDBOX;
        if is_main || !sandbox_only {
            labels.insert(key.clone(), value.clone());
        }
    }
    labels.insert(label_keys::STACK.to_owned(), request.sandbox_id.to_string());
    labels.insert(label_keys::STACK_SERVICE.to_owned(), service.name.clone());

    let mut as_sandbox = request.clone();
    let base = &mut as_sandbox.spec;
    base.image = service.image.clone();
    base.command = service.command.clone();
    base.env = service.environment.clone();
    base.workdir = service.working_dir.clone();
    base.user = service.user.clone();
    base.ports = service.ports.clone();
    base.resources.cpu_millis = service.cpu_millis.unwrap_or(base.resources.cpu_millis);
    base.resources.memory_bytes = service.memory_bytes.unwrap_or(base.resources.memory_bytes);
    as_sandbox.labels = labels;
    let network = network_name(&request.sandbox_id);
    let mut body = spec::container_body(&as_sandbox, publish_host_ip, &network)?;

    body.entrypoint = service.entrypoint.clone();
    body.healthcheck = service.healthcheck.as_ref().map(health_config);
    body.networking_config = Some(NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            network.clone(),
            EndpointSettings {
                aliases: Some(vec![service.name.clone()]),
                ..Default::default()
            },
        )])),
    });
    let host_config = body.host_config.get_or_insert_with(Default::default);
    host_config.network_mode = Some(network);
    host_config.restart_policy = service.restart.map(restart_policy);
    let mounts: Vec<Mount> = service
        .volumes
        .iter()
        .map(|mount| Mount {
            target: Some(mount.container_path.clone()),
            source: Some(volume_name(&request.sandbox_id, &mount.volume)),
            typ: Some(MountType::VOLUME),
            read_only: Some(mount.read_only),
            ..Default::default()
        })
        .collect();
    host_config.mounts = (!mounts.is_empty()).then_some(mounts);
    Ok(body)
}

fn nanos(duration: Option<Duration>) -> Option<i64> {
    duration.map(|duration| i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX))
}

fn health_config(check: &Healthcheck) -> HealthConfig {
    HealthConfig {
        test: Some(check.test.clone()),
        interval: nanos(check.interval),
        timeout: nanos(check.timeout),
        retries: check.retries.map(i64::from),
        start_period: nanos(check.start_period),
        start_interval: None,
    }
}

fn restart_policy(policy: RestartPolicy) -> DockerRestartPolicy {
    let (name, maximum_retry_count) = match policy {
        RestartPolicy::No => (RestartPolicyNameEnum::NO, None),
        RestartPolicy::Always => (RestartPolicyNameEnum::ALWAYS, None),
        RestartPolicy::UnlessStopped => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
        RestartPolicy::OnFailure(retries) => (RestartPolicyNameEnum::ON_FAILURE, retries.map(i64::from)),
    };
    DockerRestartPolicy {
        name: Some(name),
        maximum_retry_count,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use berth_core::stack::{Dependency, VolumeMount};
    use berth_core::{Resources, SandboxSpec};

    use super::*;

    fn service(name: &str) -> ServicePlan {
        ServicePlan {
            name: name.into(),
            image: format!("{name}:1"),
            command: None,
            entrypoint: None,
            environment: BTreeMap::new(),
            ports: Vec::new(),
            volumes: Vec::new(),
            depends_on: Vec::new(),
            healthcheck: None,
            labels: BTreeMap::new(),
            cpu_millis: None,
            memory_bytes: None,
            restart: None,
            working_dir: None,
            user: None,
        }
    }

    fn stack() -> (ContainerRequest, StackPlan) {
        let mut db = service("db");
        db.volumes = vec![VolumeMount {
            volume: "data".into(),
            container_path: "/var/lib/data".into(),
            read_only: true,
        }];
        db.healthcheck = Some(Healthcheck {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: Some(Duration::from_millis(500)),
            timeout: None,
            retries: Some(3),
            start_period: None,
        });
        db.restart = Some(RestartPolicy::OnFailure(Some(2)));
        db.memory_bytes = Some(64 << 20);
        db.labels = BTreeMap::from([
            ("tier".into(), "data".into()),
            (label_keys::MANAGED.into(), "forged".into()),
        ]);
        let mut app = service("app");
        app.command = Some(vec!["serve".into()]);
        app.environment = BTreeMap::from([("DB".into(), "db:5432".into())]);
        app.ports = vec![8081];
        app.depends_on = vec![Dependency {
            service: "db".into(),
            condition: berth_core::stack::Condition::Healthy,
        }];
        let plan = StackPlan {
            services: vec![db, app],
            volumes: vec!["data".into()],
            main_service: "app".into(),
        };
        let request = ContainerRequest {
            sandbox_id: SandboxId::parse("0123456789abcdef").expect("valid id"),
            spec: SandboxSpec {
                image: "app:1".into(),
                command: None,
                env: BTreeMap::new(),
                workdir: None,
                user: None,
                labels: BTreeMap::new(),
                ports: vec![8081],
                resources: Resources {
                    cpu_millis: 1000,
                    memory_bytes: 256 << 20,
                    pids_limit: 512,
                    disk_bytes: None,
                },
                ttl: Duration::from_secs(60),
                max_lifetime: None,
                idle_timeout: None,
                hibernate_after: None,
                ttl_counts_idle: false,
                readiness: None,
                stack: Some(plan.clone()),
                runtime: None,
                hardening: berth_core::Hardening::default(),
                network: berth_core::NetworkPolicy::default(),
                restart: berth_core::Restart::Never,
                volumes: Vec::new(),
            },
            labels: BTreeMap::from([
                (label_keys::MANAGED.into(), "true".into()),
                (label_keys::SANDBOX.into(), "0123456789abcdef".into()),
                (label_keys::CLUSTER.into(), "c1".into()),
                ("team".into(), "red".into()),
            ]),
        };
        (request, plan)
    }

    #[test]
    fn only_the_main_service_is_labelled_as_the_sandbox() {
        let (request, plan) = stack();
        let db = service_body(&request, &plan, &plan.services[0], "127.0.0.1").expect("valid");
        let app = service_body(&request, &plan, &plan.services[1], "127.0.0.1").expect("valid");
        let db_labels = db.labels.expect("labels");
        let app_labels = app.labels.expect("labels");
        assert!(!db_labels.contains_key(label_keys::SANDBOX));
        assert!(
            !db_labels.contains_key(label_keys::MANAGED),
            "a compose file cannot make a service look managed"
        );
        assert_eq!(app_labels[label_keys::MANAGED], "true");
        assert_eq!(app_labels[label_keys::SANDBOX], "0123456789abcdef");
        for labels in [&db_labels, &app_labels] {
            assert_eq!(labels[label_keys::STACK], "0123456789abcdef");
            assert_eq!(labels[label_keys::CLUSTER], "c1");
        }
        assert_eq!(db_labels[label_keys::STACK_SERVICE], "db");
        assert_eq!(db_labels["tier"], "data");
        assert_eq!(
            container_name(&request, &plan, &plan.services[1]),
            "berth-0123456789abcdef"
        );
        assert_eq!(
            container_name(&request, &plan, &plan.services[0]),
            "berth-0123456789abcdef-db"
        );
    }

    #[test]
    fn a_service_joins_the_stack_network_under_its_name_with_its_volumes_and_policies() {
        let (request, plan) = stack();
        let db = service_body(&request, &plan, &plan.services[0], "127.0.0.1").expect("valid");
        let host = db.host_config.expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("berth-0123456789abcdef"));
        let endpoint = &db
            .networking_config
            .expect("networking")
            .endpoints_config
            .expect("endpoints")["berth-0123456789abcdef"];
        assert_eq!(endpoint.aliases, Some(vec!["db".to_string()]));
        let mount = &host.mounts.expect("mounts")[0];
        assert_eq!(mount.source.as_deref(), Some("berth-0123456789abcdef-data"));
        assert_eq!(mount.typ, Some(MountType::VOLUME));
        assert_eq!(mount.read_only, Some(true));
        let restart = host.restart_policy.expect("restart");
        assert_eq!(restart.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(restart.maximum_retry_count, Some(2));
        assert_eq!(host.memory, Some(64 << 20), "the service's own limit");
        assert_eq!(
            host.nano_cpus,
            Some(1_000_000_000),
            "the sandbox's limit when the service sets none"
        );
        assert_eq!(host.security_opt, Some(vec![spec::SECURITY_OPT.to_string()]));
        let health = db.healthcheck.expect("healthcheck");
        assert_eq!(health.interval, Some(500_000_000));
        assert_eq!(health.retries, Some(3));
        assert_eq!(db.image.as_deref(), Some("db:1"));
    }

    #[test]
    fn the_main_service_keeps_its_command_env_and_published_ports() {
        let (request, plan) = stack();
        let app = service_body(&request, &plan, &plan.services[1], "127.0.0.1").expect("valid");
        assert_eq!(app.cmd, Some(vec!["serve".to_string()]));
        assert_eq!(app.env, Some(vec!["DB=db:5432".to_string()]));
        assert_eq!(app.exposed_ports, Some(vec!["8081/tcp".to_string()]));
        assert!(app.host_config.expect("host").restart_policy.is_none());
        let labels = object_labels(&request);
        assert_eq!(labels.len(), 2, "{labels:?}");
        assert_eq!(labels[label_keys::STACK], "0123456789abcdef");
    }
}
