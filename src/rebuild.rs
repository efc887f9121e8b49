//! `conflux projector rebuild`: the projector's rebuild with a progress bar on stderr
//! (indicatif: a maintained bar that degrades to nothing when stderr is not a
//! terminal) and a final line with the events replayed per second.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::app::Runtime;

/// Drops every read model and replays the whole log into them.
pub async fn rebuild(rt: &Runtime) -> anyhow::Result<()> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} rebuilding read models [{bar:40}] position {pos}/{len} ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let report = conflux_projector::rebuild::rebuild(
        rt.backends.stored.clone(),
        rt.catalog.clone(),
        rt.backends.read_models.clone(),
        |p| {
            bar.set_length(p.head.max(p.position));
            bar.set_position(p.position);
        },
    )
    .await;
    bar.finish_and_clear();
    let report = report?;
    eprintln!(
        "rebuilt the read models: {} events up to position {} in {:.2} s ({:.0} events/s)",
        report.events,
        report.position,
        report.seconds,
        report.events_per_second()
    );
    Ok(())
}
