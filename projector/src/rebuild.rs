//! `conflux projector rebuild`: drops every read model and replays the whole log into
//! fresh tables, through the same fold and commit the live projector uses, so a
//! rebuilt table equals the live one row for row.

use std::sync::Arc;
use std::time::Instant;

use conflux_engine::catalog::WorkflowCatalog;
use conflux_engine::store::EventStore;

use crate::db::ReadModels;
use crate::runner::{Projector, ProjectorError};

/// Events a rebuild reads and commits per transaction.
pub const REBUILD_BATCH: usize = 50_000;

/// Where a rebuild is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The position applied so far.
    pub position: u64,
    /// The head of the log when the rebuild started (it may grow meanwhile).
    pub head: u64,
    /// Events applied so far.
    pub events: u64,
}

/// What a finished rebuild did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    /// Events replayed.
    pub events: u64,
    /// The checkpoint reached.
    pub position: u64,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl Report {
    /// Events replayed per second of wall time.
    pub fn events_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Drops and recreates every read model, then replays the log from position 0 until
/// it is caught up; `progress` is called after every batch.
pub async fn rebuild(
    store: Arc<dyn EventStore>,
    catalog: WorkflowCatalog,
    models: ReadModels,
    mut progress: impl FnMut(Progress),
) -> Result<Report, ProjectorError> {
    let started = Instant::now();
    let head = store.head_position().await?;
    models.reset().await?;
    let mut projector = Projector::new(store, catalog, models, REBUILD_BATCH).await?;
    let events = projector
        .catch_up(|position, events| {
            progress(Progress {
                position,
                head,
                events,
            })
        })
        .await?;
    Ok(Report {
        events,
        position: projector.checkpoint(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
