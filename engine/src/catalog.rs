//! Workflow definitions: created as events, versioned per name, loaded and validated
//! once per process.
//!
//! Workflows belong to a tenant (the `WorkflowCreated` event's `metadata.tenant_id`), and
//! names and versions are per tenant. A workflow's id is derived from its tenant, name
//! and version (uuid v5), and its stream is
//! created with expected version 0, so two concurrent creates of the same name can never
//! both become version N: the second gets a conflict and moves on to N+1. No registry
//! beside the event log is needed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use conflux_schema::definition::WorkflowDefinition;
use conflux_schema::validate::{validate, Limits, ValidatedWorkflow, ValidationError};
use conflux_schema::{Event, EventEnvelope, EventMetadata, NewEvent, StreamId};
use uuid::Uuid;

use crate::secrets::Secrets;
use crate::store::{EventStore, StoreError};

/// The namespace of workflow ids (uuid v5 of `name NUL version` in `default`, of
/// `tenant NUL name NUL version` in any other tenant).
const WORKFLOW_NAMESPACE: Uuid = Uuid::from_u128(0x6d2f_4f0e_8a51_4c0b_9a43_c0f1_7e5a_2b11);

/// Why a create failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The definition is not a valid workflow (422).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The definition references secrets the tenant does not have (422, naming them).
    #[error("the workflow references secrets that do not exist in this tenant: {}", .0.join(", "))]
    UnknownSecrets(Vec<String>),
    /// A task's literal URL is one the egress policy denies.
    #[error("task {task}: {denied}")]
    EgressDenied {
        /// The task.
        task: String,
        /// Why.
        denied: crate::runner::egress::EgressDenied,
    },
    /// The secrets could not be read.
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretError),
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

/// A definition with its tenant.
type Owned = (String, Arc<ValidatedWorkflow>);

/// Creates and loads workflow definitions; cheap to clone.
#[derive(Clone)]
pub struct WorkflowCatalog {
    store: Arc<dyn EventStore>,
    limits: Limits,
    /// Definitions by id, with their tenant.
    loaded: Arc<Mutex<HashMap<Uuid, Owned>>>,
    /// The newest version known per (tenant, name).
    latest: Arc<Mutex<HashMap<(String, String), u32>>>,
    /// Where `${secrets.NAME}` references are checked at create (None: none exist).
    secrets: Option<Secrets>,
    egress: Option<Arc<crate::runner::egress::EgressPolicy>>,
    /// Tenants' own egress allowlists (added to `egress`).
    tenant_egress: Option<Arc<dyn crate::runner::egress::TenantAllowlists>>,
}

/// How many named workflows a create follows at most when it looks for a cycle.
const MAX_CHECKED_WORKFLOWS: usize = 1_000;

/// The id of version `version` of workflow `name` in `tenant`. In `default` it is the
/// id the workflow had before tenants existed, so a store upgrades in place.
pub fn workflow_id(tenant: &str, name: &str, version: u32) -> Uuid {
    let seed = if tenant == conflux_schema::access::DEFAULT_TENANT {
        format!("{name}\u{0}{version}")
    } else {
        format!("{tenant}\u{0}{name}\u{0}{version}")
    };
    Uuid::new_v5(&WORKFLOW_NAMESPACE, seed.as_bytes())
}

impl WorkflowCatalog {
    /// A catalog over `store`, validating with `limits`.
    pub fn new(store: Arc<dyn EventStore>, limits: Limits) -> Self {
        Self {
            store,
            limits,
            loaded: Arc::default(),
            latest: Arc::default(),
            secrets: None,
            egress: None,
            tenant_egress: None,
        }
    }

    /// The limits every definition is validated with at create.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The same catalog, checking at create that every secret a definition references
    /// exists in its tenant (without this, a definition that references one is refused).
    pub fn with_secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// The same catalog, refusing definitions whose literal `http` URLs `egress` denies
    /// (an address, or `localhost`; other names are checked when they are called).
    pub fn with_egress(mut self, egress: crate::runner::egress::EgressPolicy) -> Self {
        self.egress = Some(Arc::new(egress));
        self
    }

    /// The same catalog, also allowing what each tenant's own allowlist allows.
    pub fn with_tenant_egress(
        mut self,
        tenants: Arc<dyn crate::runner::egress::TenantAllowlists>,
    ) -> Self {
        self.tenant_egress = Some(tenants);
        self
    }

    /// [`CatalogError::EgressDenied`] for the first task (or compensation) whose URL,
    /// written without `${...}`, the egress policy of `tenant` denies.
    fn check_egress(&self, tenant: &str, workflow: &ValidatedWorkflow) -> Result<(), CatalogError> {
        let Some(operator) = &self.egress else {
            return Ok(());
        };
        let own = self
            .tenant_egress
            .as_ref()
            .and_then(|t| t.allowlist(tenant));
        let combined;
        let egress = match own {
            Some(own) => {
                combined = operator.union(&own);
                &combined
            }
            None => &**operator,
        };
        for task in workflow.tasks() {
            let specs = [
                task.http.as_ref(),
                task.compensate.as_ref().and_then(|c| c.http.as_ref()),
            ];
            for http in specs.into_iter().flatten() {
                let Ok(url) = url::Url::parse(http.url.trim()) else {
                    continue;
                };
                // Only a URL written out: one with a `${...}` is known at dispatch.
                if let (false, Some(host)) = (http.url.contains("${"), url.host()) {
                    egress
                        .check_url_host(&host)
                        .map_err(|denied| CatalogError::EgressDenied {
                            task: task.id.clone(),
                            denied,
                        })?;
                }
            }
        }
        Ok(())
    }

    /// [`CatalogError::UnknownSecrets`] unless `tenant` has every secret `workflow`
    /// references.
    async fn check_secrets(
        &self,
        tenant: &str,
        workflow: &ValidatedWorkflow,
    ) -> Result<(), CatalogError> {
        let names = workflow.secret_names();
        if names.is_empty() {
            return Ok(());
        }
        let missing = match &self.secrets {
            Some(secrets) => {
                secrets
                    .missing(tenant, names.iter().map(String::as_str))
                    .await?
            }
            None => names.into_iter().collect(),
        };
        if missing.is_empty() {
            Ok(())
        } else {
            Err(CatalogError::UnknownSecrets(missing))
        }
    }

    /// [`ValidationError::InvalidTask`] for the first `workflow` task that names a
    /// workflow `tenant` lacks, or whose workflow, following the workflows each names in
    /// turn (their latest or pinned versions), starts this one again: a definition is
    /// refused rather than left to recurse until the run-time depth limit fails it.
    async fn check_children(
        &self,
        tenant: &str,
        workflow: &ValidatedWorkflow,
    ) -> Result<(), CatalogError> {
        let own = workflow.name().as_str();
        let invalid = |task: &str, reason: String| {
            CatalogError::Invalid(ValidationError::InvalidTask {
                task: task.to_owned(),
                reason,
            })
        };
        let mut seen = std::collections::HashSet::new();
        for (task, child) in workflow.child_workflows() {
            if child.name == own && child.version.is_none() {
                return Err(invalid(
                    task,
                    format!("workflow {child} is this workflow: it would start itself without end"),
                ));
            }
            let Some(first) = self.resolve(tenant, &child.name, child.version).await? else {
                return Err(invalid(
                    task,
                    format!("workflow {child} does not exist in this tenant"),
                ));
            };
            // Depth-first over the named workflows, each path kept for the message.
            let mut stack = vec![(first, vec![own.to_owned(), child.name.clone()])];
            while let Some((id, path)) = stack.pop() {
                if !seen.insert(id) || seen.len() > MAX_CHECKED_WORKFLOWS {
                    continue;
                }
                let Some(reached) = self.get_in(tenant, id).await? else {
                    continue;
                };
                for (_, next) in reached.child_workflows() {
                    let mut path = path.clone();
                    path.push(next.name.clone());
                    if next.name == own && next.version.is_none() {
                        return Err(invalid(
                            task,
                            format!(
                                "it starts workflows that start this one again ({}): a cycle",
                                path.join(" -> ")
                            ),
                        ));
                    }
                    if let Some(id) = self.resolve(tenant, &next.name, next.version).await? {
                        stack.push((id, path));
                    }
                }
            }
        }
        Ok(())
    }

    /// Validates `definition` and records it as the next version of its name in the
    /// tenant of `metadata`.
    pub async fn create(
        &self,
        definition: WorkflowDefinition,
        metadata: EventMetadata,
    ) -> Result<CreatedWorkflow, CatalogError> {
        let workflow = Arc::new(validate(definition, &self.limits)?);
        let name = workflow.name().as_str().to_owned();
        let tenant = metadata.tenant().to_owned();
        self.check_egress(&tenant, &workflow)?;
        self.check_secrets(&tenant, &workflow).await?;
        self.check_children(&tenant, &workflow).await?;
        let mut version = self.next_version(&tenant, &name).await?;
        loop {
            let id = workflow_id(&tenant, &name, version);
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
                    self.remember(&tenant, &name, version);
                    lock(&self.loaded).insert(id, (tenant.clone(), workflow.clone()));
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

    /// The validated definition of `workflow_id`, or None if there is no such workflow
    /// (in any tenant: the engine's view).
    pub async fn get(
        &self,
        workflow_id: Uuid,
    ) -> Result<Option<Arc<ValidatedWorkflow>>, StoreError> {
        Ok(self.get_with_tenant(workflow_id).await?.map(|(_, w)| w))
    }

    /// The validated definition of `workflow_id` if it is `tenant`'s; None for an
    /// unknown id and for another tenant's alike.
    pub async fn get_in(
        &self,
        tenant: &str,
        workflow_id: Uuid,
    ) -> Result<Option<Arc<ValidatedWorkflow>>, StoreError> {
        Ok(self
            .get_with_tenant(workflow_id)
            .await?
            .filter(|(t, _)| t == tenant)
            .map(|(_, w)| w))
    }

    async fn get_with_tenant(&self, workflow_id: Uuid) -> Result<Option<Owned>, StoreError> {
        if let Some(w) = lock(&self.loaded).get(&workflow_id) {
            return Ok(Some(w.clone()));
        }
        let Some(event) = self.created_event(workflow_id).await? else {
            return Ok(None);
        };
        let tenant = event.metadata.tenant().to_owned();
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
            ..self.limits
        };
        let workflow = validate(*definition, &limits).map_err(|e| StoreError::Corrupt {
            position: event.position,
            reason: format!("stored definition does not validate: {e}"),
        })?;
        let entry = (tenant, Arc::new(workflow));
        lock(&self.loaded).insert(workflow_id, entry.clone());
        Ok(Some(entry))
    }

    /// The `WorkflowCreated` event of `workflow_id` if it is `tenant`'s; None for an
    /// unknown id and for another tenant's alike.
    pub async fn created_event_in(
        &self,
        tenant: &str,
        workflow_id: Uuid,
    ) -> Result<Option<EventEnvelope>, StoreError> {
        Ok(self
            .created_event(workflow_id)
            .await?
            .filter(|e| e.metadata.tenant() == tenant))
    }

    /// The `WorkflowCreated` event of `workflow_id`, if it exists (in any tenant).
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

    /// The id of the workflow a `workflow` task names in `tenant`: version `version`, or
    /// the newest version when None (read from the store, so a version another process
    /// created is seen). None when there is no such workflow in the tenant.
    pub async fn resolve(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<Uuid>, StoreError> {
        let version = match version {
            Some(v) => v,
            None => match self.latest_version(tenant, name).await? {
                Some(v) => v,
                None => return Ok(None),
            },
        };
        let id = workflow_id(tenant, name, version);
        let stream = StreamId::workflow(id);
        Ok((self.store.stream_version(&stream).await? > 0).then_some(id))
    }

    /// The newest version of `name` in `tenant`, None if it has none: from the version
    /// known here, stepping on while a newer one exists.
    async fn latest_version(&self, tenant: &str, name: &str) -> Result<Option<u32>, StoreError> {
        let known = lock(&self.latest)
            .get(&(tenant.to_owned(), name.to_owned()))
            .copied();
        let mut latest = match known {
            Some(v) => v,
            None => self.next_version(tenant, name).await? - 1,
        };
        loop {
            let next = StreamId::workflow(workflow_id(tenant, name, latest + 1));
            if self.store.stream_version(&next).await? == 0 {
                break;
            }
            latest += 1;
        }
        if latest == 0 {
            return Ok(None);
        }
        self.remember(tenant, name, latest);
        Ok(Some(latest))
    }

    async fn next_version(&self, tenant: &str, name: &str) -> Result<u32, StoreError> {
        let key = (tenant.to_owned(), name.to_owned());
        if let Some(v) = lock(&self.latest).get(&key) {
            return Ok(v + 1);
        }
        // Gallop, then bisect, over versions that exist: O(log n) lookups.
        let exists = |v: u32| {
            let store = self.store.clone();
            let stream = StreamId::workflow(workflow_id(tenant, name, v));
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
        self.remember(tenant, name, lo);
        Ok(lo + 1)
    }

    fn remember(&self, tenant: &str, name: &str, version: u32) {
        let mut latest = lock(&self.latest);
        let key = (tenant.to_owned(), name.to_owned());
        let v = latest.entry(key).or_insert(version);
        *v = (*v).max(version);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
