//! Where a string is stored, byte for byte: every table of a test's Postgres database,
//! every file of its embedded data directory (SQLite files with their `-wal` and
//! `-shm`), every Redis key under its prefix (of every type), and the log lines the
//! server wrote. The proof that a secret's value is nowhere at rest (and, with payload
//! encryption on, that a payload is not either) is `occurrences(needle).is_empty()`.
//!
//! A needle is also looked for hex-encoded, so a value stored in a `bytea` column (which
//! `row::text` shows as `\x…`) is found too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use redis::AsyncCommands;
use sqlx::Row;

use crate::harness::TestServer;

/// One place a needle was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A row of a Postgres table (`schema.table`).
    Table(String),
    /// A file of the embedded data directory, at this byte offset.
    File(PathBuf, usize),
    /// A Redis key (with its type).
    RedisKey(String, String),
    /// A line of the server's log.
    Log(String),
}

/// What one server stores, to be scanned.
pub struct Scan {
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    redis: Option<(String, String)>,
}

impl Scan {
    /// Everything `server` stores (its database or data directory, its Redis prefix).
    pub fn of(server: &TestServer) -> Self {
        let config = &server.config;
        Scan {
            database_url: config.database_url.clone(),
            data_dir: config
                .database_url
                .is_none()
                .then(|| config.data_dir.clone()),
            redis: config
                .redis_url
                .clone()
                .map(|url| (url, config.redis_prefix.clone())),
        }
    }

    /// Every place `needle` (as text, or hex-encoded) is found, the log included.
    pub async fn occurrences(&self, needle: &str) -> Vec<Place> {
        let needles = [needle.as_bytes().to_vec(), hex::encode(needle).into_bytes()];
        let found = |haystack: &[u8]| {
            needles
                .iter()
                .any(|n| haystack.windows(n.len()).any(|w| w == n.as_slice()))
        };
        let mut places = Vec::new();
        if let Some(url) = &self.database_url {
            places.extend(tables(url, &found).await);
        }
        if let Some(dir) = &self.data_dir {
            places.extend(files(dir, &needles));
        }
        if let Some((url, prefix)) = &self.redis {
            places.extend(redis_keys(url, prefix, &found).await);
        }
        places.extend(
            log_lines()
                .into_iter()
                .filter(|line| found(line.as_bytes()))
                .map(Place::Log),
        );
        places
    }
}

/// Tables of the database at `url` with a row that holds a needle.
async fn tables(url: &str, found: &dyn Fn(&[u8]) -> bool) -> Vec<Place> {
    let pool = sqlx::PgPool::connect(url).await.expect("connect to scan");
    let names: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema, table_name FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' \
           AND table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(&pool)
    .await
    .expect("list tables");
    assert!(
        names.iter().any(|(_, t)| t == "events"),
        "scanning the store's database"
    );
    let mut places = Vec::new();
    for (schema, table) in names {
        let sql = format!("SELECT t::text FROM \"{schema}\".\"{table}\" t");
        let rows = sqlx::query(&sql)
            .fetch_all(&pool)
            .await
            .expect("read table");
        if rows
            .iter()
            .any(|row| found(row.get::<String, _>(0).as_bytes()))
        {
            places.push(Place::Table(format!("{schema}.{table}")));
        }
    }
    pool.close().await;
    places
}

/// Offsets of a needle in every file under `dir`.
fn files(dir: &Path, needles: &[Vec<u8>]) -> Vec<Place> {
    let mut places = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            seen += 1;
            let bytes = std::fs::read(&path).expect("read a data file");
            for needle in needles {
                if let Some(offset) = bytes
                    .windows(needle.len())
                    .position(|w| w == needle.as_slice())
                {
                    places.push(Place::File(path.clone(), offset));
                }
            }
        }
    }
    assert!(seen > 0, "no file in {}", dir.display());
    places
}

/// Keys under `prefix` whose content (of any type) holds a needle.
async fn redis_keys(url: &str, prefix: &str, found: &dyn Fn(&[u8]) -> bool) -> Vec<Place> {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let keys: Vec<String> = {
        let mut iter: redis::AsyncIter<String> =
            conn.scan_match(format!("{prefix}*")).await.expect("scan");
        let mut keys = Vec::new();
        while let Some(key) = iter.next_item().await {
            keys.push(key);
        }
        keys
    };
    assert!(!keys.is_empty(), "no Redis key under {prefix}");
    let mut places = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("type");
        let mut read = match kind.as_str() {
            "string" => redis::cmd("GET"),
            "hash" => redis::cmd("HGETALL"),
            "list" => redis::cmd("LRANGE"),
            "set" => redis::cmd("SMEMBERS"),
            "zset" => redis::cmd("ZRANGE"),
            "stream" => redis::cmd("XRANGE"),
            other => panic!("key {key} of an unexpected type {other}"),
        };
        read.arg(&key);
        match kind.as_str() {
            "list" => {
                read.arg(0).arg(-1);
            }
            "zset" => {
                read.arg(0).arg(-1).arg("WITHSCORES");
            }
            "stream" => {
                read.arg("-").arg("+");
            }
            _ => {}
        }
        let content: redis::Value = read.query_async(&mut conn).await.expect("read key");
        let mut bytes = Vec::new();
        flatten(&content, &mut bytes);
        bytes.extend_from_slice(key.as_bytes());
        if found(&bytes) {
            places.push(Place::RedisKey(key, kind));
        }
    }
    places
}

/// Every byte string inside a Redis reply, concatenated with separators.
fn flatten(value: &redis::Value, out: &mut Vec<u8>) {
    match value {
        redis::Value::BulkString(bytes) => out.extend_from_slice(bytes),
        redis::Value::SimpleString(s) => out.extend_from_slice(s.as_bytes()),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            for item in items {
                flatten(item, out);
                out.push(0);
            }
        }
        redis::Value::Map(pairs) => {
            for (k, v) in pairs {
                flatten(k, out);
                out.push(0);
                flatten(v, out);
                out.push(0);
            }
        }
        other => out.extend_from_slice(format!("{other:?}").as_bytes()),
    }
}

/// What the process logged since [`capture_logs`].
static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

/// Sends every log line of this process (all targets, `debug` and above) to memory, for
/// [`Scan::occurrences`]. Call before starting the server; the test runner gives each
/// test its own process, so the subscriber is this test's.
pub fn capture_logs() {
    let buffer = LOG.get_or_init(Arc::default).clone();
    let writer = move || LogWriter(buffer.clone());
    let _ = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(writer)
        .try_init();
    tracing::info!("log capture on");
}

/// The captured log lines (none without [`capture_logs`]).
pub fn log_lines() -> Vec<String> {
    LOG.get()
        .and_then(|log| {
            log.lock()
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut log) = self.0.lock() {
            log.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
