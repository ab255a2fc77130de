//! The verbs of the `berth` binary, one module each, and the pieces they share.

use std::future::Future;

use crate::output::DocFormat;

pub mod access;
pub mod cp;
pub mod egress;
pub mod env;
pub mod events;
pub mod exec;
pub mod fork;
pub mod healthcheck;
pub mod inspect;
pub mod logs;
pub mod ls;
pub mod pause;
pub mod pool;
pub mod resume;
pub mod rm;
pub mod run;
pub mod serve;
pub mod shell;
pub mod snapshot;
pub mod stats;
pub mod template;
pub mod ttl;
pub mod volume;

/// An error whose lines were already printed to stderr; the process only has to exit 1.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} failed")]
pub struct AlreadyReported {
    pub failed: usize,
    pub total: usize,
}

/// A usage error found after parsing (e.g. `berth cp` with two local paths): printed as one
/// `berth: …` line, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs `action` on each id in turn, printing each id it succeeded for and going on after a
/// failure (reported as one line); exits 1 if any failed. An unreachable server stops at once.
pub async fn for_each_id<F, Fut, T>(ids: &[String], mut action: F) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<T, berth_client::ClientError>>,
{
    let mut failed = 0;
    for id in ids {
        match action(id.clone()).await {
            Ok(_) => crate::output::emit_line(id)?,
            Err(error) if error.is_connect() => return Err(error.into()),
            Err(error) => {
                report(&error);
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(AlreadyReported {
            failed,
            total: ids.len(),
        }
        .into());
    }
    Ok(())
}

/// `inspect` as `docker inspect` does it: fetches each reference in turn, prints every object
/// found as one document in `format`, then one error line per reference that was not found;
/// exits 1 if any failed. An unreachable server stops at once.
pub async fn inspect_each<F, Fut, T>(references: &[String], format: DocFormat, mut fetch: F) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<T, berth_client::ClientError>>,
    T: serde::Serialize,
{
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for reference in references {
        match fetch(reference.clone()).await {
            Ok(object) => found.push(object),
            // Unreachable server: every other reference would fail the same way.
            Err(error) if error.is_connect() => return Err(error.into()),
            Err(error) => failures.push(error),
        }
    }
    crate::output::emit(&crate::output::document(&found, format)?)?;
    if failures.is_empty() {
        return Ok(());
    }
    for failure in &failures {
        report(failure);
    }
    Err(AlreadyReported {
        failed: failures.len(),
        total: references.len(),
    }
    .into())
}

/// Parses `KEY=VALUE` (the value may contain `=` and be empty; the key may not be empty).
pub fn parse_key_value(input: &str) -> Result<(String, String), String> {
    match input.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        Some(_) => Err("the key before `=` is empty; expected KEY=VALUE".to_owned()),
        None => Err("no `=` in it; expected KEY=VALUE".to_owned()),
    }
}

/// Prints one `berth: <message>` line to stderr.
pub fn report(message: &dyn std::fmt::Display) {
    eprintln!("berth: {}", one_line(&message.to_string()));
}

/// Folds a message onto one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A message folded onto one line and cut to at most `max` characters (ending in `…` when cut),
/// so that a long error does not stretch a table.
pub fn shorten(text: &str, max: usize) -> String {
    let line = one_line(text);
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_split_at_the_first_equals() {
        assert_eq!(parse_key_value("A=1"), Ok(("A".into(), "1".into())));
        assert_eq!(parse_key_value("A="), Ok(("A".into(), "".into())));
        assert_eq!(parse_key_value("URL=a=b=c"), Ok(("URL".into(), "a=b=c".into())));
        assert!(parse_key_value("A").unwrap_err().contains("expected KEY=VALUE"));
        assert!(parse_key_value("=1").unwrap_err().contains("key before `=` is empty"));
    }

    #[test]
    fn messages_fold_onto_one_line() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
    }

    #[test]
    fn long_messages_are_cut_with_an_ellipsis() {
        assert_eq!(shorten("short\n text", 10), "short text");
        assert_eq!(shorten("exactly 10", 10), "exactly 10");
        assert_eq!(shorten("one two three", 9), "one two…");
        assert_eq!(shorten("ééééé", 3), "éé…");
    }
}
