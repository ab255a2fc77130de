//! The one walker of error chains: every cause of an error in turn, and the chain in one line.

use std::error::Error;

/// `error` and then each of its causes, outermost first.
pub fn causes<'a>(error: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    let mut next = Some(error);
    std::iter::from_fn(move || {
        let current = next?;
        next = current.source();
        Some(current)
    })
}

/// The chain in one line, each cause once: "error sending request…: connection refused".
pub fn describe(error: &(dyn Error + 'static)) -> String {
    let mut text = String::new();
    for cause in causes(error) {
        let cause_text = cause.to_string();
        if text.is_empty() {
            text = cause_text;
        } else if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(&'static str, Option<Box<Wrapped>>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|inner| inner as &(dyn Error + 'static))
        }
    }

    #[test]
    fn each_cause_is_named_once_outermost_first() {
        let error = Wrapped(
            "error sending request",
            Some(Box::new(Wrapped(
                "connect failed",
                Some(Box::new(Wrapped("connection refused", None))),
            ))),
        );
        assert_eq!(causes(&error).count(), 3);
        assert_eq!(
            describe(&error),
            "error sending request: connect failed: connection refused"
        );
        let repeating = Wrapped(
            "connect failed: connection refused",
            Some(Box::new(Wrapped("connection refused", None))),
        );
        assert_eq!(describe(&repeating), "connect failed: connection refused");
    }
}
