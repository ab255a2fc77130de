//! Variable interpolation of compose values (`${VAR}`, `$VAR`, defaults, required variables, `$$`).
//!
//! Compose interpolates after the YAML is parsed, value by value, so a substituted value can
//! never change the document's structure and comments are never interpolated; berth does the
//! same. Variables come only from the map the caller gives (an instance's environment
//! variables), never from berth's own process environment.
//!
//! Forms, as compose defines them:
//!
//! | form | result |
//! |---|---|
//! | `$VAR`, `${VAR}` | the value, or empty when unset (compose's rule) |
//! | `${VAR:-default}` | `default` when unset **or empty** |
//! | `${VAR-default}` | `default` when unset |
//! | `${VAR:?message}` | error naming `VAR` and `message` when unset or empty |
//! | `${VAR?message}` | error naming `VAR` and `message` when unset |
//! | `${VAR:+other}` | `other` when set and non-empty, else empty |
//! | `${VAR+other}` | `other` when set, else empty |
//! | `$$` | a literal `$` |
//!
//! Not supported: substitutions nested inside a default or message (`${A:-${B}}`). They are
//! refused with an error rather than half-expanded.

use std::collections::BTreeMap;

/// Why one string could not be interpolated; the caller adds where the string is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InterpolationError {
    /// A `${` without its `}`; `fragment` is the text from the `${` to the end of its line.
    Unterminated { fragment: String },
    /// `${VAR:?message}` or `${VAR?message}` with the variable missing.
    Required { variable: String, message: String },
    /// Anything else compose would call an invalid template, explained in `reason`.
    Invalid { reason: String },
}

/// Interpolates every substitution in `text` with `variables`.
pub(crate) fn interpolate(text: &str, variables: &BTreeMap<String, String>) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(braced) = after.strip_prefix('{') {
            let Some(close) = braced.find('}') else {
                let fragment = rest[dollar..].lines().next().unwrap_or_default().to_string();
                return Err(InterpolationError::Unterminated { fragment });
            };
            out.push_str(&substitute_braced(&braced[..close], variables)?);
            rest = &braced[close + 1..];
        } else {
            let name_len = name_length(after);
            if name_len == 0 {
                return Err(InterpolationError::Invalid {
                    reason: format!(
                        "`${}` is not a substitution: `$` must be followed by a variable name or `{{`; write `$$` for a literal `$`",
                        after.chars().next().map(String::from).unwrap_or_default()
                    ),
                });
            }
            out.push_str(
                variables
                    .get(&after[..name_len])
                    .map(String::as_str)
                    .unwrap_or_default(),
            );
            rest = &after[name_len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The length of the variable name `text` starts with: `[A-Za-z_][A-Za-z0-9_]*`, or 0.
fn name_length(text: &str) -> usize {
    let mut length = 0;
    for (index, byte) in text.bytes().enumerate() {
        let allowed = byte == b'_' || byte.is_ascii_alphabetic() || (index > 0 && byte.is_ascii_digit());
        if !allowed {
            break;
        }
        length = index + 1;
    }
    length
}

/// Expands the inside of one `${…}`.
fn substitute_braced(inner: &str, variables: &BTreeMap<String, String>) -> Result<String, InterpolationError> {
    // The first `}` closes the substitution, so a nested `${` would be cut in half: refuse it.
    if inner.contains("${") {
        return Err(InterpolationError::Invalid {
            reason: format!("`${{{inner}}}` nests a substitution, which berth does not support; use a plain default"),
        });
    }
    let name_len = name_length(inner);
    let (name, operator) = inner.split_at(name_len);
    if name.is_empty() {
        return Err(InterpolationError::Invalid {
            reason: format!("`${{{inner}}}` does not start with a variable name (letters, digits and `_`)"),
        });
    }
    let value = variables.get(name).map(String::as_str);
    let set_and_not_empty = value.is_some_and(|v| !v.is_empty());
    let required = |message: &str| InterpolationError::Required {
        variable: name.to_string(),
        message: message.to_string(),
    };
    let expanded = if operator.is_empty() {
        value.unwrap_or_default().to_string()
    } else if let Some(default) = operator.strip_prefix(":-") {
        if set_and_not_empty {
            value.unwrap_or_default()
        } else {
            default
        }
        .to_string()
    } else if let Some(default) = operator.strip_prefix('-') {
        value.unwrap_or(default).to_string()
    } else if let Some(message) = operator.strip_prefix(":?") {
        if !set_and_not_empty {
            return Err(required(message));
        }
        value.unwrap_or_default().to_string()
    } else if let Some(message) = operator.strip_prefix('?') {
        value.ok_or_else(|| required(message))?.to_string()
    } else if let Some(other) = operator.strip_prefix(":+") {
        if set_and_not_empty { other } else { "" }.to_string()
    } else if let Some(other) = operator.strip_prefix('+') {
        if value.is_some() { other } else { "" }.to_string()
    } else {
        return Err(InterpolationError::Invalid {
            reason: format!(
                "`${{{inner}}}` is not a substitution berth knows: use ${{VAR}}, ${{VAR:-default}}, ${{VAR-default}}, ${{VAR:?message}} or ${{VAR?message}}"
            ),
        });
    };
    Ok(expanded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("NAME".to_string(), "berth".to_string()),
            ("EMPTY".to_string(), String::new()),
        ])
    }

    fn run(text: &str) -> Result<String, InterpolationError> {
        interpolate(text, &vars())
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(run("no substitutions here").unwrap(), "no substitutions here");
    }

    #[test]
    fn braced_and_bare_forms_expand() {
        assert_eq!(run("${NAME}:latest").unwrap(), "berth:latest");
        assert_eq!(run("$NAME/x").unwrap(), "berth/x");
        assert_eq!(run("a-$NAME-b").unwrap(), "a-berth-b");
    }

    #[test]
    fn unset_variables_expand_to_empty() {
        assert_eq!(run("[${MISSING}]").unwrap(), "[]");
        assert_eq!(run("[$MISSING]").unwrap(), "[]");
    }

    #[test]
    fn colon_dash_default_covers_unset_and_empty() {
        assert_eq!(run("${MISSING:-d}").unwrap(), "d");
        assert_eq!(run("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(run("${NAME:-d}").unwrap(), "berth");
    }

    #[test]
    fn dash_default_covers_only_unset() {
        assert_eq!(run("${MISSING-d}").unwrap(), "d");
        assert_eq!(run("${EMPTY-d}").unwrap(), "");
        assert_eq!(run("${NAME-d}").unwrap(), "berth");
    }

    #[test]
    fn defaults_may_contain_colons_and_spaces() {
        assert_eq!(run("${MISSING:-127.0.0.1:80 x}").unwrap(), "127.0.0.1:80 x");
    }

    #[test]
    fn colon_question_requires_a_non_empty_value() {
        let error = run("${EMPTY:?set EMPTY please}").unwrap_err();
        assert_eq!(
            error,
            InterpolationError::Required {
                variable: "EMPTY".into(),
                message: "set EMPTY please".into()
            }
        );
        assert!(run("${MISSING:?m}").is_err());
        assert_eq!(run("${NAME:?m}").unwrap(), "berth");
    }

    #[test]
    fn question_requires_a_set_value() {
        assert_eq!(run("${EMPTY?m}").unwrap(), "");
        assert_eq!(
            run("${MISSING?need it}").unwrap_err(),
            InterpolationError::Required {
                variable: "MISSING".into(),
                message: "need it".into()
            }
        );
    }

    #[test]
    fn plus_forms_give_the_alternative_when_set() {
        assert_eq!(run("${NAME:+yes}").unwrap(), "yes");
        assert_eq!(run("${EMPTY:+yes}").unwrap(), "");
        assert_eq!(run("${EMPTY+yes}").unwrap(), "yes");
        assert_eq!(run("${MISSING+yes}").unwrap(), "");
    }

    #[test]
    fn double_dollar_is_a_literal_dollar() {
        assert_eq!(run("cost $$5 and $${NAME}").unwrap(), "cost $5 and ${NAME}");
    }

    #[test]
    fn unterminated_brace_is_an_error_with_its_fragment() {
        assert_eq!(
            run("x ${NAME\nnext").unwrap_err(),
            InterpolationError::Unterminated {
                fragment: "${NAME".into()
            }
        );
    }

    #[test]
    fn nested_substitutions_are_refused() {
        assert!(matches!(run("${A:-${NAME}}"), Err(InterpolationError::Invalid { .. })));
    }

    #[test]
    fn malformed_substitutions_are_refused() {
        assert!(matches!(run("${}"), Err(InterpolationError::Invalid { .. })));
        assert!(matches!(run("${1X}"), Err(InterpolationError::Invalid { .. })));
        assert!(matches!(run("${NAME:x}"), Err(InterpolationError::Invalid { .. })));
        assert!(matches!(run("price: $5"), Err(InterpolationError::Invalid { .. })));
        assert!(matches!(run("trailing $"), Err(InterpolationError::Invalid { .. })));
    }

    #[test]
    fn variables_never_come_from_the_process_environment() {
        // PATH is set in every test process; berth must not see it.
        assert_eq!(run("[${PATH}]").unwrap(), "[]");
    }
}
