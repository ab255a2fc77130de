//! Reading the engine's answers: container inspect results, list summaries and events, mapped to
//! berth's [`ContainerState`] and [`RuntimeEvent`]. Pure functions, no IO.

use std::collections::{BTreeMap, HashMap};

use berth_core::sandbox::label_keys;
use berth_core::{PortBinding, SandboxId};
use berth_runtime::{ContainerState, EventKind, RunState, RuntimeEvent};
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary, ContainerSummaryStateEnum, EndpointSettings,
    EventMessage, PortMap, PortSummaryTypeEnum,
};
use chrono::{DateTime, Utc};

/// The container facts in an inspect answer.
pub(crate) fn from_inspect(inspect: &ContainerInspectResponse) -> ContainerState {
    let labels = to_btree(inspect.config.as_ref().and_then(|c| c.labels.as_ref()));
    let engine_state = inspect.state.as_ref();
    let state = engine_state.map(run_state_of).unwrap_or(RunState::Created);
    let network = inspect.network_settings.as_ref();
    ContainerState {
        container_id: inspect.id.clone().unwrap_or_default(),
        sandbox_id: sandbox_id_of(&labels),
        labels,
        state,
        exit_code: match state {
            // Restarting: the exit that made the engine restart it.
            RunState::Exited | RunState::Dead | RunState::Restarting => engine_state.and_then(|s| s.exit_code),
            _ => None,
        },
        oom_killed: engine_state.and_then(|s| s.oom_killed).unwrap_or(false),
        ip: network.and_then(|n| n.networks.as_ref()).and_then(ip_of),
        ports: network
            .and_then(|n| n.ports.as_ref())
            .map(ports_of_map)
            .unwrap_or_default(),
        created_at: inspect.created.unwrap_or(DateTime::UNIX_EPOCH),
        started_at: engine_state.and_then(|s| s.started_at.as_deref()).and_then(engine_time),
        finished_at: engine_state
            .and_then(|s| s.finished_at.as_deref())
            .and_then(engine_time),
        restart_count: inspect
            .restart_count
            .and_then(|count| u32::try_from(count).ok())
            .unwrap_or_default(),
    }
}

/// The container facts in one list entry. The list carries neither the OOM flag nor the start
/// and finish times; for an ended container the exit code is read from the status text
/// (`Exited (3) 2 seconds ago`).
pub(crate) fn from_summary(summary: &ContainerSummary) -> ContainerState {
    let labels = to_btree(summary.labels.as_ref());
    let state = match summary.state {
        Some(ContainerSummaryStateEnum::CREATED) => RunState::Created,
        Some(ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::STOPPING) => RunState::Running,
        Some(ContainerSummaryStateEnum::PAUSED) => RunState::Paused,
        Some(ContainerSummaryStateEnum::RESTARTING) => RunState::Restarting,
        Some(ContainerSummaryStateEnum::EXITED) => RunState::Exited,
        Some(ContainerSummaryStateEnum::REMOVING) => RunState::Removing,
        Some(ContainerSummaryStateEnum::DEAD) => RunState::Dead,
        Some(ContainerSummaryStateEnum::EMPTY) | None => RunState::Created,
    };
    let mut ports: Vec<PortBinding> = summary
        .ports
        .iter()
        .flatten()
        .filter(|p| matches!(p.typ, Some(PortSummaryTypeEnum::TCP) | None))
        .filter_map(|p| {
            Some(PortBinding {
                container_port: p.private_port,
                host_ip: p.ip.clone().unwrap_or_default(),
                host_port: p.public_port.filter(|port| *port != 0)?,
            })
        })
        .collect();
    ports.sort_by(|a, b| (a.container_port, &a.host_ip).cmp(&(b.container_port, &b.host_ip)));
    ports.dedup();
    ContainerState {
        container_id: summary.id.clone().unwrap_or_default(),
        sandbox_id: sandbox_id_of(&labels),
        labels,
        state,
        exit_code: match state {
            RunState::Exited | RunState::Dead => summary.status.as_deref().and_then(exit_code_in_status),
            _ => None,
        },
        oom_killed: false,
        ip: summary
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .and_then(ip_of),
        ports,
        created_at: summary
            .created
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .unwrap_or(DateTime::UNIX_EPOCH),
        started_at: None,
        finished_at: None,
        restart_count: 0,
    }
}

/// A berth event for an engine event, or `None` for actions berth does not follow.
pub(crate) fn event_of(message: &EventMessage) -> Option<RuntimeEvent> {
    let actor = message.actor.as_ref()?;
    let attributes = actor.attributes.as_ref();
    let attribute = |key: &str| attributes.and_then(|a| a.get(key));
    let kind = match message.action.as_deref()? {
        "start" => EventKind::Start,
        "die" => EventKind::Die {
            exit_code: attribute("exitCode").and_then(|c| c.parse().ok()),
        },
        "oom" => EventKind::Oom,
        "destroy" => EventKind::Destroy,
        "pause" => EventKind::Pause,
        "unpause" => EventKind::Unpause,
        _ => return None,
    };
    Some(RuntimeEvent {
        container_id: actor.id.clone()?,
        sandbox_id: attribute(label_keys::SANDBOX).and_then(|id| SandboxId::parse(id)),
        kind,
    })
}

fn run_state_of(state: &bollard::models::ContainerState) -> RunState {
    match state.status {
        Some(ContainerStateStatusEnum::CREATED) => RunState::Created,
        Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::STOPPING) => RunState::Running,
        Some(ContainerStateStatusEnum::PAUSED) => RunState::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => RunState::Restarting,
        Some(ContainerStateStatusEnum::REMOVING) => RunState::Removing,
        Some(ContainerStateStatusEnum::EXITED) => RunState::Exited,
        Some(ContainerStateStatusEnum::DEAD) => RunState::Dead,
        Some(ContainerStateStatusEnum::EMPTY) | None => {
            if state.dead == Some(true) {
                RunState::Dead
            } else if state.paused == Some(true) {
                RunState::Paused
            } else if state.restarting == Some(true) {
                RunState::Restarting
            } else if state.running == Some(true) {
                RunState::Running
            } else {
                RunState::Created
            }
        }
    }
}

fn to_btree(labels: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    labels
        .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn sandbox_id_of(labels: &BTreeMap<String, String>) -> Option<SandboxId> {
    labels.get(label_keys::SANDBOX).and_then(|id| SandboxId::parse(id))
}

/// The default bridge's address when the container is on it, else the first network's (by name).
fn ip_of(networks: &HashMap<String, EndpointSettings>) -> Option<String> {
    let usable = |settings: &EndpointSettings| settings.ip_address.clone().filter(|ip| !ip.is_empty());
    if let Some(ip) = networks.get("bridge").and_then(usable) {
        return Some(ip);
    }
    let mut names: Vec<&String> = networks.keys().collect();
    names.sort();
    names.into_iter().find_map(|name| networks.get(name).and_then(usable))
}

/// TCP port bindings from `NetworkSettings.Ports` (`{"8080/tcp": [{"HostIp": .., "HostPort": ..}]}`).
fn ports_of_map(map: &PortMap) -> Vec<PortBinding> {
    let mut ports: Vec<PortBinding> = map
        .iter()
        .filter_map(|(key, bindings)| {
            let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            let container_port: u16 = port.parse().ok().filter(|_| proto == "tcp")?;
            Some(bindings.iter().flatten().filter_map(move |b| {
                Some(PortBinding {
                    container_port,
                    host_ip: b.host_ip.clone().unwrap_or_default(),
                    host_port: b.host_port.as_deref()?.parse().ok().filter(|p| *p != 0)?,
                })
            }))
        })
        .flatten()
        .collect();
    ports.sort_by(|a, b| (a.container_port, &a.host_ip).cmp(&(b.container_port, &b.host_ip)));
    ports.dedup();
    ports
}

/// The engine's RFC 3339 timestamps; its zero time (`0001-01-01T00:00:00Z`) means "never".
fn engine_time(text: &str) -> Option<DateTime<Utc>> {
    let time = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    (time > DateTime::UNIX_EPOCH).then_some(time)
}

/// `3` from `Exited (3) 2 seconds ago`.
fn exit_code_in_status(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest.split_once(')')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerConfig, EventActor, NetworkSettings, PortSummary};

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn inspect_of_an_exited_oom_killed_container() {
        let inspect = ContainerInspectResponse {
            id: Some("c1".into()),
            created: DateTime::from_timestamp(1_700_000_000, 0),
            config: Some(ContainerConfig {
                labels: Some(labels(&[("berth.sandbox", "0123456789abcdef"), ("team", "a")])),
                ..Default::default()
            }),
            state: Some(bollard::models::ContainerState {
                status: Some(ContainerStateStatusEnum::EXITED),
                exit_code: Some(137),
                oom_killed: Some(true),
                started_at: Some("2023-11-14T22:13:20.5Z".into()),
                finished_at: Some("2023-11-14T22:13:21Z".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let state = from_inspect(&inspect);
        assert_eq!(state.container_id, "c1");
        assert_eq!(state.sandbox_id, SandboxId::parse("0123456789abcdef"));
        assert_eq!(state.labels.get("team").map(String::as_str), Some("a"));
        assert_eq!(state.state, RunState::Exited);
        assert_eq!(state.exit_code, Some(137));
        assert!(state.oom_killed);
        assert!(state.started_at.is_some() && state.finished_at.is_some());
        assert_eq!(state.ip, None);
        assert!(state.ports.is_empty());
    }

    #[test]
    fn inspect_of_a_running_container_reports_ip_and_ports() {
        let mut ports = PortMap::new();
        ports.insert(
            "8080/tcp".into(),
            Some(vec![bollard::models::PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some("49153".into()),
            }]),
        );
        ports.insert("53/udp".into(), Some(vec![bollard::models::PortBinding::default()]));
        ports.insert("9090/tcp".into(), None);
        let mut networks = HashMap::new();
        networks.insert(
            "bridge".into(),
            EndpointSettings {
                ip_address: Some("172.17.0.2".into()),
                ..Default::default()
            },
        );
        let inspect = ContainerInspectResponse {
            id: Some("c2".into()),
            state: Some(bollard::models::ContainerState {
                status: Some(ContainerStateStatusEnum::RUNNING),
                exit_code: Some(0),
                finished_at: Some("0001-01-01T00:00:00Z".into()),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                ports: Some(ports),
                networks: Some(networks),
                ..Default::default()
            }),
            ..Default::default()
        };
        let state = from_inspect(&inspect);
        assert_eq!(state.state, RunState::Running);
        assert_eq!(state.exit_code, None);
        assert_eq!(state.finished_at, None);
        assert_eq!(state.sandbox_id, None);
        assert_eq!(state.ip.as_deref(), Some("172.17.0.2"));
        assert_eq!(
            state.ports,
            vec![PortBinding {
                container_port: 8080,
                host_ip: "127.0.0.1".into(),
                host_port: 49153
            }]
        );
    }

    #[test]
    fn ip_falls_back_to_the_first_named_network() {
        let mut networks = HashMap::new();
        networks.insert(
            "zeta".into(),
            EndpointSettings {
                ip_address: Some("10.0.1.2".into()),
                ..Default::default()
            },
        );
        networks.insert(
            "alpha".into(),
            EndpointSettings {
                ip_address: Some("10.0.0.2".into()),
                ..Default::default()
            },
        );
        networks.insert(
            "bridge".into(),
            EndpointSettings {
                ip_address: Some(String::new()),
                ..Default::default()
            },
        );
        assert_eq!(ip_of(&networks).as_deref(), Some("10.0.0.2"));
    }

    #[test]
    fn summary_of_an_exited_container_reads_the_exit_code_from_the_status() {
        let summary = ContainerSummary {
            id: Some("c3".into()),
            labels: Some(labels(&[("berth.sandbox", "not-an-id")])),
            state: Some(ContainerSummaryStateEnum::EXITED),
            status: Some("Exited (3) 2 seconds ago".into()),
            created: Some(1_700_000_000),
            ports: Some(vec![
                PortSummary {
                    ip: Some("127.0.0.1".into()),
                    private_port: 80,
                    public_port: Some(32768),
                    typ: Some(PortSummaryTypeEnum::TCP),
                },
                PortSummary {
                    ip: None,
                    private_port: 81,
                    public_port: None,
                    typ: Some(PortSummaryTypeEnum::TCP),
                },
            ]),
            ..Default::default()
        };
        let state = from_summary(&summary);
        assert_eq!(state.state, RunState::Exited);
        assert_eq!(state.exit_code, Some(3));
        assert_eq!(state.sandbox_id, None);
        assert_eq!(
            state.created_at,
            DateTime::from_timestamp(1_700_000_000, 0).expect("valid")
        );
        assert_eq!(
            state.ports,
            vec![PortBinding {
                container_port: 80,
                host_ip: "127.0.0.1".into(),
                host_port: 32768
            }]
        );
    }

    #[test]
    fn events_map_the_followed_actions_only() {
        let event = |action: &str, attrs: &[(&str, &str)]| EventMessage {
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("c4".into()),
                attributes: Some(labels(attrs)),
            }),
            ..Default::default()
        };
        let die = event_of(&event(
            "die",
            &[("exitCode", "3"), ("berth.sandbox", "0123456789abcdef")],
        ))
        .expect("die");
        assert_eq!(die.kind, EventKind::Die { exit_code: Some(3) });
        assert_eq!(die.container_id, "c4");
        assert_eq!(die.sandbox_id, SandboxId::parse("0123456789abcdef"));
        assert_eq!(
            event_of(&event("die", &[])).map(|e| e.kind),
            Some(EventKind::Die { exit_code: None })
        );
        for (action, kind) in [
            ("start", EventKind::Start),
            ("oom", EventKind::Oom),
            ("destroy", EventKind::Destroy),
            ("pause", EventKind::Pause),
            ("unpause", EventKind::Unpause),
        ] {
            assert_eq!(event_of(&event(action, &[])).map(|e| e.kind), Some(kind), "{action}");
        }
        for ignored in [
            "create",
            "attach",
            "exec_create: sh",
            "health_status: healthy",
            "kill",
            "stop",
        ] {
            assert_eq!(event_of(&event(ignored, &[])), None, "{ignored}");
        }
    }

    #[test]
    fn exit_codes_in_status_text() {
        assert_eq!(exit_code_in_status("Exited (0) 1 second ago"), Some(0));
        assert_eq!(exit_code_in_status("Exited (137) About a minute ago"), Some(137));
        assert_eq!(exit_code_in_status("Up 3 seconds"), None);
    }
}
