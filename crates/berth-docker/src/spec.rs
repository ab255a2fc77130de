//! Translating a berth [`ContainerRequest`] into the Docker create body: resources, hardening and
//! published ports, in the API 1.41 form. Pure functions, no IO.

use std::collections::HashMap;

use berth_core::Egress;
use berth_core::sandbox::label_keys;
use berth_runtime::{ContainerRequest, RuntimeError};
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, PortBinding, PortMap};

/// Options berth sets on every container, whatever the request.
pub(crate) const SECURITY_OPT: &str = "no-new-privileges";
pub(crate) const CAP_DROP: &str = "NET_RAW";
/// The upstream of a sealed sandbox's name lookups: its own loopback.
const SEALED_RESOLVER: &str = "127.0.0.1";
/// The writable scratch space of a sandbox whose root filesystem is read-only. A tmpfs counts
/// against the sandbox's memory limit, so it needs no size of its own.
pub(crate) const READ_ONLY_SCRATCH: (&str, &str) = ("/tmp", "rw,nosuid,nodev,mode=1777");

/// The container name for a sandbox: `berth-<sandbox id>`.
pub(crate) fn container_name(request: &ContainerRequest) -> String {
    format!("berth-{}", request.sandbox_id)
}

/// The create body for `request`, joined to `network`, publishing its ports on
/// `publish_host_ip`.
pub(crate) fn container_body(
    request: &ContainerRequest,
    publish_host_ip: &str,
    network: &str,
) -> Result<ContainerCreateBody, RuntimeError> {
    let spec = &request.spec;
    let resources = &spec.resources;
    let nano_cpus = resources
        .cpu_millis
        .checked_mul(1_000_000)
        .and_then(|n| i64::try_from(n).ok())
        .ok_or_else(|| RuntimeError::Invalid(format!("cpu of {} millicores is out of range", resources.cpu_millis)))?;
    let memory = i64::try_from(resources.memory_bytes)
        .map_err(|_| RuntimeError::Invalid(format!("memory of {} bytes is out of range", resources.memory_bytes)))?;

    let exposed: Vec<String> = spec.ports.iter().map(|port| format!("{port}/tcp")).collect();
    let port_bindings: PortMap = exposed
        .iter()
        .map(|key| {
            let binding = PortBinding {
                host_ip: Some(publish_host_ip.to_owned()),
                // Empty: the engine picks a free host port.
                host_port: Some(String::new()),
            };
            (key.clone(), Some(vec![binding]))
        })
        .collect();

    let host_config = HostConfig {
        nano_cpus: Some(nano_cpus),
        memory: Some(memory),
        // Equal to Memory: no swap on top of the limit.
        memory_swap: Some(memory),
        pids_limit: Some(resources.pids_limit),
        security_opt: Some(vec![SECURITY_OPT.to_owned()]),
        privileged: Some(false),
        cap_drop: Some(vec![if spec.hardening.drop_all_capabilities {
            "ALL".to_owned()
        } else {
            CAP_DROP.to_owned()
        }]),
        readonly_rootfs: spec.hardening.read_only_rootfs.then_some(true),
        tmpfs: spec.hardening.read_only_rootfs.then(|| {
            let (path, options) = READ_ONLY_SCRATCH;
            HashMap::from([(path.to_owned(), options.to_owned())])
        }),
        // The engine's default when unset; whether the engine offers the name was checked
        // before the create.
        runtime: spec.runtime.clone(),
        // Checked against the engine's storage driver before the create.
        storage_opt: resources
            .disk_bytes
            .map(|bytes| HashMap::from([("size".to_owned(), bytes.to_string())])),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        // A minimal init as PID 1 reaps the processes berth kills (exec timeouts, signals), so
        // they never linger as zombies counting against the pids limit.
        init: Some(true),
        // The sandbox network, where no sandbox reaches another. PID, IPC and UTS modes stay
        // unset: private namespaces. No binds or devices; the only mounts are the owner's own
        // volumes, which the engine keeps apart from the host's files.
        network_mode: Some(network.to_owned()),
        mounts: volume_mounts(request),
        // Egress `deny`: the engine's resolver forwards what it cannot answer to the sandbox's
        // own loopback, where nothing of the outside listens, instead of to the host's
        // resolvers (a host-side resolver would otherwise carry names out of a sealed network).
        dns: (spec.network.egress == Egress::Deny).then(|| vec![SEALED_RESOLVER.to_owned()]),
        // The engine restarts a failed main process in the same container; berth follows its
        // `die` events and keeps the sandbox while a restart is to come.
        restart_policy: match spec.restart {
            berth_core::Restart::Never => None,
            berth_core::Restart::OnFailure(retries) => Some(bollard::models::RestartPolicy {
                name: Some(bollard::models::RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: Some(i64::from(retries)),
            }),
        },
        ..Default::default()
    };

    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        env: (!spec.env.is_empty()).then(|| spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: spec.workdir.clone(),
        user: spec.user.clone(),
        labels: Some(container_labels(request)),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        tty: Some(false),
        open_stdin: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    })
}

/// The engine names of the volumes `request` mounts, in its order: its owner's, in its
/// deployment (from the request's `berth.owner` and `berth.cluster` labels).
pub(crate) fn volume_sources(request: &ContainerRequest) -> Vec<String> {
    let label = |key: &str| request.labels.get(key).map(String::as_str).unwrap_or_default();
    request
        .spec
        .volumes
        .iter()
        .map(|mount| berth_core::volume::engine_name(label(label_keys::CLUSTER), label(label_keys::OWNER), &mount.name))
        .collect()
}

fn volume_mounts(request: &ContainerRequest) -> Option<Vec<Mount>> {
    let mounts: Vec<Mount> = volume_sources(request)
        .into_iter()
        .zip(&request.spec.volumes)
        .map(|(source, mount)| Mount {
            target: Some(mount.path.clone()),
            source: Some(source),
            typ: Some(MountType::VOLUME),
            read_only: Some(mount.read_only),
            ..Default::default()
        })
        .collect();
    (!mounts.is_empty()).then_some(mounts)
}

/// The request's labels; a sealed sandbox's container also carries `berth.stack`, as its
/// network does, so that the two are removed (and collected) together.
fn container_labels(request: &ContainerRequest) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = request.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if request.spec.network.egress == Egress::Deny {
        labels.insert(label_keys::STACK.to_owned(), request.sandbox_id.to_string());
    }
    labels
}

/// How to ask the engine to pull `image`: `(fromImage, tag)`. Without a tag the API would pull
/// every tag of the repository, so an untagged, undigested reference gets `latest`, as
/// `docker pull` does.
pub(crate) fn pull_reference(image: &str) -> (String, Option<String>) {
    if image.contains('@') {
        return (image.to_owned(), None);
    }
    let last_component = image.rsplit('/').next().unwrap_or(image);
    match last_component.rsplit_once(':') {
        Some(_) => {
            let (repo, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
            (repo.to_owned(), Some(tag.to_owned()))
        }
        None => (image.to_owned(), Some("latest".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use berth_core::{Resources, SandboxId, SandboxSpec};

    use super::*;

    fn request() -> ContainerRequest {
        ContainerRequest {
            sandbox_id: SandboxId::parse("0123456789abcdef").expect("valid id"),
            spec: SandboxSpec {
                image: "busybox:latest".into(),
                command: Some(vec!["sleep".into(), "60".into()]),
                env: BTreeMap::from([("A".into(), "1".into())]),
                workdir: Some("/tmp".into()),
                user: Some("1000:1000".into()),
                labels: BTreeMap::new(),
                ports: vec![8080, 9090],
                resources: Resources {
                    cpu_millis: 500,
                    memory_bytes: 64 << 20,
                    pids_limit: 128,
                    disk_bytes: None,
                },
                ttl: Duration::from_secs(60),
                max_lifetime: None,
                idle_timeout: None,
                hibernate_after: None,
                ttl_counts_idle: false,
                readiness: None,
                stack: None,
                runtime: None,
                hardening: berth_core::Hardening::default(),
                network: berth_core::NetworkPolicy::default(),
                restart: berth_core::Restart::Never,
                volumes: Vec::new(),
            },
            labels: BTreeMap::from([("berth.managed".into(), "true".into())]),
        }
    }

    #[test]
    fn body_carries_resources_hardening_and_ports() {
        let body = container_body(&request(), "127.0.0.1", "net-id").expect("valid");
        assert_eq!(container_name(&request()), "berth-0123456789abcdef");
        assert_eq!(body.image.as_deref(), Some("busybox:latest"));
        assert_eq!(body.cmd, Some(vec!["sleep".to_string(), "60".to_string()]));
        assert_eq!(body.env, Some(vec!["A=1".to_string()]));
        assert_eq!(body.working_dir.as_deref(), Some("/tmp"));
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        assert_eq!(
            body.exposed_ports,
            Some(vec!["8080/tcp".to_string(), "9090/tcp".to_string()])
        );
        assert_eq!(
            body.labels
                .as_ref()
                .and_then(|l| l.get("berth.managed"))
                .map(String::as_str),
            Some("true")
        );
        let host = body.host_config.expect("host config");
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.memory_swap, Some(64 << 20));
        assert_eq!(host.pids_limit, Some(128));
        assert_eq!(host.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert_eq!(host.cap_drop, Some(vec!["NET_RAW".to_string()]));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.network_mode.as_deref(), Some("net-id"));
        assert_eq!(host.binds, None);
        assert_eq!(host.mounts, None);
        assert_eq!(host.runtime, None, "the engine's default runtime");
        assert_eq!((host.readonly_rootfs, host.tmpfs), (None, None));
        let bindings = host.port_bindings.expect("bindings");
        let binding = &bindings["8080/tcp"].as_ref().expect("one binding")[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(binding.host_port.as_deref(), Some(""));
    }

    #[test]
    fn a_denied_sandbox_resolves_through_its_own_loopback_and_an_open_one_as_the_engine_says() {
        let mut request = request();
        let host = container_body(&request, "127.0.0.1", "net-id")
            .expect("valid")
            .host_config
            .expect("host");
        assert_eq!(host.dns, None);
        request.spec.network.egress = Egress::Deny;
        let host = container_body(&request, "127.0.0.1", "sealed-id")
            .expect("valid")
            .host_config
            .expect("host");
        assert_eq!(host.dns, Some(vec!["127.0.0.1".to_owned()]));
        assert_eq!(host.network_mode.as_deref(), Some("sealed-id"));
    }

    #[test]
    fn a_denied_sandboxs_container_is_labelled_with_its_network_and_an_open_one_is_not() {
        let mut request = request();
        let labels = container_body(&request, "127.0.0.1", "net-id")
            .expect("valid")
            .labels
            .expect("labels");
        assert!(!labels.contains_key(label_keys::STACK), "{labels:?}");
        request.spec.network.egress = Egress::Deny;
        let labels = container_body(&request, "127.0.0.1", "sealed-id")
            .expect("valid")
            .labels
            .expect("labels");
        assert_eq!(labels[label_keys::STACK], request.sandbox_id.to_string());
        assert_eq!(labels[label_keys::MANAGED], "true");
    }

    #[test]
    fn a_disk_limit_becomes_the_size_storage_option_and_none_asks_for_nothing() {
        let mut request = request();
        let host = container_body(&request, "127.0.0.1", "net-id")
            .expect("valid")
            .host_config
            .expect("host");
        assert_eq!(host.storage_opt, None);
        request.spec.resources.disk_bytes = Some(10 << 30);
        let host = container_body(&request, "127.0.0.1", "net-id")
            .expect("valid")
            .host_config
            .expect("host");
        assert_eq!(
            host.storage_opt,
            Some(HashMap::from([("size".to_string(), (10u64 << 30).to_string())]))
        );
    }

    #[test]
    fn a_chosen_runtime_and_hardening_reach_the_engine_and_seccomp_stays_confined() {
        let mut request = request();
        request.spec.runtime = Some("runsc".into());
        request.spec.hardening = berth_core::Hardening {
            read_only_rootfs: true,
            drop_all_capabilities: true,
        };
        let host = container_body(&request, "127.0.0.1", "net-id")
            .expect("valid")
            .host_config
            .expect("host config");
        assert_eq!(host.runtime.as_deref(), Some("runsc"));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(
            host.tmpfs,
            Some(HashMap::from([(
                "/tmp".to_string(),
                "rw,nosuid,nodev,mode=1777".to_string()
            )]))
        );
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        // Whatever a sandbox asks for, it keeps the engine's seccomp profile and cannot gain
        // privileges.
        assert_eq!(host.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.cap_add, None);
    }

    #[test]
    fn no_command_keeps_the_image_default_and_no_ports_publish_nothing() {
        let mut request = request();
        request.spec.command = None;
        request.spec.ports.clear();
        let body = container_body(&request, "127.0.0.1", "net-id").expect("valid");
        assert_eq!(body.cmd, None);
        assert_eq!(body.exposed_ports, None);
        assert_eq!(body.host_config.and_then(|h| h.port_bindings), None);
    }

    #[test]
    fn out_of_range_resources_are_invalid() {
        let mut request = request();
        request.spec.resources.memory_bytes = u64::MAX;
        assert!(matches!(
            container_body(&request, "127.0.0.1", "net-id"),
            Err(RuntimeError::Invalid(_))
        ));
        let mut request = self::request();
        request.spec.resources.cpu_millis = u64::MAX / 2;
        assert!(matches!(
            container_body(&request, "127.0.0.1", "net-id"),
            Err(RuntimeError::Invalid(_))
        ));
    }

    #[test]
    fn pull_references_always_name_one_tag() {
        let p = |image| pull_reference(image);
        assert_eq!(p("busybox"), ("busybox".into(), Some("latest".into())));
        assert_eq!(p("busybox:1.36"), ("busybox".into(), Some("1.36".into())));
        assert_eq!(
            p("localhost:5000/team/app"),
            ("localhost:5000/team/app".into(), Some("latest".into()))
        );
        assert_eq!(
            p("localhost:5000/team/app:v2"),
            ("localhost:5000/team/app".into(), Some("v2".into()))
        );
        assert_eq!(p("app@sha256:abcd"), ("app@sha256:abcd".into(), None));
    }
}
