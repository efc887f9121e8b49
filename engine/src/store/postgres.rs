//! The Postgres event store, the production system of record.
//!
//! Commit order: every append runs as one statement that first takes a transaction-level
//! advisory lock, then draws positions from the identity sequence, and holds the lock
//! until commit. Positions are therefore assigned in commit order across every process
//! sharing the database, and a reader tailing `position > p` can never see a position
//! before a lower one that will still commit (the bigserial pitfall of DESIGN.md §3).
//! The lock is held for one statement plus the commit; the writer's group commit turns
//! the serialisation into batching rather than waiting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use conflux_schema::{EventEnvelope, StreamId};
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row as _, Transaction};
use tokio::sync::watch;
use uuid::Uuid;

use super::chain::{verify_rows, ChainVerification, StoredRow};
use super::writer::{AppendQueue, Head, InsertError, LogBackend, Row};
use super::{AppendRequest, EventStore, SigningSecret, StoreError, StreamQuery};

/// The advisory lock key that orders commits ("Conflux" in ASCII).
const COMMIT_ORDER_LOCK: i64 = 0x0043_6f6e_666c_7578;

const INSERT_HEAD: &str = r#"
WITH commit_order AS MATERIALIZED (SELECT pg_advisory_xact_lock($1)),
ins AS (
    INSERT INTO events (stream_id, stream_type, version, event_id, event_type,
                        schema_version, data, metadata, recorded_at, hash)
    SELECT r.stream_id, r.stream_type, r.version, r.event_id, r.event_type,
           r.schema_version, r.data::jsonb, r.metadata::jsonb, r.recorded_at, r.hash
    FROM commit_order,
         unnest($2::text[], $3::text[], $4::int8[], $5::uuid[], $6::text[], $7::int2[],
                $8::text[], $9::text[], $10::timestamptz[], $11::bytea[])
         WITH ORDINALITY AS r(stream_id, stream_type, version, event_id, event_type,
                              schema_version, data, metadata, recorded_at, hash, ord)
    ORDER BY r.ord
    RETURNING position
),
ob AS (INSERT INTO outbox (position) SELECT max(position) FROM ins),
"#;

/// The `usage` CTE and the final select that close both forms of the insert: the
/// tenants' counter changes, six arrays from parameter `$first` on, added to
/// `tenant_usage` after the commit-order lock (it joins `commit_order`).
fn usage_and_select(first: usize) -> String {
    let p: Vec<String> = (first..first + 6).map(|n| format!("${n}")).collect();
    format!(
        "usage AS (
    INSERT INTO tenant_usage (tenant, {counters})
    SELECT u.tenant, u.running, u.started, u.definitions, u.agents, u.bytes
    FROM commit_order,
         unnest({}::text[], {}::int8[], {}::int8[], {}::int8[], {}::int8[], {}::int8[])
         AS u(tenant, running, started, definitions, agents, bytes)
    ON CONFLICT (tenant) DO UPDATE SET {add}
)
SELECT position FROM ins ORDER BY position",
        p[0],
        p[1],
        p[2],
        p[3],
        p[4],
        p[5],
        counters = super::usage::COUNTER_COLUMNS,
        add = super::usage::ADD_EXCLUDED,
    )
}

/// The `unnest` form of the insert, for batches of any size.
fn insert_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| format!("{INSERT_HEAD}{}", usage_and_select(12)))
}

const SELECT_COLUMNS: &str =
    "position, stream_id, version, event_id, event_type, schema_version, data, metadata, recorded_at, hash";

/// Connection settings for [`PgStore`].
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for a connection before answering `Unavailable`.
    pub acquire_timeout: Duration,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// The Postgres [`EventStore`].
#[derive(Clone)]
pub struct PgStore {
    backend: Arc<PgBackend>,
    queue: AppendQueue,
    commits: watch::Receiver<u64>,
}

struct PgBackend {
    pool: PgPool,
}

impl PgStore {
    /// Connects, applies migrations, and starts the append writer.
    pub async fn connect(url: &str, options: &PgStoreOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect(url)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to Postgres: {e}")))?;
        Self::from_pool(pool).await
    }

    /// Uses an existing pool; applies migrations and starts the append writer.
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        migrate(&pool).await?;
        let backend = Arc::new(PgBackend { pool });
        let (tx, commits) = watch::channel(0);
        let queue = AppendQueue::start(backend.clone(), tx);
        Ok(Self {
            backend,
            queue,
            commits,
        })
    }

    /// The connection pool (for read models that share the database).
    pub fn pool(&self) -> &PgPool {
        &self.backend.pool
    }

    /// Runs an append inside a transaction that stays open until the returned
    /// [`HeldAppend`] is committed: the hook the conformance suite uses to prove a
    /// slow transaction's position is never skipped. Same SQL as a normal append.
    pub async fn append_held(&self, req: AppendRequest) -> Result<HeldAppend, StoreError> {
        let mut heads = self.backend.heads(&[req.stream.as_str()]).await?;
        let stream = req.stream.clone();
        let expected = req.expected_version;
        let rows = super::writer::plan(&mut heads, super::writer::prepare(req)?)?;
        let refs: Vec<&Row> = rows.iter().collect();
        let mut tx = self.backend.pool.begin().await.map_err(map_err)?;
        let positions = insert_rows(&mut *tx, &refs).await.map_err(|e| match e {
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

/// An append whose transaction is still open (see [`PgStore::append_held`]).
pub struct HeldAppend {
    tx: Transaction<'static, Postgres>,
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

/// Applies the Postgres migrations in `schema/migrations/postgres`.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::migrate!("../schema/migrations/postgres")
        .run(pool)
        .await
        .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))
}

/// Parses stream ids read back from the database.
pub(crate) fn parse_stream_ids(ids: Vec<String>) -> Result<Vec<StreamId>, StoreError> {
    ids.iter()
        .map(|id| {
            StreamId::parse(id).map_err(|e| StoreError::Corrupt {
                position: 0,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// A position, version or limit as the signed 64-bit integer both databases store,
/// saturating at `i64::MAX`: a bound past the stored range reads nothing (`> i64::MAX`)
/// or everything (`LIMIT i64::MAX`), where a plain cast would wrap to a negative bound
/// and read the whole log (or, for `LIMIT`, fail in Postgres and mean "no limit" in
/// SQLite).
pub(crate) fn db_int<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// Batches up to this many rows use a `VALUES` list (one cached statement per size):
/// about 15 % cheaper for Postgres than `unnest` of arrays, which larger batches use.
const MAX_VALUES_ROWS: usize = 16;

/// The `VALUES` form of the insert for `n` rows: the same commit-order lock and outbox
/// row; rows are produced in list order, so positions are drawn in row order.
fn values_sql(n: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        (0..=MAX_VALUES_ROWS)
            .map(|n| {
                let tuples: Vec<String> = (0..n)
                    .map(|i| {
                        let p = 2 + i * 10;
                        format!(
                            "(${}::text, ${}::text, ${}::int8, ${}::uuid, ${}::text, ${}::int2, ${}::text, ${}::text, ${}::timestamptz, ${}::bytea)",
                            p, p + 1, p + 2, p + 3, p + 4, p + 5, p + 6, p + 7, p + 8, p + 9
                        )
                    })
                    .collect();
                format!(
                    "WITH commit_order AS MATERIALIZED (SELECT pg_advisory_xact_lock($1)),
ins AS (
    INSERT INTO events (stream_id, stream_type, version, event_id, event_type,
                        schema_version, data, metadata, recorded_at, hash)
    SELECT v.stream_id, v.stream_type, v.version, v.event_id, v.event_type,
           v.schema_version, v.data::jsonb, v.metadata::jsonb, v.recorded_at, v.hash
    FROM commit_order, (VALUES {}) AS v(stream_id, stream_type, version, event_id, event_type,
                                        schema_version, data, metadata, recorded_at, hash)
    RETURNING position
),
ob AS (INSERT INTO outbox (position) SELECT max(position) FROM ins),
{}",
                    tuples.join(", "),
                    usage_and_select(2 + n * 10),
                )
            })
            .collect()
    });
    all.get(n).map_or(insert_sql(), String::as_str)
}

async fn insert_values<'c, E>(executor: E, rows: &[&Row]) -> Result<Vec<i64>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    let mut q = sqlx::query_scalar::<_, i64>(values_sql(rows.len())).bind(COMMIT_ORDER_LOCK);
    for r in rows {
        q = q
            .bind(r.stream.as_str())
            .bind(r.stream.stream_type().as_str())
            .bind(r.version as i64)
            .bind(r.event_id)
            .bind(r.event_type)
            .bind(r.schema_version as i16)
            .bind(r.data_json.as_str())
            .bind(r.metadata_json.as_str())
            .bind(r.recorded_at)
            .bind(r.hash.as_slice());
    }
    bind_usage(q, rows).fetch_all(executor).await
}

type ScalarQuery<'q> =
    sqlx::query::QueryScalar<'q, Postgres, i64, <Postgres as sqlx::Database>::Arguments<'q>>;

/// Binds the usage counter changes of `rows` as the statement's last six arrays.
fn bind_usage<'q>(q: ScalarQuery<'q>, rows: &[&Row]) -> ScalarQuery<'q> {
    let deltas = super::usage::deltas(rows);
    let column =
        |f: fn(&super::usage::UsageDelta) -> i64| deltas.iter().map(f).collect::<Vec<i64>>();
    q.bind(
        deltas
            .iter()
            .map(|d| d.tenant.clone())
            .collect::<Vec<String>>(),
    )
    .bind(column(|d| d.running))
    .bind(column(|d| d.started))
    .bind(column(|d| d.definitions))
    .bind(column(|d| d.agents))
    .bind(column(|d| d.bytes))
}

async fn insert_rows<'c, E>(executor: E, rows: &[&Row]) -> Result<Vec<u64>, InsertError>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    if rows.len() <= MAX_VALUES_ROWS {
        return match insert_values(executor, rows).await {
            Ok(positions) => Ok(positions.into_iter().map(|p| p as u64).collect()),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                Err(InsertError::Duplicate)
            }
            Err(e) => Err(InsertError::Store(map_err(e))),
        };
    }
    let n = rows.len();
    let mut stream_id = Vec::with_capacity(n);
    let mut stream_type = Vec::with_capacity(n);
    let mut version = Vec::with_capacity(n);
    let mut event_id = Vec::with_capacity(n);
    let mut event_type = Vec::with_capacity(n);
    let mut schema_version = Vec::with_capacity(n);
    let mut data = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    let mut recorded_at = Vec::with_capacity(n);
    let mut hash = Vec::with_capacity(n);
    for r in rows {
        stream_id.push(r.stream.as_str());
        stream_type.push(r.stream.stream_type().as_str());
        version.push(r.version as i64);
        event_id.push(r.event_id);
        event_type.push(r.event_type);
        schema_version.push(r.schema_version as i16);
        data.push(r.data_json.as_str());
        metadata.push(r.metadata_json.as_str());
        recorded_at.push(r.recorded_at);
        hash.push(r.hash.as_slice());
    }
    let result = sqlx::query_scalar::<_, i64>(insert_sql())
        .bind(COMMIT_ORDER_LOCK)
        .bind(stream_id)
        .bind(stream_type)
        .bind(version)
        .bind(event_id)
        .bind(event_type)
        .bind(schema_version)
        .bind(data)
        .bind(metadata)
        .bind(recorded_at)
        .bind(hash);
    let result = bind_usage(result, rows).fetch_all(executor).await;
    match result {
        Ok(positions) => Ok(positions.into_iter().map(|p| p as u64).collect()),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Err(InsertError::Duplicate),
        Err(e) => Err(InsertError::Store(map_err(e))),
    }
}

fn stored_row(row: &PgRow) -> Result<StoredRow, StoreError> {
    let position: i64 = row.try_get("position").map_err(map_err)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        position: position as u64,
        reason,
    };
    Ok(StoredRow {
        position: position as u64,
        stream_id: row
            .try_get("stream_id")
            .map_err(|e| corrupt(e.to_string()))?,
        version: row
            .try_get::<i64, _>("version")
            .map_err(|e| corrupt(e.to_string()))? as u64,
        event_id: row
            .try_get::<Uuid, _>("event_id")
            .map_err(|e| corrupt(e.to_string()))?,
        event_type: row
            .try_get("event_type")
            .map_err(|e| corrupt(e.to_string()))?,
        schema_version: row
            .try_get::<i16, _>("schema_version")
            .map_err(|e| corrupt(e.to_string()))? as u16,
        data: row
            .try_get::<Value, _>("data")
            .map_err(|e| corrupt(e.to_string()))?,
        metadata: row
            .try_get::<Value, _>("metadata")
            .map_err(|e| corrupt(e.to_string()))?,
        recorded_at: row
            .try_get::<DateTime<Utc>, _>("recorded_at")
            .map_err(|e| corrupt(e.to_string()))?,
        hash: row.try_get("hash").map_err(|e| corrupt(e.to_string()))?,
    })
}

impl PgBackend {
    async fn fetch(
        &self,
        sql: &str,
        a: i64,
        b: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StoredRow>, StoreError> {
        let query = sqlx::query(sql);
        let query = match b {
            Some(stream) => query.bind(stream).bind(a).bind(limit),
            None => query.bind(a).bind(limit),
        };
        let rows = query.fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(stored_row).collect()
    }
}

#[async_trait]
impl LogBackend for PgBackend {
    async fn heads(&self, streams: &[&str]) -> Result<HashMap<String, Head>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (stream_id) stream_id, version, hash FROM events \
             WHERE stream_id = ANY($1) ORDER BY stream_id, version DESC",
        )
        .bind(streams)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut heads = HashMap::with_capacity(rows.len());
        for row in rows {
            let stream: String = row.try_get("stream_id").map_err(map_err)?;
            let version: i64 = row.try_get("version").map_err(map_err)?;
            let hash: Vec<u8> = row.try_get("hash").map_err(map_err)?;
            let hash: [u8; 32] = hash.try_into().map_err(|_| StoreError::Corrupt {
                position: 0,
                reason: format!("head hash of {stream} is not 32 bytes"),
            })?;
            heads.insert(
                stream,
                Head {
                    version: version as u64,
                    hash,
                },
            );
        }
        Ok(heads)
    }

    fn max_in_flight(&self) -> usize {
        4
    }

    async fn insert(&self, rows: &[&Row]) -> Result<Vec<u64>, InsertError> {
        insert_rows(&self.pool, rows).await
    }
}

impl PgStore {
    /// Events with position > `after_position` matching `filter` (SQL written by this
    /// crate, never input), in position order.
    async fn read_positions(
        &self,
        filter: &str,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        let sql = format!(
            "SELECT {SELECT_COLUMNS} FROM events WHERE {filter} AND position > $1 \
             ORDER BY position LIMIT $2"
        );
        self.backend
            .fetch(&sql, db_int(after_position), None, db_int(limit))
            .await?
            .into_iter()
            .map(StoredRow::into_envelope)
            .collect()
    }
}

#[async_trait]
impl EventStore for PgStore {
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
        let sql = format!(
            "SELECT {SELECT_COLUMNS} FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version LIMIT $3"
        );
        self.backend
            .fetch(
                &sql,
                db_int(after_version),
                Some(stream.as_str()),
                db_int(limit),
            )
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
        self.read_positions("TRUE", after_position, limit).await
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
            sqlx::query_scalar("SELECT max(version) FROM events WHERE stream_id = $1")
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
        sqlx::query_scalar("SELECT store_id FROM store_identity")
            .fetch_one(&self.backend.pool)
            .await
            .map_err(map_err)
    }

    async fn signing_secret(&self, name: &str) -> Result<SigningSecret, StoreError> {
        super::secrets::postgres(&self.backend.pool, name).await
    }

    async fn verify_stream(&self, stream: &StreamId) -> Result<ChainVerification, StoreError> {
        let sql = format!("SELECT {SELECT_COLUMNS} FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version LIMIT $3");
        let rows = self
            .backend
            .fetch(&sql, 0, Some(stream.as_str()), i64::MAX)
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
            super::lookup::Dialect::Postgres,
            limit,
        )
        .await
        .map_err(map_err)?;
        parse_stream_ids(ids)
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
        sqlx::query("DELETE FROM outbox WHERE position <= $1")
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
                       AND coalesce(e.metadata->>'tenant_id', 'default') = $1 \
                       AND e.recorded_at >= $2) AS started_since, \
                    (SELECT min(e.recorded_at) FROM events e WHERE e.event_type = 'ExecutionStarted' \
                       AND coalesce(e.metadata->>'tenant_id', 'default') = $1 \
                       AND e.recorded_at >= $2) AS oldest_since, \
                    (SELECT count(DISTINCT e.data->>'name') FROM events e WHERE e.event_type = 'AgentRegistered' \
                       AND coalesce(e.metadata->>'tenant_id', 'default') = $1) AS agent_names, \
                    EXISTS (SELECT 1 FROM events e WHERE e.event_type = 'AgentRegistered' \
                       AND coalesce(e.metadata->>'tenant_id', 'default') = $1 AND e.data->>'name' = $3) AS agent_known, \
                    (SELECT count(*) FILTER (WHERE e.event_type = 'ScheduleCreated') \
                          - count(*) FILTER (WHERE e.event_type = 'ScheduleDeleted') FROM events e \
                       WHERE e.event_type IN ('ScheduleCreated', 'ScheduleDeleted') \
                       AND coalesce(e.metadata->>'tenant_id', 'default') = $1) AS schedules \
             FROM (SELECT $1::text AS tenant) t \
             LEFT JOIN tenant_usage u ON u.tenant = t.tenant",
        )
        .bind(tenant)
        .bind(since)
        .bind(agent_name)
        .fetch_one(&self.backend.pool)
        .await
        .map_err(map_err)?;
        super::usage::counters_of(
            |name| row.try_get(name).map_err(map_err),
            row.try_get("oldest_since").map_err(map_err)?,
            row.try_get("agent_known").map_err(map_err)?,
        )
    }
}
