//! The verbs of the `berth` binary, one module each, and the pieces they share.

pub mod inspect;
pub mod ls;
pub mod rm;
pub mod run;
pub mod serve;
pub mod ttl;

/// An error whose lines were already printed to stderr; the process only has to exit 1.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} failed")]
pub struct AlreadyReported {
    pub failed: usize,
    pub total: usize,
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
}
