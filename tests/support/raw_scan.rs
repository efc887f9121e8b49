//! Where a string is stored, byte for byte: every table of a test's Postgres database,
//! every file of its embedded data directory (SQLite files with their `-wal` and
//! `-shm`), every Redis key under its prefix (of every type), and the log lines the
//! server wrote. The proof that a secret's value is nowhere at rest (and, with payload
//! encryption on, that a payload is not either) is `occurrences(needle).is_empty()`.
//! Shared by the in-process runtime tests and the tests of the real binary.
//!
//! A needle is also looked for hex-encoded, so a value stored in a `bytea` column (which
//! `row::text` shows as `\x…`) is found too.

use std::path::{Path, PathBuf};

use redis::AsyncCommands;
use sqlx::Row;

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
    log: Vec<String>,
}

impl Scan {
    /// What a server stores in the Postgres database at `database_url`, or else in the
    /// embedded `data_dir`, and under the Redis `(url, prefix)`.
    pub fn new(
        database_url: Option<String>,
        data_dir: Option<PathBuf>,
        redis: Option<(String, String)>,
    ) -> Self {
        Scan {
            data_dir: data_dir.filter(|_| database_url.is_none()),
            database_url,
            redis,
            log: Vec::new(),
        }
    }

    /// Also the server's log, `lines`.
    pub fn with_log(mut self, lines: Vec<String>) -> Self {
        self.log = lines;
        self
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
            self.log
                .iter()
                .filter(|line| found(line.as_bytes()))
                .cloned()
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
