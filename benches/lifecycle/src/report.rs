//! Latency samples, their percentiles, the targets of F1 and F3, throughput samples of F3's
//! file transfers, and the printed tables (or JSON).

use std::time::Duration;

use serde_json::{Value, json};

/// What an operation must achieve, measured on berth's p50.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// At most this many milliseconds.
    Millis(f64),
    /// At most this multiple of the raw engine call's p50.
    RatioToRaw(f64),
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::Millis(ms) => format!("p50 <= {ms} ms"),
            Target::RatioToRaw(ratio) => format!("p50 <= {ratio}x raw"),
        }
    }
}

/// Latencies of one operation on both sides, taken in interleaved pairs.
pub struct Row {
    pub operation: &'static str,
    pub target: Target,
    pub berth: Vec<Duration>,
    pub raw: Vec<Duration>,
}

impl Row {
    pub fn new(operation: &'static str, target: Target) -> Self {
        Row {
            operation,
            target,
            berth: Vec::new(),
            raw: Vec::new(),
        }
    }

    fn passes(&self) -> bool {
        let berth = percentile_ms(&self.berth, 0.50);
        match self.target {
            Target::Millis(ms) => berth <= ms,
            Target::RatioToRaw(ratio) => berth <= ratio * percentile_ms(&self.raw, 0.50),
        }
    }

    fn ratio(&self) -> f64 {
        percentile_ms(&self.berth, 0.50) / percentile_ms(&self.raw, 0.50)
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
        "{:<16} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10}  {:<16} {}\n",
        "operation", "n", "berth p50", "berth p99", "raw p50", "raw p99", "berth/raw", "target", "result"
    );
    for row in rows {
        out.push_str(&format!(
            "{:<16} {:>5} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>9.2}x  {:<16} {}\n",
            row.operation,
            row.berth.len(),
            percentile_ms(&row.berth, 0.50),
            percentile_ms(&row.berth, 0.99),
            percentile_ms(&row.raw, 0.50),
            percentile_ms(&row.raw, 0.99),
            row.ratio(),
            row.target.describe(),
            if row.passes() { "PASS" } else { "MISS" }
        ));
    }
    out.push_str("(latencies in ms, measured at the client: request sent to answer fully read)\n");
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
pub fn json(rows: &[Row], transfers: &[Transfer], context: Value) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "operation": row.operation,
                "samples": row.berth.len(),
                "berth_p50_ms": percentile_ms(&row.berth, 0.50),
                "berth_p99_ms": percentile_ms(&row.berth, 0.99),
                "raw_p50_ms": percentile_ms(&row.raw, 0.50),
                "raw_p99_ms": percentile_ms(&row.raw, 0.99),
                "ratio_p50": row.ratio(),
                "target": row.target.describe(),
                "pass": row.passes(),
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
    json!({ "context": context, "results": rows, "transfers": transfers })
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
        assert!(row.passes());
        row.berth = ms(&[116, 116, 116]);
        assert!(!row.passes());
        let mut get = Row::new("get", Target::Millis(1.0));
        get.berth = ms(&[1, 1, 9]);
        get.raw = ms(&[0, 0, 0]);
        assert!(get.passes());
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
