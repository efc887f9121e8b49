//! The Redis Streams task queue: one stream per role, `<prefix>tasks:<hex of the role>`,
//! read through the consumer group `agents` that every engine process joins. Roles are
//! hex-encoded in the key so that any role name (with `:`, `{`, spaces…) maps to its own
//! key and cannot collide with another role's or inject a cluster hash tag.
//!
//! `take` reads with XREADGROUP, then acknowledges and deletes what it read (XACK +
//! XDEL): a taken ticket is gone. XACK answers 1 to exactly one caller per entry, so it
//! is also the arbiter that hands an entry to one take even when two takes hold it (one
//! having reclaimed it from the other).
//!
//! Entries read but not acknowledged stay pending in the group: those of a take that
//! died between its read and its acknowledgement, and those read beyond `max`
//! (XREADGROUP's COUNT is per stream), which the take hands back at once by making them
//! look idle. Every `take` first claims pending entries idle for `RECLAIM_AFTER`
//! (XAUTOCLAIM), so nothing stays stuck.
//!
//! A blocked XREADGROUP holds up its connection, so blocking reads never use the shared
//! connection: each `take` borrows a connection from a pool of its own (opening one when
//! none is idle) and returns it afterwards, so concurrent long-polls of many agents do
//! not wait behind each other. A consumer group that vanished (Redis flushed or
//! restarted empty) is recreated on the next call that misses it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::redis_conn::{manager_config, within, CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamClaimOptions, StreamId, StreamReadOptions,
    StreamReadReply,
};
use redis::{AsyncCommands, AsyncConnectionConfig, Client, RedisError, Value};
use tokio::time::Instant;

use super::{QueueError, TaskQueue, Ticket};

/// The consumer group every engine process reads through.
const GROUP: &str = "agents";

/// Tickets kept per role (approximate trim); past it the oldest are dropped, and their
/// attempts time out in the event log and are retried.
const MAX_STREAM_LEN: usize = 1_000_000;

/// An entry read but not acknowledged for this long belongs to a take that died; any
/// take may claim it. Longer than any take's gap between read and acknowledgement.
const RECLAIM_AFTER: Duration = Duration::from_secs(10);

/// Idle blocking connections kept for later takes; more are opened on demand.
const MAX_IDLE_CONNECTIONS: usize = 32;

fn is_unavailable(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

pub(super) fn map_err(e: RedisError) -> QueueError {
    if is_unavailable(&e) {
        QueueError::Unavailable(e.to_string())
    } else {
        QueueError::Backend(e.to_string())
    }
}

fn is_nogroup(e: &RedisError) -> bool {
    e.code() == Some("NOGROUP")
}

/// Runs a Redis call with a deadline; a call past it is reported as unavailable.
pub(super) async fn bounded<T>(
    call: impl std::future::Future<Output = T>,
    limit: Duration,
) -> Result<T, QueueError> {
    within(call, limit)
        .await
        .map_err(|t| QueueError::Unavailable(t.to_string()))
}

/// A stream entry id `<ms>-<seq>` as a sortable pair.
fn parse_id(id: &str) -> (u64, u64) {
    let mut parts = id.split('-').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Whole milliseconds, rounded up so a block never ends before its deadline.
fn ceil_millis(d: Duration) -> usize {
    usize::try_from(d.as_micros().div_ceil(1000)).unwrap_or(usize::MAX)
}

/// The ticket an entry holds; an entry that holds none is logged and skipped (it is
/// acknowledged and deleted all the same, so it cannot block its role).
fn decode(entry: &StreamId) -> Option<Ticket> {
    let raw: String = entry.get("t").unwrap_or_default();
    match serde_json::from_str(&raw) {
        Ok(ticket) => Some(ticket),
        Err(error) => {
            tracing::error!(id = %entry.id, %error, "dropped a task queue entry that is not a ticket");
            None
        }
    }
}

/// A read with its effective priority, its id as a sortable pair and its ticket.
type Ranked = (f64, (u64, u64), Read, Option<Ticket>);

/// One entry read from the stream `keys[key]`.
struct Read {
    key: usize,
    entry: StreamId,
}

/// The Redis Streams [`TaskQueue`]; clones share the connections.
#[derive(Clone)]
pub struct RedisTaskQueue {
    client: Client,
    pub(super) conn: ConnectionManager,
    pub(super) prefix: String,
    consumer: String,
    idle: Arc<Mutex<Vec<MultiplexedConnection>>>,
}

impl RedisTaskQueue {
    /// Connects to `url`; every key this queue uses starts with `prefix` (tests use a
    /// unique prefix each).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, QueueError> {
        let client = Client::open(url)
            .map_err(|e| QueueError::Unavailable(format!("bad Redis URL: {e}")))?;
        let conn = bounded(
            ConnectionManager::new_with_config(
                client.clone(),
                manager_config(Some(RESPONSE_TIMEOUT)),
            ),
            RESPONSE_TIMEOUT,
        )
        .await?
        .map_err(|e| QueueError::Unavailable(format!("cannot connect to Redis at {url}: {e}")))?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.to_owned(),
            consumer: format!("engine-{}", uuid::Uuid::new_v4().simple()),
            idle: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// The stream key of `tenant`'s queue of `role`: `<prefix>tasks:<hex role>` for
    /// `default` (the key every queue had before tenants), `<prefix>tasks:<tenant>:<hex
    /// role>` for any other (a tenant name has no `:`, hex has none, so no two collide).
    pub fn key(&self, tenant: &str, role: &str) -> String {
        if tenant == conflux_schema::access::DEFAULT_TENANT {
            format!("{}tasks:{}", self.prefix, hex::encode(role))
        } else {
            format!("{}tasks:{tenant}:{}", self.prefix, hex::encode(role))
        }
    }

    /// The keys of `roles`, without duplicates, in the order given, each with its queue.
    fn keys<'r>(&self, tenant: &str, roles: &'r [String]) -> (Vec<String>, Vec<&'r str>) {
        let mut seen = std::collections::HashSet::new();
        roles
            .iter()
            .map(|r| (self.key(tenant, r), r.as_str()))
            .filter(|(k, _)| seen.insert(k.clone()))
            .unzip()
    }

    fn idle(&self) -> MutexGuard<'_, Vec<MultiplexedConnection>> {
        // The pool is a plain list; a panic cannot leave it inconsistent.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle blocking connection, or a new one.
    async fn borrow_connection(&self) -> Result<MultiplexedConnection, QueueError> {
        if let Some(conn) = self.idle().pop() {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new().set_connection_timeout(CONNECT_TIMEOUT);
        let open = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        bounded(open, RESPONSE_TIMEOUT).await?.map_err(map_err)
    }

    fn give_back(&self, conn: MultiplexedConnection) {
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(conn);
        }
    }

    /// Creates the group on every key that lacks it (and the stream with it).
    async fn ensure_groups(&self, keys: &[String]) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        for key in keys {
            let create = conn.xgroup_create_mkstream::<_, _, _, ()>(key, GROUP, "0");
            match bounded(create, RESPONSE_TIMEOUT).await? {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(map_err(e)),
            }
        }
        Ok(())
    }

    /// Claims up to `max` entries per key left pending by takes that died, or handed back.
    async fn reclaim(&self, keys: &[String], max: usize) -> Result<Vec<Read>, QueueError> {
        let mut pipe = redis::pipe();
        let min_idle = u64::try_from(RECLAIM_AFTER.as_millis()).unwrap_or(u64::MAX);
        for key in keys {
            let opts = StreamAutoClaimOptions::default().count(max);
            pipe.xautoclaim_options(key, GROUP, &self.consumer, min_idle, "0-0", opts);
        }
        let mut recreated = false;
        loop {
            let mut conn = self.conn.clone();
            let claim = pipe.query_async::<Vec<StreamAutoClaimReply>>(&mut conn);
            match bounded(claim, RESPONSE_TIMEOUT).await? {
                Ok(replies) => {
                    return Ok(replies
                        .into_iter()
                        .enumerate()
                        .flat_map(|(key, r)| {
                            r.claimed.into_iter().map(move |entry| Read { key, entry })
                        })
                        .collect())
                }
                Err(e) if is_nogroup(&e) && !recreated => {
                    self.ensure_groups(keys).await?;
                    recreated = true;
                }
                Err(e) => return Err(map_err(e)),
            }
        }
    }

    /// Reads up to `count` new entries per key, blocking until `block_until` (if given)
    /// for the first one, on a borrowed connection.
    async fn read_new(
        &self,
        keys: &[String],
        count: usize,
        block_until: Option<Instant>,
    ) -> Result<Vec<Read>, QueueError> {
        let ids = vec![">"; keys.len()];
        let mut recreated = false;
        loop {
            let mut opts = StreamReadOptions::default()
                .group(GROUP, &self.consumer)
                .count(count);
            let block = block_until.map_or(Duration::ZERO, |d| {
                d.saturating_duration_since(Instant::now())
            });
            if !block.is_zero() {
                // BLOCK 0 would mean forever: only block for a positive time.
                opts = opts.block(ceil_millis(block));
            }
            let mut conn = self.borrow_connection().await?;
            let read = conn.xread_options::<_, _, Option<StreamReadReply>>(keys, &ids, &opts);
            // Past the deadline the connection may still carry the late answer: the `?`
            // drops it rather than giving it back.
            let reply = bounded(read, block + RESPONSE_TIMEOUT).await?;
            match reply {
                Ok(reply) => {
                    self.give_back(conn);
                    let streams = reply.map(|r| r.keys).unwrap_or_default();
                    return Ok(streams
                        .into_iter()
                        .filter_map(|k| {
                            let key = keys.iter().position(|x| *x == k.key)?;
                            Some(k.ids.into_iter().map(move |entry| Read { key, entry }))
                        })
                        .flatten()
                        .collect());
                }
                Err(e) if is_nogroup(&e) && !recreated => {
                    self.give_back(conn);
                    self.ensure_groups(keys).await?;
                    recreated = true;
                }
                Err(e) => {
                    if is_unavailable(&e) {
                        // Redis went away: the idle connections are as dead as this one.
                        self.idle().clear();
                    } else {
                        self.give_back(conn);
                    }
                    return Err(map_err(e));
                }
            }
        }
    }

    /// Keeps the first `max` of `reads` by effective priority (the queue of `keys[i]` is
    /// `queues[i]`; a ticket's age is since its `enqueued_at`), oldest first among
    /// equals, acknowledging and deleting them, and hands the rest back; returns the
    /// tickets whose acknowledgement this take won.
    async fn settle(
        &self,
        keys: &[String],
        queues: &[&str],
        reads: Vec<Read>,
        max: usize,
    ) -> Result<Vec<Ticket>, QueueError> {
        if reads.is_empty() {
            return Ok(Vec::new());
        }
        let now = chrono::Utc::now();
        let mut ranked: Vec<Ranked> = reads
            .into_iter()
            .map(|read| {
                let ticket = decode(&read.entry);
                let queue = queues.get(read.key).copied().unwrap_or_default();
                let at = ticket.as_ref().map_or(now, |t| t.enqueued_at);
                let rank = super::effective_priority(queue, at, now);
                (rank, parse_id(&read.entry.id), read, ticket)
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let excess = ranked.split_off(max.min(ranked.len()));
        let mut pipe = redis::pipe();
        for (_, _, read, _) in &ranked {
            let key = &keys[read.key];
            let id = [&read.entry.id];
            pipe.xack(key, GROUP, &id).xdel(key, &id);
        }
        // Handed back: made to look idle past RECLAIM_AFTER, so the next take claims them.
        let idle = ceil_millis(RECLAIM_AFTER * 2);
        for (index, key) in keys.iter().enumerate() {
            let ids: Vec<&String> = excess
                .iter()
                .filter(|(_, _, r, _)| r.key == index)
                .map(|(_, _, r, _)| &r.entry.id)
                .collect();
            if !ids.is_empty() {
                let opts = StreamClaimOptions::default().idle(idle).with_justid();
                pipe.xclaim_options(key, GROUP, &self.consumer, 0, &ids, opts)
                    .ignore();
            }
        }
        let mut conn = self.conn.clone();
        let settled = pipe.query_async::<Vec<Value>>(&mut conn);
        let replies = bounded(settled, RESPONSE_TIMEOUT).await?.map_err(map_err)?;
        // An entry whose XACK answered 0 went to another take, which acknowledged it first.
        Ok(ranked
            .into_iter()
            .enumerate()
            .filter(|(i, _)| replies.get(2 * i) == Some(&Value::Int(1)))
            .filter_map(|(_, (_, _, _, ticket))| ticket)
            .collect())
    }
}

#[async_trait]
impl TaskQueue for RedisTaskQueue {
    async fn enqueue(&self, ticket: &Ticket) -> Result<(), QueueError> {
        let json = serde_json::to_string(ticket).map_err(|e| QueueError::Backend(e.to_string()))?;
        let mut conn = self.conn.clone();
        let mut add = redis::cmd("XADD");
        add.arg(self.key(&ticket.tenant, &ticket.role))
            .arg("MAXLEN")
            .arg("~")
            .arg(MAX_STREAM_LEN)
            .arg("*")
            .arg("t")
            .arg(json);
        bounded(add.query_async::<String>(&mut conn), RESPONSE_TIMEOUT)
            .await?
            .map(|_| ())
            .map_err(map_err)
    }

    async fn take(
        &self,
        tenant: &str,
        roles: &[String],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Ticket>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        let (keys, queues) = self.keys(tenant, roles);
        if keys.is_empty() {
            tokio::time::sleep_until(deadline).await;
            return Ok(Vec::new());
        }
        loop {
            let mut reads = self.reclaim(&keys, max).await?;
            if reads.len() < max {
                let block_until = reads.is_empty().then_some(deadline);
                reads.extend(self.read_new(&keys, max - reads.len(), block_until).await?);
            }
            let taken = self.settle(&keys, &queues, reads, max).await?;
            // Empty with time left: every entry read went to a concurrent take.
            if !taken.is_empty() || Instant::now() >= deadline {
                return Ok(taken);
            }
        }
    }

    async fn depth(&self, tenant: &str, role: &str) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        let len = conn.xlen::<_, u64>(self.key(tenant, role));
        bounded(len, RESPONSE_TIMEOUT).await?.map_err(map_err)
    }

    async fn clear(&self) -> Result<u64, QueueError> {
        // Queue keys are `<prefix>tasks:…`: match exactly that shape, with the
        // prefix's own glob characters escaped, so no other prefix's keys match.
        let escaped: String = self
            .prefix
            .chars()
            .flat_map(|c| match c {
                '*' | '?' | '[' | ']' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let pattern = format!("{escaped}tasks:*");
        let mut conn = self.conn.clone();
        let mut keys: Vec<String> = Vec::new();
        {
            let scan = conn.scan_match::<_, String>(&pattern);
            let mut iter = bounded(scan, RESPONSE_TIMEOUT).await?.map_err(map_err)?;
            while let Some(key) = iter.next_item().await {
                let role = &key[self.prefix.len() + "tasks:".len()..];
                if role.bytes().all(|b| b.is_ascii_hexdigit()) {
                    keys.push(key);
                }
            }
        }
        if keys.is_empty() {
            return Ok(0);
        }
        let del = conn.del::<_, u64>(&keys);
        bounded(del, RESPONSE_TIMEOUT).await?.map_err(map_err)
    }

    async fn agent_seen(
        &self,
        tenant: &str,
        agent: uuid::Uuid,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), QueueError> {
        self.fleet_agent_seen(tenant, agent, at).await
    }

    async fn reserve_slots(
        &self,
        agent: uuid::Uuid,
        capacity: u32,
        want: u32,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, QueueError> {
        self.fleet_reserve_slots(agent, capacity, want, until).await
    }

    async fn hold_leases(
        &self,
        agent: uuid::Uuid,
        reserved: &[String],
        leases: &[(uuid::Uuid, chrono::DateTime<chrono::Utc>)],
    ) -> Result<(), QueueError> {
        self.fleet_hold_leases(agent, reserved, leases).await
    }

    async fn free_lease(
        &self,
        agent: uuid::Uuid,
        lease: uuid::Uuid,
        until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), QueueError> {
        self.fleet_free_lease(agent, lease, until).await
    }

    async fn note_queue(&self, tenant: &str, role: &str, queue: &str) -> Result<(), QueueError> {
        self.fleet_note_queue(tenant, role, queue).await
    }

    async fn queues_of(&self, tenant: &str, role: &str) -> Result<Vec<String>, QueueError> {
        self.fleet_queues_of(tenant, role).await
    }

    async fn agent_finished(
        &self,
        agent: uuid::Uuid,
        ok: bool,
        took: Duration,
    ) -> Result<(), QueueError> {
        self.fleet_agent_finished(agent, ok, took).await
    }

    async fn agent_stats(&self, agent: uuid::Uuid) -> Result<super::AgentStats, QueueError> {
        self.fleet_agent_stats(agent).await
    }

    async fn take_token(
        &self,
        tenant: &str,
        bucket: &str,
        interval: Duration,
        burst: u32,
    ) -> Result<Option<Duration>, QueueError> {
        self.fleet_take_token(tenant, bucket, interval, burst).await
    }

    async fn agent_waiting(
        &self,
        tenant: &str,
        agent: uuid::Uuid,
        until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), QueueError> {
        self.fleet_agent_waiting(tenant, agent, until).await
    }

    async fn agents_waiting(&self, tenant: &str) -> Result<Vec<uuid::Uuid>, QueueError> {
        self.fleet_agents_waiting(tenant).await
    }

    async fn agents_stats(
        &self,
        agents: &[uuid::Uuid],
    ) -> Result<Vec<super::AgentStats>, QueueError> {
        self.fleet_agents_stats(agents).await
    }

    async fn forget_agent(&self, agent: uuid::Uuid) -> Result<(), QueueError> {
        self.fleet_forget_agent(agent).await
    }

    async fn agents_seen(
        &self,
        tenant: &str,
    ) -> Result<std::collections::HashMap<uuid::Uuid, chrono::DateTime<chrono::Utc>>, QueueError>
    {
        self.fleet_agents_seen(tenant).await
    }
}
