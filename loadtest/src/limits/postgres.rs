//! Raw Postgres probes: autocommit INSERTs into `raw_events` (one row, or many via
//! `unnest`) and the `SELECT 1` round trip.

use anyhow::{Context, Result};
use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Postgres};

use crate::payload::{Payload, RawRow, StreamCursor};
use crate::runner::{Probe, Worker};
use crate::stats::{Kind, ProbeInfo};

const INSERT_ONE_SQL: &str = "INSERT INTO raw_events (stream_id, stream_type, version, event_id, \
     event_type, schema_version, data, metadata, recorded_at, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

const INSERT_MANY_SQL: &str = "INSERT INTO raw_events (stream_id, stream_type, version, event_id, \
     event_type, schema_version, data, metadata, recorded_at, hash) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::uuid[], $5::text[], \
     $6::int2[], $7::jsonb[], $8::jsonb[], $9::timestamptz[], $10::bytea[])";

/// Autocommit INSERTs into `raw_events`: `rows` rows per statement (1: a plain
/// `VALUES` insert; more: `unnest`), each of `connections` workers on its own
/// connection, each statement for one stream.
pub struct PgInsert {
    pool: PgPool,
    connections: usize,
    rows: usize,
}

impl PgInsert {
    /// A probe of `rows` rows per statement over `connections` connections.
    pub fn new(pool: PgPool, connections: usize, rows: usize) -> Self {
        Self {
            pool,
            connections,
            rows: rows.max(1),
        }
    }
}

#[async_trait]
impl Probe for PgInsert {
    fn info(&self) -> ProbeInfo {
        let c = self.connections;
        let (id, label) = if self.rows == 1 {
            (
                format!("pg.insert.single.x{c}"),
                format!("pg raw INSERT autocommit ×{c}"),
            )
        } else {
            let r = self.rows;
            (
                format!("pg.insert.multirow{r}.x{c}"),
                format!("pg raw INSERT {r} rows (unnest) ×{c}"),
            )
        };
        ProbeInfo {
            id,
            label,
            kind: Kind::RawPostgres,
            workers: c,
            events_per_call: self.rows as u64,
        }
    }

    async fn workers(&self) -> Result<Vec<Box<dyn Worker>>> {
        let mut workers: Vec<Box<dyn Worker>> = Vec::with_capacity(self.connections);
        for _ in 0..self.connections {
            workers.push(Box::new(PgInsertWorker {
                conn: self
                    .pool
                    .acquire()
                    .await
                    .context("acquiring a connection")?,
                payload: Payload::fresh()?,
                cursor: StreamCursor::new(),
                n: 0,
                rows: self.rows,
            }));
        }
        Ok(workers)
    }
}

struct PgInsertWorker {
    conn: PoolConnection<Postgres>,
    payload: Payload,
    cursor: StreamCursor,
    n: u64,
    rows: usize,
}

#[async_trait]
impl Worker for PgInsertWorker {
    async fn call(&mut self) -> Result<u64> {
        let (stream, version) = self.cursor.current();
        let mut rows = Vec::with_capacity(self.rows);
        for i in 0..self.rows as u64 {
            rows.push(self.payload.raw_row(stream, version + 1 + i, self.n + i)?);
        }
        if let [row] = rows.as_slice() {
            insert_one(&mut self.conn, row).await?;
        } else {
            insert_many(&mut self.conn, rows).await?;
        }
        self.n += self.rows as u64;
        self.cursor.advance(self.rows as u64);
        Ok(self.rows as u64)
    }
}

async fn insert_one(conn: &mut PgConnection, row: &RawRow) -> Result<()> {
    sqlx::query(INSERT_ONE_SQL)
        .bind(&row.stream_id)
        .bind(row.stream_type)
        .bind(row.version)
        .bind(row.event_id)
        .bind(row.event_type)
        .bind(row.schema_version)
        .bind(&row.data)
        .bind(&row.metadata)
        .bind(row.recorded_at)
        .bind(&row.hash)
        .execute(conn)
        .await
        .context("raw single-row INSERT")?;
    Ok(())
}

async fn insert_many(conn: &mut PgConnection, rows: Vec<RawRow>) -> Result<()> {
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
        stream_id.push(r.stream_id);
        stream_type.push(r.stream_type);
        version.push(r.version);
        event_id.push(r.event_id);
        event_type.push(r.event_type);
        schema_version.push(r.schema_version);
        data.push(r.data);
        metadata.push(r.metadata);
        recorded_at.push(r.recorded_at);
        hash.push(r.hash);
    }
    sqlx::query(INSERT_MANY_SQL)
        .bind(stream_id)
        .bind(stream_type)
        .bind(version)
        .bind(event_id)
        .bind(event_type)
        .bind(schema_version)
        .bind(data)
        .bind(metadata)
        .bind(recorded_at)
        .bind(hash)
        .execute(conn)
        .await
        .context("raw multi-row INSERT")?;
    Ok(())
}

/// `SELECT 1` on one connection, one at a time: the floor under any statement.
pub struct PgRoundTrip(pub PgPool);

#[async_trait]
impl Probe for PgRoundTrip {
    fn info(&self) -> ProbeInfo {
        ProbeInfo {
            id: "pg.roundtrip.select1".into(),
            label: "pg round trip SELECT 1".into(),
            kind: Kind::RoundTrip,
            workers: 1,
            events_per_call: 1,
        }
    }

    async fn workers(&self) -> Result<Vec<Box<dyn Worker>>> {
        let conn = self.0.acquire().await.context("acquiring a connection")?;
        Ok(vec![Box::new(PgRoundTripWorker(conn))])
    }
}

struct PgRoundTripWorker(PoolConnection<Postgres>);

#[async_trait]
impl Worker for PgRoundTripWorker {
    async fn call(&mut self) -> Result<u64> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.0)
            .await
            .context("SELECT 1")?;
        Ok(1)
    }
}
