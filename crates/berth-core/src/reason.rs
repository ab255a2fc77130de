//! Why a sandbox is in its status (`status_reason`): the [`Reason`] enum and its stable wire
//! strings, which clients match on and the store keeps.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a sandbox ended (or is stopping). Each has a stable snake_case string, the form the API
/// reports and the store keeps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Its time to live ran out.
    Expired,
    /// A client deleted it.
    Deleted,
    /// Its container disappeared from the engine behind berth's back.
    ContainerLost,
    /// Its main process exited by itself (see `exit_code`).
    Exited,
    /// The kernel killed it for exceeding its memory limit.
    OomKilled,
    /// The engine could not find or pull its image.
    ImageNotFound,
    /// The engine refused or failed the create; `status_message` says why.
    CreateFailed,
    /// The server stopped while creating it, before its container existed.
    CreateInterrupted,
    /// The container was made but never started (the server stopped between the two), and
    /// starting it afterwards failed; `status_message` says why.
    StartFailed,
    /// The spec's readiness probe did not pass within its timeout; the container was removed.
    ReadinessTimeout,
    /// An idle sandbox of a warm pool, replaced (outdated, idle too long, or its pool shrank).
    Recycled,
    /// Paused by berth after its `idle_timeout` without a request that needs it; the next one
    /// wakes it.
    Idle,
    /// A reason this build does not know, kept verbatim: a record written by another berth
    /// version sharing the store stays readable and is written back unchanged.
    Unrecognised(String),
}

impl Reason {
    /// Every reason this build writes.
    pub const KNOWN: [Reason; 12] = [
        Reason::Expired,
        Reason::Deleted,
        Reason::ContainerLost,
        Reason::Exited,
        Reason::OomKilled,
        Reason::ImageNotFound,
        Reason::CreateFailed,
        Reason::CreateInterrupted,
        Reason::StartFailed,
        Reason::ReadinessTimeout,
        Reason::Recycled,
        Reason::Idle,
    ];

    /// The stable string: `expired`, `deleted`, `container_lost`, ….
    pub fn as_str(&self) -> &str {
        match self {
            Reason::Expired => "expired",
            Reason::Deleted => "deleted",
            Reason::ContainerLost => "container_lost",
            Reason::Exited => "exited",
            Reason::OomKilled => "oom_killed",
            Reason::ImageNotFound => "image_not_found",
            Reason::CreateFailed => "create_failed",
            Reason::CreateInterrupted => "create_interrupted",
            Reason::StartFailed => "start_failed",
            Reason::ReadinessTimeout => "readiness_timeout",
            Reason::Recycled => "recycled",
            Reason::Idle => "idle",
            Reason::Unrecognised(text) => text,
        }
    }

    /// The reason a string names; one this build does not know is [`Reason::Unrecognised`].
    pub fn from_wire(text: &str) -> Reason {
        Reason::KNOWN
            .into_iter()
            .find(|known| known.as_str() == text)
            .unwrap_or_else(|| Reason::Unrecognised(text.to_owned()))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Reason::from_wire(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_are_the_stable_ones_clients_match_on() {
        let strings: Vec<&str> = Reason::KNOWN.iter().map(Reason::as_str).collect();
        assert_eq!(
            strings,
            [
                "expired",
                "deleted",
                "container_lost",
                "exited",
                "oom_killed",
                "image_not_found",
                "create_failed",
                "create_interrupted",
                "start_failed",
                "readiness_timeout",
                "recycled",
                "idle",
            ]
        );
    }

    #[test]
    fn every_reason_round_trips_through_json_as_a_plain_string() {
        for reason in Reason::KNOWN {
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
            assert_eq!(serde_json::from_str::<Reason>(&json).unwrap(), reason);
        }
    }

    #[test]
    fn an_unknown_reason_is_kept_verbatim() {
        let reason: Reason = serde_json::from_str("\"evicted_by_a_newer_berth\"").unwrap();
        assert_eq!(reason, Reason::Unrecognised("evicted_by_a_newer_berth".into()));
        assert_eq!(serde_json::to_string(&reason).unwrap(), "\"evicted_by_a_newer_berth\"");
    }
}
