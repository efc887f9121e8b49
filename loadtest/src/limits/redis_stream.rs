//! Raw Redis probes: XADD of a serialised envelope, one per round trip or pipelined,
//! and the `PING` round trip.

use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;

use super::REDIS_STREAM_MAXLEN;
use crate::runner::{Probe, Worker};
use crate::sandbox::redis_connection;
use crate::stats::{Kind, ProbeInfo};

/// XADDs of a serialised envelope: one per round trip (`pipeline` 1) or `pipeline`
/// per pipelined round trip, each of `connections` workers on its own connection,
/// all to one stream key per probe.
pub struct RedisXadd {
    client: redis::Client,
    key_prefix: String,
    connections: usize,
    pipeline: usize,
    payload: Arc<str>,
}

impl RedisXadd {
    /// XADDs of `payload` to a key under `key_prefix`, `pipeline` per round trip, from
    /// `connections` connections.
    pub fn new(
        client: redis::Client,
        key_prefix: String,
        connections: usize,
        pipeline: usize,
        payload: Arc<str>,
    ) -> Self {
        Self {
            client,
            key_prefix,
            connections,
            pipeline: pipeline.max(1),
            payload,
        }
    }
}

#[async_trait]
impl Probe for RedisXadd {
    fn info(&self) -> ProbeInfo {
        let c = self.connections;
        let (id, label) = if self.pipeline == 1 {
            (
                format!("redis.xadd.single.x{c}"),
                format!("redis XADD ×{c}"),
            )
        } else {
            let p = self.pipeline;
            (
                format!("redis.xadd.pipeline{p}.x{c}"),
                format!("redis XADD pipelined {p} ×{c}"),
            )
        };
        ProbeInfo {
            id,
            label,
            kind: Kind::RawRedis,
            workers: c,
            events_per_call: self.pipeline as u64,
        }
    }

    async fn workers(&self) -> Result<Vec<Box<dyn Worker>>> {
        let key = format!("{}{}", self.key_prefix, self.info().id);
        let mut command = redis::cmd("XADD");
        command
            .arg(&key)
            .arg("MAXLEN")
            .arg("~")
            .arg(REDIS_STREAM_MAXLEN)
            .arg("*")
            .arg("e")
            .arg(&*self.payload);
        let mut pipe = redis::pipe();
        for _ in 0..self.pipeline {
            pipe.add_command(command.clone()).ignore();
        }
        let mut workers: Vec<Box<dyn Worker>> = Vec::with_capacity(self.connections);
        for _ in 0..self.connections {
            workers.push(Box::new(RedisXaddWorker {
                conn: redis_connection(&self.client).await?,
                command: command.clone(),
                pipe: pipe.clone(),
                pipeline: self.pipeline as u64,
            }));
        }
        Ok(workers)
    }
}

struct RedisXaddWorker {
    conn: redis::aio::MultiplexedConnection,
    command: redis::Cmd,
    pipe: redis::Pipeline,
    pipeline: u64,
}

#[async_trait]
impl Worker for RedisXaddWorker {
    async fn call(&mut self) -> Result<u64> {
        if self.pipeline == 1 {
            self.command
                .query_async::<String>(&mut self.conn)
                .await
                .context("Redis XADD")?;
        } else {
            self.pipe
                .query_async::<()>(&mut self.conn)
                .await
                .context("Redis pipelined XADD")?;
        }
        Ok(self.pipeline)
    }
}

/// `PING` on one connection, one at a time.
pub struct RedisRoundTrip(pub redis::Client);

#[async_trait]
impl Probe for RedisRoundTrip {
    fn info(&self) -> ProbeInfo {
        ProbeInfo {
            id: "redis.roundtrip.ping".into(),
            label: "redis round trip PING".into(),
            kind: Kind::RoundTrip,
            workers: 1,
            events_per_call: 1,
        }
    }

    async fn workers(&self) -> Result<Vec<Box<dyn Worker>>> {
        let conn = redis_connection(&self.0).await?;
        Ok(vec![Box::new(RedisRoundTripWorker(conn))])
    }
}

struct RedisRoundTripWorker(redis::aio::MultiplexedConnection);

#[async_trait]
impl Worker for RedisRoundTripWorker {
    async fn call(&mut self) -> Result<u64> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.0)
            .await
            .context("Redis PING")?;
        Ok(1)
    }
}
