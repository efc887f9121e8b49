//! Where the read models live: Postgres tables next to the event store, or (embedded)
//! a SQLite file of their own, so projecting never contends with appends for SQLite's
//! single writer.
//!
//! Every change of a batch and the checkpoint commit in one transaction, and the
//! checkpoint moves only from the value the projector read (`UPDATE … WHERE position =
//! from`): a crash never applies a batch twice or skips one, and of two projectors
//! racing on one database only one applies each batch.

mod agents;
mod dead_letters;
mod postgres;
mod raw;
mod sqlite;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use uuid::Uuid;

use crate::rows::{Changes, ExecutionView, WorkflowFilter, WorkflowRow};

/// The name of the one checkpoint every read model shares (they commit together).
pub const CHECKPOINT: &str = "read_models";

/// What can go wrong reading or writing read models.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadModelError {
    /// The database could not be reached.
    #[error("read models unavailable: {0}")]
    Unavailable(String),
    /// Any other database error.
    #[error("read model error: {0}")]
    Backend(String),
}

impl From<sqlx::Error> for ReadModelError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => Self::Unavailable(e.to_string()),
            other => Self::Backend(other.to_string()),
        }
    }
}

/// Every row of every read model, in key order: what "rebuilt equals live" compares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dump {
    /// The checkpoint.
    pub checkpoint: u64,
    /// `rm_workflows`, by workflow id.
    pub workflows: Vec<WorkflowRow>,
    /// `rm_executions` with `rm_tasks`, by execution id.
    pub executions: Vec<ExecutionView>,
    /// `rm_agent_results`, by agent and position.
    pub agent_results: Vec<crate::rows::AgentResult>,
    /// `rm_dead_letters`, by id.
    pub dead_letters: Vec<crate::rows::DeadLetterRow>,
}

/// The read-model database (cheap to clone: a pool handle).
#[derive(Clone, Debug)]
pub enum ReadModels {
    /// Tables in the event store's Postgres database.
    Postgres(PgPool),
    /// A SQLite file of its own (embedded mode).
    Sqlite(SqlitePool),
}

impl ReadModels {
    /// Connects to Postgres at `url` and creates the tables if needed.
    pub async fn connect_postgres(url: &str) -> Result<Self, ReadModelError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| ReadModelError::Unavailable(format!("cannot connect to Postgres: {e}")))?;
        let models = Self::Postgres(pool);
        models.migrate().await?;
        Ok(models)
    }

    /// Opens (creating if needed) the SQLite file at `path` and creates the tables.
    pub async fn open_sqlite(path: &Path) -> Result<Self, ReadModelError> {
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| ReadModelError::Backend(e.to_string()))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Read models are rebuilt from the log: a power cut may roll back the newest
            // batches (with their checkpoint, so they are applied again), never tear one.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| {
                ReadModelError::Unavailable(format!("cannot open {}: {e}", path.display()))
            })?;
        let models = Self::Sqlite(pool);
        models.migrate().await?;
        Ok(models)
    }

    /// Creates the tables and the checkpoint row if they do not exist.
    pub async fn migrate(&self) -> Result<(), ReadModelError> {
        match self {
            Self::Postgres(pool) => postgres::migrate(pool).await,
            Self::Sqlite(pool) => sqlite::migrate(pool).await,
        }
    }

    /// Drops every read model and creates them empty, checkpoint 0.
    pub async fn reset(&self) -> Result<(), ReadModelError> {
        match self {
            Self::Postgres(pool) => postgres::reset(pool).await,
            Self::Sqlite(pool) => sqlite::reset(pool).await,
        }
    }

    /// The position of the last event applied.
    pub async fn checkpoint(&self) -> Result<u64, ReadModelError> {
        let position: i64 = match self {
            Self::Postgres(pool) => {
                sqlx::query_scalar("SELECT position FROM rm_checkpoints WHERE name = $1")
                    .bind(CHECKPOINT)
                    .fetch_optional(pool)
                    .await?
            }
            Self::Sqlite(pool) => {
                sqlx::query_scalar("SELECT position FROM rm_checkpoints WHERE name = ?1")
                    .bind(CHECKPOINT)
                    .fetch_optional(pool)
                    .await?
            }
        }
        .unwrap_or(0);
        Ok(u64::try_from(position).unwrap_or(0))
    }

    /// Writes `changes` and moves the checkpoint from `from` to `to`, in one
    /// transaction. `Ok(false)`: the checkpoint was not at `from` (another projector
    /// moved it) and nothing was written.
    pub async fn commit(
        &self,
        from: u64,
        to: u64,
        changes: &Changes,
    ) -> Result<bool, ReadModelError> {
        let (from, to) = (to_i64(from), to_i64(to));
        match self {
            Self::Postgres(pool) => postgres::commit(pool, from, to, changes).await,
            Self::Sqlite(pool) => sqlite::commit(pool, from, to, changes).await,
        }
    }

    /// One workflow's row, if it is `tenant`'s (another tenant's is None, as an
    /// unknown). `tenant` None: whoever's it is (the projector's own reads only).
    pub async fn workflow(
        &self,
        tenant: Option<&str>,
        workflow_id: Uuid,
    ) -> Result<Option<WorkflowRow>, ReadModelError> {
        let raw = match self {
            Self::Postgres(pool) => {
                sqlx::query_as::<_, raw::Workflow>(&format!(
                    "SELECT {} FROM rm_workflows
                     WHERE workflow_id = $1 AND ($2::text IS NULL OR tenant_id = $2)",
                    raw::WORKFLOW_COLUMNS
                ))
                .bind(workflow_id)
                .bind(tenant)
                .fetch_optional(pool)
                .await?
            }
            Self::Sqlite(pool) => {
                sqlx::query_as::<_, raw::Workflow>(&format!(
                    "SELECT {} FROM rm_workflows
                     WHERE workflow_id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    raw::WORKFLOW_COLUMNS
                ))
                .bind(workflow_id)
                .bind(tenant)
                .fetch_optional(pool)
                .await?
            }
        };
        Ok(raw.map(raw::Workflow::into_row))
    }

    /// `filter.tenant`'s workflows matching `filter`, newest first, at most `filter.limit`.
    pub async fn workflows(
        &self,
        filter: &WorkflowFilter,
    ) -> Result<Vec<WorkflowRow>, ReadModelError> {
        let raws = match self {
            Self::Postgres(pool) => postgres::workflows(pool, filter).await?,
            Self::Sqlite(pool) => sqlite::workflows(pool, filter).await?,
        };
        Ok(raws.into_iter().map(raw::Workflow::into_row).collect())
    }

    /// One execution with its tasks, if it is `tenant`'s (another tenant's is None, as
    /// an unknown).
    pub async fn execution(
        &self,
        tenant: &str,
        execution_id: Uuid,
    ) -> Result<Option<ExecutionView>, ReadModelError> {
        let view = match self {
            Self::Postgres(pool) => postgres::execution(pool, tenant, execution_id).await,
            Self::Sqlite(pool) => sqlite::execution(pool, tenant, execution_id).await,
        }?;
        let Some(mut view) = view else {
            return Ok(None);
        };
        let latest = match self {
            Self::Postgres(pool) => dead_letters::latest_of(pool, execution_id).await?,
            Self::Sqlite(pool) => dead_letters::latest_of(pool, execution_id).await?,
        };
        view.dead_letter = latest.map(|d| conflux_schema::api::DeadLetterRef {
            id: d.id,
            task_id: d.task_id,
            state: d.state,
        });
        Ok(Some(view))
    }

    /// Every row, in key order (tests and the rebuild check).
    pub async fn dump(&self) -> Result<Dump, ReadModelError> {
        let checkpoint = self.checkpoint().await?;
        let (workflows, executions, tasks) = match self {
            Self::Postgres(pool) => raw::dump(pool).await?,
            Self::Sqlite(pool) => raw::dump(pool).await?,
        };
        let agent_results = match self {
            Self::Postgres(pool) => agents::dump(pool).await?,
            Self::Sqlite(pool) => agents::dump(pool).await?,
        };
        let dead_letters = match self {
            Self::Postgres(pool) => dead_letters::dump(pool).await?,
            Self::Sqlite(pool) => dead_letters::dump(pool).await?,
        };
        Ok(Dump {
            agent_results,
            dead_letters,
            ..raw::assemble_dump(checkpoint, workflows, executions, tasks)
        })
    }

    /// `tenant`'s dead letters in `state` (every state: None), newest first, at most
    /// `limit`.
    pub async fn dead_letters(
        &self,
        tenant: &str,
        state: Option<conflux_schema::api::DeadLetterState>,
        limit: i64,
    ) -> Result<Vec<conflux_schema::api::DeadLetter>, ReadModelError> {
        Ok(match self {
            Self::Postgres(pool) => dead_letters::list(pool, tenant, state, limit).await?,
            Self::Sqlite(pool) => dead_letters::list(pool, tenant, state, limit).await?,
        })
    }

    /// Dead letter `id`, if it is `tenant`'s.
    pub async fn dead_letter(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<conflux_schema::api::DeadLetter>, ReadModelError> {
        Ok(match self {
            Self::Postgres(pool) => dead_letters::get(pool, tenant, id).await?,
            Self::Sqlite(pool) => dead_letters::get(pool, tenant, id).await?,
        })
    }

    /// Agent `agent_id`'s results: counts, and its latest 100 durations.
    pub async fn agent_results(
        &self,
        agent_id: Uuid,
    ) -> Result<crate::rows::AgentResults, ReadModelError> {
        Ok(match self {
            Self::Postgres(pool) => agents::results(pool, agent_id).await?,
            Self::Sqlite(pool) => agents::results(pool, agent_id).await?,
        })
    }
}

fn to_i64(position: u64) -> i64 {
    i64::try_from(position).unwrap_or(i64::MAX)
}
