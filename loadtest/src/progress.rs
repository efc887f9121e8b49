//! Progress on stderr while a scenario runs.
//!
//! Why the `indicatif` crate rather than a few `eprint!("\r…")`: it redraws at a bounded
//! rate from its own ticker (a hand-rolled line either floods the terminal or goes quiet
//! during a long wait), handles terminal width and clearing, and hides itself when
//! stderr is not a terminal — so CI logs and tests stay clean with no extra code. Each
//! scenario still prints one plain line when it starts and ends, which is what a log
//! keeps.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar (known length) or spinner (unknown length) on stderr.
pub struct Progress(ProgressBar);

impl Progress {
    /// A bar of `len` steps labelled `what`.
    pub fn bar(len: u64, what: &str) -> Self {
        let bar = ProgressBar::new(len);
        if let Ok(style) =
            ProgressStyle::with_template("  {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Self(bar)
    }

    /// A spinner labelled `what`.
    pub fn spinner(what: &str) -> Self {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("  {spinner} {prefix} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_prefix(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Self(bar)
    }

    /// Moves the bar to `pos`.
    pub fn set(&self, pos: u64) {
        self.0.set_position(pos);
    }

    /// Advances the bar by one.
    pub fn inc(&self) {
        self.0.inc(1);
    }

    /// Sets the text after the bar.
    pub fn message(&self, msg: impl Into<String>) {
        self.0.set_message(msg.into());
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
