//! Kubernetes label syntax for keys and values, and berth's reserved `berth.` prefix.

/// Label keys starting with this belong to berth itself; clients may not set them.
pub const RESERVED_PREFIX: &str = "berth.";

const NAME_MAX: usize = 63;
const PREFIX_MAX: usize = 253;
const KEY_FORMS: &str = "use [prefix/]name, where name is 1-63 letters, digits, `-`, `_` or `.` starting and ending with a letter or digit, and the optional prefix is a lowercase DNS subdomain of at most 253 characters such as example.com";
const VALUE_FORMS: &str =
    "use at most 63 letters, digits, `-`, `_` or `.` starting and ending with a letter or digit, or an empty value";

/// Checks one label: key `[prefix/]name` (prefix a DNS subdomain ≤ 253, name ≤ 63 alphanumerics
/// with `-_.` inside), value ≤ 63 of the same alphabet or empty; keys starting `berth.` are reserved.
///
/// The reserved check ignores ASCII case, so `Berth.managed` is refused as well.
pub fn validate_label(key: &str, value: &str) -> Result<(), String> {
    validate_key(key)?;
    if !value.is_empty() && !is_name(value) {
        let why = if value.len() > NAME_MAX {
            format!("is longer than {NAME_MAX} characters")
        } else {
            "is not a label value".to_owned()
        };
        return Err(format!("value `{value}` {why}: {VALUE_FORMS}"));
    }
    Ok(())
}

fn validate_key(key: &str) -> Result<(), String> {
    if key
        .get(..RESERVED_PREFIX.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(RESERVED_PREFIX))
    {
        return Err(format!(
            "key `{key}` is reserved: keys starting with `{RESERVED_PREFIX}` belong to berth itself; use another prefix such as example.com/{}",
            key.rsplit('/').next().unwrap_or(key)
        ));
    }
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.len() > PREFIX_MAX {
            return Err(format!(
                "key `{key}` has a prefix longer than {PREFIX_MAX} characters: {KEY_FORMS}"
            ));
        }
        if !is_dns_subdomain(prefix) {
            return Err(format!(
                "key `{key}` has a prefix `{prefix}` that is not a lowercase DNS subdomain: {KEY_FORMS}"
            ));
        }
    }
    if name.len() > NAME_MAX {
        return Err(format!(
            "key `{key}` has a name longer than {NAME_MAX} characters: {KEY_FORMS}"
        ));
    }
    if !is_name(name) {
        return Err(format!("key `{key}` is not a label key: {KEY_FORMS}"));
    }
    Ok(())
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters.
fn is_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= NAME_MAX
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// RFC 1123 subdomain as Kubernetes checks it: dot-separated
/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` parts, at most 253 characters in all.
fn is_dns_subdomain(text: &str) -> bool {
    let part_ok = |part: &str| {
        let bytes = part.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                is_lower_alnum(*first)
                    && is_lower_alnum(*last)
                    && bytes.iter().all(|b| is_lower_alnum(*b) || *b == b'-')
            }
            _ => false,
        }
    };
    text.len() <= PREFIX_MAX && text.split('.').all(part_ok)
}

fn is_lower_alnum(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_kubernetes_labels() {
        let long_name = "a".repeat(63);
        let long_prefix = format!("{}.com", "a".repeat(249));
        let cases = [
            ("team", "ml"),
            ("app.kubernetes.io/name", "rollout-7"),
            ("example.com/Owner_Name", "A.b-c_D"),
            ("x", ""),
            ("a-b.c_d", "1"),
            ("berth", "not-reserved-without-the-dot"),
            ("my.berth.io/x", "y"),
            (long_name.as_str(), long_name.as_str()),
        ];
        for (key, value) in cases {
            assert_eq!(validate_label(key, value), Ok(()), "{key}={value}");
        }
        let key = format!("{long_prefix}/{long_name}");
        assert_eq!(long_prefix.len(), 253);
        assert_eq!(validate_label(&key, "v"), Ok(()));
    }

    #[test]
    fn refuses_reserved_keys_saying_why() {
        for key in [
            "berth.managed",
            "berth.sandbox",
            "berth.io/team",
            "berth.example.com/x",
            "Berth.owner",
        ] {
            let message = validate_label(key, "x").unwrap_err();
            assert!(message.contains("reserved"), "{key}: {message}");
            assert!(message.contains("`berth.`"), "{key}: {message}");
            assert!(message.contains(&format!("`{key}`")), "{key}: {message}");
        }
    }

    #[test]
    fn refuses_malformed_keys_saying_what_is_allowed() {
        let cases = [
            (String::new(), "not a label key"),
            ("-team".to_owned(), "not a label key"),
            ("team-".to_owned(), "not a label key"),
            ("te am".to_owned(), "not a label key"),
            ("tëam".to_owned(), "not a label key"),
            ("a/b/c".to_owned(), "not a label key"),
            ("example.com/".to_owned(), "not a label key"),
            ("/name".to_owned(), "not a lowercase DNS subdomain"),
            ("Example.com/name".to_owned(), "not a lowercase DNS subdomain"),
            ("example..com/name".to_owned(), "not a lowercase DNS subdomain"),
            ("-example.com/name".to_owned(), "not a lowercase DNS subdomain"),
            ("exa_mple.com/name".to_owned(), "not a lowercase DNS subdomain"),
            ("a".repeat(64), "longer than 63"),
            (format!("{}/x", "a".repeat(254)), "longer than 253"),
        ];
        for (key, reason) in cases {
            let message = validate_label(&key, "v").unwrap_err();
            assert!(message.contains(reason), "{key}: {message}");
            assert!(message.contains(&format!("`{key}`")), "{key}: {message}");
            assert!(message.contains("use [prefix/]name"), "{key}: {message}");
        }
    }

    #[test]
    fn refuses_malformed_values_saying_what_is_allowed() {
        let cases = [
            ("-x".to_owned(), "not a label value"),
            ("x-".to_owned(), "not a label value"),
            ("a b".to_owned(), "not a label value"),
            ("a/b".to_owned(), "not a label value"),
            ("é".to_owned(), "not a label value"),
            ("a".repeat(64), "longer than 63"),
        ];
        for (value, reason) in cases {
            let message = validate_label("team", &value).unwrap_err();
            assert!(message.contains(reason), "{value}: {message}");
            assert!(message.contains(&format!("`{value}`")), "{value}: {message}");
            assert!(message.contains("or an empty value"), "{value}: {message}");
        }
    }

    const NAME: &str = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?";
    const DNS_PART: &str = "[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?";

    fn prefix() -> impl Strategy<Value = String> {
        prop::collection::vec(DNS_PART, 1..5)
            .prop_map(|parts| parts.join("."))
            .prop_filter("DNS subdomains are at most 253 characters", |p| p.len() <= 253)
    }

    proptest! {
        #[test]
        fn labels_from_the_grammar_are_accepted(
            prefix in prop::option::of(prefix()),
            name in NAME,
            value in prop::option::of(NAME),
        ) {
            let key = match prefix {
                Some(prefix) => format!("{prefix}/{name}"),
                None => name,
            };
            let reserved = key.to_ascii_lowercase().starts_with("berth.");
            let result = validate_label(&key, value.as_deref().unwrap_or(""));
            prop_assert_eq!(result.is_ok(), !reserved, "{}: {:?}", key, result);
        }

        #[test]
        fn reserved_prefix_is_always_refused(rest in "[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?(/[a-z]{1,10})?") {
            let key = format!("berth.{rest}");
            let message = validate_label(&key, "v").unwrap_err();
            prop_assert!(message.contains("reserved"));
        }

        #[test]
        fn never_panics_and_names_what_it_refuses(key in any::<String>(), value in any::<String>()) {
            if let Err(message) = validate_label(&key, &value) {
                let names_it = message.contains(&format!("`{key}`")) || message.contains(&format!("`{value}`"));
                prop_assert!(names_it, "{}", message);
            }
        }

        #[test]
        fn characters_outside_the_alphabet_are_refused(
            name in NAME,
            bad in "[^-A-Za-z0-9_./]",
            at in any::<prop::sample::Index>(),
        ) {
            let mut chars: Vec<char> = name.chars().collect();
            let at = at.index(chars.len() + 1);
            chars.insert(at, bad.chars().next().unwrap());
            let key: String = chars.into_iter().collect();
            prop_assert!(validate_label(&key, "").is_err());
            prop_assert!(validate_label("k", &key).is_err());
        }
    }
}
