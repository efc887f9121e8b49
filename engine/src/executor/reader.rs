//! The bus reader: its own task, so that a cancelled wait in the engine's loop never
//! loses entries that the bus already handed to this consumer.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bus::{Delivery, Subscription};

/// Reads the bus in its own task, so that a cancelled wait never loses entries that
/// Redis already handed to this consumer.
pub(super) async fn read_bus(
    mut subscription: Box<dyn Subscription>,
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
            Ok(deliveries) => {
                failures = 0;
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
