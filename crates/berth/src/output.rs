//! Terminal rendering of sandboxes: docker-style tables, human durations, ports, JSON and YAML,
//! and writing to stdout without failing on a closed pipe.

use std::io::Write;

use berth_api::SandboxView;
use berth_core::{Reason, Status};
use chrono::{DateTime, TimeDelta, Utc};
use clap::ValueEnum;
use serde::Serialize;

/// Output formats of listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
    Yaml,
}

/// Output formats of commands that print whole objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DocFormat {
    Json,
    Yaml,
}

/// Columns separate by this much space, as `docker ps` does.
const COLUMN_GAP: &str = "   ";

/// Writes `text` to stdout. A reader that went away (`berth ls | head`) is not an error.
pub fn emit(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes one line to stdout (see [`emit`]).
pub fn emit_line(line: &str) -> std::io::Result<()> {
    emit(&format!("{line}\n"))
}

/// Pretty JSON followed by a newline.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(value).map(|mut text| {
        text.push('\n');
        text
    })
}

/// YAML; the document ends with a newline.
pub fn to_yaml<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_norway::Error> {
    serde_norway::to_string(value)
}

/// Renders `value` as a whole document in `format`.
pub fn document<T: Serialize + ?Sized>(value: &T, format: DocFormat) -> anyhow::Result<String> {
    Ok(match format {
        DocFormat::Json => to_json(value)?,
        DocFormat::Yaml => to_yaml(value)?,
    })
}

/// `5s`, `3m`, `2h`, `4d`: the largest whole unit, like `docker ps`. Negative spans count as zero.
pub fn human_duration(span: TimeDelta) -> String {
    let secs = span.num_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// Whether nothing runs in the sandbox any more and nothing will.
pub fn is_ended(view: &SandboxView) -> bool {
    view.ended_at.is_some() || view.status.parse::<Status>().is_ok_and(Status::is_ended)
}

/// How long ago the sandbox was created.
pub fn age(view: &SandboxView, now: DateTime<Utc>) -> String {
    human_duration(now - view.created_at)
}

/// Time left before expiry: `-` once ended, `expired` when the deadline has passed.
pub fn expires_in(view: &SandboxView, now: DateTime<Utc>) -> String {
    if is_ended(view) {
        return "-".to_owned();
    }
    let left = view.expires_at - now;
    if left <= TimeDelta::zero() {
        "expired".to_owned()
    } else {
        human_duration(left)
    }
}

/// `Running`, or the status with its reason once it has one: `Terminated (expired)`.
pub fn status_text(view: &SandboxView) -> String {
    match (&view.status_reason, view.exit_code) {
        (Some(reason), Some(code)) if reason == Reason::Exited.as_str() => {
            format!("{} (exited {code})", view.status)
        }
        (Some(reason), _) => format!("{} ({reason})", view.status),
        (None, _) => view.status.clone(),
    }
}

/// `127.0.0.1:49153->80/tcp, 127.0.0.1:49154->8080/tcp`; nothing once the sandbox has ended.
pub fn ports(view: &SandboxView) -> String {
    if is_ended(view) {
        return String::new();
    }
    view.ports
        .iter()
        .map(|port| format!("{}:{}->{}/tcp", port.host_ip, port.host_port, port.container_port))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Left-aligned columns as wide as their widest cell, separated by three spaces, with no
/// trailing spaces. Every line ends with a newline.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.chars().count()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let header_row: Vec<String> = headers.iter().map(|header| (*header).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index > 0 {
                line.push_str(COLUMN_GAP);
            }
            line.push_str(cell);
            let width = widths.get(index).copied().unwrap_or(0);
            line.extend(std::iter::repeat_n(' ', width.saturating_sub(cell.chars().count())));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The `berth ls` table.
pub fn sandbox_table(views: &[SandboxView], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|view| {
            vec![
                view.id.clone(),
                view.image.clone(),
                status_text(view),
                age(view, now),
                expires_in(view, now),
                ports(view),
            ]
        })
        .collect();
    render_table(&["ID", "IMAGE", "STATUS", "AGE", "EXPIRES IN", "PORTS"], &rows)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use berth_api::{PortView, ResourcesView};

    use super::*;

    pub(crate) fn view(id: &str, status: &str, created_at: DateTime<Utc>, expires_at: DateTime<Utc>) -> SandboxView {
        SandboxView {
            id: id.to_owned(),
            status: status.to_owned(),
            status_reason: None,
            status_message: None,
            exit_code: None,
            oom_killed: false,
            image: "busybox:latest".to_owned(),
            command: None,
            labels: BTreeMap::new(),
            owner: "anonymous".to_owned(),
            resources: ResourcesView {
                cpu: "1".to_owned(),
                memory: "512Mi".to_owned(),
                disk: None,
            },
            ports: Vec::new(),
            ip: None,
            engine: "local".to_owned(),
            container_id: None,
            created_at,
            started_at: None,
            expires_at,
            ended_at: None,
            lifetime_ends_at: None,
            idle_timeout: None,
            hibernate_after: None,
            ttl_counts_idle: false,
            asleep_since: None,
            restart: berth_core::Restart::Never,
            restarts: 0,
            volumes: Vec::new(),
            template: None,
            runtime: None,
            hardening: Default::default(),
            network: Default::default(),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn human_durations_use_the_largest_whole_unit() {
        let cases = [
            (0, "0s"),
            (5, "5s"),
            (59, "59s"),
            (60, "1m"),
            (199, "3m"),
            (3599, "59m"),
            (3600, "1h"),
            (2 * 3600 + 1799, "2h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (10 * 86_400, "10d"),
            (-30, "0s"),
        ];
        for (secs, expected) in cases {
            assert_eq!(human_duration(TimeDelta::seconds(secs)), expected, "{secs}s");
        }
        // Sub-second remainders are truncated, not rounded up.
        assert_eq!(human_duration(TimeDelta::milliseconds(5999)), "5s");
    }

    #[test]
    fn expiry_shows_time_left_expired_or_dash() {
        let now = at("2026-01-01T12:00:00Z");
        let running = view("a", "Running", at("2026-01-01T11:57:00Z"), at("2026-01-01T12:29:30Z"));
        assert_eq!(age(&running, now), "3m");
        assert_eq!(expires_in(&running, now), "29m");

        let overdue = view("b", "Running", at("2026-01-01T11:00:00Z"), at("2026-01-01T11:59:59Z"));
        assert_eq!(expires_in(&overdue, now), "expired");
        let exactly_now = view("b", "Stopping", at("2026-01-01T11:00:00Z"), now);
        assert_eq!(expires_in(&exactly_now, now), "expired");

        let mut ended = view(
            "c",
            "Terminated",
            at("2026-01-01T10:00:00Z"),
            at("2026-01-01T13:00:00Z"),
        );
        assert_eq!(expires_in(&ended, now), "-");
        ended.status = "Running".to_owned();
        ended.ended_at = Some(now);
        assert_eq!(expires_in(&ended, now), "-", "an ended_at alone marks it ended");
        assert_eq!(expires_in(&view("d", "Failed", now, now), now), "-");

        // A clock behind the server's must not show a negative age.
        let future = view("e", "Pending", at("2026-01-01T12:00:05Z"), at("2026-01-01T13:00:00Z"));
        assert_eq!(age(&future, now), "0s");
    }

    #[test]
    fn status_shows_reason_and_exit_code() {
        let now = at("2026-01-01T12:00:00Z");
        let mut sandbox = view("a", "Running", now, now);
        assert_eq!(status_text(&sandbox), "Running");
        sandbox.status = "Terminated".to_owned();
        sandbox.status_reason = Some("expired".to_owned());
        assert_eq!(status_text(&sandbox), "Terminated (expired)");
        sandbox.status = "Failed".to_owned();
        sandbox.status_reason = Some("exited".to_owned());
        sandbox.exit_code = Some(3);
        assert_eq!(status_text(&sandbox), "Failed (exited 3)");
    }

    #[test]
    fn ports_render_like_docker() {
        let now = at("2026-01-01T12:00:00Z");
        let mut sandbox = view("a", "Running", now, now);
        assert_eq!(ports(&sandbox), "");
        sandbox.ports = vec![
            PortView {
                container_port: 80,
                host_ip: "127.0.0.1".to_owned(),
                host_port: 49153,
            },
            PortView {
                container_port: 8080,
                host_ip: "0.0.0.0".to_owned(),
                host_port: 49154,
            },
        ];
        assert_eq!(ports(&sandbox), "127.0.0.1:49153->80/tcp, 0.0.0.0:49154->8080/tcp");
        sandbox.status = "Terminated".to_owned();
        assert_eq!(ports(&sandbox), "", "an ended sandbox publishes nothing");
    }

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let table = render_table(
            &["ID", "NAME", "X"],
            &[
                vec!["1".into(), "short".into(), "".into()],
                vec!["22".into(), "a longer one".into(), "z".into()],
            ],
        );
        assert_eq!(table, "ID   NAME           X\n1    short\n22   a longer one   z\n");
        assert_eq!(render_table(&["ID", "IMAGE"], &[]), "ID   IMAGE\n");
        // Width counts characters, not bytes.
        let table = render_table(&["A", "B"], &[vec!["é".into(), "x".into()]]);
        assert_eq!(table, "A   B\né   x\n");
    }

    #[test]
    fn sandbox_table_has_the_ps_columns() {
        let now = at("2026-01-01T12:00:00Z");
        let mut first = view(
            "0123456789abcdef",
            "Running",
            at("2026-01-01T11:59:55Z"),
            at("2026-01-01T14:00:00Z"),
        );
        first.ports = vec![PortView {
            container_port: 80,
            host_ip: "127.0.0.1".to_owned(),
            host_port: 49153,
        }];
        let mut second = view(
            "fedcba9876543210",
            "Terminated",
            at("2026-01-01T09:00:00Z"),
            at("2026-01-01T09:30:00Z"),
        );
        second.status_reason = Some("deleted".to_owned());
        second.image = "alpine".to_owned();
        let table = sandbox_table(&[first, second], now);
        let expected = "\
ID                 IMAGE            STATUS                 AGE   EXPIRES IN   PORTS
0123456789abcdef   busybox:latest   Running                5s    2h           127.0.0.1:49153->80/tcp
fedcba9876543210   alpine           Terminated (deleted)   3h    -
";
        assert_eq!(table, expected);
    }

    #[test]
    fn documents_render_as_json_arrays_and_yaml() {
        let now = at("2026-01-01T12:00:00Z");
        let views = vec![view("0123456789abcdef", "Running", now, now)];
        let json = document(&views, DocFormat::Json).unwrap();
        assert!(json.starts_with("[\n  {\n    \"id\": \"0123456789abcdef\""), "{json}");
        assert!(json.ends_with("]\n"));
        let back: Vec<SandboxView> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, views);

        let yaml = document(&views, DocFormat::Yaml).unwrap();
        assert!(yaml.starts_with("- id: 0123456789abcdef\n"), "{yaml}");
        assert!(yaml.contains("  created_at: 2026-01-01T12:00:00Z\n"), "{yaml}");
        let back: Vec<SandboxView> = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(back, views);
    }
}
