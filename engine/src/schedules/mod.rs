//! Schedules: start a workflow on a cron, in a time zone, exactly once per tick however
//! many engines run.
//!
//! # Layout
//! - [`cadence`]: the pure tick arithmetic (croner + chrono-tz): due ticks, catch-up,
//!   and the execution id a tick derives.
//! - [`state`]: the pure fold of `schedule-<id>` streams into a [`state::Directory`].
//! - [`ticker`]: the loop every engine process runs: fold, find due ticks, start them.
//! - this module: [`Schedules`], the service the API calls (create, pause, resume,
//!   delete, get, list), typed [`ScheduleError`]s, no HTTP.
//!
//! A schedule is a stream like any other (`ScheduleCreated`, `SchedulePaused`,
//! `ScheduleResumed`, `ScheduleDeleted`, `ScheduleTicked`). Exactly-once per tick comes
//! from the store, not from a leader: a tick's execution id is uuid v5 of (schedule,
//! tick time), started at version 0 of its stream, so a second engine's start is a
//! version conflict.

pub mod cadence;
pub mod state;
pub mod ticker;

use std::sync::Arc;

use chrono::Utc;
use conflux_schema::api::Schedule;
use conflux_schema::schedule::{CatchUp, Overlap, ScheduleStatus};
use conflux_schema::{Event, EventMetadata, NewEvent, StreamId};
use serde_json::Value;
use tokio::sync::{Mutex, Notify};
use uuid::Uuid;

use crate::commands::ExecutionCommands;
use crate::store::StoreError;
use cadence::{Cadence, CadenceError};
use state::Directory;

/// How many times a change is re-tried after version conflicts (a busy schedule's
/// ticker appends too).
const MAX_ATTEMPTS: usize = 8;

/// Why a schedule request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression or the time zone is invalid (422).
    #[error(transparent)]
    Invalid(#[from] CadenceError),
    /// No such schedule in the caller's tenant (404).
    #[error("schedule {0} not found")]
    NotFound(Uuid),
    /// No such workflow in the caller's tenant (404).
    #[error("workflow {0} not found")]
    WorkflowNotFound(Uuid),
    /// The schedule's state does not allow it (409): pausing a paused one, resuming an
    /// active one.
    #[error("schedule {id} is {status}")]
    State {
        /// The schedule.
        id: Uuid,
        /// What it is.
        status: &'static str,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A schedule to create.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    /// The workflow each tick starts.
    pub workflow_id: Uuid,
    /// The cron expression.
    pub cron: String,
    /// The time zone (None: `UTC`).
    pub timezone: Option<String>,
    /// The input (None: `{}`).
    pub input: Option<Value>,
    /// The overlap policy (None: `skip`).
    pub overlap: Option<Overlap>,
    /// The catch-up policy (None: `latest`).
    pub catch_up: Option<CatchUp>,
}

/// The schedules service: reads the schedule streams into a directory (caught up before
/// every answer, so a caller reads its own writes) and records changes. Cheap to clone.
#[derive(Clone)]
pub struct Schedules {
    commands: ExecutionCommands,
    directory: Arc<Mutex<Directory>>,
    changed: Arc<Notify>,
}

impl Schedules {
    /// The service over `commands`' store and catalog.
    pub fn new(commands: ExecutionCommands) -> Self {
        Self {
            commands,
            directory: Arc::default(),
            changed: Arc::default(),
        }
    }

    /// The execution commands ticks start executions with.
    pub fn commands(&self) -> &ExecutionCommands {
        &self.commands
    }

    /// Woken when this process changed a schedule (the ticker re-reads at once).
    pub(crate) fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Reads every schedule event after the directory's position into it; returns a
    /// copy of it.
    pub async fn refresh(&self) -> Result<Directory, StoreError> {
        let mut directory = self.directory.lock().await;
        loop {
            let page = self
                .commands
                .store()
                .read_all_of(&Directory::STREAMS, directory.position(), 1000)
                .await?;
            directory.apply_all(&page);
            if page.len() < 1000 {
                return Ok(directory.clone());
            }
        }
    }

    /// Creates a schedule in the tenant of `metadata`: the expression and the zone must
    /// parse and the workflow must be the tenant's.
    pub async fn create(
        &self,
        new: NewSchedule,
        metadata: EventMetadata,
    ) -> Result<Schedule, ScheduleError> {
        let timezone = new.timezone.unwrap_or_else(|| "UTC".to_owned());
        Cadence::validate(&new.cron, &timezone, Utc::now())?;
        self.commands
            .catalog()
            .get_in(metadata.tenant(), new.workflow_id)
            .await?
            .ok_or(ScheduleError::WorkflowNotFound(new.workflow_id))?;
        let id = Uuid::now_v7();
        let event = Event::ScheduleCreated {
            schedule_id: id,
            workflow_id: new.workflow_id,
            cron: new.cron,
            timezone,
            input: new
                .input
                .unwrap_or_else(|| Value::Object(Default::default())),
            overlap: new.overlap.unwrap_or_default(),
            catch_up: new.catch_up.unwrap_or_default(),
        };
        let tenant = metadata.tenant().to_owned();
        self.commands
            .store()
            .append(
                &StreamId::schedule(id),
                0,
                vec![NewEvent::new(event, metadata)],
            )
            .await?;
        self.changed.notify_waiters();
        self.get(&tenant, id).await
    }

    /// Schedule `id` of `tenant`.
    pub async fn get(&self, tenant: &str, id: Uuid) -> Result<Schedule, ScheduleError> {
        let directory = self.refresh().await?;
        directory
            .get_in(tenant, id)
            .map(|s| s.view(Utc::now()))
            .ok_or(ScheduleError::NotFound(id))
    }

    /// A page of `tenant`'s schedules (newest first, ids below `before`), and the
    /// cursor of the next page.
    pub async fn list(
        &self,
        tenant: &str,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<(Vec<Schedule>, Option<Uuid>), StoreError> {
        let directory = self.refresh().await?;
        let now = Utc::now();
        let (page, more) = directory.page(tenant, before, limit);
        let next = more.then(|| page.last().map(|s| s.id)).flatten();
        Ok((page.into_iter().map(|s| s.view(now)).collect(), next))
    }

    /// How many schedules `tenant` has (the `schedules` quota).
    pub async fn count(&self, tenant: &str) -> Result<u64, StoreError> {
        Ok(self.refresh().await?.count_of(tenant))
    }

    /// Pauses schedule `id` (409 if it is paused).
    pub async fn pause(
        &self,
        id: Uuid,
        metadata: EventMetadata,
    ) -> Result<Schedule, ScheduleError> {
        self.change(id, metadata, |status| match status {
            ScheduleStatus::Active => Ok(Event::SchedulePaused {}),
            ScheduleStatus::Paused => Err("paused"),
        })
        .await
    }

    /// Resumes schedule `id` (409 if it is active): ticks from now on start executions;
    /// the ticks it missed while paused never do.
    pub async fn resume(
        &self,
        id: Uuid,
        metadata: EventMetadata,
    ) -> Result<Schedule, ScheduleError> {
        self.change(id, metadata, |status| match status {
            ScheduleStatus::Paused => Ok(Event::ScheduleResumed {}),
            ScheduleStatus::Active => Err("active"),
        })
        .await
    }

    /// Deletes schedule `id`: it never ticks again. Executions it started go on.
    pub async fn delete(&self, id: Uuid, metadata: EventMetadata) -> Result<(), ScheduleError> {
        self.change(id, metadata, |_| Ok(Event::ScheduleDeleted {}))
            .await
            .map(|_| ())
    }

    async fn change(
        &self,
        id: Uuid,
        metadata: EventMetadata,
        decide: impl Fn(ScheduleStatus) -> Result<Event, &'static str>,
    ) -> Result<Schedule, ScheduleError> {
        let tenant = metadata.tenant().to_owned();
        let stream = StreamId::schedule(id);
        let mut last = None;
        for _ in 0..MAX_ATTEMPTS {
            let directory = self.refresh().await?;
            let state = directory
                .get_in(&tenant, id)
                .ok_or(ScheduleError::NotFound(id))?;
            let event =
                decide(state.status).map_err(|status| ScheduleError::State { id, status })?;
            let mut after = state.clone();
            match self
                .commands
                .store()
                .append(
                    &stream,
                    state.version,
                    vec![NewEvent::new(event, metadata.clone())],
                )
                .await
            {
                Ok(events) => {
                    self.changed.notify_waiters();
                    events.iter().for_each(|e| after.apply(e));
                    return Ok(after.view(Utc::now()));
                }
                Err(e @ StoreError::Conflict { .. }) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last
            .unwrap_or_else(|| StoreError::Backend("no attempt made".into()))
            .into())
    }
}
