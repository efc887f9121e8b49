//! The embedded event store: one local SQLite file, same semantics as Postgres, so that
//! `conflux serve` works on a fresh machine with nothing else installed.
//!
//! SQLite admits one writer at a time, so positions (`INTEGER PRIMARY KEY
//! AUTOINCREMENT`) are assigned in commit order without any extra lock. The file runs
//! in WAL mode with `synchronous=FULL`: a committed append survives a power loss.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use conflux_schema::{EventEnvelope, StreamId};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row as _, Sqlite, Transaction};
use tokio::sync::watch;
use uuid::Uuid;

use super::chain::{verify_rows, ChainVerification, StoredRow};
use super::postgres::db_int;
use super::writer::{plan, prepare, AppendQueue, Head, InsertError, LogBackend, Row};
use super::{AppendRequest, EventStore, SigningSecret, StoreError, StreamQuery};

/// Rows per INSERT statement (11 bound parameters each, under SQLite's limit).
const ROWS_PER_STATEMENT: usize = 2000;

const SELECT_COLUMNS: &str =
    "position, stream_id, version, event_id, event_type, schema_version, data, metadata, recorded_at, hash";

/// The embedded [`EventStore`].
#[derive(Clone)]
pub struct SqliteStore {
    backend: Arc<SqliteBackend>,
    queue: AppendQueue,
    commits: watch::Receiver<u64>,
}

struct SqliteBackend {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, applies migrations and
    /// starts the append writer.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| StoreError::Backend(e.to_string()))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        migrate(&pool).await?;
        let backend = Arc::new(SqliteBackend { pool });
        let (tx, commits) = watch::channel(0);
        let queue = AppendQueue::start(backend.clone(), tx);
        Ok(Self {
            backend,
            queue,
            commits,
        })
    }

    /// The connection pool (for read models that share the file).
    pub fn pool(&self) -> &SqlitePool {
        &self.backend.pool
    }

    /// Runs an append in a transaction that stays open until the returned
    /// [`HeldAppend`] is committed (see the conformance suite).
    pub async fn append_held(&self, req: AppendRequest) -> Result<HeldAppend, StoreError> {
        let mut heads = self.backend.heads(&[req.stream.as_str()]).await?;
        let stream = req.stream.clone();
        let expected = req.expected_version;
        let rows = plan(&mut heads, prepare(req)?)?;
        let refs: Vec<&Row> = rows.iter().collect();
        let mut tx = self.backend.pool.begin().await.map_err(map_err)?;
        let positions = insert_rows(&mut tx, &refs).await.map_err(|e| match e {
            InsertError::Duplicate => StoreError::Conflict {
                stream: stream.clone(),
                expected,
                actual: expected,
            },
            InsertError::Store(e) => e,
        })?;
        Ok(HeldAppend {
            tx,
            rows,
            positions,
        })
    }
}

/// An append whose transaction is still open (see [`SqliteStore::append_held`]).
pub struct HeldAppend {
    tx: Transaction<'static, Sqlite>,
    rows: Vec<Row>,
    positions: Vec<u64>,
}

impl HeldAppend {
    /// The positions the held events will have once committed.
    pub fn positions(&self) -> &[u64] {
        &self.positions
    }

    /// Commits and returns the envelopes.
    pub async fn commit(self) -> Result<Vec<EventEnvelope>, StoreError> {
        self.tx.commit().await.map_err(map_err)?;
        Ok(self
            .rows
            .into_iter()
            .zip(self.positions)
            .map(|(r, p)| r.into_envelope(p))
            .collect())
    }
}

/// Applies the SQLite migrations in `schema/migrations/sqlite`.
pub async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::migrate!("../schema/migrations/sqlite")
        .run(pool)
        .await
        .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))
}

pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

fn insert_error(e: sqlx::Error) -> InsertError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => InsertError::Duplicate,
        _ => InsertError::Store(map_err(e)),
    }
}

fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn insert_rows(
    tx: &mut Transaction<'static, Sqlite>,
    rows: &[&Row],
) -> Result<Vec<u64>, InsertError> {
    let mut positions = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO events (stream_id, stream_type, version, event_id, event_type, \
             schema_version, data, metadata, recorded_at, hash) ",
        );
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(r.stream.as_str().to_owned())
                .push_bind(r.stream.stream_type().as_str())
                .push_bind(r.version as i64)
                .push_bind(r.event_id.to_string())
                .push_bind(r.event_type)
                .push_bind(r.schema_version as i64)
                .push_bind(r.data_json.as_str())
                .push_bind(r.metadata_json.as_str())
                .push_bind(time_text(r.recorded_at))
                .push_bind(r.hash.to_vec());
        });
        qb.push(" RETURNING position");
        let rows: Vec<i64> = qb
            .build_query_scalar()
            .fetch_all(&mut **tx)
            .await
            .map_err(insert_error)?;
        positions.extend(rows.into_iter().map(|p| p as u64));
    }
    static UPSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "INSERT INTO tenant_usage (tenant, {}) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (tenant) DO UPDATE SET {}",
            super::usage::COUNTER_COLUMNS,
            super::usage::ADD_EXCLUDED
        )
    });
    for d in super::usage::deltas(rows) {
        sqlx::query(UPSERT.as_str())
            .bind(&d.tenant)
            .bind(d.running)
            .bind(d.started)
            .bind(d.definitions)
            .bind(d.agents)
            .bind(d.bytes)
            .execute(&mut **tx)
            .await
            .map_err(insert_error)?;
    }
    // RETURNING order is unspecified; AUTOINCREMENT assigns in insert order.
    positions.sort_unstable();
    if let Some(last) = positions.last() {
        sqlx::query("INSERT INTO outbox (position) VALUES (?)")
            .bind(*last as i64)
            .execute(&mut **tx)
            .await
            .map_err(insert_error)?;
    }
    Ok(positions)
}

fn stored_row(row: &SqliteRow) -> Result<StoredRow, StoreError> {
    let position: i64 = row.try_get("position").map_err(map_err)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        position: position as u64,
        reason,
    };
    let text = |name: &str| {
        row.try_get::<String, _>(name)
            .map_err(|e| corrupt(e.to_string()))
    };
    Ok(StoredRow {
        position: position as u64,
        stream_id: text("stream_id")?,
        version: row
            .try_get::<i64, _>("version")
            .map_err(|e| corrupt(e.to_string()))? as u64,
        event_id: Uuid::parse_str(&text("event_id")?).map_err(|e| corrupt(e.to_string()))?,
        event_type: text("event_type")?,
        schema_version: row
            .try_get::<i64, _>("schema_version")
            .map_err(|e| corrupt(e.to_string()))? as u16,
        data: serde_json::from_str(&text("data")?).map_err(|e| corrupt(format!("data: {e}")))?,
        metadata: serde_json::from_str(&text("metadata")?)
            .map_err(|e| corrupt(format!("metadata: {e}")))?,
        recorded_at: DateTime::parse_from_rfc3339(&text("recorded_at")?)
            .map_err(|e| corrupt(format!("recorded_at: {e}")))?
            .with_timezone(&Utc),
        hash: row.try_get("hash").map_err(|e| corrupt(e.to_string()))?,
    })
}

impl SqliteBackend {
    async fn fetch_stream(
        &self,
        stream: &str,
        after: u64,
        limit: i64,
    ) -> Result<Vec<StoredRow>, StoreError> {
        let sql = format!(
            "SELECT {SELECT_COLUMNS} FROM events WHERE stream_id = ? AND version > ? ORDER BY version LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(stream)
            .bind(db_int(after))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(stored_row).collect()
    }
}

#[async_trait]
impl LogBackend for SqliteBackend {
    async fn heads(&self, streams: &[&str]) -> Result<HashMap<String, Head>, StoreError> {
        let mut heads = HashMap::with_capacity(streams.len());
        for stream in streams {
            let row = sqlx::query("SELECT version, hash FROM events WHERE stream_id = ? ORDER BY version DESC LIMIT 1")
                .bind(*stream)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
            if let Some(row) = row {
                let version: i64 = row.try_get("version").map_err(map_err)?;
                let hash: Vec<u8> = row.try_get("hash").map_err(map_err)?;
                let hash: [u8; 32] = hash.try_into().map_err(|_| StoreError::Corrupt {
                    position: 0,
                    reason: format!("head hash of {stream} is not 32 bytes"),
                })?;
                heads.insert(
                    (*stream).to_owned(),
                    Head {
                        version: version as u64,
                        hash,
                    },
                );
            }
        }
        Ok(heads)
    }

    fn max_in_flight(&self) -> usize {
        1
    }

    async fn insert(&self, rows: &[&Row]) -> Result<Vec<u64>, InsertError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| InsertError::Store(map_err(e)))?;
        let positions = insert_rows(&mut tx, rows).await?;
        tx.commit()
            .await
            .map_err(|e| InsertError::Store(map_err(e)))?;
        Ok(positions)
    }
}

impl SqliteStore {
    /// Events with position > `after_position` matching `filter` (SQL written by this
    /// crate, never input), in position order.
    async fn read_positions(
        &self,
        filter: &str,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        let sql = format!(
            "SELECT {SELECT_COLUMNS} FROM events WHERE {filter} AND position > ? \
             ORDER BY position LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(db_int(after_position))
            .bind(db_int(limit))
            .fetch_all(&self.backend.pool)
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|r| stored_row(r).and_then(StoredRow::into_envelope))
            .collect()
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append_many(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<Vec<EventEnvelope>, StoreError>> {
        self.queue.submit(requests).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.backend
            .fetch_stream(stream.as_str(), after_version, db_int(limit))
            .await?
            .into_iter()
            .map(StoredRow::into_envelope)
            .collect()
    }

    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.read_positions("1", after_position, limit).await
    }

    async fn read_all_of(
        &self,
        types: &[conflux_schema::StreamType],
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.read_positions(&super::stream_types_in(types), after_position, limit)
            .await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM events WHERE stream_id = ?")
                .bind(stream.as_str())
                .fetch_one(&self.backend.pool)
                .await
                .map_err(map_err)?;
        Ok(v.unwrap_or(0) as u64)
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        let p: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM events")
            .fetch_one(&self.backend.pool)
            .await
            .map_err(map_err)?;
        Ok(p.unwrap_or(0) as u64)
    }

    async fn store_id(&self) -> Result<uuid::Uuid, StoreError> {
        let id: String = sqlx::query_scalar("SELECT store_id FROM store_identity")
            .fetch_one(&self.backend.pool)
            .await
            .map_err(map_err)?;
        uuid::Uuid::parse_str(&id)
            .map_err(|e| StoreError::Backend(format!("the store id {id:?} is not a uuid: {e}")))
    }

    async fn signing_secret(&self, name: &str) -> Result<SigningSecret, StoreError> {
        super::secrets::sqlite(&self.backend.pool, name).await
    }

    async fn verify_stream(&self, stream: &StreamId) -> Result<ChainVerification, StoreError> {
        let rows = self
            .backend
            .fetch_stream(stream.as_str(), 0, i64::MAX)
            .await?;
        Ok(verify_rows(&rows))
    }

    async fn find_streams(
        &self,
        query: &StreamQuery,
        limit: usize,
    ) -> Result<Vec<StreamId>, StoreError> {
        let ids = super::lookup::find_streams(
            &self.backend.pool,
            query,
            super::lookup::Dialect::Sqlite,
            limit,
        )
        .await
        .map_err(map_err)?;
        super::postgres::parse_stream_ids(ids)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.backend.pool)
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    fn commits(&self) -> watch::Receiver<u64> {
        self.commits.clone()
    }

    async fn outbox_pending(&self) -> Result<Option<u64>, StoreError> {
        let p: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM outbox")
            .fetch_one(&self.backend.pool)
            .await
            .map_err(map_err)?;
        Ok(p.map(|p| p as u64))
    }

    async fn outbox_done(&self, position: u64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM outbox WHERE position <= ?")
            .bind(position as i64)
            .execute(&self.backend.pool)
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    async fn tenant_usage(
        &self,
        tenant: &str,
        since: DateTime<Utc>,
        agent_name: Option<&str>,
    ) -> Result<super::TenantCounters, StoreError> {
        let row = sqlx::query(
            "SELECT u.running_executions, u.executions_started, u.definitions, u.agents, \
                    u.payload_bytes, \
                    (SELECT count(*) FROM events e WHERE e.event_type = 'ExecutionStarted' \
                       AND coalesce(json_extract(e.metadata, '$.tenant_id'), 'default') = ?1 \
                       AND e.recorded_at >= ?2) AS started_since, \
                    (SELECT min(e.recorded_at) FROM events e WHERE e.event_type = 'ExecutionStarted' \
                       AND coalesce(json_extract(e.metadata, '$.tenant_id'), 'default') = ?1 \
                       AND e.recorded_at >= ?2) AS oldest_since, \
                    (SELECT count(DISTINCT json_extract(e.data, '$.name')) FROM events e WHERE e.event_type = 'AgentRegistered' \
                       AND coalesce(json_extract(e.metadata, '$.tenant_id'), 'default') = ?1) AS agent_names, \
                    EXISTS (SELECT 1 FROM events e WHERE e.event_type = 'AgentRegistered' \
                       AND coalesce(json_extract(e.metadata, '$.tenant_id'), 'default') = ?1 AND json_extract(e.data, '$.name') = ?3) AS agent_known, \
                    (SELECT coalesce(sum(e.event_type = 'ScheduleCreated') - sum(e.event_type = 'ScheduleDeleted'), 0) FROM events e \
                       WHERE e.event_type IN ('ScheduleCreated', 'ScheduleDeleted') \
                       AND coalesce(json_extract(e.metadata, '$.tenant_id'), 'default') = ?1) AS schedules \
             FROM (SELECT ?1 AS tenant) t \
             LEFT JOIN tenant_usage u ON u.tenant = t.tenant",
        )
        .bind(tenant)
        .bind(time_text(since))
        .bind(agent_name)
        .fetch_one(&self.backend.pool)
        .await
        .map_err(map_err)?;
        let oldest_since = row
            .try_get::<Option<String>, _>("oldest_since")
            .map_err(map_err)?
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc));
        super::usage::counters_of(
            |name| row.try_get(name).map_err(map_err),
            oldest_since,
            row.try_get("agent_known").map_err(map_err)?,
        )
    }
}
