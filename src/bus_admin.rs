//! `conflux bus status` and `conflux bus reset`: what an operator runs when `/ready`
//! says the bus (the Redis prefix) holds another store's events, or events ahead of a
//! restored store. The reset clears the prefix (events, consumer groups, agent queues),
//! records this store as its owner, and republishes the store's log with a progress
//! bar; running servers on this store notice within a second and start afresh.

use std::time::Duration;

use anyhow::{bail, Context};
use conflux_engine::bus::ownership::{reset_bus, BusGuard, BusStatus};
use conflux_engine::relay::{Relay, RelayOptions};
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::Runtime;

/// Prints whose bus this is, and whether this store may use it. Returns the exit code:
/// 0 when the bus is this store's, 1 when it is refused.
pub async fn status(rt: &Runtime) -> anyhow::Result<u8> {
    let bus = rt.backends.bus.describe();
    let owner = rt
        .backends
        .bus
        .owner()
        .await
        .context("reading the bus's owner")?;
    let head = rt
        .backends
        .bus
        .head()
        .await
        .context("reading the bus head")?;
    let store_head = rt
        .backends
        .store
        .head_position()
        .await
        .context("reading the store head")?;
    println!("bus:        {bus}");
    match owner {
        Some(o) => println!(
            "owner:      store {} (generation {})",
            o.store_id, o.generation
        ),
        None => println!("owner:      none recorded"),
    }
    println!("this store: {}", rt.backends.store_id);
    println!("bus head:   {head}");
    println!("store head: {store_head}");
    if owner.is_none() && head == 0 {
        println!("verdict:    unclaimed and empty; the first server on this store claims it");
        return Ok(0);
    }
    // Never resets, whatever CONFLUX_BUS_RESET_ON_MISMATCH says.
    let guard = BusGuard::new(
        rt.backends.stored.clone(),
        rt.backends.bus.clone(),
        rt.backends.queue.clone(),
        rt.backends.store_id,
        false,
    );
    let status = guard.check().await.context("checking the bus")?;
    match status {
        BusStatus::Owned { .. } => {
            println!("verdict:    this store's");
            Ok(0)
        }
        BusStatus::Checking => {
            println!("verdict:    undecided");
            Ok(1)
        }
        BusStatus::Refused { reason } => {
            println!("verdict:    refused: {reason}");
            Ok(1)
        }
    }
}

/// Clears the bus and republishes this store's log onto it. Without `confirmed` it
/// only says what it would do and fails.
pub async fn reset(rt: &Runtime, confirmed: bool) -> anyhow::Result<()> {
    if rt.backends.mode == "embedded" || rt.backends.mode == "postgres+in-process" {
        bail!("this configuration uses the in-process bus, which lives inside each server and never holds another store's events: there is nothing to reset (set REDIS_URL to reset a Redis prefix)");
    }
    let bus = rt.backends.bus.describe();
    let store_head = rt
        .backends
        .store
        .head_position()
        .await
        .context("reading the store head")?;
    if !confirmed {
        bail!(
            "this deletes every event, consumer group and agent queue under {bus} and \
             republishes this store's {store_head} positions (store {}); servers on \
             another store that use this prefix stop. Run again with --yes to do it.",
            rt.backends.store_id
        );
    }
    let report = reset_bus(rt.backends.store_id, &*rt.backends.bus, &*rt.backends.queue)
        .await
        .context("resetting the bus")?;
    eprintln!(
        "cleared {bus} ({} agent queues); it now belongs to store {} (generation {})",
        report.queues_cleared, report.owner.store_id, report.owner.generation
    );
    republish(rt, store_head).await
}

/// Publishes the store's log up to `target` (what it held when the reset began; the
/// servers' relays publish anything newer), with a progress bar.
async fn republish(rt: &Runtime, target: u64) -> anyhow::Result<()> {
    let bar = ProgressBar::new(target);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} republishing [{bar:40}] position {pos}/{len} ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let mut relay = Relay::new(
        rt.backends.stored.clone(),
        rt.backends.bus.clone(),
        RelayOptions::default(),
    );
    let mut failures = 0u32;
    loop {
        let head = rt
            .backends
            .bus
            .head()
            .await
            .context("reading the bus head")?;
        bar.set_position(head.min(target));
        if head >= target {
            break;
        }
        // A running server's relay may publish the same positions at the same time:
        // the loser's step fails on Redis' id check and simply re-reads the head.
        if let Err(e) = relay.step().await {
            failures += 1;
            if failures > 50 {
                return Err(e).context("republishing the store's events");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    bar.finish_and_clear();
    eprintln!(
        "republished the store's log up to position {target} in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
