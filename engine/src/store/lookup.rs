//! The SQL of [`StreamQuery`], written once for both backends; they differ only in how
//! a parameter is written and how a JSON field is read.

use super::StreamQuery;

/// Which SQL flavour to write.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dialect {
    /// `$1`, `data->>'field'`, explicit timestamptz cast.
    Postgres,
    /// `?`, `json_extract(data, '$.field')`, times compared as RFC 3339 text.
    Sqlite,
}

impl Dialect {
    fn param(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::Sqlite => "?".to_owned(),
        }
    }

    fn time_param(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}::timestamptz"),
            // recorded_at is stored as fixed-width RFC 3339 UTC text: it sorts as time.
            Dialect::Sqlite => "?".to_owned(),
        }
    }

    fn json_field(self, alias: &str, field: &str) -> String {
        match self {
            Dialect::Postgres => format!("{alias}data->>'{field}'"),
            Dialect::Sqlite => format!("json_extract({alias}data, '$.{field}')"),
        }
    }
}

/// The SQL of `query` and its one text parameter, if any; the row limit is always the
/// last parameter.
pub(crate) fn lookup_sql(query: &StreamQuery, d: Dialect) -> (String, Option<String>) {
    // Open: no terminal event since its latest redrive (a redrive reopens a failed
    // execution; its earlier `ExecutionFailed` stays in the log).
    const OPEN: &str = "NOT EXISTS (SELECT 1 FROM events t WHERE t.stream_id = s.stream_id \
        AND t.event_type IN ('ExecutionCompleted', 'ExecutionFailed', 'ExecutionCancelled') \
        AND t.version > COALESCE((SELECT max(r.version) FROM events r \
            WHERE r.stream_id = s.stream_id AND r.event_type = 'ExecutionRedriven'), 0))";
    const STARTED: &str =
        "SELECT s.stream_id FROM events s WHERE s.event_type = 'ExecutionStarted'";
    match query {
        StreamQuery::ExecutionsOfWorkflow { workflow_id, open_only } => {
            let filter = if *open_only { format!("AND {OPEN}") } else { String::new() };
            let sql = format!(
                "{STARTED} AND {} = {} {filter} ORDER BY s.position LIMIT {}",
                d.json_field("s.", "workflow_id"),
                d.param(1),
                d.param(2)
            );
            (sql, Some(workflow_id.to_string()))
        }
        StreamQuery::OpenExecutions => (format!("{STARTED} AND {OPEN} ORDER BY s.position LIMIT {}", d.param(1)), None),
        StreamQuery::IdleExecutions { idle_since } => (
            format!(
                "{STARTED} AND {OPEN} AND (SELECT max(t.recorded_at) FROM events t WHERE t.stream_id = s.stream_id) \
                 < {} ORDER BY s.position LIMIT {}",
                d.time_param(1),
                d.param(2)
            ),
            Some(idle_since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        ),
        StreamQuery::Lease(lease) => (
            format!(
                "SELECT stream_id FROM events WHERE event_type = 'TaskStarted' AND {} = {} LIMIT {}",
                d.json_field("", "lease_id"),
                d.param(1),
                d.param(2)
            ),
            Some(lease.to_string()),
        ),
    }
}

/// Runs a [`StreamQuery`] on either database (the stream ids as stored): the one
/// `find_streams` both stores share.
pub(crate) async fn find_streams<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    query: &StreamQuery,
    dialect: Dialect,
    limit: usize,
) -> Result<Vec<String>, sqlx::Error>
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Decode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let (sql, param) = lookup_sql(query, dialect);
    let mut q = sqlx::query_scalar::<DB, String>(&sql);
    if let Some(p) = param {
        q = q.bind(p);
    }
    q.bind(super::postgres::db_int(limit)).fetch_all(pool).await
}
