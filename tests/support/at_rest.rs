//! What a store holds at rest, as text, for tests that prove a value is nowhere in it:
//! every table of a Postgres database, every Redis key under a prefix (every type), the
//! files of a directory (an embedded store and its write-ahead logs).

use std::path::Path;

use sqlx::Row;

/// Every row of every table of the database at `url`, as Postgres prints rows (`bytea`
/// as `\x` hex: search for [`hex`] of a value too).
pub async fn postgres_text(url: &str) -> String {
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(&pool)
            .await
            .expect("tables");
    let mut out = String::new();
    for table in tables {
        let sql = format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{table}\" t");
        let rows: String = sqlx::query(&sql)
            .fetch_one(&pool)
            .await
            .expect("rows")
            .get(0);
        out.push_str(&format!("== {table}\n{rows}\n"));
    }
    pool.close().await;
    out
}

/// Every value under `prefix` in Redis (strings, hashes, lists, sets, sorted sets and
/// streams), as lossy text.
pub async fn redis_text(prefix: &str) -> String {
    let client = redis::Client::open(conflux_engine::testing::redis_url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    let mut out = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("type");
        let mut cmd = match kind.as_str() {
            "string" => redis::cmd("GET"),
            "hash" => redis::cmd("HGETALL"),
            "list" => {
                let mut c = redis::cmd("LRANGE");
                c.arg(&key).arg(0).arg(-1);
                c
            }
            "set" => redis::cmd("SMEMBERS"),
            "zset" => {
                let mut c = redis::cmd("ZRANGE");
                c.arg(&key).arg(0).arg(-1);
                c
            }
            "stream" => {
                let mut c = redis::cmd("XRANGE");
                c.arg(&key).arg("-").arg("+");
                c
            }
            _ => continue,
        };
        if matches!(kind.as_str(), "string" | "hash" | "set") {
            cmd.arg(&key);
        }
        let value: redis::Value = cmd.query_async(&mut conn).await.expect("read key");
        out.push_str(&format!("== {key} ({kind})\n"));
        flatten(&value, &mut out);
        out.push('\n');
    }
    out
}

fn flatten(value: &redis::Value, out: &mut String) {
    match value {
        redis::Value::BulkString(bytes) => out.push_str(&String::from_utf8_lossy(bytes)),
        redis::Value::SimpleString(s) => out.push_str(s),
        redis::Value::Int(n) => out.push_str(&n.to_string()),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            for item in items {
                flatten(item, out);
                out.push(' ');
            }
        }
        redis::Value::Map(pairs) => {
            for (k, v) in pairs {
                flatten(k, out);
                out.push(' ');
                flatten(v, out);
                out.push(' ');
            }
        }
        other => out.push_str(&format!("{other:?}")),
    }
}

/// The bytes of every file under `dir`, as lossy text.
pub fn files_text(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.push_str(&files_text(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push_str(&format!("== {}\n", path.display()));
            out.push_str(&String::from_utf8_lossy(&bytes));
            out.push('\n');
        }
    }
    out
}

/// `value`'s bytes in lowercase hex (how Postgres prints `bytea`).
pub fn hex(value: &str) -> String {
    value.bytes().map(|b| format!("{b:02x}")).collect()
}
