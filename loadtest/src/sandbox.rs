//! An isolated place for one run: a fresh Postgres database
//! (`conflux_bench_<unix secs>_<random>`) and a unique Redis key prefix
//! (`conflux-bench:<uuid>:`), both removed at the end. A benchmark writes millions of
//! rows; doing that in a shared database would leave junk behind, make the second run
//! slower than the first, and risk touching real data.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use sqlx::postgres::{PgPool, PgPoolOptions};
use uuid::Uuid;

use crate::report::ServerInfo;

/// Connections the raw Postgres probes may hold at once (8 workers, plus slack while
/// the previous round's connections go back to the pool).
const RAW_POOL_SIZE: u32 = 10;

/// The run's database and Redis namespace; cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    admin: PgPool,
    database: String,
    database_url: String,
    pool: PgPool,
    redis: redis::Client,
    key_prefix: String,
}

impl Sandbox {
    /// Checks Redis answers, creates a fresh database through `database_url` (which must
    /// be allowed to `CREATE DATABASE`) and connects to it.
    pub async fn create(database_url: &str, redis_url: &str) -> Result<Self> {
        let redis = redis::Client::open(redis_url)
            .with_context(|| format!("bad Redis URL {}", redact_url(redis_url)))?;
        let mut conn = redis_connection(&redis).await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .context("Redis does not answer PING")?;

        let admin = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(database_url)
            .await
            .with_context(|| format!("cannot connect to {}", redact_url(database_url)))?;
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let random = Uuid::new_v4().simple().to_string();
        let database = format!("conflux_bench_{secs}_{}", &random[..8]);
        sqlx::query(&format!("CREATE DATABASE \"{database}\""))
            .execute(&admin)
            .await
            .with_context(|| format!("cannot create database {database}"))?;
        let created = Self::connect(admin.clone(), database.clone(), database_url, redis).await;
        match created {
            Ok(sandbox) => Ok(sandbox),
            Err(e) => {
                let _ = drop_database(&admin, &database).await;
                Err(e)
            }
        }
    }

    async fn connect(
        admin: PgPool,
        database: String,
        base_url: &str,
        redis: redis::Client,
    ) -> Result<Self> {
        let database_url = with_database(base_url, &database)?;
        let pool = PgPoolOptions::new()
            .max_connections(RAW_POOL_SIZE)
            .acquire_timeout(Duration::from_secs(30))
            .connect(&database_url)
            .await
            .with_context(|| format!("cannot connect to the new database {database}"))?;
        Ok(Self {
            admin,
            database,
            database_url,
            pool,
            redis,
            key_prefix: format!("conflux-bench:{}:", Uuid::new_v4()),
        })
    }

    /// The sandbox database's name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// A URL for the sandbox database (the given URL with its database replaced).
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// A pool on the sandbox database, for the raw probes.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The Redis client.
    pub fn redis(&self) -> &redis::Client {
        &self.redis
    }

    /// Every Redis key of this run starts with this.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// Server versions and the durability settings that decide commit cost.
    pub async fn server_info(&self) -> Result<ServerInfo> {
        let show = |setting: &'static str| async move {
            sqlx::query_scalar::<_, String>(&format!("SHOW {setting}"))
                .fetch_one(&self.pool)
                .await
                .with_context(|| format!("SHOW {setting}"))
        };
        let mut conn = redis_connection(&self.redis).await?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .context("Redis INFO server")?;
        let redis_version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| anyhow!("Redis INFO has no redis_version"))?;
        Ok(ServerInfo {
            postgres_version: show("server_version").await?,
            fsync: show("fsync").await?,
            synchronous_commit: show("synchronous_commit").await?,
            redis_version,
        })
    }

    /// Drops the database (terminating any connection still on it) and deletes the
    /// run's Redis keys. Tries both even if one fails; reports the first failure.
    pub async fn teardown(self) -> Result<()> {
        self.pool.close().await;
        let dropped = drop_database(&self.admin, &self.database).await;
        let deleted = self.delete_keys().await;
        self.admin.close().await;
        dropped?;
        deleted
    }

    async fn delete_keys(&self) -> Result<()> {
        let mut conn = redis_connection(&self.redis).await?;
        let pattern = format!("{}*", self.key_prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .context("Redis SCAN for the run's keys")?;
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<u64>(&mut conn)
                    .await
                    .context("Redis UNLINK of the run's keys")?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// A new multiplexed Redis connection, failing after 5 s rather than hanging.
pub async fn redis_connection(client: &redis::Client) -> Result<redis::aio::MultiplexedConnection> {
    tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| anyhow!("connecting to Redis timed out"))?
    .context("cannot connect to Redis")
}

async fn drop_database(admin: &PgPool, database: &str) -> Result<()> {
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
    ))
    .execute(admin)
    .await
    .with_context(|| format!("cannot drop database {database}"))?;
    Ok(())
}

/// `url` with its database (the path) replaced by `database`; the query string stays.
pub fn with_database(url: &str, database: &str) -> Result<String> {
    let Some(scheme) = url.find("://") else {
        bail!("{} is not a postgres:// URL", redact_url(url));
    };
    let authority_start = scheme + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| authority_start + i);
    let query = url[authority_end..]
        .find('?')
        .map_or("", |i| &url[authority_end + i..]);
    Ok(format!("{}/{database}{query}", &url[..authority_end]))
}

/// `url` with any password replaced by `***`, for messages and reports.
pub fn redact_url(url: &str) -> String {
    let Some(scheme) = url.find("://") else {
        return url.to_owned();
    };
    let start = scheme + 3;
    let authority_end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let authority = &url[start..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..start],
            &authority[..colon],
            &url[start + at..]
        ),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_and_the_query_kept() -> Result<()> {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b")?,
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "b")?,
            "postgres://u:p@h/b?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "b")?,
            "postgres://h:5432/b"
        );
        assert_eq!(
            with_database("postgres://h?application_name=x", "b")?,
            "postgres://h/b?application_name=x"
        );
        assert!(with_database("nonsense", "b").is_err());
        Ok(())
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("redis://:secret@h"), "redis://:***@h");
        assert_eq!(
            redact_url("postgres://u@h:5432/db"),
            "postgres://u@h:5432/db"
        );
        assert_eq!(redact_url("--seconds"), "--seconds");
    }
}
