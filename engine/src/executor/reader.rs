//! The bus reader: its own task, so that a cancelled wait in the engine's loop never
//! loses entries that the bus already handed to this consumer.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bus::{Delivery, Subscription};
use crate::crypto::PayloadCodec;

/// Reads the bus in its own task, so that a cancelled wait never loses entries that
/// Redis already handed to this consumer. The bus carries payloads as stored (sealed,
/// with encryption at rest); they are opened here, before the engine sees them.
pub(super) async fn read_bus(
    mut subscription: Box<dyn Subscription>,
    codec: PayloadCodec,
    out: mpsc::Sender<Vec<Delivery>>,
    batch: usize,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return,
            next = subscription.next(batch, Duration::from_millis(500)) => next,
        };
        match next {
            Ok(deliveries) if deliveries.is_empty() => {}
            Ok(mut deliveries) => {
                failures = 0;
                if open_deliveries(&codec, &mut deliveries, &stop)
                    .await
                    .is_err()
                {
                    return;
                }
                if out.send(deliveries).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures % 50 == 0 {
                    tracing::warn!(error = %e, "reading the bus failed; retrying");
                }
                tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(10)))).await;
            }
        }
    }
}

/// Opens the deliveries' payloads, retrying while the key tables cannot be read (the
/// entries are this consumer's until acked, so waiting loses nothing); gives up only
/// when stopped.
async fn open_deliveries(
    codec: &PayloadCodec,
    deliveries: &mut [Delivery],
    stop: &CancellationToken,
) -> Result<(), crate::crypto::CryptoError> {
    if !codec.is_on() {
        return Ok(());
    }
    let mut failures = 0u32;
    loop {
        let envelopes = deliveries.iter_mut().map(|d| &mut d.envelope).collect();
        match codec.open_envelope_refs(envelopes).await {
            Ok(()) => return Ok(()),
            Err(e) if stop.is_cancelled() => return Err(e),
            Err(e) => {
                failures += 1;
                if failures == 1 || failures % 50 == 0 {
                    tracing::warn!(error = %e, "opening payloads from the bus failed; retrying");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
