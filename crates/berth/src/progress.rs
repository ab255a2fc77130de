//! Progress on stderr: bars for file transfers (bytes, rate and, when the size is known, the
//! remaining time) and a spinner showing the current step of a long task. indicatif hides them
//! when stderr is not a terminal (or `TERM=dumb`).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const BAR_TEMPLATE: &str = "[{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta} {wide_msg}";
const SPINNER_TEMPLATE: &str = "{spinner} {binary_bytes} {binary_bytes_per_sec} {elapsed} {wide_msg}";
const STEP_TEMPLATE: &str = "{spinner} {elapsed:>4} {wide_msg}";

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

/// A spinner whose message is the current step of a long task, e.g. a build's
/// `Step 2/5 : RUN make`, shortened to fit the terminal.
pub fn steps(message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style(STEP_TEMPLATE));
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Whether bars are drawn at all (stderr is a terminal that is not `TERM=dumb`); when they are
/// not, a caller with lines of progress to show prints them plainly.
pub fn drawn() -> bool {
    !ProgressDrawTarget::stderr().is_hidden()
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
        assert!(ProgressStyle::with_template(STEP_TEMPLATE).is_ok());
        let bar = transfer(Some(10), "x");
        bar.inc(5);
        assert_eq!(bar.position(), 5);
        transfer(None, "y").finish_and_clear();
    }
}
