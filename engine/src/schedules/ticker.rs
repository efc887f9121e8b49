//! The ticker every engine process runs: fold the schedule streams, find each active
//! schedule's due ticks ([`Cadence::due`]), start their executions, record
//! `ScheduleTicked`, and sleep until the next tick (or 250 ms, to see other servers'
//! changes).
//!
//! Several tickers handle the same tick without harm: the tick's execution id is
//! derived from (schedule, tick), so only one start can win version 0 of its stream;
//! and `ScheduleTicked` is appended at the schedule's version, so only one is recorded
//! per tick. A crash between the start and the record leaves the tick due: the next
//! pass (here or on another server) finds its execution started and records it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use conflux_schema::schedule::{Overlap, TickOutcome};
use conflux_schema::{Event, EventMetadata, NewEvent, StreamId};
use futures::future::join_all;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::cadence::tick_execution_id;
use super::state::ScheduleState;
use super::Schedules;
use crate::commands::CommandError;
use crate::execution::{Command, Rejection};
use crate::quota::{Admission, QuotaError, Quotas};
use crate::store::StoreError;

/// How often a ticker re-reads the schedules when no tick is nearer.
const POLL: Duration = Duration::from_millis(250);

/// How many times a tick's record is re-tried after version conflicts.
const RECORD_ATTEMPTS: usize = 4;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Ticks this pass recorded (`ScheduleTicked` appended here).
    pub recorded: usize,
    /// The earliest tick still ahead, if any schedule is active.
    pub next_tick_at: Option<DateTime<Utc>>,
}

/// The ticker of one process.
#[derive(Clone)]
pub struct Ticker {
    schedules: Schedules,
    quotas: Option<Quotas>,
}

/// What became of one tick before it is recorded.
struct Handled {
    outcome: TickOutcome,
    execution_id: Option<Uuid>,
    error: Option<String>,
}

impl Handled {
    fn started(execution_id: Uuid) -> Self {
        Self {
            outcome: TickOutcome::Started,
            execution_id: Some(execution_id),
            error: None,
        }
    }

    fn not_started(outcome: TickOutcome, error: Option<String>) -> Self {
        Self {
            outcome,
            execution_id: None,
            error,
        }
    }
}

impl Ticker {
    /// A ticker over `schedules`, starting executions within `quotas` (None: no quota).
    pub fn new(schedules: Schedules, quotas: Option<Quotas>) -> Self {
        Self { schedules, quotas }
    }

    /// Runs passes until `shutdown`; a store error waits for the next pass.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!("the schedule ticker is running");
        loop {
            let changed = self.schedules.changed().notified();
            let now = Utc::now();
            let wait = match self.pass(now).await {
                Ok(pass) => pass
                    .next_tick_at
                    .and_then(|t| (t - Utc::now()).to_std().ok())
                    .map_or(POLL, |d| d.min(POLL)),
                Err(e) => {
                    tracing::warn!(error = %e, "a schedule pass failed; trying again");
                    POLL
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = changed => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One pass at `now`: every active schedule's due ticks, handled and recorded.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<Pass, StoreError> {
        let directory = self.schedules.refresh().await?;
        let mut work = Vec::new();
        let mut next_tick_at: Option<DateTime<Utc>> = None;
        for state in directory.live().filter(|s| s.is_ticking()) {
            let Some(cadence) = state.cadence.as_ref() else {
                continue;
            };
            let due = cadence.due(state.ticked_up_to(), now, state.catch_up);
            if let Some(next) = cadence.next_after(now.max(state.ticked_up_to())) {
                next_tick_at = Some(next_tick_at.map_or(next, |n| n.min(next)));
            }
            if !due.is_empty() {
                work.push(self.fire(state.clone(), due));
            }
        }
        let recorded = join_all(work).await.into_iter().sum();
        Ok(Pass {
            recorded,
            next_tick_at,
        })
    }

    /// Handles `ticks` of `state` in order; returns how many it recorded. Stops at the
    /// first tick another server recorded, or once the schedule changed under it (the
    /// next pass reads what happened).
    async fn fire(&self, state: ScheduleState, ticks: Vec<DateTime<Utc>>) -> usize {
        let stream = StreamId::schedule(state.id);
        let mut version = state.version;
        let mut previous = state.last_execution_id;
        let mut recorded = 0;
        for tick_at in ticks {
            let handled = match self.handle(&state, tick_at, previous).await {
                Ok(handled) => handled,
                Err(e) => {
                    tracing::warn!(schedule = %state.id, %tick_at, error = %e, "a tick could not be handled; trying again");
                    return recorded;
                }
            };
            if handled.outcome == TickOutcome::Started {
                previous = handled.execution_id;
            }
            let event = Event::ScheduleTicked {
                tick_at,
                execution_id: handled.execution_id,
                outcome: handled.outcome,
                error: handled.error,
            };
            let metadata = EventMetadata {
                actor: Some("engine".into()),
                tenant_id: Some(state.tenant.clone()),
                ..EventMetadata::default()
            };
            match self
                .record(&stream, state.id, version, tick_at, event, metadata)
                .await
            {
                Some((v, retried)) => {
                    version = v;
                    recorded += 1;
                    let late = (Utc::now() - tick_at).to_std().unwrap_or_default();
                    metrics::histogram!("conflux_schedule_tick_lateness_seconds")
                        .record(late.as_secs_f64());
                    if retried {
                        // The schedule changed under this pass: the next one decides
                        // its later ticks on what it is now.
                        return recorded;
                    }
                }
                None => return recorded,
            }
        }
        recorded
    }

    /// Appends `event` (the `ScheduleTicked` of `tick_at`) at `version`; on a conflict
    /// (another server recorded a tick, or the schedule was paused or deleted meanwhile)
    /// reads the schedule again and appends after it unless `tick_at` is recorded by
    /// now, so a tick whose execution started is always recorded, once. Returns the
    /// stream's new version and whether the schedule had changed meanwhile, or None
    /// when this server did not record it.
    async fn record(
        &self,
        stream: &StreamId,
        id: Uuid,
        mut version: u64,
        tick_at: DateTime<Utc>,
        event: Event,
        metadata: EventMetadata,
    ) -> Option<(u64, bool)> {
        let store = self.schedules.commands().store();
        for attempt in 0..RECORD_ATTEMPTS {
            let append = vec![NewEvent::new(event.clone(), metadata.clone())];
            match store.append(stream, version, append).await {
                Ok(events) => return events.last().map(|e| (e.version, attempt > 0)),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => {
                    tracing::warn!(schedule = %id, %tick_at, error = %e, "recording a tick failed; trying again");
                    return None;
                }
            }
            let directory = self.schedules.refresh().await.ok()?;
            let now = directory.get(id)?;
            if now.last_tick_at.is_some_and(|t| t >= tick_at) {
                return None;
            }
            version = now.version;
        }
        None
    }

    /// Starts (or finds started) the execution of `tick_at`, as the overlap policy and
    /// the quotas allow. An error is a store error: the tick stays due.
    async fn handle(
        &self,
        state: &ScheduleState,
        tick_at: DateTime<Utc>,
        previous: Option<Uuid>,
    ) -> Result<Handled, StoreError> {
        let commands = self.schedules.commands();
        let execution_id = tick_execution_id(state.id, tick_at);
        let stream = StreamId::execution(execution_id);
        if commands.store().stream_version(&stream).await? > 0 {
            return Ok(Handled::started(execution_id));
        }
        let metadata = EventMetadata {
            correlation_id: Some(StreamId::schedule(state.id).to_string()),
            causation_id: Some(format!(
                "schedule-{}@{}",
                state.id,
                tick_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
            actor: Some(format!("schedule:{}", state.id)),
            tenant_id: Some(state.tenant.clone()),
            request_id: None,
        };
        if let (Some(previous), Overlap::Skip | Overlap::CancelPrevious) = (previous, state.overlap)
        {
            let running = match commands.load(previous).await {
                Ok(loaded) => loaded.is_some_and(|(s, _)| !s.is_terminal()),
                Err(CommandError::Store(e)) => return Err(e),
                Err(_) => false,
            };
            if running && state.overlap == Overlap::Skip {
                return Ok(Handled::not_started(TickOutcome::Skipped, None));
            }
            if running {
                let reason = format!(
                    "cancelled by schedule {} for its tick at {tick_at}",
                    state.id
                );
                let cancel = Command::Cancel {
                    reason: Some(reason),
                };
                match commands
                    .record(previous, metadata.clone(), |_, _| Ok(cancel.clone()))
                    .await
                {
                    Ok(_) | Err(CommandError::Rejected(_)) | Err(CommandError::NotFound(_)) => {}
                    Err(CommandError::Store(e)) => return Err(e),
                    Err(CommandError::Forbidden(why)) | Err(CommandError::Invalid(why)) => {
                        tracing::warn!(schedule = %state.id, %why, "cancelling the previous execution was refused");
                    }
                }
            }
        }
        let _admitted = match &self.quotas {
            Some(quotas) => match quotas.admit(&state.tenant, Admission::Start).await {
                Ok(admitted) => Some(admitted),
                Err(QuotaError::Exceeded(e)) => {
                    return Ok(Handled::not_started(
                        TickOutcome::QuotaExceeded,
                        Some(e.to_string()),
                    ))
                }
                Err(QuotaError::Store(e)) => return Err(e),
            },
            None => None,
        };
        match commands
            .start(
                state.workflow_id,
                execution_id,
                state.input.clone(),
                None,
                metadata,
            )
            .await
        {
            Ok(_) | Err(CommandError::Rejected(Rejection::AlreadyStarted)) => {
                Ok(Handled::started(execution_id))
            }
            Err(CommandError::Store(e)) => Err(e),
            Err(e) => Ok(Handled::not_started(
                TickOutcome::Failed,
                Some(e.to_string()),
            )),
        }
    }
}
