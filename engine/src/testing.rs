//! Test support shared by every crate's tests: a fresh Postgres database per test and a
//! unique Redis key prefix per test, against the real servers named by `DATABASE_URL`
//! and `REDIS_URL` (defaulting to the local ones). Nothing here mocks a server.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};

/// The Postgres server tests use (`DATABASE_URL`, default the local server).
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The Redis server tests use (`REDIS_URL`, default the local server).
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("conflux-test:{}:", uuid::Uuid::now_v7().simple())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn with_database(url: &str, name: &str) -> String {
    match url.rfind('/') {
        Some(i) if url[..i].contains("://") && url[i..].len() > 1 || url.ends_with('/') => {
            let (base, rest) = url.split_at(i);
            let query = rest.find('?').map_or("", |q| &rest[q..]);
            format!("{base}/{name}{query}")
        }
        _ => format!("{url}/{name}"),
    }
}

/// A database created for one test and dropped by [`TestDatabase::drop_database`].
/// Databases left behind by a test that panicked are dropped an hour later by the next
/// test run.
pub struct TestDatabase {
    /// Connection URL of the new database.
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates a fresh, empty database on the test server. Panics with a clear message
    /// when the server cannot be reached: tests never skip silently.
    pub async fn create() -> Self {
        let admin_url = database_url();
        let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "cannot reach Postgres at {admin_url}: {e}\n\
                 start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
            )
        });
        sweep_leftovers(&mut admin).await;
        let name = format!("conflux_t_{}_{}", now_secs(), uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = admin.close().await;
        Self {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// A small pool on the test database.
    pub async fn pool(&self) -> sqlx::PgPool {
        PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url))
    }

    /// A new database copied from this one as it stands (`CREATE DATABASE … TEMPLATE`,
    /// as a restore from a backup would give): whoever is connected to this one is
    /// disconnected first, as the copy requires.
    pub async fn snapshot(&self) -> TestDatabase {
        let mut admin = PgConnection::connect(&self.admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach Postgres: {e}"));
        let name = format!("conflux_t_{}_{}", now_secs(), uuid::Uuid::new_v4().simple());
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
            .bind(&self.name)
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot disconnect {}: {e}", self.name));
        sqlx::query(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{}\"",
            self.name
        ))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot copy {} to {name}: {e}", self.name));
        let _ = admin.close().await;
        TestDatabase {
            url: with_database(&self.admin_url, &name),
            name,
            admin_url: self.admin_url.clone(),
        }
    }

    /// Drops the database and creates an empty one of the same name (what a developer
    /// does to start over).
    pub async fn recreate(&self) {
        let mut admin = PgConnection::connect(&self.admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach Postgres: {e}"));
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
            format!("CREATE DATABASE \"{}\"", self.name),
        ] {
            sqlx::query(&sql)
                .execute(&mut admin)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let _ = admin.close().await;
    }

    /// Drops the database (disconnecting whoever is still on it).
    pub async fn drop_database(self) {
        if let Ok(mut admin) = PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await;
            let _ = admin.close().await;
        }
    }
}

async fn sweep_leftovers(admin: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'conflux\\_t\\_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    let cutoff = now_secs().saturating_sub(3600);
    for name in names {
        let created = name
            .split('_')
            .nth(2)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        if created < cutoff {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut *admin)
                .await;
        }
    }
}

/// Deletes every Redis key under `prefix`.
pub async fn delete_redis_prefix(prefix: &str) {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_is_swapped_in_the_url() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h:5432", "x"),
            "postgres://u@h:5432/x"
        );
    }
}
