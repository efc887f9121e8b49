//! The Redis Streams bus: one stream `<prefix>events` whose entry ids are
//! `<position>-0`, consumer groups with XREADGROUP/XACK, and XAUTOCLAIM for a dead
//! consumer's entries. A flushed Redis is detected (the head falls back) and refilled by
//! the relay; a vanished consumer group is recreated on the next read.
//!
//! The prefix belongs to one store: `<prefix>owner` records its id and a generation
//! (see [`super::ownership`]), and every entry carries the publishing store's id in
//! field `s`, so a consumer never applies another store's event even in the second
//! before its process notices that the prefix was taken over; and consumer groups are
//! named per store (`engine@<store id>`), so another store's consumers can never take
//! this store's entries.

use std::time::Duration;

use async_trait::async_trait;

use crate::redis_conn::{manager_config, within, RESPONSE_TIMEOUT};
use conflux_schema::EventEnvelope;
use redis::aio::ConnectionManager;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};
use redis::{AsyncCommands, Client, RedisError};

use uuid::Uuid;

use super::{BusError, BusOwner, Delivery, EventBus, Subscription};

/// Entries kept in the stream (approximate trim); consumers further behind than this
/// catch up from the store through the subscriber's gap filling.
const MAX_STREAM_LEN: usize = 1_000_000;

/// Publishes entries atomically with the ownership check, so a process whose prefix was
/// just taken over (`conflux bus reset` for another store) can never write into it in
/// the second before its own check notices: `KEYS[1]` the stream, `KEYS[2]` the owner
/// record; `ARGV[1]` this store's id ('' for tools that do not publish for a store),
/// `ARGV[2]` the owner generation this process last saw ('' if none: then only the
/// store is checked), so a relay that has not yet noticed a reset cannot write into the
/// reset stream; `ARGV[3]` the stream's approximate maximum length, then (position,
/// envelope) pairs in increasing position order. Positions at or below the stream's top are skipped (two
/// relays never collide). Returns how many entries were added.
static PUBLISH: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local store = ARGV[1]
local generation = ARGV[2]
local owner = redis.call('GET', KEYS[2])
if store ~= '' and owner then
  if string.sub(owner, 1, #store) ~= store then
    return redis.error_reply('NOTOWNER ' .. owner)
  end
  if generation ~= '' and owner ~= store .. '/' .. generation then
    return redis.error_reply('NOTOWNER ' .. owner .. ' (reset since this process last looked)')
  end
end
local top = 0
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  top = tonumber(string.match(last[1][1], '^(%d+)'))
end
local added = 0
for i = 4, #ARGV, 2 do
  local position = tonumber(ARGV[i])
  if position > top then
    if store ~= '' then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], ARGV[i] .. '-0', 'e', ARGV[i + 1], 's', store)
    else
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], ARGV[i] .. '-0', 'e', ARGV[i + 1])
    end
    top = position
    added = added + 1
  end
end
return added
",
    )
});

/// The Redis Streams [`EventBus`].
#[derive(Clone)]
pub struct RedisBus {
    client: Client,
    conn: ConnectionManager,
    key: String,
    prefix: String,
    /// The store whose events this process publishes and consumes (None: accept any,
    /// tag none — tools that only read).
    store_id: Option<Uuid>,
    /// The owner record as this process last read, claimed or reset it.
    owner_seen: std::sync::Arc<std::sync::Mutex<Option<BusOwner>>>,
}

fn map_err(e: RedisError) -> BusError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        BusError::Unavailable(e.to_string())
    } else {
        BusError::Backend(e.to_string())
    }
}

impl RedisBus {
    /// Connects to `url`; every key this bus uses starts with `prefix` (tests use a
    /// unique prefix each).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, BusError> {
        let client =
            Client::open(url).map_err(|e| BusError::Unavailable(format!("bad Redis URL: {e}")))?;
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(
                client.clone(),
                manager_config(Some(RESPONSE_TIMEOUT)),
            ),
        )
        .await
        .map_err(|_| BusError::Unavailable(format!("cannot connect to Redis at {url}: timed out")))?
        .map_err(|e| BusError::Unavailable(format!("cannot connect to Redis at {url}: {e}")))?;
        Ok(Self {
            client,
            conn,
            key: format!("{prefix}events"),
            prefix: prefix.to_owned(),
            store_id: None,
            owner_seen: std::sync::Arc::default(),
        })
    }

    /// This bus as used by `store_id`'s processes: entries it publishes carry the id,
    /// and entries another store published are acked and never delivered.
    pub fn for_store(mut self, store_id: Uuid) -> Self {
        self.store_id = Some(store_id);
        self
    }

    fn owner_key(&self) -> String {
        format!("{}owner", self.prefix)
    }

    fn saw(&self, owner: Option<BusOwner>) -> Option<BusOwner> {
        *self.owner_seen.lock().unwrap_or_else(|p| p.into_inner()) = owner;
        owner
    }

    /// The stream key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Runs a Redis call with a deadline; a call past it is reported as unavailable.
async fn bounded<T>(
    call: impl std::future::Future<Output = T>,
    limit: Duration,
) -> Result<T, BusError> {
    within(call, limit)
        .await
        .map_err(|t| BusError::Unavailable(t.to_string()))
}

fn entry_id(position: u64) -> String {
    format!("{position}-0")
}

fn parse_position(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// One stream entry as a delivery of this consumer's store, or `Err(position)`: another
/// store's event, or not an event, to be acked and skipped.
fn classify(entry: &StreamId, store_id: Option<Uuid>) -> Result<Delivery, u64> {
    let position = parse_position(&entry.id);
    if let (Some(ours), Some(tag)) = (store_id, entry.get::<String>("s")) {
        if Uuid::parse_str(&tag).ok() != Some(ours) {
            tracing::error!(position, entry_store = %tag, store = %ours, "skipping a bus entry of another store");
            return Err(position);
        }
    }
    let Some(raw) = entry.get::<String>("e") else {
        return Err(position);
    };
    match serde_json::from_str::<EventEnvelope>(&raw) {
        Ok(envelope) => Ok(Delivery { position, envelope }),
        Err(e) => {
            tracing::error!(position, error = %e, "skipping a bus entry that is not an event envelope");
            Err(position)
        }
    }
}

fn parse_owner(raw: &str) -> Option<BusOwner> {
    let (store, generation) = raw.split_once('/')?;
    Some(BusOwner {
        store_id: Uuid::parse_str(store).ok()?,
        generation: Uuid::parse_str(generation).ok()?,
    })
}

fn owner_text(owner: &BusOwner) -> String {
    format!("{}/{}", owner.store_id, owner.generation)
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut call = PUBLISH.prepare_invoke();
        let seen = *self.owner_seen.lock().unwrap_or_else(|p| p.into_inner());
        let generation = seen
            .filter(|o| Some(o.store_id) == self.store_id)
            .map(|o| o.generation.to_string())
            .unwrap_or_default();
        call.key(&self.key)
            .key(self.owner_key())
            .arg(self.store_id.map(|s| s.to_string()).unwrap_or_default())
            .arg(generation)
            .arg(MAX_STREAM_LEN);
        for e in events {
            let json = serde_json::to_string(e).map_err(|e| BusError::Backend(e.to_string()))?;
            call.arg(e.position).arg(json);
        }
        let mut conn = self.conn.clone();
        match call.invoke_async::<u64>(&mut conn).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("NOTOWNER") => Err(BusError::Backend(format!(
                "{} belongs to another store ({}); not publishing",
                self.describe(),
                e.detail().unwrap_or("unknown owner")
            ))),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn head(&self) -> Result<u64, BusError> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = conn
            .xrevrange_count(&self.key, "+", "-", 1)
            .await
            .map_err(map_err)?;
        Ok(reply.ids.first().map_or(0, |e| parse_position(&e.id)))
    }

    async fn subscribe(
        &self,
        group: &str,
        consumer: &str,
    ) -> Result<Box<dyn Subscription>, BusError> {
        // Blocking reads need a connection of their own (a blocked command holds up the
        // connection) and their own deadline, longer than the block.
        let conn = ConnectionManager::new_with_config(self.client.clone(), manager_config(None))
            .await
            .map_err(map_err)?;
        let mut sub = RedisSubscription {
            conn,
            store_id: self.store_id,
            key: self.key.clone(),
            // Groups are per store: a process of another store on this prefix (in the
            // second before it notices the prefix is not its own) reads its own group,
            // and can never take this store's entries from this store's consumers.
            group: match self.store_id {
                Some(store) => format!("{group}@{store}"),
                None => group.to_owned(),
            },
            consumer: consumer.to_owned(),
        };
        sub.ensure_group().await?;
        Ok(Box::new(sub))
    }

    async fn ping(&self) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    async fn owner(&self) -> Result<Option<BusOwner>, BusError> {
        let mut conn = self.conn.clone();
        let raw: Option<String> = conn.get(self.owner_key()).await.map_err(map_err)?;
        Ok(self.saw(raw.as_deref().and_then(parse_owner)))
    }

    async fn claim(&self, store_id: Uuid) -> Result<BusOwner, BusError> {
        let mine = BusOwner {
            store_id,
            generation: Uuid::now_v7(),
        };
        let mut conn = self.conn.clone();
        let _: bool = conn
            .set_nx(self.owner_key(), owner_text(&mine))
            .await
            .map_err(map_err)?;
        self.owner().await?.ok_or_else(|| {
            BusError::Backend(format!("{} has an unreadable owner", self.describe()))
        })
    }

    async fn reset(&self, store_id: Uuid) -> Result<BusOwner, BusError> {
        let owner = BusOwner {
            store_id,
            generation: Uuid::now_v7(),
        };
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .del(&self.key)
            .ignore()
            .set(self.owner_key(), owner_text(&owner))
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(map_err)?;
        self.saw(Some(owner));
        Ok(owner)
    }

    async fn head_event(&self) -> Result<Option<(u64, Uuid)>, BusError> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = conn
            .xrevrange_count(&self.key, "+", "-", 1)
            .await
            .map_err(map_err)?;
        let Some(entry) = reply.ids.first() else {
            return Ok(None);
        };
        let position = parse_position(&entry.id);
        let event_id = entry
            .get::<String>("e")
            .and_then(|raw| serde_json::from_str::<HeadEntry>(&raw).ok())
            .map_or(Uuid::nil(), |h| h.event_id);
        Ok(Some((position, event_id)))
    }

    fn describe(&self) -> String {
        format!("Redis prefix {:?}", self.prefix)
    }
}

/// The one field of a stored envelope the ownership check reads.
#[derive(serde::Deserialize)]
struct HeadEntry {
    event_id: Uuid,
}

struct RedisSubscription {
    conn: ConnectionManager,
    store_id: Option<Uuid>,
    key: String,
    group: String,
    consumer: String,
}

impl RedisSubscription {
    /// This store's deliveries among `entries`; the rest are acked at once so they are
    /// never delivered (or claimed) again in this group.
    async fn keep_ours(&mut self, entries: &[StreamId]) -> Result<Vec<Delivery>, BusError> {
        let mut ours = Vec::with_capacity(entries.len());
        let mut foreign = Vec::new();
        for entry in entries {
            match classify(entry, self.store_id) {
                Ok(d) => ours.push(d),
                Err(p) => foreign.push(p),
            }
        }
        if !foreign.is_empty() {
            self.ack(&foreign).await?;
        }
        Ok(ours)
    }

    async fn ensure_group(&mut self) -> Result<(), BusError> {
        let create = self
            .conn
            .xgroup_create_mkstream(&self.key, &self.group, "0");
        let created: Result<(), RedisError> = bounded(create, RESPONSE_TIMEOUT).await?;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }
}

#[async_trait]
impl Subscription for RedisSubscription {
    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let mut opts = StreamReadOptions::default()
            .group(&self.group, &self.consumer)
            .count(max);
        let block_ms = wait.as_millis() as usize;
        if block_ms > 0 {
            opts = opts.block(block_ms);
        }
        for _ in 0..2 {
            let keys = [&self.key];
            let read = self.conn.xread_options(&keys, &[">"], &opts);
            let reply: Result<Option<StreamReadReply>, RedisError> =
                bounded(read, wait + RESPONSE_TIMEOUT).await?;
            match reply {
                Ok(reply) => {
                    let entries = reply
                        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>())
                        .unwrap_or_default();
                    return self.keep_ours(&entries).await;
                }
                // The group vanished (Redis was flushed or restarted empty): recreate it.
                Err(e) if e.code() == Some("NOGROUP") => self.ensure_group().await?,
                Err(e) => return Err(map_err(e)),
            }
        }
        Ok(Vec::new())
    }

    async fn ack(&mut self, positions: &[u64]) -> Result<(), BusError> {
        if positions.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = positions.iter().map(|p| entry_id(*p)).collect();
        let ack = self.conn.xack::<_, _, _, ()>(&self.key, &self.group, &ids);
        bounded(ack, RESPONSE_TIMEOUT).await?.map_err(map_err)
    }

    async fn claim_stale(
        &mut self,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let opts = StreamAutoClaimOptions::default().count(max);
        let claim = self.conn.xautoclaim_options(
            &self.key,
            &self.group,
            &self.consumer,
            min_idle.as_millis() as u64,
            "0-0",
            opts,
        );
        let reply: Result<StreamAutoClaimReply, RedisError> =
            bounded(claim, RESPONSE_TIMEOUT).await?;
        match reply {
            Ok(reply) => self.keep_ours(&reply.claimed).await,
            Err(e) if e.code() == Some("NOGROUP") => {
                self.ensure_group().await?;
                Ok(Vec::new())
            }
            Err(e) => Err(map_err(e)),
        }
    }
}
