//! One suite for every task queue backend, instantiated by `queue_suite!` for Redis
//! Streams (a unique key prefix per test, deleted afterwards) and the in-process queue,
//! plus the Redis-only checks of recovering from a flush and from a take that died.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use conflux_engine::queue::local::LocalTaskQueue;
use conflux_engine::queue::redis::RedisTaskQueue;
use conflux_engine::queue::{TaskQueue, Ticket};
use conflux_engine::testing::{delete_redis_prefix, redis_url, unique_prefix};
use uuid::Uuid;

/// What each backend provides to the suite.
#[async_trait]
trait Fixture: Sized + Send + Sync {
    async fn setup() -> Self;
    fn queue(&self) -> Arc<dyn TaskQueue>;
    async fn teardown(self);
}

struct Redis {
    queue: RedisTaskQueue,
    prefix: String,
}

async fn connect_redis(prefix: &str) -> RedisTaskQueue {
    RedisTaskQueue::connect(&redis_url(), prefix).await.unwrap_or_else(|e| {
        panic!("cannot reach Redis: {e}\nstart it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no")
    })
}

#[async_trait]
impl Fixture for Redis {
    async fn setup() -> Self {
        let prefix = unique_prefix();
        let queue = connect_redis(&prefix).await;
        Self { queue, prefix }
    }
    fn queue(&self) -> Arc<dyn TaskQueue> {
        Arc::new(self.queue.clone())
    }
    async fn teardown(self) {
        delete_redis_prefix(&self.prefix).await;
    }
}

struct Local(LocalTaskQueue);

#[async_trait]
impl Fixture for Local {
    async fn setup() -> Self {
        Self(LocalTaskQueue::new())
    }
    fn queue(&self) -> Arc<dyn TaskQueue> {
        Arc::new(self.0.clone())
    }
    async fn teardown(self) {}
}

/// Every check, once per backend: `queue_suite!(backend: Fixture, …; [checks])`.
macro_rules! queue_suite {
    ($($backend:ident: $fixture:ty),+; $checks:tt) => {
        $(queue_suite!(@backend $backend, $fixture, $checks);)+
    };
    (@backend $backend:ident, $fixture:ty, [$($check:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    use crate::Fixture as _;
                    let fixture = <$fixture>::setup().await;
                    crate::$check(fixture.queue()).await;
                    fixture.teardown().await;
                }
            )*
        }
    };
}

queue_suite!(redis: crate::Redis, local: crate::Local; [
    a_role_is_taken_oldest_first,
    several_roles_are_taken_at_once,
    max_is_respected,
    a_waiting_take_wakes_up_on_enqueue,
    long_polls_do_not_wait_behind_each_other,
    an_empty_take_returns_nothing,
    concurrent_pollers_take_every_ticket_once,
    depth_counts_waiting_tickets,
    roles_with_any_characters_are_kept_apart,
    tenants_never_take_each_others_tickets,
    agents_are_seen_at_their_latest_time_per_tenant,
    waiting_agents_are_listed_until_they_stop_or_expire,
    held_counts_leases_not_reservations,
    higher_priority_is_taken_first_and_waiting_lifts_the_lowest,
    rate_tokens_come_at_their_rate_per_bucket,
]);

const NO_WAIT: Duration = Duration::ZERO;
/// The tenant of the suite's tickets (`default`: the keys queues had before tenants).
const T: &str = "default";

fn ticket(role: &str, n: usize) -> Ticket {
    Ticket {
        execution_id: Uuid::now_v7(),
        tenant: T.to_owned(),
        task_id: format!("task-{n}"),
        attempt: 1,
        compensation: n % 2 == 1,
        role: role.to_owned(),
        input: serde_json::json!({ "n": n, "role": role }),
        enqueued_at: Utc::now(),
        rate_limit: None,
        routing: None,
        routed_from: None,
    }
}

fn roles(names: &[&str]) -> Vec<String> {
    names.iter().map(|r| (*r).to_owned()).collect()
}

async fn enqueue_all(q: &dyn TaskQueue, tickets: &[Ticket]) {
    for t in tickets {
        q.enqueue(t).await.expect("enqueue");
    }
}

fn of_role(tickets: &[Ticket], role: &str) -> Vec<Ticket> {
    tickets.iter().filter(|t| t.role == role).cloned().collect()
}

async fn a_role_is_taken_oldest_first(q: Arc<dyn TaskQueue>) {
    let tickets: Vec<Ticket> = (0..5).map(|n| ticket("picker", n)).collect();
    enqueue_all(&*q, &tickets).await;
    let taken = q
        .take(T, &roles(&["picker"]), 10, NO_WAIT)
        .await
        .expect("take");
    assert_eq!(taken, tickets, "every field survives, in enqueue order");
    let again = q
        .take(T, &roles(&["picker"]), 10, NO_WAIT)
        .await
        .expect("take");
    assert!(again.is_empty(), "a taken ticket is gone");
}

async fn several_roles_are_taken_at_once(q: Arc<dyn TaskQueue>) {
    let tickets = vec![
        ticket("a", 1),
        ticket("b", 2),
        ticket("a", 3),
        ticket("c", 4),
        ticket("b", 5),
    ];
    enqueue_all(&*q, &tickets).await;
    let taken = q
        .take(T, &roles(&["a", "b"]), 10, NO_WAIT)
        .await
        .expect("take");
    assert_eq!(taken.len(), 4);
    assert_eq!(of_role(&taken, "a"), of_role(&tickets, "a"));
    assert_eq!(of_role(&taken, "b"), of_role(&tickets, "b"));
    assert_eq!(
        q.depth(T, "c").await.expect("depth"),
        1,
        "role c was not polled"
    );
}

async fn max_is_respected(q: Arc<dyn TaskQueue>) {
    let tickets: Vec<Ticket> = (0..5)
        .map(|n| ticket("a", n))
        .chain((5..10).map(|n| ticket("b", n)))
        .collect();
    enqueue_all(&*q, &tickets).await;
    let both = roles(&["a", "b"]);
    let mut taken = Vec::new();
    for max in [3, 3, 1] {
        let got = q.take(T, &both, max, NO_WAIT).await.expect("take");
        assert_eq!(
            got.len(),
            max,
            "a take returns at most max, and max when it can"
        );
        taken.extend(got);
    }
    let rest = q.take(T, &both, 10, NO_WAIT).await.expect("take");
    assert_eq!(rest.len(), 3);
    taken.extend(rest);
    assert_eq!(
        of_role(&taken, "a"),
        of_role(&tickets, "a"),
        "oldest first per role"
    );
    assert_eq!(
        of_role(&taken, "b"),
        of_role(&tickets, "b"),
        "oldest first per role"
    );
}

async fn a_waiting_take_wakes_up_on_enqueue(q: Arc<dyn TaskQueue>) {
    let waiting = {
        let q = q.clone();
        tokio::spawn(async move {
            q.take(T, &roles(&["a", "b"]), 10, Duration::from_secs(5))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = ticket("b", 1);
    q.enqueue(&t).await.expect("enqueue");
    let taken = waiting.await.expect("join").expect("take");
    assert_eq!(
        taken,
        vec![t],
        "the waiting take got the ticket enqueued after it began"
    );
}

async fn long_polls_do_not_wait_behind_each_other(q: Arc<dyn TaskQueue>) {
    let names: Vec<String> = (0..8).map(|n| format!("role-{n}")).collect();
    let mut waiting: Vec<_> = names
        .iter()
        .map(|role| {
            let (q, role) = (q.clone(), role.clone());
            tokio::spawn(async move { q.take(T, &[role], 10, Duration::from_secs(5)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let last = ticket(&names[7], 7);
    q.enqueue(&last).await.expect("enqueue");
    let taken = waiting.pop().expect("poller").await.expect("join");
    assert_eq!(taken.expect("take"), vec![last]);
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "the last poller was served while the others still waited"
    );
    for (n, w) in waiting.into_iter().enumerate() {
        let t = ticket(&names[n], n);
        q.enqueue(&t).await.expect("enqueue");
        assert_eq!(w.await.expect("join").expect("take"), vec![t]);
    }
}

async fn an_empty_take_returns_nothing(q: Arc<dyn TaskQueue>) {
    let waited = q
        .take(T, &roles(&["idle"]), 10, Duration::from_millis(200))
        .await;
    assert_eq!(waited.expect("take"), vec![]);
    q.enqueue(&ticket("idle", 1)).await.expect("enqueue");
    let none = q
        .take(T, &roles(&["idle"]), 0, Duration::from_secs(5))
        .await;
    assert_eq!(none.expect("take"), vec![], "max 0 takes nothing");
    let no_roles = q.take(T, &[], 10, Duration::from_millis(50)).await;
    assert_eq!(no_roles.expect("take"), vec![], "no roles, nothing to take");
    assert_eq!(q.depth(T, "idle").await.expect("depth"), 1);
}

async fn concurrent_pollers_take_every_ticket_once(q: Arc<dyn TaskQueue>) {
    const TICKETS: usize = 500;
    const POLLERS: usize = 8;
    let tickets: Vec<Ticket> = (0..TICKETS)
        .map(|n| ticket(if n % 3 == 0 { "x" } else { "y" }, n))
        .collect();
    let taken_so_far = Arc::new(AtomicUsize::new(0));
    let pollers: Vec<_> = (0..POLLERS)
        .map(|_| {
            let (q, taken_so_far) = (q.clone(), taken_so_far.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while taken_so_far.load(Ordering::SeqCst) < TICKETS {
                    let got = q
                        .take(T, &roles(&["x", "y"]), 10, Duration::from_millis(100))
                        .await
                        .expect("take");
                    taken_so_far.fetch_add(got.len(), Ordering::SeqCst);
                    mine.extend(got);
                }
                mine
            })
        })
        .collect();
    enqueue_all(&*q, &tickets).await;
    // A guard against a lost ticket hanging the test, not a timing assertion.
    let all = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(pollers))
        .await
        .expect("the pollers took every ticket");
    let taken: Vec<Ticket> = all.into_iter().flat_map(|p| p.expect("poller")).collect();
    let ids: HashSet<Uuid> = taken.iter().map(|t| t.execution_id).collect();
    assert_eq!(taken.len(), TICKETS, "no ticket was taken twice");
    assert_eq!(ids, tickets.iter().map(|t| t.execution_id).collect());
    for role in ["x", "y"] {
        assert_eq!(q.depth(T, role).await.expect("depth"), 0);
    }
}

async fn depth_counts_waiting_tickets(q: Arc<dyn TaskQueue>) {
    assert_eq!(q.depth(T, "a").await.expect("depth"), 0);
    enqueue_all(
        &*q,
        &[
            ticket("a", 1),
            ticket("a", 2),
            ticket("a", 3),
            ticket("b", 4),
        ],
    )
    .await;
    assert_eq!(q.depth(T, "a").await.expect("depth"), 3);
    assert_eq!(q.depth(T, "b").await.expect("depth"), 1);
    let taken = q.take(T, &roles(&["a"]), 2, NO_WAIT).await.expect("take");
    assert_eq!(taken.len(), 2);
    assert_eq!(q.depth(T, "a").await.expect("depth"), 1);
    assert_eq!(q.depth(T, "b").await.expect("depth"), 1);
}

async fn roles_with_any_characters_are_kept_apart(q: Arc<dyn TaskQueue>) {
    let names = ["a", "a:b", "a:*", "{tag}", "with space", "ünïcødé", ""];
    let tickets: Vec<Ticket> = names
        .iter()
        .enumerate()
        .map(|(n, r)| ticket(r, n))
        .collect();
    enqueue_all(&*q, &tickets).await;
    for t in &tickets {
        let taken = q
            .take(T, std::slice::from_ref(&t.role), 10, NO_WAIT)
            .await
            .expect("take");
        assert_eq!(
            taken,
            vec![t.clone()],
            "role {:?} holds its own ticket only",
            t.role
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_recreates_a_queue_that_was_flushed() {
    let prefix = unique_prefix();
    let q = connect_redis(&prefix).await;
    let role = roles(&["picker"]);
    q.enqueue(&ticket("picker", 1)).await.expect("enqueue");
    assert_eq!(q.take(T, &role, 10, NO_WAIT).await.expect("take").len(), 1);
    delete_redis_prefix(&prefix).await; // the stream and its group are gone
    let t = ticket("picker", 2);
    q.enqueue(&t).await.expect("enqueue after the flush");
    assert_eq!(q.take(T, &role, 10, NO_WAIT).await.expect("take"), vec![t]);
    delete_redis_prefix(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_reclaims_the_tickets_of_a_take_that_died() {
    let prefix = unique_prefix();
    let q = connect_redis(&prefix).await;
    let t = ticket("picker", 1);
    q.enqueue(&t).await.expect("enqueue");
    // A take that read the entry and died before acknowledging it, long enough ago.
    let key = q.key(T, "picker");
    let client = ::redis::Client::open(redis_url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let _: () = ::redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&key)
        .arg("agents")
        .arg("0")
        .query_async(&mut conn)
        .await
        .expect("create the group");
    let read: ::redis::streams::StreamReadReply = ::redis::cmd("XREADGROUP")
        .arg(&["GROUP", "agents", "dead", "STREAMS", key.as_str(), ">"])
        .query_async(&mut conn)
        .await
        .expect("the dead take's read");
    let id = read.keys[0].ids[0].id.clone();
    let _: ::redis::Value = ::redis::cmd("XCLAIM")
        .arg(&key)
        .arg(&["agents", "dead", "0", &id, "IDLE", "600000", "JUSTID"])
        .query_async(&mut conn)
        .await
        .expect("age the pending entry");
    let taken = q
        .take(T, &roles(&["picker"]), 10, NO_WAIT)
        .await
        .expect("take");
    assert_eq!(taken, vec![t], "the dead take's ticket is taken again");
    assert_eq!(q.depth(T, "picker").await.expect("depth"), 0);
    delete_redis_prefix(&prefix).await;
}

#[test]
fn a_ticket_without_compensation_is_not_one() {
    let json = serde_json::json!({
        "execution_id": Uuid::nil(), "task_id": "t", "attempt": 2, "role": "r",
        "input": {}, "enqueued_at": "2024-01-01T00:00:00Z"
    });
    let t: Ticket = serde_json::from_value(json).expect("a ticket");
    assert!(!t.compensation);
}

async fn tenants_never_take_each_others_tickets(q: Arc<dyn TaskQueue>) {
    let in_tenant = |tenant: &str, n: usize| Ticket {
        tenant: tenant.to_owned(),
        ..ticket("picker", n)
    };
    let tickets = [
        in_tenant(T, 1),
        in_tenant("acme", 2),
        in_tenant("globex", 3),
    ];
    enqueue_all(&*q, &tickets).await;
    for t in &tickets {
        assert_eq!(q.depth(&t.tenant, "picker").await.expect("depth"), 1);
    }
    for t in tickets.iter().rev() {
        let taken = q
            .take(&t.tenant, &roles(&["picker"]), 10, NO_WAIT)
            .await
            .expect("take");
        assert_eq!(
            taken,
            vec![t.clone()],
            "tenant {} takes its own only",
            t.tenant
        );
    }
    let other = q
        .take("initech", &roles(&["picker"]), 10, NO_WAIT)
        .await
        .expect("take");
    assert!(other.is_empty());
}

async fn agents_are_seen_at_their_latest_time_per_tenant(q: Arc<dyn TaskQueue>) {
    let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let at = |s: i64| chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).expect("a time");
    assert!(q.agents_seen(T).await.expect("seen").is_empty());
    q.agent_seen(T, a, at(10)).await.expect("seen");
    q.agent_seen(T, a, at(5))
        .await
        .expect("an older time never wins");
    q.agent_seen("acme", b, at(7)).await.expect("seen");
    let seen = q.agents_seen(T).await.expect("seen");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen.get(&a), Some(&at(10)));
    let other = q.agents_seen("acme").await.expect("seen");
    assert_eq!(
        other.get(&b),
        Some(&at(7)),
        "each tenant sees its own agents"
    );
    q.agent_seen(T, a, at(20)).await.expect("seen");
    assert_eq!(q.agents_seen(T).await.expect("seen").get(&a), Some(&at(20)));
}

async fn waiting_agents_are_listed_until_they_stop_or_expire(q: Arc<dyn TaskQueue>) {
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let later = Utc::now() + chrono::Duration::seconds(30);
    assert!(q.agents_waiting(T).await.expect("waiting").is_empty());
    q.agent_waiting(T, a, Some(later)).await.expect("wait");
    q.agent_waiting(T, b, Some(later)).await.expect("wait");
    q.agent_waiting("acme", c, Some(later)).await.expect("wait");
    // A wait that is already over does not count.
    let over = Utc::now() - chrono::Duration::seconds(1);
    q.agent_waiting(T, Uuid::now_v7(), Some(over))
        .await
        .expect("wait");
    let mut both = vec![a, b];
    both.sort();
    assert_eq!(q.agents_waiting(T).await.expect("waiting"), both);
    q.agent_waiting(T, a, None).await.expect("stop");
    assert_eq!(q.agents_waiting(T).await.expect("waiting"), vec![b]);
    assert_eq!(
        q.agents_waiting("acme").await.expect("waiting"),
        vec![c],
        "each tenant sees its own waiting agents"
    );
}

async fn held_counts_leases_not_reservations(q: Arc<dyn TaskQueue>) {
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let until = Utc::now() + chrono::Duration::seconds(30);
    let reserved = q.reserve_slots(a, 5, 3, until).await.expect("reserve");
    assert_eq!(reserved.len(), 3);
    let stats = q.agents_stats(&[a, b]).await.expect("stats");
    assert_eq!(stats.len(), 2);
    assert_eq!(stats[0].held, 0, "reservations are not leases");
    let lease = Uuid::now_v7();
    q.hold_leases(a, &reserved, &[(lease, until)])
        .await
        .expect("hold");
    q.agent_finished(a, true, Duration::from_millis(40))
        .await
        .expect("finished");
    q.agent_finished(b, false, Duration::from_millis(7))
        .await
        .expect("finished");
    let stats = q.agents_stats(&[a, b]).await.expect("stats");
    assert_eq!(
        (stats[0].held, stats[0].completed, stats[0].failed),
        (1, 1, 0)
    );
    assert_eq!(stats[0].recent_ms, vec![40]);
    assert_eq!(
        (stats[1].held, stats[1].completed, stats[1].failed),
        (0, 0, 1)
    );
    assert_eq!(q.agent_stats(a).await.expect("stats"), stats[0]);
}

async fn higher_priority_is_taken_first_and_waiting_lifts_the_lowest(q: Arc<dyn TaskQueue>) {
    use conflux_schema::kind::queue_at;
    let queues: Vec<String> = [5, 9, 1].iter().map(|p| queue_at("r", *p)).collect();
    let at = |queue: &str, n: usize, age_secs: i64| Ticket {
        enqueued_at: Utc::now() - chrono::Duration::seconds(age_secs),
        ..ticket(queue, n)
    };
    // Enqueued oldest first: default, then low, then high.
    let (normal, low, high) = (
        at(&queues[0], 0, 0),
        at(&queues[2], 1, 0),
        at(&queues[1], 2, 0),
    );
    enqueue_all(&*q, &[normal.clone(), low.clone(), high.clone()]).await;
    let taken = q.take(T, &queues, 3, NO_WAIT).await.expect("take");
    let order: Vec<&str> = taken.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(
        order,
        ["task-2", "task-0", "task-1"],
        "highest priority first"
    );

    // A priority-1 ticket that waited 90 s competes as a fresh priority-10 one, and is
    // older: it goes first.
    let aged = at(&queues[2], 3, 95);
    let fresh = at(&queues[1], 4, 0);
    enqueue_all(&*q, &[fresh.clone(), aged.clone()]).await;
    let taken = q.take(T, &queues, 1, NO_WAIT).await.expect("take");
    assert_eq!(taken, vec![aged]);
    let taken = q.take(T, &queues, 1, NO_WAIT).await.expect("take");
    assert_eq!(taken, vec![fresh]);
}

async fn rate_tokens_come_at_their_rate_per_bucket(q: Arc<dyn TaskQueue>) {
    let interval = Duration::from_millis(200);
    for _ in 0..2 {
        assert_eq!(
            q.take_token(T, "api", interval, 2).await.expect("token"),
            None
        );
    }
    let wait = q
        .take_token(T, "api", interval, 2)
        .await
        .expect("token")
        .expect("the burst is spent");
    assert!(wait > Duration::ZERO && wait <= interval, "{wait:?}");
    assert_eq!(
        q.take_token(T, "other", interval, 2).await.expect("token"),
        None,
        "buckets are apart"
    );
    assert_eq!(
        q.take_token("acme", "api", interval, 2)
            .await
            .expect("token"),
        None,
        "tenants are apart"
    );
    tokio::time::sleep(wait).await;
    assert_eq!(
        q.take_token(T, "api", interval, 2).await.expect("token"),
        None
    );
}
