//! Runs the whole `store` scenario in-process for a blink against the real Postgres
//! and Redis (`DATABASE_URL`, `REDIS_URL`, or the local defaults), and checks that
//! every measurement produced a rate and the report has every row. Timings are never
//! asserted: this machine's speed is not the code's behaviour.

use anyhow::Result;
use conflux_loadtest::{run_store, BenchConfig};

const EVERY_ROW: [&str; 14] = [
    "conflux.append.single.x1",
    "pg.insert.single.x1",
    "conflux.append.single.x8",
    "pg.insert.single.x8",
    "conflux.append.batch100.x1",
    "pg.insert.multirow100.x1",
    "conflux.append.batch100.x8",
    "pg.insert.multirow100.x8",
    "redis.xadd.single.x1",
    "redis.xadd.single.x8",
    "redis.xadd.pipeline100.x1",
    "redis.xadd.pipeline100.x8",
    "pg.roundtrip.select1",
    "redis.roundtrip.ping",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_benchmark_reports_every_row() -> Result<()> {
    let config = BenchConfig {
        database_url: std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        redis_url: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        seconds: 0.2,
        rounds: 1,
        command_line: "smoke test".into(),
    };
    let report = run_store(&config).await?;

    let ids: Vec<&str> = report
        .measurements
        .iter()
        .map(|m| m.info.id.as_str())
        .collect();
    assert_eq!(ids, EVERY_ROW);
    for m in &report.measurements {
        assert_eq!(m.rounds.len(), 1, "{}", m.info.id);
        assert!(m.median_rate > 0.0, "{} produced no events", m.info.id);
    }

    for m in report
        .measurements
        .iter()
        .filter(|m| m.info.id.starts_with("conflux."))
    {
        let per_tx = m.details.get("events_per_transaction").copied();
        assert!(
            per_tx.is_some_and(|v| v >= 1.0),
            "{}: {per_tx:?}",
            m.info.id
        );
    }

    assert_eq!(report.comparisons.len(), 4);
    for c in &report.comparisons {
        assert!(c.ratio > 0.0, "{} has no ratio", c.measurement);
        assert!(c.met.is_some(), "{} has no goal", c.measurement);
    }

    let markdown = report.to_markdown();
    for m in &report.measurements {
        assert!(markdown.contains(&m.info.label), "{} missing", m.info.label);
    }
    let json: serde_json::Value = serde_json::from_str(&report.to_json()?)?;
    assert_eq!(json["measurements"].as_array().map(Vec::len), Some(14));
    Ok(())
}
