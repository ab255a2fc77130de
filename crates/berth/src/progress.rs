//! Progress bars for file transfers, on stderr: bytes, rate and (when the size is known) the
//! remaining time. indicatif hides them when stderr is not a terminal (or `TERM=dumb`).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const BAR_TEMPLATE: &str = "[{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta} {wide_msg}";
const SPINNER_TEMPLATE: &str = "{spinner} {binary_bytes} {binary_bytes_per_sec} {elapsed} {wide_msg}";

/// A bar for `total` bytes, or a spinner counting bytes when the size is unknown. `label` (what
/// goes where) comes last and is shortened to fit the terminal.
pub fn transfer(total: Option<u64>, label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let bar = match total {
        Some(_) => bar.with_style(style(BAR_TEMPLATE).progress_chars("=> ")),
        None => bar.with_style(style(SPINNER_TEMPLATE)),
    };
    bar.set_message(label.to_owned());
    if total.is_none() {
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    bar
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_are_valid() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
        assert!(ProgressStyle::with_template(SPINNER_TEMPLATE).is_ok());
        let bar = transfer(Some(10), "x");
        bar.inc(5);
        assert_eq!(bar.position(), 5);
        transfer(None, "y").finish_and_clear();
    }
}
