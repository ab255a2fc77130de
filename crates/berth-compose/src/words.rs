//! Splitting a `command:` or `entrypoint:` string into arguments the way a POSIX shell would
//! (quotes and backslashes), without running a shell: compose's rule for the string form.

/// Splits `text` into words; `None` when a quote is left open.
pub(crate) fn split(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        other => word.push(other),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        // Inside double quotes a backslash only escapes these, as in sh.
                        '\\' => match chars.next()? {
                            escaped @ ('"' | '\\' | '$' | '`') => word.push(escaped),
                            '\n' => {}
                            other => {
                                word.push('\\');
                                word.push(other);
                            }
                        },
                        other => word.push(other),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(escaped) => word.push(escaped),
                    None => word.push('\\'),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::split;

    fn words(text: &str) -> Vec<String> {
        split(text).unwrap()
    }

    #[test]
    fn splits_on_whitespace() {
        assert_eq!(words("  sleep   infinity "), ["sleep", "infinity"]);
        assert!(words("").is_empty());
    }

    #[test]
    fn quotes_group_words_and_keep_empty_ones() {
        assert_eq!(
            words(r#"sh -c "echo 'hi there'" ''"#),
            ["sh", "-c", "echo 'hi there'", ""]
        );
        assert_eq!(words(r#"a"b c"'d e'"#), ["ab cd e"]);
    }

    #[test]
    fn backslashes_escape() {
        assert_eq!(words(r#"a\ b "x\"y" "\n""#), ["a b", "x\"y", "\\n"]);
    }

    #[test]
    fn open_quotes_are_refused() {
        assert_eq!(split("echo 'oops"), None);
        assert_eq!(split("echo \"oops"), None);
    }
}
