//! WebSocket connections leave nothing behind, measured on the real `conflux` binary
//! (so the numbers are the server's alone), in embedded mode and on Postgres + Redis.
//!
//! - 1,000 connect/disconnect cycles of every kind — polite closes, abrupt ones
//!   mid-stream (TCP FIN, or RST without a close frame), clients that leave before the
//!   first frame, unknown ids (closed with 4404), refused upgrades (400) — while
//!   executions produce live events. After a settle, the server's own gauges are back:
//!   `conflux_ws_connections` at 0, `conflux_runtime_alive_tasks` within a few tasks of
//!   the baseline, and the resident set within a bound far below what a buffer per
//!   connection would cost. The baseline is taken after 100 warm-up cycles (pools,
//!   caches and allocator arenas filled).
//! - On SIGTERM, a connected client is closed with 1001 ("server stopping"), not left
//!   with a dropped TCP connection.
//! - A client message over 64 KiB ends the connection instead of being buffered (the
//!   WebSocket default would let every client make the server hold 64 MiB).

use std::time::{Duration, Instant};

#[allow(dead_code)]
#[path = "support/auth.rs"]
mod auth;
#[allow(dead_code)]
#[path = "support/binary.rs"]
mod binary;

#[path = "ws_leak/server.rs"]
mod server;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use server::{connect, expect_close, next_text, reset, Ctx, Mode};
use tokio_tungstenite::tungstenite::Message;

/// Warm-up cycles before the baseline.
const WARM_UP: usize = 100;
/// Measured cycles.
const CYCLES: usize = 1_000;
/// Cycles run at once.
const CONCURRENCY: usize = 20;
/// Tasks the server may have above its baseline after the settle (timers, pooled
/// connections coming and going); a task per connection would be ~1,000.
const TASK_MARGIN: f64 = 10.0;
/// Resident set growth allowed, in MiB; a 64 KiB buffer kept per connection would be
/// ~62 MiB.
const RSS_MARGIN_MIB: f64 = 30.0;

/// What the cycles connect to.
struct Targets<'a> {
    /// An execution that has ended.
    completed: &'a str,
    /// The (workflow, execution) running now.
    running: tokio::sync::watch::Receiver<Option<(String, String)>>,
}

impl Targets<'_> {
    /// The (workflow, execution) running now (or that just ended).
    async fn running(&self) -> (String, String) {
        let mut running = self.running.clone();
        let now = running
            .wait_for(Option::is_some)
            .await
            .expect("the producer runs")
            .clone();
        now.unwrap_or_default()
    }
}

/// One connect/disconnect cycle of kind `i % 8`.
async fn cycle(ctx: &Ctx, targets: &Targets<'_>, i: usize) {
    let unknown = uuid::Uuid::now_v7();
    match i % 8 {
        // A snapshot, then a polite close.
        0 => {
            let mut s = connect(ctx.ws(&format!("/ws/executions/{}", targets.completed))).await;
            assert_eq!(
                next_text(&mut s, "snapshot").await.expect("snapshot")["type"],
                "snapshot"
            );
            s.close(None).await.expect("close");
            while s.next().await.is_some() {}
        }
        // Mid catch-up, gone without a close frame (FIN).
        1 => {
            let path = format!("/ws/executions/{}?after=0", targets.completed);
            let mut s = connect(ctx.ws(&path)).await;
            next_text(&mut s, "execution catch-up")
                .await
                .expect("an event");
            drop(s);
        }
        // Unknown execution, unknown workflow: 4404.
        2 => {
            let mut s = connect(ctx.ws(&format!("/ws/executions/{unknown}"))).await;
            expect_close(&mut s, 4404, "unknown execution").await;
        }
        3 => {
            let mut s = connect(ctx.ws(&format!("/ws/workflows/{unknown}?after=0"))).await;
            expect_close(&mut s, 4404, "unknown workflow").await;
        }
        // Mid live stream of a running execution, reset.
        4 => {
            let (_, execution) = targets.running().await;
            let path = format!("/ws/executions/{execution}");
            let mut s = connect(ctx.ws(&path)).await;
            let snapshot = next_text(&mut s, "execution snapshot")
                .await
                .expect("snapshot");
            if snapshot["status"]["status"] == "running" {
                // At least its end follows.
                next_text(&mut s, "a live event").await.expect("an event");
            }
            reset(s);
        }
        // Mid catch-up (and live stream) of a running workflow, gone (FIN).
        5 => {
            let (workflow, _) = targets.running().await;
            let path = format!("/ws/workflows/{workflow}?after=0");
            let mut s = connect(ctx.ws(&path)).await;
            next_text(&mut s, "workflow catch-up")
                .await
                .expect("an event");
            drop(s);
        }
        // Gone before the first frame.
        6 => {
            let s = connect(ctx.ws(&format!("/ws/executions/{}", targets.completed))).await;
            reset(s);
        }
        // Refused before the upgrade.
        _ => {
            let url = ctx.ws(&format!("/ws/executions/{}?after=-1", targets.completed));
            assert!(tokio_tungstenite::connect_async(auth::ws_request(&url))
                .await
                .is_err());
        }
    }
}

/// `count` cycles, `CONCURRENCY` at a time, starting at kind `first`.
async fn cycles(ctx: &Ctx, targets: &Targets<'_>, first: usize, count: usize) {
    let mut next = first;
    while next < first + count {
        let batch = (next..(next + CONCURRENCY).min(first + count)).map(|i| cycle(ctx, targets, i));
        futures::future::join_all(batch).await;
        next += CONCURRENCY;
    }
}

/// Keeps one execution of `definition` running at a time, each of a workflow of its
/// own (so a workflow's catch-up stays one execution long), published on `running`,
/// until `stop`; then waits for the last one to end.
async fn produce(
    ctx: &Ctx,
    definition: &Value,
    running: tokio::sync::watch::Sender<Option<(String, String)>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let workflow = ctx.create_workflow(definition.clone()).await;
        let execution = ctx.execute(&workflow).await;
        running.send_replace(Some((workflow, execution.clone())));
        tokio::select! {
            () = ctx.wait_terminal(&execution) => {}
            _ = stop.changed() => ctx.wait_terminal(&execution).await,
        }
    }
}

/// Runs `count` cycles while executions of `definition` produce live events, then
/// waits for them to end.
async fn busy_cycles(ctx: &Ctx, completed: &str, definition: &Value, first: usize, count: usize) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (running, watching) = tokio::sync::watch::channel(None);
    let targets = Targets {
        completed,
        running: watching,
    };
    tokio::join!(produce(ctx, definition, running, stopped), async {
        cycles(ctx, &targets, first, count).await;
        let _ = stop.send(true);
    });
}

async fn connections_leave_nothing_behind(mode: Mode) {
    let ctx = Ctx::start(mode).await;
    // 100 steps, a sleep every other one: ~2 s of events every ~20 ms.
    let tasks: Vec<Value> = (0..100)
        .map(|i| {
            let mut task = if i % 2 == 0 {
                json!({"id": format!("t{i}"), "kind": "noop"})
            } else {
                json!({"id": format!("t{i}"), "kind": "sleep", "sleep_ms": 40})
            };
            if i > 0 {
                task["depends_on"] = json!([format!("t{}", i - 1)]);
            }
            task
        })
        .collect();
    let short = json!({"name": "leak-short", "tasks": tasks[..20]});
    let chain = json!({"name": "leak", "tasks": tasks});
    let done = ctx.create_workflow(short).await;
    let completed = ctx.execute(&done).await;
    ctx.wait_terminal(&completed).await;

    busy_cycles(&ctx, &completed, &chain, 0, WARM_UP).await;
    let baseline = ctx.settled().await;
    let started = Instant::now();
    busy_cycles(&ctx, &completed, &chain, WARM_UP, CYCLES).await;
    let took = started.elapsed();
    let after = ctx.settled().await;
    eprintln!(
        "ws leak ({}): {CYCLES} cycles in {took:.1?}; baseline {baseline:?}; after {after:?}",
        if mode == Mode::Postgres {
            "postgres+redis"
        } else {
            "embedded"
        }
    );
    assert_eq!(baseline.connections, 0.0);
    assert_eq!(after.connections, 0.0, "every WebSocket task ended");
    assert!(
        after.tasks <= baseline.tasks + TASK_MARGIN,
        "alive tasks grew from {} to {} over {CYCLES} cycles",
        baseline.tasks,
        after.tasks
    );
    assert!(
        after.rss_mib <= baseline.rss_mib + RSS_MARGIN_MIB,
        "RSS grew from {:.1} MiB to {:.1} MiB over {CYCLES} cycles",
        baseline.rss_mib,
        after.rss_mib
    );
    assert!(
        ctx.served.bin.bad_log_lines().is_empty(),
        "{:?}",
        ctx.served.bin.bad_log_lines()
    );
    ctx.cleanup().await;
}

/// SIGTERM closes connected clients with 1001 instead of dropping them.
async fn shutdown_closes_clients_with_1001(mode: Mode) {
    let mut ctx = Ctx::start(mode).await;
    let workflow = ctx
        .create_workflow(json!({"name": "stop", "tasks": [{"id": "a", "kind": "noop"}]}))
        .await;
    let execution = ctx.execute(&workflow).await;
    ctx.wait_terminal(&execution).await;
    let mut clients = Vec::new();
    for path in [
        format!("/ws/executions/{execution}"),
        format!("/ws/workflows/{workflow}"),
    ] {
        let mut s = connect(ctx.ws(&path)).await;
        assert_eq!(
            next_text(&mut s, &path).await.expect("snapshot")["type"],
            "snapshot"
        );
        clients.push(s);
    }
    let stopping = tokio::task::spawn_blocking(move || {
        let status = ctx.served.bin.stop();
        (ctx, status)
    });
    for (i, s) in clients.iter_mut().enumerate() {
        expect_close(s, 1001, &format!("client {i} at shutdown")).await;
    }
    let (mut ctx, status) = stopping.await.expect("join");
    assert!(status.success(), "a graceful stop: {status}");
    ctx.release().await;
}

/// A message over the server's limit ends the connection; ones under it do not.
async fn oversized_client_messages_end_the_connection(mode: Mode) {
    let ctx = Ctx::start(mode).await;
    let workflow = ctx
        .create_workflow(json!({"name": "big", "tasks": [{"id": "a", "kind": "noop"}]}))
        .await;
    let path = format!("/ws/workflows/{workflow}");
    let mut s = connect(ctx.ws(&path)).await;
    next_text(&mut s, &path).await.expect("snapshot");
    // Under the limit, whether or not it fits the server's 4 KiB read buffer.
    for size in [1024, 60 * 1024] {
        s.send(Message::text("x".repeat(size)))
            .await
            .expect("a message under the limit");
    }
    // The server ignores them and still streams: start an execution and see its events.
    let execution = ctx.execute(&workflow).await;
    let first = next_text(&mut s, "after messages under the limit")
        .await
        .expect("an event");
    assert_eq!(
        first["event"]["stream_id"],
        format!("execution-{execution}")
    );
    ctx.wait_terminal(&execution).await;
    let _ = s.send(Message::text("x".repeat(100 * 1024))).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "a 100 KiB message ends the connection");
    let started = Instant::now();
    while ctx.gauges().await.connections != 0.0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the connection's task ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_oversized_client_messages_end_the_connection() {
    oversized_client_messages_end_the_connection(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_connections_leave_nothing_behind() {
    connections_leave_nothing_behind(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_leave_nothing_behind() {
    connections_leave_nothing_behind(Mode::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_shutdown_closes_clients_with_1001() {
    shutdown_closes_clients_with_1001(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_shutdown_closes_clients_with_1001() {
    shutdown_closes_clients_with_1001(Mode::Postgres).await;
}
