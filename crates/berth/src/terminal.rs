//! The local terminal during an interactive exec: raw mode that is always restored (on return,
//! on error and on panic) and the window size.

use std::io::IsTerminal;
use std::sync::Once;

/// Raw mode while alive: keys go to the sandbox unprocessed (ctrl-c included). Dropping it
/// restores the terminal; a panic hook restores it too before the panic message is printed.
#[derive(Debug)]
pub struct RawMode {
    _private: (),
}

impl RawMode {
    /// Switches the terminal on stdin to raw mode.
    pub fn enable() -> std::io::Result<RawMode> {
        install_panic_hook();
        crossterm::terminal::enable_raw_mode()?;
        Ok(RawMode { _private: () })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Chains a hook that leaves raw mode before the previous hook prints the panic.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = crossterm::terminal::disable_raw_mode();
            previous(info);
        }));
    });
}

/// The window size as `(cols, rows)` when stdin or stdout is a terminal that reports one.
pub fn size() -> Option<(u16, u16)> {
    if !std::io::stdin().is_terminal() && !std::io::stdout().is_terminal() {
        return None;
    }
    crossterm::terminal::size()
        .ok()
        .filter(|&(cols, rows)| cols > 0 && rows > 0)
}
