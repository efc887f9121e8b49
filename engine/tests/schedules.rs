//! The schedule ticker without HTTP and without the engine role, stepped one pass at a
//! time at chosen instants on the real stores: two tickers on one Postgres database
//! start each tick once; overlap `skip` and `cancel_previous` against a previous
//! execution that is still running (no engine runs, so it stays running); a start
//! whose record was lost (a crash between the two) is recorded once; catch-up `none`
//! and `latest` after a long gap.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use conflux_engine::catalog::WorkflowCatalog;
use conflux_engine::commands::ExecutionCommands;
use conflux_engine::schedules::cadence::{tick_execution_id, GRACE};
use conflux_engine::schedules::ticker::Ticker;
use conflux_engine::schedules::{NewSchedule, Schedules};
use conflux_engine::store::postgres::{PgStore, PgStoreOptions};
use conflux_engine::store::sqlite::SqliteStore;
use conflux_engine::store::{read_whole_stream, EventStore, StreamQuery};
use conflux_engine::testing::TestDatabase;
use conflux_schema::schedule::{CatchUp, Overlap, TickOutcome};
use conflux_schema::{Event, EventMetadata, StreamId};
use serde_json::json;
use uuid::Uuid;

fn admin() -> EventMetadata {
    EventMetadata {
        actor: Some("test".into()),
        tenant_id: Some("default".into()),
        ..EventMetadata::default()
    }
}

fn commands(store: Arc<dyn EventStore>) -> ExecutionCommands {
    ExecutionCommands::new(
        store.clone(),
        WorkflowCatalog::new(store, Default::default()),
    )
}

/// A one-`noop` workflow and a schedule of it every second; returns the schedule id and
/// its creation time.
async fn every_second(
    commands: &ExecutionCommands,
    overlap: Overlap,
    catch_up: CatchUp,
) -> (Uuid, DateTime<Utc>) {
    let definition = serde_json::from_value(json!({
        "name": format!("s-{}", Uuid::now_v7().simple()),
        "tasks": [{"id": "a", "kind": "noop"}]
    }))
    .expect("definition");
    let workflow = commands
        .catalog()
        .create(definition, admin())
        .await
        .expect("workflow");
    let schedule = Schedules::new(commands.clone())
        .create(
            NewSchedule {
                workflow_id: workflow.workflow_id,
                cron: "* * * * * *".into(),
                timezone: None,
                input: Some(json!({"k": 1})),
                overlap: Some(overlap),
                catch_up: Some(catch_up),
            },
            admin(),
        )
        .await
        .expect("schedule");
    (schedule.id, schedule.created_at)
}

/// The schedule's `ScheduleTicked` events: (tick, outcome, execution).
async fn ticks(
    store: &dyn EventStore,
    id: Uuid,
) -> Vec<(DateTime<Utc>, TickOutcome, Option<Uuid>)> {
    read_whole_stream(store, &StreamId::schedule(id))
        .await
        .expect("read")
        .into_iter()
        .filter_map(|e| match e.event {
            Event::ScheduleTicked {
                tick_at,
                outcome,
                execution_id,
                ..
            } => Some((tick_at, outcome, execution_id)),
            _ => None,
        })
        .collect()
}

/// How many executions the schedule's workflow has.
async fn executions(store: &dyn EventStore, commands: &ExecutionCommands, id: Uuid) -> usize {
    let schedules = Schedules::new(commands.clone());
    let workflow = schedules
        .get("default", id)
        .await
        .expect("schedule")
        .workflow;
    let query = StreamQuery::ExecutionsOfWorkflow {
        workflow_id: workflow,
        open_only: false,
    };
    store
        .find_streams(&query, 10_000)
        .await
        .expect("find")
        .len()
}

fn whole(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).expect("time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tickers_on_one_store_start_each_tick_once() {
    let db = TestDatabase::create().await;
    let connect = || async {
        Arc::new(
            PgStore::connect(&db.url, &PgStoreOptions::default())
                .await
                .expect("store"),
        ) as Arc<dyn EventStore>
    };
    let (one, two) = (connect().await, connect().await);
    let (c1, c2) = (commands(one.clone()), commands(two.clone()));
    let (id, created) = every_second(&c1, Overlap::Allow, CatchUp::All).await;
    let a = Ticker::new(Schedules::new(c1.clone()), None);
    let b = Ticker::new(Schedules::new(c2.clone()), None);
    for step in 1..=3 {
        let now = created + Duration::seconds(5 * step);
        let (ra, rb) = tokio::join!(a.pass(now), b.pass(now));
        let (ra, rb) = (ra.expect("pass"), rb.expect("pass"));
        assert!(ra.recorded + rb.recorded >= 5, "step {step}: {ra:?} {rb:?}");
        // The same instant again: nothing left to do.
        let (ra, rb) = tokio::join!(a.pass(now), b.pass(now));
        assert_eq!(ra.expect("pass").recorded + rb.expect("pass").recorded, 0);
    }
    let recorded = ticks(&*one, id).await;
    assert_eq!(recorded.len(), 15, "{recorded:?}");
    assert!(recorded
        .windows(2)
        .all(|w| w[1].0 - w[0].0 == Duration::seconds(1)));
    assert_eq!(recorded[0].0, whole(created) + Duration::seconds(1));
    for (tick, outcome, execution) in &recorded {
        assert_eq!(*outcome, TickOutcome::Started);
        assert_eq!(*execution, Some(tick_execution_id(id, *tick)));
    }
    assert_eq!(
        executions(&*one, &c1, id).await,
        15,
        "one execution per tick"
    );
    let started = read_whole_stream(
        &*one,
        &StreamId::execution(tick_execution_id(id, recorded[0].0)),
    )
    .await
    .expect("read");
    assert_eq!(started[0].metadata.actor, Some(format!("schedule:{id}")));
    assert!(
        matches!(&started[0].event, Event::ExecutionStarted { input, .. } if *input == json!({"k": 1}))
    );
    db.drop_database().await;
}

/// The embedded store (one process): overlap, a lost record, catch-up.
async fn sqlite() -> (Arc<dyn EventStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("conflux.db"))
        .await
        .expect("store");
    (Arc::new(store), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_skips_or_cancels_a_running_previous_execution() {
    let (store, _dir) = sqlite().await;
    let c = commands(store.clone());
    let ticker = Ticker::new(Schedules::new(c.clone()), None);

    let (skip, created) = every_second(&c, Overlap::Skip, CatchUp::All).await;
    ticker
        .pass(created + Duration::seconds(1))
        .await
        .expect("pass");
    ticker
        .pass(created + Duration::seconds(2))
        .await
        .expect("pass");
    let recorded = ticks(&*store, skip).await;
    let outcomes: Vec<_> = recorded.iter().map(|t| t.1).collect();
    assert_eq!(
        outcomes,
        [TickOutcome::Started, TickOutcome::Skipped],
        "{recorded:?}"
    );
    assert_eq!(recorded[1].2, None);
    assert_eq!(executions(&*store, &c, skip).await, 1);

    let (cancel, created) = every_second(&c, Overlap::CancelPrevious, CatchUp::All).await;
    ticker
        .pass(created + Duration::seconds(1))
        .await
        .expect("pass");
    ticker
        .pass(created + Duration::seconds(2))
        .await
        .expect("pass");
    let recorded = ticks(&*store, cancel).await;
    let outcomes: Vec<_> = recorded.iter().map(|t| t.1).collect();
    assert_eq!(
        outcomes,
        [TickOutcome::Started, TickOutcome::Started],
        "{recorded:?}"
    );
    let first = recorded[0].2.expect("first execution");
    let log = read_whole_stream(&*store, &StreamId::execution(first))
        .await
        .expect("read");
    assert!(
        log.iter()
            .any(|e| matches!(e.event, Event::ExecutionCancelled { .. })),
        "the previous execution was cancelled"
    );
    let second = recorded[1].2.expect("second execution");
    let (state, _) = c.load(second).await.expect("load").expect("exists");
    assert!(!state.is_terminal());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_whose_record_was_lost_is_recorded_once() {
    let (store, _dir) = sqlite().await;
    let c = commands(store.clone());
    let (id, created) = every_second(&c, Overlap::Allow, CatchUp::All).await;
    let tick = whole(created) + Duration::seconds(1);
    // A ticker started the tick's execution and died before recording it.
    let workflow = Schedules::new(c.clone())
        .get("default", id)
        .await
        .expect("get")
        .workflow;
    c.start(
        workflow,
        tick_execution_id(id, tick),
        json!({"k": 1}),
        None,
        admin(),
    )
    .await
    .expect("start");
    let ticker = Ticker::new(Schedules::new(c.clone()), None);
    let pass = ticker.pass(tick).await.expect("pass");
    assert_eq!(pass.recorded, 1);
    assert_eq!(
        ticks(&*store, id).await,
        vec![(
            tick,
            TickOutcome::Started,
            Some(tick_execution_id(id, tick))
        )]
    );
    assert_eq!(executions(&*store, &c, id).await, 1, "no second execution");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_long_gap_catch_up_decides_the_missed_ticks() {
    let (store, _dir) = sqlite().await;
    let c = commands(store.clone());
    let ticker = Ticker::new(Schedules::new(c.clone()), None);
    let grace = Duration::from_std(GRACE).expect("grace");
    for (catch_up, missed_run) in [(CatchUp::None, 0), (CatchUp::Latest, 1)] {
        let (id, created) = every_second(&c, Overlap::Allow, catch_up).await;
        let now = whole(created) + Duration::seconds(90);
        ticker.pass(now).await.expect("pass");
        let recorded = ticks(&*store, id).await;
        let recent = recorded.iter().filter(|t| now - t.0 <= grace).count();
        assert_eq!(recent as i64, grace.num_seconds() + 1, "{catch_up:?}");
        assert_eq!(
            recorded.len() - recent,
            missed_run,
            "{catch_up:?}: {recorded:?}"
        );
        if catch_up == CatchUp::Latest {
            assert_eq!(recorded[0].0, now - grace - Duration::seconds(1));
        }
    }
}
