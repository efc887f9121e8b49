//! Storing new execution keys in batches: a burst of started executions (a thousand
//! submitted at once) needs a thousand key rows before their first events; one
//! statement per round trip for everything waiting, instead of one each.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::vault::{KeyVault, StoredExecutionKey};
use super::CryptoError;

/// An execution key to store, and where its stored row goes.
pub(super) struct NewKey {
    pub(super) key: StoredExecutionKey,
    pub(super) stored: oneshot::Sender<Result<Option<StoredExecutionKey>, CryptoError>>,
}

/// Most execution keys stored with one statement.
pub(super) const MAX_KEY_BATCH: usize = 512;

/// Stores execution keys as they come, everything waiting in one statement: under load
/// (many executions started at once) a batch per round trip instead of a statement
/// each. Ends when the keyring is dropped.
pub(super) async fn store_execution_keys(
    vault: Arc<dyn KeyVault>,
    mut waiting: mpsc::Receiver<NewKey>,
) {
    while let Some(first) = waiting.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_KEY_BATCH {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // One row per execution: a repeat gets the row stored for the first.
        let mut index = HashMap::with_capacity(batch.len());
        let mut unique = Vec::with_capacity(batch.len());
        for new in &batch {
            index.entry(new.key.execution_id).or_insert_with(|| {
                unique.push(new.key.clone());
                unique.len() - 1
            });
        }
        let stored = vault.create_execution_keys(&unique).await;
        for new in batch {
            let row = match &stored {
                Ok(rows) => Ok(index
                    .get(&new.key.execution_id)
                    .and_then(|i| rows.get(*i))
                    .cloned()
                    .flatten()),
                Err(e) => Err(CryptoError::Store(e.clone())),
            };
            let _ = new.stored.send(row);
        }
    }
}
