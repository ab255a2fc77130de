//! `berth stats`: a sandbox's resource usage, one table line per sample like `docker stats`:
//! streamed about every second until ctrl-c, or one sample with `--no-stream`.

use anyhow::anyhow;
use berth_api::StatsView;
use berth_client::BerthClient;
use clap::Args;
use futures::StreamExt;

use crate::output::emit;

#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    /// Print one sample and exit
    #[arg(long)]
    pub no_stream: bool,
    /// Sandbox id
    #[arg(value_name = "ID")]
    pub id: String,
}

/// The columns and their widths (the last one is not padded).
const COLUMNS: [(&str, usize); 6] = [
    ("CPU %", 8),
    ("MEM USAGE / LIMIT", 21),
    ("MEM %", 8),
    ("NET I/O", 19),
    ("BLOCK I/O", 19),
    ("PIDS", 0),
];
const COLUMN_GAP: &str = "   ";

pub async fn run(client: &BerthClient, args: &StatsArgs) -> anyhow::Result<()> {
    if args.no_stream {
        let sample = client.stats(&args.id).await?;
        emit(&format!("{}{}", header(), row(&sample)))?;
        return Ok(());
    }
    let mut samples = client.stats_stream(&args.id).await?;
    emit(&header())?;
    while let Some(sample) = samples.next().await {
        emit(&row(&sample?))?;
    }
    // The stream ends when the sandbox does.
    Err(anyhow!("the stats stream of {} ended", args.id))
}

/// The header line.
pub fn header() -> String {
    line(&COLUMNS.map(|(name, _)| name.to_owned()))
}

/// One sample as a table line.
pub fn row(sample: &StatsView) -> String {
    let memory_percent = if sample.memory_limit_bytes == 0 {
        0.0
    } else {
        sample.memory_used_bytes as f64 / sample.memory_limit_bytes as f64 * 100.0
    };
    line(&[
        format!("{:.2}%", sample.cpu_percent),
        format!(
            "{} / {}",
            binary_size(sample.memory_used_bytes),
            binary_size(sample.memory_limit_bytes)
        ),
        format!("{memory_percent:.2}%"),
        format!(
            "{} / {}",
            decimal_size(sample.network_rx_bytes),
            decimal_size(sample.network_tx_bytes)
        ),
        format!(
            "{} / {}",
            decimal_size(sample.block_read_bytes),
            decimal_size(sample.block_write_bytes)
        ),
        sample.pids.to_string(),
    ])
}

fn line(cells: &[String; 6]) -> String {
    let mut out = String::new();
    for (index, (cell, (_, width))) in cells.iter().zip(COLUMNS).enumerate() {
        if index > 0 {
            out.push_str(COLUMN_GAP);
        }
        out.push_str(&format!("{cell:<width$}"));
    }
    let mut out = out.trim_end().to_owned();
    out.push('\n');
    out
}

/// Memory as `docker stats` shows it: binary units, four significant digits (`1.953GiB`).
pub fn binary_size(bytes: u64) -> String {
    scaled(
        bytes as f64,
        1024.0,
        &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"],
        4,
    )
}

/// Network and disk traffic as `docker stats` shows it: decimal units, three significant
/// digits (`1.45kB`).
pub fn decimal_size(bytes: u64) -> String {
    scaled(bytes as f64, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB", "EB"], 3)
}

fn scaled(mut value: f64, base: f64, units: &[&str], digits: i32) -> String {
    let mut unit = 0;
    while value >= base && unit + 1 < units.len() {
        value /= base;
        unit += 1;
    }
    format!("{}{}", significant(value, digits), units[unit])
}

/// `value` with at most `digits` significant digits and no trailing zeros, like Go's `%.Ng`
/// for the magnitudes shown here.
fn significant(value: f64, digits: i32) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    let magnitude = value.abs().log10().floor() as i32;
    let decimals = usize::try_from(digits - 1 - magnitude).unwrap_or(0);
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    #[test]
    fn sizes_read_like_docker_stats() {
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(1023), "1023B");
        assert_eq!(binary_size(1536 * 1024), "1.5MiB");
        assert_eq!(binary_size(2_097_152_000), "1.953GiB");
        assert_eq!(binary_size(512 * 1024 * 1024), "512MiB");
        assert_eq!(decimal_size(648), "648B");
        assert_eq!(decimal_size(1_450), "1.45kB");
        assert_eq!(decimal_size(12_345_678), "12.3MB");
        assert_eq!(decimal_size(1_000_000), "1MB");
    }

    #[test]
    fn one_line_per_sample_under_the_header() {
        let sample = StatsView {
            read_at: Utc::now(),
            cpu_percent: 12.345,
            memory_used_bytes: 64 * 1024 * 1024,
            memory_limit_bytes: 512 * 1024 * 1024,
            pids: 3,
            network_rx_bytes: 1_450,
            network_tx_bytes: 648,
            block_read_bytes: 0,
            block_write_bytes: 4_096,
        };
        let table = format!("{}{}", header(), row(&sample));
        assert_eq!(
            table,
            "CPU %      MEM USAGE / LIMIT       MEM %      NET I/O               BLOCK I/O             PIDS\n\
             12.35%     64MiB / 512MiB          12.50%     1.45kB / 648B         0B / 4.1kB            3\n"
        );
        let unlimited = StatsView {
            memory_limit_bytes: 0,
            ..sample
        };
        assert!(row(&unlimited).contains("0.00%"), "{}", row(&unlimited));
    }
}
