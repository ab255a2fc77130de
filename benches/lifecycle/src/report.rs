//! Latency samples, their percentiles, the targets of F1, F3 and the pool benchmark, throughput
//! samples of F3's file transfers, single figures (throughput, memory) against a bound, and the
//! printed tables (or JSON).

use std::time::Duration;

use serde_json::{Value, json};

/// What an operation must achieve, measured on berth's latencies.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// p50 at most this many milliseconds.
    Millis(f64),
    /// p50 and p99 at most these many milliseconds: for operations whose tail matters as much as
    /// their median (a pooled create is promised to be fast every time, not just usually).
    Percentiles { p50_ms: f64, p99_ms: f64 },
    /// p50 at most this multiple of the raw engine call's p50.
    RatioToRaw(f64),
    /// None: the row is there for information (e.g. a mix of pooled and cold creates).
    Informative,
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::Millis(ms) => format!("p50 <= {ms} ms"),
            Target::Percentiles { p50_ms, p99_ms } => format!("p50 <= {p50_ms}, p99 <= {p99_ms} ms"),
            Target::RatioToRaw(ratio) => format!("p50 <= {ratio}x raw"),
            Target::Informative => "-".to_owned(),
        }
    }
}

/// Latencies of one operation on berth's side and, when there is one, on the raw side (taken in
/// interleaved pairs).
pub struct Row {
    pub operation: &'static str,
    pub target: Target,
    pub berth: Vec<Duration>,
    pub raw: Vec<Duration>,
    /// Printed after the result, e.g. how many creates came from the pool.
    pub note: String,
}

impl Row {
    pub fn new(operation: &'static str, target: Target) -> Self {
        Row {
            operation,
            target,
            berth: Vec::new(),
            raw: Vec::new(),
            note: String::new(),
        }
    }

    /// Whether berth meets the target; `None` for an informative row.
    fn passes(&self) -> Option<bool> {
        let p50 = percentile_ms(&self.berth, 0.50);
        match self.target {
            Target::Millis(ms) => Some(p50 <= ms),
            Target::Percentiles { p50_ms, p99_ms } => Some(p50 <= p50_ms && percentile_ms(&self.berth, 0.99) <= p99_ms),
            Target::RatioToRaw(ratio) => Some(p50 <= ratio * percentile_ms(&self.raw, 0.50)),
            Target::Informative => None,
        }
    }

    /// berth's p50 over the raw p50; NaN when there is no raw side.
    fn ratio(&self) -> f64 {
        percentile_ms(&self.berth, 0.50) / percentile_ms(&self.raw, 0.50)
    }
}

/// One measured figure that is not a latency distribution, e.g. requests per second or RSS.
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    pub bound: Bound,
    /// How it was measured and what else was seen (percentiles, errors, before/after).
    pub details: String,
}

/// The target of a [`Figure`]; `Measured` for a figure recorded without one.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    AtLeast(f64),
    AtMost(f64),
    Measured,
}

impl Figure {
    fn passes(&self) -> Option<bool> {
        match self.bound {
            Bound::AtLeast(min) => Some(self.value >= min),
            Bound::AtMost(max) => Some(self.value <= max),
            Bound::Measured => None,
        }
    }

    fn target(&self) -> String {
        match self.bound {
            Bound::AtLeast(min) => format!(">= {min} {}", self.unit),
            Bound::AtMost(max) => format!("<= {max} {}", self.unit),
            Bound::Measured => "-".to_owned(),
        }
    }
}

/// Nearest-rank percentile `p` (0-1] of `samples`, in milliseconds.
pub fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

/// The human table: one line per operation.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<22} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10}  {:<24} {:<6} {}\n",
        "operation", "n", "berth p50", "berth p99", "raw p50", "raw p99", "berth/raw", "target", "result", "note"
    );
    for row in rows {
        let line = format!(
            "{:<22} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10}  {:<24} {:<6} {}",
            row.operation,
            row.berth.len(),
            ms(percentile_ms(&row.berth, 0.50)),
            ms(percentile_ms(&row.berth, 0.99)),
            ms(percentile_ms(&row.raw, 0.50)),
            ms(percentile_ms(&row.raw, 0.99)),
            if row.raw.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.2}x", row.ratio())
            },
            row.target.describe(),
            verdict(row.passes()),
            row.note,
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(
        "(latencies in ms, measured at the client: request sent to answer fully read; - where there is no raw side)\n",
    );
    out
}

/// Milliseconds with three decimals, `-` for no samples.
fn ms(value: f64) -> String {
    if value.is_nan() {
        "-".to_owned()
    } else {
        format!("{value:.3}")
    }
}

fn verdict(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "PASS",
        Some(false) => "MISS",
        None => "-",
    }
}

/// The human table of single figures: one line each.
pub fn figure_table(figures: &[Figure]) -> String {
    let mut out = format!(
        "{:<28} {:>16}  {:<18} {:<6} {}\n",
        "figure", "value", "target", "result", "details"
    );
    for f in figures {
        let line = format!(
            "{:<28} {:>16}  {:<18} {:<6} {}",
            f.name,
            format!("{:.1} {}", f.value, f.unit),
            f.target(),
            verdict(f.passes()),
            f.details
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Throughputs (MiB/s) of one file transfer on both sides: berth against `docker cp`.
pub struct Transfer {
    pub operation: &'static str,
    /// berth must reach at least this multiple of `docker cp`'s median.
    pub min_ratio: f64,
    pub berth: Vec<f64>,
    pub raw: Vec<f64>,
}

impl Transfer {
    pub fn new(operation: &'static str, min_ratio: f64) -> Self {
        Transfer {
            operation,
            min_ratio,
            berth: Vec::new(),
            raw: Vec::new(),
        }
    }

    fn ratio(&self) -> f64 {
        median(&self.berth) / median(&self.raw)
    }

    fn passes(&self) -> bool {
        self.ratio() >= self.min_ratio
    }
}

/// The median of `samples` (the mean of the middle two for an even count).
pub fn median(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

fn min(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::NAN, f64::min)
}

/// The human table of the file transfers: one line per direction.
pub fn transfer_table(transfers: &[Transfer], size_mib: u64) -> String {
    let mut out = format!(
        "{:<16} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10}  {:<16} {}\n",
        "transfer", "n", "berth med", "berth min", "cp med", "cp min", "berth/cp", "target", "result"
    );
    for t in transfers {
        out.push_str(&format!(
            "{:<16} {:>5} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>9.2}x  {:<16} {}\n",
            t.operation,
            t.berth.len(),
            median(&t.berth),
            min(&t.berth),
            median(&t.raw),
            min(&t.raw),
            t.ratio(),
            format!("med >= {}x cp", t.min_ratio),
            if t.passes() { "PASS" } else { "MISS" }
        ));
    }
    out.push_str(&format!(
        "(MiB/s moving one {size_mib} MiB file; berth from request sent to answer fully read, docker cp as the CLI process's wall time)\n"
    ));
    out
}

/// The same figures as JSON.
pub fn json(rows: &[Row], transfers: &[Transfer], figures: &[Figure], context: Value) -> Value {
    // NaN (no samples, no raw side) is not JSON: it becomes null.
    let number = |value: f64| if value.is_nan() { Value::Null } else { json!(value) };
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "operation": row.operation,
                "samples": row.berth.len(),
                "berth_p50_ms": number(percentile_ms(&row.berth, 0.50)),
                "berth_p99_ms": number(percentile_ms(&row.berth, 0.99)),
                "raw_p50_ms": number(percentile_ms(&row.raw, 0.50)),
                "raw_p99_ms": number(percentile_ms(&row.raw, 0.99)),
                "ratio_p50": number(row.ratio()),
                "target": row.target.describe(),
                "pass": row.passes(),
                "note": row.note,
            })
        })
        .collect();
    let transfers: Vec<Value> = transfers
        .iter()
        .map(|t| {
            json!({
                "operation": t.operation,
                "samples": t.berth.len(),
                "berth_mib_s": t.berth,
                "docker_cp_mib_s": t.raw,
                "berth_median_mib_s": median(&t.berth),
                "docker_cp_median_mib_s": median(&t.raw),
                "ratio_median": t.ratio(),
                "target": format!("median >= {}x docker cp", t.min_ratio),
                "pass": t.passes(),
            })
        })
        .collect();
    let figures: Vec<Value> = figures
        .iter()
        .map(|f| {
            json!({
                "figure": f.name,
                "value": number(f.value),
                "unit": f.unit,
                "target": f.target(),
                "pass": f.passes(),
                "details": f.details,
            })
        })
        .collect();
    json!({ "context": context, "results": rows, "transfers": transfers, "figures": figures })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|v| Duration::from_millis(*v)).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples = ms(&[5, 1, 4, 2, 3]);
        assert_eq!(percentile_ms(&samples, 0.50), 3.0);
        assert_eq!(percentile_ms(&samples, 0.99), 5.0);
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_ms(&ms(&hundred), 0.99), 99.0);
        assert!(percentile_ms(&[], 0.5).is_nan());
    }

    #[test]
    fn targets_judge_berths_median() {
        let mut row = Row::new("create", Target::RatioToRaw(1.15));
        row.berth = ms(&[110, 114, 500]);
        row.raw = ms(&[100, 100, 100]);
        assert_eq!(row.passes(), Some(true));
        row.berth = ms(&[116, 116, 116]);
        assert_eq!(row.passes(), Some(false));
        let mut get = Row::new("get", Target::Millis(1.0));
        get.berth = ms(&[1, 1, 9]);
        get.raw = ms(&[0, 0, 0]);
        assert_eq!(get.passes(), Some(true));
    }

    #[test]
    fn percentile_targets_judge_both_ends() {
        let mut pooled = Row::new(
            "pooled",
            Target::Percentiles {
                p50_ms: 15.0,
                p99_ms: 60.0,
            },
        );
        pooled.berth = ms(&[5, 6, 7, 59]);
        assert_eq!(pooled.passes(), Some(true));
        pooled.berth = ms(&[5, 6, 7, 61]);
        assert_eq!(pooled.passes(), Some(false));
        pooled.berth = ms(&[16, 16, 16, 16]);
        assert_eq!(pooled.passes(), Some(false));
        let informative = Row::new("all", Target::Informative);
        assert_eq!(informative.passes(), None);
        assert!(table(&[pooled, informative]).contains("MISS"));
    }

    #[test]
    fn figures_judge_their_bound() {
        let mut figure = Figure {
            name: "get throughput".into(),
            value: 12_000.0,
            unit: "req/s",
            bound: Bound::AtLeast(10_000.0),
            details: String::new(),
        };
        assert_eq!(figure.passes(), Some(true));
        figure.bound = Bound::AtMost(10_000.0);
        assert_eq!(figure.passes(), Some(false));
        assert!(figure_table(std::slice::from_ref(&figure)).contains("<= 10000 req/s"));
        figure.bound = Bound::Measured;
        assert_eq!((figure.passes(), figure.target().as_str()), (None, "-"));
    }

    #[test]
    fn transfers_judge_the_median_ratio() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let mut t = Transfer::new("upload", 0.9);
        t.berth = vec![90.0, 95.0, 10.0];
        t.raw = vec![100.0, 100.0, 100.0];
        assert!(t.passes());
        t.berth = vec![80.0, 85.0, 500.0];
        assert!(!t.passes());
    }
}
