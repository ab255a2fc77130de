//! The sandbox status machine: `Pending → Creating → Running ⇄ Paused → Stopping → Terminated`, an idle-paused sandbox `Hibernated` and woken to `Running`, and `Failed` from anywhere.

use serde::{Deserialize, Serialize};

/// Where a sandbox is in its life. `Terminated` and `Failed` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Status {
    Pending,
    Creating,
    Running,
    Paused,
    /// Stopped by berth after its `hibernate_after` while idle-paused: its filesystem kept, its
    /// memory freed; the next request that needs it starts it again.
    Hibernated,
    Stopping,
    Terminated,
    Failed,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Pending,
        Status::Creating,
        Status::Running,
        Status::Paused,
        Status::Hibernated,
        Status::Stopping,
        Status::Terminated,
        Status::Failed,
    ];

    /// `Terminated` or `Failed`: nothing runs and nothing will.
    pub fn is_ended(self) -> bool {
        matches!(self, Status::Terminated | Status::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "Pending",
            Status::Creating => "Creating",
            Status::Running => "Running",
            Status::Paused => "Paused",
            Status::Hibernated => "Hibernated",
            Status::Stopping => "Stopping",
            Status::Terminated => "Terminated",
            Status::Failed => "Failed",
        }
    }

    /// Whether the machine allows moving from `self` to `next`. Ended statuses are final;
    /// `Failed` is reachable from every live status.
    pub fn can_become(self, next: Status) -> bool {
        use Status::*;
        if self.is_ended() {
            return false;
        }
        match (self, next) {
            (_, Failed) => true,
            (Pending, Creating) => true,
            (Pending | Creating, Running) => true,
            (Running, Paused) | (Paused, Running) => true,
            (Paused, Hibernated) | (Hibernated, Running) => true,
            (Pending | Creating | Running | Paused | Hibernated, Stopping) => true,
            (Stopping, Terminated) => true,
            // A sandbox that exits on its own with code 0 ends without passing through Stopping.
            (Running | Paused, Terminated) => true,
            _ => false,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown status `{s}`; expected one of {}",
                    Status::ALL.map(Status::as_str).join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_statuses_are_final() {
        for from in [Status::Terminated, Status::Failed] {
            for to in Status::ALL {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn failed_is_reachable_from_every_live_status() {
        for from in Status::ALL.into_iter().filter(|s| !s.is_ended()) {
            assert!(from.can_become(Status::Failed), "{from}");
        }
    }

    #[test]
    fn a_stopping_sandbox_never_runs_again() {
        assert!(!Status::Stopping.can_become(Status::Running));
        assert!(!Status::Stopping.can_become(Status::Paused));
    }

    #[test]
    fn only_an_idle_paused_sandbox_hibernates_and_a_hibernated_one_only_wakes_or_ends() {
        for from in Status::ALL.into_iter().filter(|s| *s != Status::Paused) {
            assert!(!from.can_become(Status::Hibernated), "{from}");
        }
        let next: Vec<Status> = Status::ALL
            .into_iter()
            .filter(|to| Status::Hibernated.can_become(*to))
            .collect();
        assert_eq!(next, [Status::Running, Status::Stopping, Status::Failed]);
    }

    #[test]
    fn parses_case_insensitively() {
        assert_eq!("running".parse::<Status>(), Ok(Status::Running));
        assert!("gone".parse::<Status>().unwrap_err().contains("Terminated"));
    }
}
