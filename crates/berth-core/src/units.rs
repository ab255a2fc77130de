//! Parsers and formatters for CPU quantities, memory sizes and durations as clients write them.
//!
//! The rules, in one place:
//! - **CPU** follows Kubernetes: a bare number is cores (`2`, `0.5`), `m` is millicores
//!   (`500m` is half a CPU), and AEnvironment's `C`/`c` suffix is cores (`1C`, `1.5c`).
//! - **Memory** follows Docker and AEnvironment, not Kubernetes: every suffix is binary and
//!   case-insensitive, so `1M` = `1m` = `1Mi` = `1MiB` = `1mb` = 1048576 bytes (Kubernetes
//!   would read `256m` as 0.256 of a byte, which nobody means).
//! - **Durations** follow Go (`90s`, `1h30m`, `1.5h`, `300ms`; `m` is minutes), and a bare
//!   integer is seconds.
//!
//! Every parser is exact (decimal arithmetic, no floating point rounding) and refuses zero,
//! negative and malformed values with a message that names the value and the allowed forms.

use std::fmt::Write as _;
use std::time::Duration;

use crate::field::NumberOrString;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;
pub const TIB: u64 = 1024 * GIB;
pub const PIB: u64 = 1024 * TIB;
pub const EIB: u64 = 1024 * PIB;

const CPU_FORMS: &str = "use cores (2, 0.5), millicores (500m) or 1C";
const MEMORY_FORMS: &str = "use bytes (1073741824) or a number with a binary unit such as 512Mi, 1Gi, 512M, 256m, 2GB or 64k (every unit is a power of 1024)";
const DURATION_FORMS: &str =
    "use a Go duration such as 90s, 30m, 1h30m, 1.5h or 300ms (units ns, us, ms, s, m, h) or whole seconds (90)";

/// `2`, `0.5`, `"500m"` (millicores), `"1C"` → thousandths of a CPU. Zero is refused.
///
/// A bare number and the `C`/`c` suffix are cores; a lowercase `m` is millicores, so `"500m"`
/// is half a CPU. Amounts finer than one millicore are refused rather than rounded.
pub fn parse_cpu_millis(input: &NumberOrString) -> Result<u64, String> {
    let text = number_text(input).map_err(|why| format!("`{input}` {why}: {CPU_FORMS}"))?;
    let (int, frac, rest) =
        split_decimal(text.trim()).ok_or_else(|| format!("`{input}` is not a CPU amount: {CPU_FORMS}"))?;
    let factor = match rest.trim_start() {
        "" | "c" | "C" => 1000,
        "m" => 1,
        _ => return Err(format!("`{input}` is not a CPU amount: {CPU_FORMS}")),
    };
    let too_large = || format!("`{input}` is too large a CPU amount: {CPU_FORMS}");
    let (millis, exact) = scale(int, frac, factor).ok_or_else(too_large)?;
    if !exact {
        return Err(format!(
            "`{input}` is finer than 1m (a thousandth of a CPU): {CPU_FORMS}"
        ));
    }
    if millis == 0 {
        return Err(format!(
            "`{input}` is zero: ask for at least 1m (a thousandth of a CPU); {CPU_FORMS}"
        ));
    }
    u64::try_from(millis).map_err(|_| too_large())
}

/// `"512Mi"`, `"1Gi"`, `"512M"`, `"1G"`, `"256m"`, `"256mb"` (all binary units), plain bytes → bytes.
///
/// berth reads sizes the way Docker and AEnvironment do: every unit (`k`, `m`, `g`, `t`, `p`,
/// `e`) is a power of 1024, case-insensitive, with an optional `b`, `i` or `ib` tail, so `1M`,
/// `1m`, `1Mi`, `1MiB` and `1mb` are all 1048576 bytes. Decimals are allowed (`1.5Gi`) and
/// rounded down to whole bytes. Zero is refused; there is no other floor here.
pub fn parse_memory_bytes(input: &NumberOrString) -> Result<u64, String> {
    let text = number_text(input).map_err(|why| format!("`{input}` {why}: {MEMORY_FORMS}"))?;
    let not_a_size = || format!("`{input}` is not a memory size: {MEMORY_FORMS}");
    let (int, frac, rest) = split_decimal(text.trim()).ok_or_else(not_a_size)?;
    let factor = memory_unit(rest.trim_start()).ok_or_else(not_a_size)?;
    let too_large = || format!("`{input}` is too large a memory size: {MEMORY_FORMS}");
    let (bytes, _exact) = scale(int, frac, u128::from(factor)).ok_or_else(too_large)?;
    if bytes == 0 {
        return Err(format!(
            "`{input}` is zero bytes: ask for a positive size; {MEMORY_FORMS}"
        ));
    }
    u64::try_from(bytes).map_err(|_| too_large())
}

/// The multiplier a memory unit stands for, or `None` when `unit` is not one.
fn memory_unit(unit: &str) -> Option<u64> {
    let unit = unit.to_ascii_lowercase();
    if unit.is_empty() || unit == "b" {
        return Some(1);
    }
    let mut chars = unit.chars();
    let factor = match chars.next()? {
        'k' => KIB,
        'm' => MIB,
        'g' => GIB,
        't' => TIB,
        'p' => PIB,
        'e' => EIB,
        _ => return None,
    };
    matches!(chars.as_str(), "" | "b" | "i" | "ib").then_some(factor)
}

/// Go-style `"90s"`, `"30m"`, `"1h30m"`, `"1.5h"`, `"300ms"`, or integer seconds → a positive duration.
///
/// Units are `ns`, `us` (or `µs`), `ms`, `s`, `m` (minutes) and `h`; components may repeat
/// and carry decimals, and the sum is truncated to whole nanoseconds as Go does. A bare
/// number, JSON or string, is whole seconds.
pub fn parse_duration(input: &NumberOrString) -> Result<Duration, String> {
    let text = match input {
        NumberOrString::Number(n) => {
            let n = *n;
            if n.is_nan() {
                return Err(format!("`{input}` is not a duration: {DURATION_FORMS}"));
            }
            if n < 0.0 {
                return Err(format!("`{input}` is negative: {DURATION_FORMS}"));
            }
            if n == 0.0 {
                return Err(format!("`{input}` is zero: {DURATION_FORMS}"));
            }
            // 2^64: the first f64 above u64::MAX (infinity is above it too).
            if n >= 18_446_744_073_709_551_616.0 {
                return Err(format!("`{input}` is too long a duration: {DURATION_FORMS}"));
            }
            if n.fract() != 0.0 {
                return Err(format!(
                    "`{input}` is not a whole number of seconds: write it with a unit, e.g. \"1.5s\"; {DURATION_FORMS}"
                ));
            }
            return Ok(Duration::from_secs(n as u64));
        }
        NumberOrString::String(s) => s.trim(),
    };
    let not_a_duration = || format!("`{input}` is not a duration: {DURATION_FORMS}");
    let too_long = || format!("`{input}` is too long a duration: {DURATION_FORMS}");
    if text.starts_with('-') {
        return Err(format!("`{input}` is negative: {DURATION_FORMS}"));
    }
    if text.is_empty() {
        return Err(not_a_duration());
    }
    let nanos = if text.bytes().all(|b| b.is_ascii_digit()) {
        let (nanos, _) = scale(text, "", NANOS_PER_SEC).ok_or_else(too_long)?;
        nanos
    } else {
        let mut rest = text;
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let (int, frac, after) = split_decimal(rest).ok_or_else(not_a_duration)?;
            let unit_len = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let factor: u128 = match unit {
                "ns" => 1,
                "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
                "ms" => 1_000_000,
                "s" => NANOS_PER_SEC,
                "m" => 60 * NANOS_PER_SEC,
                "h" => 3600 * NANOS_PER_SEC,
                "" => {
                    return Err(format!("`{input}` has a number without a unit: {DURATION_FORMS}"));
                }
                _ => return Err(not_a_duration()),
            };
            let (nanos, _) = scale(int, frac, factor).ok_or_else(too_long)?;
            total = total.checked_add(nanos).ok_or_else(too_long)?;
            rest = after;
        }
        total
    };
    if nanos == 0 {
        return Err(format!("`{input}` is zero: {DURATION_FORMS}"));
    }
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| too_long())?;
    // The remainder is below 10^9, so it fits a u32.
    Ok(Duration::new(secs, (nanos % NANOS_PER_SEC) as u32))
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// `500` → `"0.5"`, `2000` → `"2"`.
pub fn format_cpu(millis: u64) -> String {
    decimal(u128::from(millis), 1000)
}

/// The shortest exact binary form: `536870912` → `"512Mi"`, `1073741824` → `"1Gi"`, `1000` → `"1000"`.
pub fn format_memory(bytes: u64) -> String {
    const UNITS: [(&str, u64); 6] = [
        ("Ei", EIB),
        ("Pi", PIB),
        ("Ti", TIB),
        ("Gi", GIB),
        ("Mi", MIB),
        ("Ki", KIB),
    ];
    UNITS
        .iter()
        .find(|(_, factor)| bytes != 0 && bytes.is_multiple_of(*factor))
        .map(|(suffix, factor)| format!("{}{suffix}", bytes / factor))
        .unwrap_or_else(|| bytes.to_string())
}

/// Go-style: `5400s` → `"1h30m"`, `90s` → `"1m30s"`, `1.5s` → `"1.5s"`.
///
/// Unlike Go, zero components are left out (`3600s` is `"1h"`, not `"1h0m0s"`). Below a
/// second the unit is `ms`, `µs` or `ns` (`"500ms"`, `"1.5µs"`); zero is `"0s"`.
/// [`parse_duration`] reads every output back to the same duration.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let nanos = duration.subsec_nanos();
    if secs == 0 {
        return match nanos {
            0 => "0s".to_owned(),
            1..1_000 => format!("{nanos}ns"),
            1_000..1_000_000 => format!("{}µs", decimal(u128::from(nanos), 1_000)),
            _ => format!("{}ms", decimal(u128::from(nanos), 1_000_000)),
        };
    }
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    if seconds > 0 || nanos > 0 {
        let total = u128::from(seconds) * NANOS_PER_SEC + u128::from(nanos);
        let _ = write!(out, "{}s", decimal(total, NANOS_PER_SEC));
    }
    out
}

/// `value / unit` written as a decimal without trailing zeros: `(1500, 1000)` → `"1.5"`.
/// `unit` must be a power of ten.
fn decimal(value: u128, unit: u128) -> String {
    let (whole, part) = (value / unit, value % unit);
    if part == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{part:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// The text to parse: a string as sent, or a JSON number in plain decimal (`f64`'s `Display`
/// never uses an exponent). Refuses NaN, infinities and negative numbers with the reason.
fn number_text(input: &NumberOrString) -> Result<std::borrow::Cow<'_, str>, &'static str> {
    match input {
        NumberOrString::Number(n) if n.is_nan() => Err("is not a number"),
        NumberOrString::Number(n) if *n < 0.0 => Err("is negative"),
        NumberOrString::Number(n) if n.is_infinite() => Err("is too large"),
        // `-0` is zero, not negative: let the caller say so.
        NumberOrString::Number(n) => Ok(format!("{}", n.abs()).into()),
        NumberOrString::String(s) if s.trim_start().starts_with('-') => Err("is negative"),
        NumberOrString::String(s) => Ok(s.as_str().into()),
    }
}

/// Splits a leading unsigned decimal `digits[.digits]` or `.digits` off `text`:
/// `"1.5Gi"` → `("1", "5", "Gi")`. `None` when `text` does not start with one.
fn split_decimal(text: &str) -> Option<(&str, &str, &str)> {
    let int_len = text.bytes().take_while(u8::is_ascii_digit).count();
    let (int, rest) = text.split_at(int_len);
    let Some(after_dot) = rest.strip_prefix('.') else {
        return (int_len > 0).then_some((int, "", rest));
    };
    let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
    if frac_len == 0 {
        return None;
    }
    let (frac, rest) = after_dot.split_at(frac_len);
    Some((int, frac, rest))
}

/// `int.frac × factor`, rounded down, exactly: the value and whether no rounding happened.
/// `None` when the result does not fit a `u128`. `int` and `frac` must be ASCII digits.
fn scale(int: &str, frac: &str, factor: u128) -> Option<(u128, bool)> {
    let mut whole: u128 = 0;
    for digit in int.bytes() {
        whole = whole.checked_mul(10)?.checked_add(u128::from(digit - b'0'))?;
    }
    let whole = whole.checked_mul(factor)?;
    // Horner from the last digit: floor((d·f + floor(x)) / 10) = floor((d·f + x) / 10), so
    // this is the exact floor of 0.frac × factor; it stays below `factor`, so no overflow
    // for any factor this module uses.
    let mut part: u128 = 0;
    let mut exact = true;
    for digit in frac.bytes().rev() {
        let n = u128::from(digit - b'0') * factor + part;
        exact &= n.is_multiple_of(10);
        part = n / 10;
    }
    Some((whole.checked_add(part)?, exact))
}

/// A [`Duration`] stored as fractional seconds, for `#[serde(with = "crate::units::duration_secs")]`.
pub(crate) mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// An optional [`Duration`] stored as fractional seconds (absent when `None`), for
/// `#[serde(default, skip_serializing_if = "Option::is_none", with = "crate::units::optional_duration_secs")]`.
pub(crate) mod optional_duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.serialize_f64(duration.as_secs_f64()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(deserializer)?
            .map(|secs| Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(text: &str) -> NumberOrString {
        NumberOrString::String(text.to_owned())
    }

    fn n(value: f64) -> NumberOrString {
        NumberOrString::Number(value)
    }

    #[test]
    fn cpu_accepts_cores_millicores_and_the_c_suffix() {
        let cases = [
            (n(2.0), 2000),
            (n(0.5), 500),
            (n(0.001), 1),
            (n(16.0), 16_000),
            (s("2"), 2000),
            (s("0.5"), 500),
            (s(".5"), 500),
            (s("500m"), 500),
            (s("1m"), 1),
            (s("1500m"), 1500),
            (s("1C"), 1000),
            (s("1.5c"), 1500),
            (s("2.250"), 2250),
            (s(" 250m "), 250),
            (s("0.0010"), 1),
        ];
        for (input, millis) in cases {
            assert_eq!(parse_cpu_millis(&input), Ok(millis), "{input}");
        }
    }

    #[test]
    fn five_hundred_m_is_half_a_cpu_not_five_hundred() {
        assert_eq!(parse_cpu_millis(&s("500m")), Ok(500));
        assert_eq!(format_cpu(500), "0.5");
    }

    #[test]
    fn cpu_refuses_zero_negative_fine_fractions_and_garbage() {
        let cases = [
            (n(0.0), "zero"),
            (n(-0.0), "zero"),
            (s("0"), "zero"),
            (s("0m"), "zero"),
            (s("0.0C"), "zero"),
            (n(-1.0), "negative"),
            (s("-1"), "negative"),
            (s("-500m"), "negative"),
            (n(f64::NAN), "not a number"),
            (n(f64::INFINITY), "too large"),
            (n(0.0005), "finer than 1m"),
            (s("0.5m"), "finer than 1m"),
            (s("1.0001"), "finer than 1m"),
            (s("abc"), "not a CPU amount"),
            (s(""), "not a CPU amount"),
            (s("1.5.5"), "not a CPU amount"),
            (s("1."), "not a CPU amount"),
            (s("500M"), "not a CPU amount"),
            (s("2 cores"), "not a CPU amount"),
            (s("+2"), "not a CPU amount"),
            (s("1e3"), "not a CPU amount"),
            (s("99999999999999999999999999999999999999999"), "too large"),
            (s("18446744073709552"), "too large"),
        ];
        for (input, reason) in cases {
            let message = parse_cpu_millis(&input).unwrap_err();
            assert!(message.contains(reason), "{input}: {message}");
            assert!(message.contains(&format!("`{input}`")), "{input}: {message}");
            assert!(message.contains("millicores (500m)"), "{input}: {message}");
        }
    }

    #[test]
    fn cpu_error_message_names_the_value_and_the_forms() {
        assert_eq!(
            parse_cpu_millis(&s("abc")).unwrap_err(),
            "`abc` is not a CPU amount: use cores (2, 0.5), millicores (500m) or 1C"
        );
    }

    #[test]
    fn cpu_reaches_u64_max_without_overflowing() {
        assert_eq!(parse_cpu_millis(&s(&format_cpu(u64::MAX))), Ok(u64::MAX));
        assert_eq!(parse_cpu_millis(&s("18446744073709551615m")), Ok(u64::MAX));
        assert!(parse_cpu_millis(&s("18446744073709551616m")).is_err());
    }

    #[test]
    fn memory_units_are_all_binary_and_case_insensitive() {
        let cases = [
            ("512Mi", 512 * MIB),
            ("1Gi", GIB),
            ("512M", 512 * MIB),
            ("1G", GIB),
            ("256m", 256 * MIB),
            ("256mb", 256 * MIB),
            ("256MB", 256 * MIB),
            ("256MiB", 256 * MIB),
            ("256mib", 256 * MIB),
            ("256mi", 256 * MIB),
            ("2GB", 2 * GIB),
            ("64k", 64 * KIB),
            ("64Ki", 64 * KIB),
            ("64KB", 64 * KIB),
            ("1t", TIB),
            ("1Pi", PIB),
            ("1e", EIB),
            ("1.5Gi", 1536 * MIB),
            ("0.5k", 512),
            ("1048576", MIB),
            ("100b", 100),
            ("100B", 100),
            ("  512 Mi ", 512 * MIB),
            ("15Ei", 15 * EIB),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_memory_bytes(&s(text)), Ok(bytes), "{text}");
        }
        assert_eq!(parse_memory_bytes(&n(1_048_576.0)), Ok(MIB));
    }

    #[test]
    fn memory_decimals_round_down_to_whole_bytes() {
        assert_eq!(parse_memory_bytes(&s("1.0001k")), Ok(1024));
        assert_eq!(parse_memory_bytes(&s("1.9")), Ok(1));
        assert_eq!(parse_memory_bytes(&n(1.9)), Ok(1));
        // 2^-60 Ei is exactly one byte: no precision is lost on long fractions.
        assert_eq!(
            parse_memory_bytes(&s("0.000000000000000000867361737988403547205962240695953369140625Ei")),
            Ok(1)
        );
    }

    #[test]
    fn memory_refuses_zero_negative_overflow_and_garbage() {
        let cases = [
            (s("0"), "zero"),
            (s("0Mi"), "zero"),
            (s("0.5"), "zero"),
            (n(0.0), "zero"),
            (n(-1.0), "negative"),
            (s("-1Gi"), "negative"),
            (n(f64::NAN), "not a number"),
            (n(f64::INFINITY), "too large"),
            (n(1e30), "too large"),
            (s("16Ei"), "too large"),
            (s("18446744073709551616"), "too large"),
            (s("99999999999999999999999999999999999999999G"), "too large"),
            (s("abc"), "not a memory size"),
            (s(""), "not a memory size"),
            (s("Mi"), "not a memory size"),
            (s("512x"), "not a memory size"),
            (s("512ib"), "not a memory size"),
            (s("512i"), "not a memory size"),
            (s("512Mii"), "not a memory size"),
            (s("512MBB"), "not a memory size"),
            (s("1,5G"), "not a memory size"),
            (s("1e9"), "not a memory size"),
        ];
        for (input, reason) in cases {
            let message = parse_memory_bytes(&input).unwrap_err();
            assert!(message.contains(reason), "{input}: {message}");
            assert!(message.contains(&format!("`{input}`")), "{input}: {message}");
            assert!(message.contains("512Mi"), "{input}: {message}");
        }
    }

    #[test]
    fn durations_follow_go_syntax() {
        let cases = [
            ("90s", Duration::from_secs(90)),
            ("30m", Duration::from_secs(1800)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5h", Duration::from_secs(5400)),
            ("300ms", Duration::from_millis(300)),
            ("2h45m30s", Duration::from_secs(2 * 3600 + 45 * 60 + 30)),
            ("1.5s", Duration::from_millis(1500)),
            (".5s", Duration::from_millis(500)),
            ("10ns", Duration::from_nanos(10)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("10μs", Duration::from_micros(10)),
            ("1m1m", Duration::from_secs(120)),
            ("1h0m0s", Duration::from_secs(3600)),
            ("90", Duration::from_secs(90)),
            (" 90 ", Duration::from_secs(90)),
            ("1.0000000001s", Duration::from_secs(1)),
        ];
        for (text, duration) in cases {
            assert_eq!(parse_duration(&s(text)), Ok(duration), "{text}");
        }
        assert_eq!(parse_duration(&n(90.0)), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn durations_refuse_zero_negative_fractions_overflow_and_garbage() {
        let cases = [
            (s("0"), "zero"),
            (s("0s"), "zero"),
            (s("0h0m"), "zero"),
            (s("0.1ns"), "zero"),
            (n(0.0), "zero"),
            (n(-1.0), "negative"),
            (n(-0.0), "zero"),
            (s("-5s"), "negative"),
            (n(1.5), "not a whole number"),
            (n(f64::NAN), "not a duration"),
            (n(f64::INFINITY), "too long"),
            (n(1e20), "too long"),
            (s("18446744073709551616"), "too long"),
            (s("9999999999999999999h"), "too long"),
            (s("1.5"), "without a unit"),
            (s("1h30"), "without a unit"),
            (s("abc"), "not a duration"),
            (s(""), "not a duration"),
            (s("1d"), "not a duration"),
            (s("1mo"), "not a duration"),
            (s("1 h"), "not a duration"),
            (s("1H"), "not a duration"),
            (s("h"), "not a duration"),
            (s("1.h"), "not a duration"),
        ];
        for (input, reason) in cases {
            let message = parse_duration(&input).unwrap_err();
            assert!(message.contains(reason), "{input}: {message}");
            assert!(message.contains(&format!("`{input}`")), "{input}: {message}");
            assert!(message.contains("1h30m"), "{input}: {message}");
        }
    }

    #[test]
    fn durations_reach_duration_max() {
        let max = format_duration(Duration::MAX);
        assert_eq!(parse_duration(&s(&max)), Ok(Duration::MAX));
        assert!(parse_duration(&s(&format!("{max}1ns"))).is_err());
    }

    #[test]
    fn formats_cpu_memory_and_durations() {
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_cpu(1500), "1.5");
        assert_eq!(format_cpu(250), "0.25");
        assert_eq!(format_cpu(1), "0.001");
        assert_eq!(format_cpu(0), "0");
        assert_eq!(format_memory(536_870_912), "512Mi");
        assert_eq!(format_memory(GIB), "1Gi");
        assert_eq!(format_memory(1536 * MIB), "1536Mi");
        assert_eq!(format_memory(64 * GIB), "64Gi");
        assert_eq!(format_memory(1000), "1000");
        assert_eq!(format_memory(0), "0");
        assert_eq!(format_memory(EIB), "1Ei");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_nanos(1500)), "1.5µs");
        assert_eq!(format_duration(Duration::from_nanos(15)), "15ns");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(3630)), "1h30s");
        assert_eq!(format_duration(Duration::from_secs(7 * 24 * 3600)), "168h");
        assert_eq!(format_duration(Duration::new(1, 1)), "1.000000001s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    proptest! {
        #[test]
        fn cpu_format_parse_round_trips(millis in 1..=u64::MAX) {
            prop_assert_eq!(parse_cpu_millis(&s(&format_cpu(millis))), Ok(millis));
        }

        #[test]
        fn n_m_is_n_millicores(millis in 1..=u64::MAX) {
            prop_assert_eq!(parse_cpu_millis(&s(&format!("{millis}m"))), Ok(millis));
        }

        #[test]
        fn cpu_numbers_agree_with_strings(millis in 1..1_000_000_u64) {
            let cores = millis as f64 / 1000.0;
            prop_assert_eq!(parse_cpu_millis(&n(cores)), Ok(millis));
            prop_assert_eq!(parse_cpu_millis(&s(&format!("{cores}C"))), Ok(millis));
        }

        #[test]
        fn memory_format_parse_round_trips(bytes in 1..=u64::MAX) {
            prop_assert_eq!(parse_memory_bytes(&s(&format_memory(bytes))), Ok(bytes));
        }

        #[test]
        fn memory_round_trips_on_unit_multiples(value in 1..1_000_000_u64, power in 0..5_u32) {
            let bytes = value * KIB.pow(power);
            prop_assert_eq!(parse_memory_bytes(&s(&format_memory(bytes))), Ok(bytes));
        }

        #[test]
        fn binary_suffix_spellings_agree(
            value in 1..1024_u64,
            (letter, factor) in prop::sample::select(vec![("k", KIB), ("m", MIB), ("g", GIB), ("t", TIB), ("p", PIB)]),
            tail in prop::sample::select(vec!["", "i", "b", "ib"]),
            upper in any::<bool>(),
        ) {
            let mut text = format!("{value}{letter}{tail}");
            if upper {
                text = text.to_uppercase();
            }
            prop_assert_eq!(parse_memory_bytes(&s(&text)), Ok(value * factor));
        }

        #[test]
        fn duration_format_parse_round_trips(secs in 0..=u64::MAX, nanos in 0..1_000_000_000_u32) {
            prop_assume!(secs > 0 || nanos > 0);
            let duration = Duration::new(secs, nanos);
            prop_assert_eq!(parse_duration(&s(&format_duration(duration))), Ok(duration));
        }

        #[test]
        fn short_durations_round_trip(nanos in 1..10_000_000_000_u64) {
            let duration = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_duration(&s(&format_duration(duration))), Ok(duration));
        }

        #[test]
        fn integer_seconds_agree_with_the_s_unit(secs in 1..1_000_000_000_u64) {
            let expected = Ok(Duration::from_secs(secs));
            prop_assert_eq!(parse_duration(&s(&secs.to_string())), expected.clone());
            prop_assert_eq!(parse_duration(&s(&format!("{secs}s"))), expected.clone());
            prop_assert_eq!(parse_duration(&n(secs as f64)), expected);
        }

        #[test]
        fn parsers_never_panic_on_arbitrary_strings(text in any::<String>()) {
            let _ = parse_cpu_millis(&s(&text));
            let _ = parse_memory_bytes(&s(&text));
            let _ = parse_duration(&s(&text));
        }

        #[test]
        fn parsers_never_panic_on_unit_like_strings(text in "[-+ .0-9]{0,30}[a-zA-Zµ]{0,4}([.0-9]{0,10}[a-z]{0,3}){0,3}") {
            for result in [parse_cpu_millis(&s(&text)).map(|_| ()), parse_memory_bytes(&s(&text)).map(|_| ()), parse_duration(&s(&text)).map(|_| ())] {
                if let Err(message) = result {
                    prop_assert!(message.contains(&format!("`{text}`")), "{}", message);
                }
            }
        }

        #[test]
        fn parsers_never_panic_on_arbitrary_numbers(value in any::<f64>()) {
            let _ = parse_cpu_millis(&n(value));
            let _ = parse_memory_bytes(&n(value));
            let _ = parse_duration(&n(value));
        }

        #[test]
        fn accepted_values_are_positive(text in "[0-9]{0,6}(\\.[0-9]{0,4})?(m|c|Mi|k|G|s|ms|h|)") {
            if let Ok(millis) = parse_cpu_millis(&s(&text)) { prop_assert!(millis > 0); }
            if let Ok(bytes) = parse_memory_bytes(&s(&text)) { prop_assert!(bytes > 0); }
            if let Ok(duration) = parse_duration(&s(&text)) { prop_assert!(!duration.is_zero()); }
        }
    }
}
