//! `berth logs`: the output of a sandbox's main process (stdout and stderr, as the engine
//! recorded them), optionally followed as it is written.

use anyhow::anyhow;
use berth_api::NumberOrString;
use berth_client::{BerthClient, LogsQuery};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use clap::Args;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the sandbox ends (or ctrl-c)
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines (`all` for everything)
    #[arg(long, value_name = "N", value_parser = parse_tail)]
    pub tail: Option<Tail>,
    /// Only output since this time: RFC 3339 (2025-01-02T15:04:05Z) or a duration ago (10m, 1h30m)
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Prefix each line with the time it was written
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Sandbox id
    #[arg(value_name = "ID")]
    pub id: String,
}

/// `--tail`: a number of lines, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    All,
    Lines(u64),
}

fn parse_tail(text: &str) -> Result<Tail, String> {
    if text.eq_ignore_ascii_case("all") {
        return Ok(Tail::All);
    }
    text.parse()
        .map(Tail::Lines)
        .map_err(|_| "expected a number of lines or `all`".to_owned())
}

/// An RFC 3339 instant, or a duration counted back from now.
fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    parse_since_at(text, Utc::now())
}

fn parse_since_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(instant.with_timezone(&Utc));
    }
    let ago = berth_core::units::parse_duration(&NumberOrString::String(text.to_owned()))
        .map_err(|_| "expected an RFC 3339 time such as 2025-01-02T15:04:05Z or a duration such as 10m".to_owned())?;
    let ago = TimeDelta::from_std(ago).map_err(|_| "the duration is too long".to_owned())?;
    now.checked_sub_signed(ago)
        .ok_or_else(|| "the duration is too long".to_owned())
}

/// The query `args` stand for.
pub fn build_query(args: &LogsArgs) -> LogsQuery {
    LogsQuery {
        follow: args.follow,
        tail: match args.tail {
            Some(Tail::Lines(lines)) => Some(lines),
            Some(Tail::All) | None => None,
        },
        since: args
            .since
            .map(|since| since.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        timestamps: args.timestamps,
    }
}

pub async fn run(client: &BerthClient, args: &LogsArgs) -> anyhow::Result<()> {
    let mut body = client.logs(&args.id, &build_query(args)).await?;
    let mut stdout = tokio::io::stdout();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        let written = async {
            stdout.write_all(&chunk).await?;
            stdout.flush().await
        };
        match written.await {
            Ok(()) => {}
            // The reader went away (`berth logs ID | head`): done.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(error) => return Err(anyhow!("cannot write the logs: {error}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        logs: LogsArgs,
    }

    fn parse(args: &[&str]) -> Result<LogsArgs, clap::Error> {
        TestCli::try_parse_from(std::iter::once("logs").chain(args.iter().copied())).map(|cli| cli.logs)
    }

    #[test]
    fn flags_become_the_query() {
        let args = parse(&[
            "-f",
            "--tail",
            "100",
            "-t",
            "--since",
            "2025-01-02T03:04:05+01:00",
            "abc",
        ])
        .unwrap();
        assert_eq!(args.id, "abc");
        assert_eq!(
            build_query(&args),
            LogsQuery {
                follow: true,
                tail: Some(100),
                since: Some("2025-01-02T02:04:05Z".into()),
                timestamps: true,
            }
        );
        let args = parse(&["--tail", "all", "abc"]).unwrap();
        assert_eq!(build_query(&args), LogsQuery::default());
    }

    #[test]
    fn since_takes_a_time_or_a_duration_ago() {
        let now = DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_since_at("10m", now).unwrap().to_rfc3339(),
            "2025-06-01T11:50:00+00:00"
        );
        assert_eq!(
            parse_since_at("1h30m", now).unwrap().to_rfc3339(),
            "2025-06-01T10:30:00+00:00"
        );
        assert!(parse_since_at("yesterday", now).unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [&["--tail", "-1", "abc"][..], &["--since", "soon", "abc"], &[]] {
            assert_eq!(parse(args).unwrap_err().exit_code(), 2, "{args:?}");
        }
    }
}
