//! Workflow definitions: created as events, versioned per name, loaded and validated
//! once per process.
//!
//! A workflow's id is derived from its name and version (uuid v5), and its stream is
//! created with expected version 0, so two concurrent creates of the same name can never
//! both become version N: the second gets a conflict and moves on to N+1. No registry
//! beside the event log is needed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use conflux_schema::definition::WorkflowDefinition;
use conflux_schema::validate::{validate, Limits, ValidatedWorkflow, ValidationError};
use conflux_schema::{Event, EventEnvelope, EventMetadata, NewEvent, StreamId};
use uuid::Uuid;

use crate::store::{EventStore, StoreError};

/// The namespace of workflow ids (uuid v5 of `name NUL version`).
const WORKFLOW_NAMESPACE: Uuid = Uuid::from_u128(0x6d2f_4f0e_8a51_4c0b_9a43_c0f1_7e5a_2b11);

/// Why a create failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The definition is not a valid workflow (422).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A created workflow version.
#[derive(Debug, Clone)]
pub struct CreatedWorkflow {
    /// The new workflow id.
    pub workflow_id: Uuid,
    /// The validated definition.
    pub workflow: Arc<ValidatedWorkflow>,
    /// 1, 2, 3… per name.
    pub version: u32,
    /// The `WorkflowCreated` event.
    pub event: EventEnvelope,
}

/// Creates and loads workflow definitions; cheap to clone.
#[derive(Clone)]
pub struct WorkflowCatalog {
    store: Arc<dyn EventStore>,
    limits: Limits,
    loaded: Arc<Mutex<HashMap<Uuid, Arc<ValidatedWorkflow>>>>,
    latest: Arc<Mutex<HashMap<String, u32>>>,
}

/// The id of version `version` of workflow `name`.
pub fn workflow_id(name: &str, version: u32) -> Uuid {
    Uuid::new_v5(
        &WORKFLOW_NAMESPACE,
        format!("{name}\u{0}{version}").as_bytes(),
    )
}

impl WorkflowCatalog {
    /// A catalog over `store`, validating with `limits`.
    pub fn new(store: Arc<dyn EventStore>, limits: Limits) -> Self {
        Self {
            store,
            limits,
            loaded: Arc::default(),
            latest: Arc::default(),
        }
    }

    /// Validates `definition` and records it as the next version of its name.
    pub async fn create(
        &self,
        definition: WorkflowDefinition,
        metadata: EventMetadata,
    ) -> Result<CreatedWorkflow, CatalogError> {
        let workflow = Arc::new(validate(definition, &self.limits)?);
        let name = workflow.name().as_str().to_owned();
        let mut version = self.next_version(&name).await?;
        loop {
            let id = workflow_id(&name, version);
            let event = Event::WorkflowCreated {
                workflow_id: id,
                name: name.clone(),
                version,
                definition: Box::new(workflow.definition().clone()),
            };
            let stream = StreamId::workflow(id);
            match self
                .store
                .append(&stream, 0, vec![NewEvent::new(event, metadata.clone())])
                .await
            {
                Ok(mut events) => {
                    self.remember(&name, version);
                    lock(&self.loaded).insert(id, workflow.clone());
                    let event = events
                        .pop()
                        .ok_or_else(|| StoreError::Backend("append returned no event".into()))?;
                    return Ok(CreatedWorkflow {
                        workflow_id: id,
                        workflow,
                        version,
                        event,
                    });
                }
                // Someone created this version first: take the next one.
                Err(StoreError::Conflict { .. }) => version += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The validated definition of `workflow_id`, or None if there is no such workflow.
    pub async fn get(
        &self,
        workflow_id: Uuid,
    ) -> Result<Option<Arc<ValidatedWorkflow>>, StoreError> {
        if let Some(w) = lock(&self.loaded).get(&workflow_id) {
            return Ok(Some(w.clone()));
        }
        let Some(event) = self.created_event(workflow_id).await? else {
            return Ok(None);
        };
        let Event::WorkflowCreated { definition, .. } = event.event else {
            return Err(StoreError::Corrupt {
                position: event.position,
                reason: "a workflow stream does not start with WorkflowCreated".into(),
            });
        };
        // A stored definition was valid when created; validate again (without the task
        // limit, which may have been lowered since) to rebuild the graph.
        let limits = Limits {
            max_tasks: usize::MAX,
        };
        let workflow = validate(*definition, &limits).map_err(|e| StoreError::Corrupt {
            position: event.position,
            reason: format!("stored definition does not validate: {e}"),
        })?;
        let workflow = Arc::new(workflow);
        lock(&self.loaded).insert(workflow_id, workflow.clone());
        Ok(Some(workflow))
    }

    /// The `WorkflowCreated` event of `workflow_id`, if it exists.
    pub async fn created_event(
        &self,
        workflow_id: Uuid,
    ) -> Result<Option<EventEnvelope>, StoreError> {
        let mut events = self
            .store
            .read_stream(&StreamId::workflow(workflow_id), 0, 1)
            .await?;
        Ok(events.pop())
    }

    async fn next_version(&self, name: &str) -> Result<u32, StoreError> {
        if let Some(v) = lock(&self.latest).get(name) {
            return Ok(v + 1);
        }
        // Gallop, then bisect, over versions that exist: O(log n) lookups.
        let exists = |v: u32| {
            let store = self.store.clone();
            let stream = StreamId::workflow(workflow_id(name, v));
            async move { store.stream_version(&stream).await.map(|n| n > 0) }
        };
        if !exists(1).await? {
            return Ok(1);
        }
        let (mut lo, mut hi) = (1u32, 2u32);
        while exists(hi).await? {
            lo = hi;
            hi = hi.saturating_mul(2);
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if exists(mid).await? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.remember(name, lo);
        Ok(lo + 1)
    }

    fn remember(&self, name: &str, version: u32) {
        let mut latest = lock(&self.latest);
        let v = latest.entry(name.to_owned()).or_insert(version);
        *v = (*v).max(version);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
