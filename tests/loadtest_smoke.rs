//! Smoke test of the load tester: every `conflux-loadtest` scenario, at a tiny size,
//! against the real `conflux` binary — embedded, and once against Postgres + Redis with
//! the raw limits — through the same library call the `all` subcommand makes. It
//! asserts that each scenario completes and produces numbers, never what the numbers
//! are: this machine's speed is not the code's behaviour.

#[allow(dead_code)]
#[path = "support/auth.rs"]
mod auth;
#[allow(dead_code)]
#[path = "support/binary.rs"]
mod binary;

use binary::Binary;
use conflux_engine::testing::{
    database_url, delete_redis_prefix, redis_url, unique_prefix, TestDatabase,
};
use conflux_loadtest::scenarios::load::LoadParams;
use conflux_loadtest::scenarios::{w1, w2, w3, w4, w5, w6, w7, w8, w9, Scenario};
use conflux_loadtest::suite::{run_suite, SuiteConfig, SuiteReport};
use conflux_loadtest::BenchConfig;

/// The server refuses definitions above this many tasks, so W4's chain (200 tasks)
/// exercises the "server limit" report while its DAG (100 tasks) is accepted.
const MAX_TASKS: &str = "150";

fn w1() -> Scenario {
    Scenario::W1Chain(w1::Params { runs: 3, chain: 10 })
}

fn w6() -> Scenario {
    Scenario::W6Chain40(w6::Params {
        chain: 5,
        work_ms: 2,
        runs: 1,
        pollers: 2,
    })
}

fn tiny_scenarios() -> Vec<Scenario> {
    vec![
        w1(),
        Scenario::W2Diamond(w2::Params {
            executions: 10,
            width: 10,
            agents: 3,
        }),
        Scenario::W3Sustained(w3::Params {
            load: LoadParams {
                rate: 10.0,
                seconds: 2.0,
                agent_share: 0.5,
                pollers: 3,
                mixed_capabilities: true,
                poll_wait_ms: 5_000,
                status_rate: 2.0,
                create_rate: 1.0,
            },
            drain_seconds: 30.0,
            slow_hook_seconds: None,
        }),
        Scenario::W4Planning(w4::Params {
            dag_tasks: 100,
            fanout: 10,
            chain_tasks: 200,
            repeats: 2,
        }),
        Scenario::W5Fanout(w5::Params {
            subscribers: 20,
            executions: 4,
            steps: 3,
            pollers: 2,
            background_rate: 5.0,
            limit_seconds: 60.0,
        }),
        w6(),
        Scenario::W7Fairness(w7::Params {
            backlog: 20,
            width: 2,
            probes: 5,
            interval_ms: 50,
            delay_ms: 200,
            agent: false,
        }),
        Scenario::W7Fairness(w7::Params {
            backlog: 20,
            width: 2,
            probes: 3,
            interval_ms: 50,
            delay_ms: 200,
            agent: true,
        }),
        Scenario::W8Schedules(w8::Params {
            schedules: 5,
            seconds: 2,
        }),
        Scenario::W9Map(w9::Params { items: 50, runs: 2 }),
    ]
}

async fn run(base: &str, limits: Option<BenchConfig>, scenarios: Vec<Scenario>) -> SuiteReport {
    let config = SuiteConfig {
        title: "smoke".into(),
        url: base.to_owned(),
        token: Some(binary::ADMIN_TOKEN.to_owned()),
        mode: None,
        limits,
        scenarios,
        command_line: "loadtest smoke test".into(),
    };
    run_suite(&config).await.expect("the suite runs")
}

/// Every scenario finished and produced at least one number; the report renders.
fn assert_every_scenario_produced_numbers(report: &SuiteReport, names: &[&str]) {
    let ran: Vec<&str> = report.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(ran, names);
    for s in &report.scenarios {
        assert_eq!(s.error, None, "{} failed", s.name);
        let run = s.run.as_ref().expect("a finished scenario has a run");
        assert!(
            run.figures
                .iter()
                .any(|f| f.value.is_some_and(f64::is_finite)),
            "{} produced no numbers: {:?}",
            s.name,
            run.figures
        );
    }
    let markdown = report.to_markdown();
    for name in names {
        assert!(markdown.contains(name), "{name} missing from the markdown");
    }
    let json: serde_json::Value =
        serde_json::from_str(&report.to_json().expect("json")).expect("the JSON parses");
    assert_eq!(
        json["scenarios"].as_array().map(Vec::len),
        Some(names.len())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_against_the_embedded_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data").display().to_string();
    let mut server = Binary::start(
        &[
            ("CONFLUX_DATA_DIR", data),
            ("CONFLUX_MAX_TASKS", MAX_TASKS.into()),
        ],
        dir.path(),
    );
    let report = run(&server.base, None, tiny_scenarios()).await;

    assert_eq!(report.server.mode.as_deref(), Some("embedded"));
    assert_every_scenario_produced_numbers(
        &report,
        &[
            "w1-chain",
            "w2-diamond",
            "w3-sustained",
            "w4-planning",
            "w5-fanout",
            "w6-chain40",
            "w7-fairness",
            "w7-fairness",
            "w8-schedules",
            "w9-map",
        ],
    );
    let w4 = report
        .scenario("w4-planning")
        .and_then(|s| s.run.as_ref())
        .expect("w4 ran");
    assert!(
        w4.result["chain"]["rejected"]
            .as_str()
            .is_some_and(|r| r.contains("CONFLUX_MAX_TASKS")),
        "the over-limit chain is reported as a server limit: {}",
        w4.result["chain"]
    );
    assert_eq!(w4.result["dag"]["rejected"], serde_json::Value::Null);
    let status = server.stop();
    assert!(status.success(), "conflux exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_measures_raw_limits_and_ratios_in_postgres_mode() {
    let db = TestDatabase::create().await;
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Binary::start(
        &[
            ("DATABASE_URL", db.url.clone()),
            ("REDIS_URL", redis_url()),
            ("CONFLUX_REDIS_PREFIX", prefix.clone()),
        ],
        dir.path(),
    );
    let limits = BenchConfig {
        database_url: database_url(),
        redis_url: redis_url(),
        seconds: 0.1,
        rounds: 1,
        command_line: "loadtest smoke test".into(),
    };
    let report = run(&server.base, Some(limits), vec![w1(), w6()]).await;

    assert_eq!(report.server.mode.as_deref(), Some("postgres+redis"));
    assert!(report.limits.is_some(), "{:?}", report.limits_note);
    assert_every_scenario_produced_numbers(&report, &["w1-chain", "w6-chain40"]);
    let ratios = report
        .scenarios
        .iter()
        .filter_map(|s| s.run.as_ref())
        .flat_map(|r| &r.figures)
        .filter(|f| f.basis.is_some())
        .map(|f| f.vs_raw.as_ref().map(|v| v.ratio));
    for ratio in ratios {
        assert!(ratio.is_some_and(|r| r > 0.0), "a figure without its ratio");
    }
    let status = server.stop();
    assert!(status.success(), "conflux exited with {status}");
    db.drop_database().await;
    delete_redis_prefix(&prefix).await;
}
