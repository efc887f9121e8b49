//! The Redis Streams bus: one stream `<prefix>events` whose entry ids are
//! `<position>-0`, consumer groups with XREADGROUP/XACK, and XAUTOCLAIM for a dead
//! consumer's entries. A flushed Redis is detected (the head falls back) and refilled by
//! the relay; a vanished consumer group is recreated on the next read.

use std::time::Duration;

use async_trait::async_trait;

use crate::redis_conn::{manager_config, within, RESPONSE_TIMEOUT};
use conflux_schema::EventEnvelope;
use redis::aio::ConnectionManager;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};
use redis::{AsyncCommands, Client, RedisError};

use super::{BusError, Delivery, EventBus, Subscription};

/// Entries kept in the stream (approximate trim); consumers further behind than this
/// catch up from the store through the subscriber's gap filling.
const MAX_STREAM_LEN: usize = 1_000_000;

/// The Redis Streams [`EventBus`].
#[derive(Clone)]
pub struct RedisBus {
    client: Client,
    conn: ConnectionManager,
    key: String,
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
        })
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

fn to_delivery(entry: &StreamId) -> Option<Delivery> {
    let position = parse_position(&entry.id);
    let raw: String = entry.get("e")?;
    match serde_json::from_str::<EventEnvelope>(&raw) {
        Ok(envelope) => Some(Delivery { position, envelope }),
        Err(e) => {
            tracing::error!(position, error = %e, "skipping a bus entry that is not an event envelope");
            None
        }
    }
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), BusError> {
        let head = self.head().await?;
        let mut pipe = redis::pipe();
        let mut any = false;
        for e in events.iter().filter(|e| e.position > head) {
            let json = serde_json::to_string(e).map_err(|e| BusError::Backend(e.to_string()))?;
            pipe.cmd("XADD")
                .arg(&self.key)
                .arg("MAXLEN")
                .arg("~")
                .arg(MAX_STREAM_LEN)
                .arg(entry_id(e.position))
                .arg("e")
                .arg(json)
                .ignore();
            any = true;
        }
        if !any {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(map_err)
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
            key: self.key.clone(),
            group: group.to_owned(),
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
}

struct RedisSubscription {
    conn: ConnectionManager,
    key: String,
    group: String,
    consumer: String,
}

impl RedisSubscription {
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
                    return Ok(reply
                        .map(|r| {
                            r.keys
                                .iter()
                                .flat_map(|k| k.ids.iter().filter_map(to_delivery))
                                .collect()
                        })
                        .unwrap_or_default())
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
            Ok(reply) => Ok(reply.claimed.iter().filter_map(to_delivery).collect()),
            Err(e) if e.code() == Some("NOGROUP") => {
                self.ensure_group().await?;
                Ok(Vec::new())
            }
            Err(e) => Err(map_err(e)),
        }
    }
}
