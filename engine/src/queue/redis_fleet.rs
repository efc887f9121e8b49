//! The Redis side of the agent fleet's bookkeeping: liveness, lease slots (capacity),
//! result counters and the queues of tasks with required capabilities. It lives beside
//! the task queues (under the same prefix) because it changes with every poll and
//! result, which the event log should not record.

use std::time::Duration;

use redis::AsyncCommands;

use super::redis::{bounded, map_err, RedisTaskQueue};
use super::QueueError;
use crate::redis_conn::RESPONSE_TIMEOUT;

impl RedisTaskQueue {
    /// The hash of `tenant`'s agents' last-heard-from times (agent id → Unix millis).
    fn seen_key(&self, tenant: &str) -> String {
        format!("{}agents-seen:{}", self.prefix, hex::encode(tenant))
    }
    /// The sorted set of agent `agent`'s held lease slots (member → expiry, Unix millis).
    fn slots_key(&self, agent: uuid::Uuid) -> String {
        format!("{}agent-slots:{}", self.prefix, agent.simple())
    }
    /// The hash of agent `agent`'s result counts and the list of its recent durations.
    fn stats_keys(&self, agent: uuid::Uuid) -> (String, String) {
        let id = agent.simple();
        (
            format!("{}agent-stats:{id}", self.prefix),
            format!("{}agent-durations:{id}", self.prefix),
        )
    }
    /// The sorted set of `tenant`'s agents waiting in a poll (agent id → until, Unix
    /// millis).
    fn waiting_key(&self, tenant: &str) -> String {
        format!("{}agents-waiting:{}", self.prefix, hex::encode(tenant))
    }
    /// The set of `tenant`'s queues of `role` with required capabilities.
    fn requiring_key(&self, tenant: &str, role: &str) -> String {
        format!(
            "{}requiring:{}:{}",
            self.prefix,
            hex::encode(tenant),
            hex::encode(role)
        )
    }

    pub(super) async fn fleet_agent_seen(
        &self,
        tenant: &str,
        agent: uuid::Uuid,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), QueueError> {
        // Keep the later time: a delayed call never moves liveness back.
        const LATEST: &str = "local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') \
            if tonumber(ARGV[2]) > old then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end \
            return 0";
        let mut conn = self.conn.clone();
        let script = redis::Script::new(LATEST);
        let mut call = script.prepare_invoke();
        call.key(self.seen_key(tenant))
            .arg(agent.to_string())
            .arg(at.timestamp_millis());
        let done = call.invoke_async::<i64>(&mut conn);
        bounded(done, RESPONSE_TIMEOUT).await?.map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn fleet_reserve_slots(
        &self,
        agent: uuid::Uuid,
        capacity: u32,
        want: u32,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, QueueError> {
        // Forget expired slots, then add as many reservations as there is room for.
        const RESERVE: &str = "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1]) \
            local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1]) \
            local n = math.min(free, tonumber(ARGV[3])) \
            local out = {} \
            for i = 1, n do \
              local m = ARGV[4] .. i \
              redis.call('ZADD', KEYS[1], ARGV[5], m) \
              out[#out + 1] = m \
            end \
            return out";
        let mut conn = self.conn.clone();
        let script = redis::Script::new(RESERVE);
        let mut call = script.prepare_invoke();
        call.key(self.slots_key(agent))
            .arg(chrono::Utc::now().timestamp_millis())
            .arg(capacity)
            .arg(want)
            .arg(format!("r:{}:", uuid::Uuid::new_v4().simple()))
            .arg(until.timestamp_millis());
        let reserved = call.invoke_async::<Vec<String>>(&mut conn);
        bounded(reserved, RESPONSE_TIMEOUT).await?.map_err(map_err)
    }

    pub(super) async fn fleet_hold_leases(
        &self,
        agent: uuid::Uuid,
        reserved: &[String],
        leases: &[(uuid::Uuid, chrono::DateTime<chrono::Utc>)],
    ) -> Result<(), QueueError> {
        let key = self.slots_key(agent);
        let mut pipe = redis::pipe();
        pipe.atomic();
        if !reserved.is_empty() {
            pipe.zrem(&key, reserved).ignore();
        }
        for (lease, until) in leases {
            pipe.zadd(&key, lease.to_string(), until.timestamp_millis())
                .ignore();
        }
        // Slots of an agent that stops polling go with it (its longest lease and more).
        pipe.expire(&key, 24 * 3600).ignore();
        let mut conn = self.conn.clone();
        let done = pipe.query_async::<()>(&mut conn);
        bounded(done, RESPONSE_TIMEOUT).await?.map_err(map_err)
    }

    pub(super) async fn fleet_free_lease(
        &self,
        agent: uuid::Uuid,
        lease: uuid::Uuid,
        until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), QueueError> {
        let key = self.slots_key(agent);
        let mut conn = self.conn.clone();
        match until {
            None => {
                let done = conn.zrem::<_, _, i64>(key, lease.to_string());
                bounded(done, RESPONSE_TIMEOUT).await?.map_err(map_err)?;
            }
            Some(until) => {
                let mut cmd = redis::cmd("ZADD");
                cmd.arg(&key)
                    .arg("XX")
                    .arg(until.timestamp_millis())
                    .arg(lease.to_string());
                let done = cmd.query_async::<i64>(&mut conn);
                bounded(done, RESPONSE_TIMEOUT).await?.map_err(map_err)?;
            }
        }
        Ok(())
    }

    pub(super) async fn fleet_note_queue(
        &self,
        tenant: &str,
        role: &str,
        queue: &str,
    ) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let done = conn.sadd::<_, _, i64>(self.requiring_key(tenant, role), queue);
        bounded(done, RESPONSE_TIMEOUT).await?.map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn fleet_queues_of(
        &self,
        tenant: &str,
        role: &str,
    ) -> Result<Vec<String>, QueueError> {
        let mut conn = self.conn.clone();
        let all = conn.smembers::<_, Vec<String>>(self.requiring_key(tenant, role));
        bounded(all, RESPONSE_TIMEOUT).await?.map_err(map_err)
    }

    pub(super) async fn fleet_agent_finished(
        &self,
        agent: uuid::Uuid,
        ok: bool,
        took: Duration,
    ) -> Result<(), QueueError> {
        let (counts, recent) = self.stats_keys(agent);
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.hincr(&counts, if ok { "completed" } else { "failed" }, 1)
            .ignore()
            .lpush(&recent, ms)
            .ignore()
            .ltrim(&recent, 0, super::RECENT_DURATIONS as isize - 1)
            .ignore();
        let mut conn = self.conn.clone();
        let done = pipe.query_async::<()>(&mut conn);
        bounded(done, RESPONSE_TIMEOUT).await?.map_err(map_err)
    }

    pub(super) async fn fleet_agent_stats(
        &self,
        agent: uuid::Uuid,
    ) -> Result<super::AgentStats, QueueError> {
        let mut all = self.fleet_agents_stats(&[agent]).await?;
        Ok(all.pop().unwrap_or_default())
    }

    /// Every agent's counters in one round trip.
    pub(super) async fn fleet_agents_stats(
        &self,
        agents: &[uuid::Uuid],
    ) -> Result<Vec<super::AgentStats>, QueueError> {
        if agents.is_empty() {
            return Ok(Vec::new());
        }
        let now = chrono::Utc::now().timestamp_millis();
        let mut pipe = redis::pipe();
        for agent in agents {
            let (counts, recent) = self.stats_keys(*agent);
            pipe.zrangebyscore(self.slots_key(*agent), now, "+inf")
                .hget(&counts, "completed")
                .hget(&counts, "failed")
                .lrange(&recent, 0, -1);
        }
        let mut conn = self.conn.clone();
        let read = pipe.query_async::<Vec<redis::Value>>(&mut conn);
        let values = bounded(read, RESPONSE_TIMEOUT).await?.map_err(map_err)?;
        let mut out = Vec::with_capacity(agents.len());
        for chunk in values.chunks(4) {
            let [slots, completed, failed, recent] = chunk else {
                return Err(QueueError::Backend(
                    "agent counters: a short pipeline reply".to_owned(),
                ));
            };
            let parse = |v: &redis::Value| -> Result<Option<u64>, QueueError> {
                redis::from_redis_value::<Option<u64>>(v).map_err(map_err)
            };
            let slots: Vec<String> = redis::from_redis_value(slots).map_err(map_err)?;
            out.push(super::AgentStats {
                // A poll's reservations are not leases.
                held: slots.iter().filter(|s| !s.starts_with("r:")).count() as u64,
                completed: parse(completed)?.unwrap_or(0),
                failed: parse(failed)?.unwrap_or(0),
                recent_ms: redis::from_redis_value(recent).map_err(map_err)?,
            });
        }
        Ok(out)
    }

    /// The key of `tenant`'s rate-limit bucket `bucket`.
    /// The key of `tenant`'s rate-limit bucket `bucket`: a SHA-256 of the bucket's
    /// name, which is computed from customer input (a customer id, say) and so never
    /// stands in Redis in clear.
    fn bucket_key(&self, tenant: &str, bucket: &str) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{tenant}\u{0}{bucket}").as_bytes());
        format!("{}rate:{}", self.prefix, hex::encode(digest))
    }

    pub(super) async fn fleet_take_token(
        &self,
        tenant: &str,
        bucket: &str,
        interval: Duration,
        burst: u32,
    ) -> Result<Option<Duration>, QueueError> {
        // GCRA on Redis's clock (microseconds; exact in a double up to 2^53), so every
        // engine shares one bucket and one time. The key expires when the bucket is full
        // again.
        const TAKE: &str = "local t = redis.call('TIME') \
            local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) \
            local interval = tonumber(ARGV[1]) \
            local tat = tonumber(redis.call('GET', KEYS[1]) or now) \
            if tat < now then tat = now end \
            local new_tat = tat + interval \
            local allowed_at = new_tat - interval * tonumber(ARGV[2]) \
            if allowed_at <= now then \
              local ttl = math.floor((new_tat - now) / 1000) + 1 \
              redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl) \
              return 0 \
            end \
            return allowed_at - now";
        let mut conn = self.conn.clone();
        let script = redis::Script::new(TAKE);
        let mut call = script.prepare_invoke();
        call.key(self.bucket_key(tenant, bucket))
            .arg(
                u64::try_from(interval.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )
            .arg(burst.max(1));
        let wait = call.invoke_async::<i64>(&mut conn);
        let wait = bounded(wait, RESPONSE_TIMEOUT).await?.map_err(map_err)?;
        Ok((wait > 0).then(|| Duration::from_micros(wait.unsigned_abs())))
    }

    pub(super) async fn fleet_agent_waiting(
        &self,
        tenant: &str,
        agent: uuid::Uuid,
        until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), QueueError> {
        let key = self.waiting_key(tenant);
        let mut conn = self.conn.clone();
        match until {
            Some(until) => {
                let mut pipe = redis::pipe();
                pipe.zadd(&key, agent.to_string(), until.timestamp_millis())
                    .ignore()
                    .zrembyscore(&key, "-inf", chrono::Utc::now().timestamp_millis())
                    .ignore();
                let done = pipe.query_async::<()>(&mut conn);
                bounded(done, RESPONSE_TIMEOUT).await?.map_err(map_err)
            }
            None => {
                let done = conn.zrem::<_, _, i64>(key, agent.to_string());
                bounded(done, RESPONSE_TIMEOUT).await?.map_err(map_err)?;
                Ok(())
            }
        }
    }

    pub(super) async fn fleet_agents_waiting(
        &self,
        tenant: &str,
    ) -> Result<Vec<uuid::Uuid>, QueueError> {
        let mut conn = self.conn.clone();
        let now = chrono::Utc::now().timestamp_millis();
        let all = conn.zrangebyscore::<_, _, _, Vec<String>>(self.waiting_key(tenant), now, "+inf");
        let all = bounded(all, RESPONSE_TIMEOUT).await?.map_err(map_err)?;
        let mut agents: Vec<uuid::Uuid> = all
            .iter()
            .filter_map(|a| uuid::Uuid::parse_str(a).ok())
            .collect();
        agents.sort();
        Ok(agents)
    }

    pub(super) async fn fleet_forget_agent(&self, agent: uuid::Uuid) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let done = conn.del::<_, i64>(self.slots_key(agent));
        bounded(done, RESPONSE_TIMEOUT).await?.map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn fleet_agents_seen(
        &self,
        tenant: &str,
    ) -> Result<std::collections::HashMap<uuid::Uuid, chrono::DateTime<chrono::Utc>>, QueueError>
    {
        let mut conn = self.conn.clone();
        let all = conn.hgetall::<_, std::collections::HashMap<String, i64>>(self.seen_key(tenant));
        let all = bounded(all, RESPONSE_TIMEOUT).await?.map_err(map_err)?;
        Ok(all
            .into_iter()
            .filter_map(|(agent, ms)| {
                let agent = uuid::Uuid::parse_str(&agent).ok()?;
                Some((agent, chrono::DateTime::from_timestamp_millis(ms)?))
            })
            .collect())
    }
}
