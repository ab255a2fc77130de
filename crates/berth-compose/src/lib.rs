//! The compose-file model: a compose YAML document turned into a validated, engine-neutral
//! [`StackPlan`] that berth creates through the Engine API itself (no `docker compose` binary).
//!
//! [`plan`] runs four steps, in the order compose itself uses:
//! 1. parse the YAML (anchors and `<<` merge keys resolved) and drop `x-*` extension fields,
//!    at the top level and in services, as compose ignores them;
//! 2. interpolate every string value with the caller's variables (the `interpolate` module
//!    lists the forms; nested substitutions in defaults are not supported);
//! 3. check every key against what berth implements, and refuse the file with ONE error
//!    listing every offending path when anything is left (never silently ignored);
//! 4. type the document with `docker-compose-types` and build the plan: ports, named volumes,
//!    resources, healthchecks, the main service and a start order of `depends_on`.
//!
//! # What berth supports
//!
//! | key | decision | why |
//! |---|---|---|
//! | `version`, `name` | accepted, unused | `version` is obsolete; berth names each stack itself |
//! | `x-*` (top level and in services) | ignored | compose's own rule for extension fields |
//! | `services` | supported | |
//! | `volumes` (top level) | supported without options | berth creates one volume per name per stack; `driver`, `driver_opts`, `external`, `labels`, `name` are refused: they reach host storage or other stacks |
//! | `networks` (top level, service) | only absent or `default` without options | berth gives each stack one private network where service names resolve |
//! | `secrets`, `configs`, `include` | refused | they read host files |
//! | `image` | supported, required | berth does not build |
//! | `command`, `entrypoint` | supported | a string is split like a shell would, without running one (compose's rule) |
//! | `environment` | supported (list and map) | a name without a value takes the caller's variable, or is left out |
//! | `ports` | supported | the container port is recorded; berth chooses the host address and port; `udp` and ranges are refused |
//! | `expose` | accepted, no effect | every port is reachable on the stack's private network anyway |
//! | `volumes` (service) | named volumes only (`name:/path[:ro\|rw]`, or `type: volume`) | bind mounts, anonymous volumes, `tmpfs` and other types are refused: berth never gives sandboxes host access |
//! | `depends_on` | supported (list, or map with `condition`) | `required` and `restart` are refused |
//! | `healthcheck` | `test`, `interval`, `timeout`, `retries`, `start_period` | `disable` and `start_interval` are refused |
//! | `labels` | supported (list and map) | `aenv.main=true` marks the main service |
//! | `deploy` | `resources.limits.cpus`/`memory`, `replicas: 1` | reservations, devices, more replicas, placement, restart and update policies are refused |
//! | `restart` | supported | `no`, `always`, `on-failure[:N]`, `unless-stopped` |
//! | `working_dir`, `user` | supported | |
//! | `build` | refused | build the image first |
//! | `privileged`, `cap_add`, `devices`, `pid`, `ipc`, `network_mode`, `userns_mode`, `cgroup_parent`, `security_opt`, `sysctls` | refused | host access or weaker isolation than berth's hardening |
//! | `extends`, `profiles`, `env_file`, `links`, `external_links`, `extra_hosts`, `container_name`, `hostname` | refused | host files, fixed names that collide between stacks, or network wiring berth does not do |
//! | `tmpfs`, `ulimits`, `read_only`, `cap_drop`, `init`, `tty`, `stdin_open`, `stop_signal`, `stop_grace_period`, `logging`, `shm_size`, `group_add`, `mem_limit`, `cpus`, `pull_policy`, `platform`, … | refused | not implemented yet; refusing them keeps a file from running differently than it says |
//!
//! Any key not in the table is refused too: the check is an allowlist.

mod convert;
mod document;
mod error;
mod interpolate;
mod order;
mod words;

pub use berth_core::stack::{Condition, Dependency, Healthcheck, RestartPolicy, ServicePlan, StackPlan, VolumeMount};
pub use convert::MAIN_SERVICE_LABEL;
pub use error::ComposeError;

use std::collections::BTreeMap;

/// Parses, interpolates, checks and plans a compose file.
///
/// `variables` are the only source of `${VAR}` values (an instance's environment variables);
/// berth's own process environment is never read.
pub fn plan(yaml: &str, variables: &BTreeMap<String, String>) -> Result<StackPlan, ComposeError> {
    let document = document::prepare(yaml, variables)?;
    convert::plan_document(document, variables)
}
