//! Data keys and sealed payloads: the same guarantees on every backend.

use std::sync::Arc;

use conflux_engine::crypto::sealed_store::SealedStore;
use conflux_engine::crypto::{CryptoError, KeyState, Keyring, MasterKey, MasterKeys, PayloadCodec};
use conflux_engine::store::EventStore;
use conflux_schema::{Event, EventMetadata, NewEvent, StreamId, TaskId};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::fixtures::Fixture;

fn meta(tenant: &str) -> EventMetadata {
    EventMetadata {
        tenant_id: Some(tenant.to_owned()),
        ..EventMetadata::default()
    }
}

/// An execution's first two events, carrying `marker` in its input and in an error.
fn payload_events(execution: Uuid, tenant: &str, marker: &str) -> Vec<NewEvent> {
    vec![
        NewEvent::new(
            Event::ExecutionStarted {
                execution_id: execution,
                workflow_id: Uuid::now_v7(),
                input: json!({"card": marker, "n": 1}),
                idempotency_key: None,
                parent: None,
            },
            meta(tenant),
        ),
        NewEvent::new(
            Event::TaskFailed {
                task_id: TaskId::parse("charge").expect("task id"),
                attempt: 1,
                error: format!("declined: {marker}"),
                retryable: false,
                compensation: false,
            },
            meta(tenant),
        ),
    ]
}

async fn keyring<F: Fixture>(f: &F, master: &MasterKeys) -> Arc<Keyring> {
    Arc::new(
        Keyring::open(master.clone(), f.vault())
            .await
            .expect("keyring"),
    )
}

fn sealed(store: Arc<dyn EventStore>, keyring: &Arc<Keyring>) -> SealedStore {
    SealedStore::new(store, PayloadCodec::new(keyring.clone()))
}

fn stored_text(envelopes: &[conflux_schema::EventEnvelope]) -> String {
    serde_json::to_string(envelopes).expect("json")
}

/// Payloads are sealed in the log and opened on read; the appender gets its plaintext
/// back; structure stays readable; the chain verifies without any key.
pub async fn payloads_are_sealed_in_the_log_and_opened_on_read<F: Fixture>(f: &F) {
    let master = MasterKeys::new(MasterKey::random().expect("key"));
    let keys = keyring(f, &master).await;
    let store = sealed(f.store(), &keys);
    let execution = Uuid::now_v7();
    let stream = StreamId::execution(execution);
    let marker = format!("marker-{}", Uuid::now_v7().simple());
    let appended = store
        .append(&stream, 0, payload_events(execution, "acme", &marker))
        .await
        .expect("append");
    assert!(
        stored_text(&appended).contains(&marker),
        "the appender gets plaintext"
    );

    let raw = f
        .store()
        .read_stream(&stream, 0, 10)
        .await
        .expect("raw read");
    let raw_text = stored_text(&raw);
    assert!(!raw_text.contains(&marker), "stored: {raw_text}");
    assert!(raw_text.contains("$sealed"), "{raw_text}");
    assert_eq!(raw[1].event.type_name(), "TaskFailed", "structure stays");

    let opened = store.read_stream(&stream, 0, 10).await.expect("read");
    assert_eq!(
        opened, appended,
        "reads give back exactly what was appended"
    );
    let all = store.read_all(0, 100).await.expect("read all");
    assert!(stored_text(&all).contains(&marker));
    assert!(
        f.store()
            .verify_stream(&stream)
            .await
            .expect("verify")
            .valid
    );

    // Another process (its own pool and keyring) opens the same payloads.
    let second = Arc::new(
        Keyring::open(master.clone(), f.second_vault().await)
            .await
            .expect("second keyring"),
    );
    let again = sealed(f.second_store().await, &second)
        .read_stream(&stream, 0, 10)
        .await
        .expect("second read");
    assert_eq!(again, appended);
}

/// Two processes racing to create the first key of one execution (and of its tenant)
/// end up with one key: what either seals, the other opens.
pub async fn data_keys_are_made_once_and_shared<F: Fixture>(f: &F) {
    let master = MasterKeys::new(MasterKey::random().expect("key"));
    let (a, b) = (
        keyring(f, &master).await,
        Arc::new(
            Keyring::open(master.clone(), f.second_vault().await)
                .await
                .expect("b"),
        ),
    );
    for _ in 0..5 {
        let execution = Uuid::now_v7();
        let (ka, kb) = tokio::join!(
            a.key_for_writing("raced", execution),
            b.key_for_writing("raced", execution)
        );
        let (KeyState::Live(ka), KeyState::Live(kb)) = (ka.expect("a"), kb.expect("b")) else {
            panic!("both live");
        };
        let sealed = ka.seal(b"aad", b"hello").expect("seal");
        assert_eq!(kb.open(b"aad", &sealed).expect("the same key"), b"hello");
    }
    let uses = f.vault().master_key_uses().await.expect("uses");
    assert_eq!(uses.len(), 1);
    assert_eq!(
        uses[0].tenant_keys, 2,
        "one live key per tenant (and the store's own)"
    );
}

/// Erasing an execution's key redacts its payloads everywhere it is read (also in a
/// process that had the key cached, after its refresh), leaves other executions and
/// every chain intact, and refuses to come back; erasing a tenant redacts all of its
/// executions, and the tenant's next execution gets a fresh key.
pub async fn erasure_redacts_payloads_and_keeps_the_chain<F: Fixture>(f: &F) {
    let master = MasterKeys::new(MasterKey::random().expect("key"));
    let keys = keyring(f, &master).await;
    let store = sealed(f.store(), &keys);
    let other_process = Arc::new(
        Keyring::open(master.clone(), f.second_vault().await)
            .await
            .expect("second keyring"),
    );
    let other_store = sealed(f.second_store().await, &other_process);
    let marker = format!("marker-{}", Uuid::now_v7().simple());
    let mut streams = Vec::new();
    for tenant in ["acme", "acme", "globex"] {
        let execution = Uuid::now_v7();
        let stream = StreamId::execution(execution);
        store
            .append(&stream, 0, payload_events(execution, tenant, &marker))
            .await
            .expect("append");
        // Warm the other process's cache.
        other_store.read_stream(&stream, 0, 10).await.expect("read");
        streams.push((execution, stream));
    }

    assert!(keys.erase_execution(streams[0].0).await.expect("erase"));
    assert!(
        !keys.erase_execution(streams[0].0).await.expect("again"),
        "once"
    );
    other_process.refresh().await.expect("refresh");
    for reader in [&store, &other_store] {
        let log = reader
            .read_stream(&streams[0].1, 0, 10)
            .await
            .expect("read");
        match &log[0].event {
            Event::ExecutionStarted { input, .. } => {
                assert_eq!(input, &json!({"redacted": "erased"}))
            }
            other => panic!("{other:?}"),
        }
        match &log[1].event {
            Event::TaskFailed { error, attempt, .. } => {
                assert_eq!(error, "[redacted: erased]");
                assert_eq!(*attempt, 1, "structure stays");
            }
            other => panic!("{other:?}"),
        }
        let untouched = reader
            .read_stream(&streams[1].1, 0, 10)
            .await
            .expect("read");
        assert!(
            stored_text(&untouched).contains(&marker),
            "other executions stay"
        );
    }
    for (_, stream) in &streams {
        assert!(f.store().verify_stream(stream).await.expect("verify").valid);
    }

    let destroyed = keys.erase_tenant("acme").await.expect("erase tenant");
    assert_eq!(
        destroyed, 2,
        "the tenant key and the one live execution key"
    );
    other_process.refresh().await.expect("refresh");
    let erased = other_store
        .read_stream(&streams[1].1, 0, 10)
        .await
        .expect("read");
    assert!(!stored_text(&erased).contains(&marker));
    let globex = other_store
        .read_stream(&streams[2].1, 0, 10)
        .await
        .expect("read");
    assert!(
        stored_text(&globex).contains(&marker),
        "another tenant is untouched"
    );

    // The tenant goes on: a new execution gets a new key under a new tenant key.
    let execution = Uuid::now_v7();
    let stream = StreamId::execution(execution);
    store
        .append(&stream, 0, payload_events(execution, "acme", &marker))
        .await
        .expect("append after erasure");
    let fresh = other_store.read_stream(&stream, 0, 10).await.expect("read");
    assert!(stored_text(&fresh).contains(&marker));
}

/// Rotation re-wraps every tenant key under the new master key without touching events;
/// afterwards the new key alone opens everything, and the old key alone — or a wrong
/// key, or none — is refused at open with the key ids named.
pub async fn master_key_rotation_rewraps_tenant_keys_only<F: Fixture>(f: &F) {
    let (old, new) = (
        MasterKey::random().expect("old"),
        MasterKey::random().expect("new"),
    );
    let before = keyring(f, &MasterKeys::new(old.clone())).await;
    let store = sealed(f.store(), &before);
    let marker = format!("marker-{}", Uuid::now_v7().simple());
    let mut streams = Vec::new();
    for tenant in ["a", "b", "c"] {
        let execution = Uuid::now_v7();
        let stream = StreamId::execution(execution);
        store
            .append(&stream, 0, payload_events(execution, tenant, &marker))
            .await
            .expect("append");
        streams.push(stream);
    }
    let head = f.store().head_position().await.expect("head");
    let raw_before = stored_text(&f.store().read_all(0, 1000).await.expect("raw"));

    let during = keyring(f, &MasterKeys::new(new.clone()).with_previous(old.clone())).await;
    let mut seen = Vec::new();
    let rewrapped = during
        .rotate_master(|n| seen.push(n))
        .await
        .expect("rotate");
    assert_eq!(rewrapped, 4, "three tenants' keys and the store's own");
    assert_eq!(seen, vec![1, 2, 3, 4], "progress per key");
    assert_eq!(
        during.rotate_master(|_| {}).await.expect("again"),
        0,
        "idempotent"
    );
    let uses = f.vault().master_key_uses().await.expect("uses");
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0].master_kid, new.kid());

    assert_eq!(
        f.store().head_position().await.expect("head"),
        head,
        "no event written"
    );
    let raw_after = stored_text(&f.store().read_all(0, 1000).await.expect("raw"));
    assert_eq!(raw_before, raw_after, "events untouched");

    let after = keyring(f, &MasterKeys::new(new.clone())).await;
    let reader = sealed(f.store(), &after);
    for stream in &streams {
        let log = reader.read_stream(stream, 0, 10).await.expect("read");
        assert!(
            stored_text(&log).contains(&marker),
            "opens under the new key alone"
        );
    }

    for wrong in [
        MasterKeys::new(old),
        MasterKeys::new(MasterKey::random().expect("other")),
    ] {
        match Keyring::open(wrong, f.vault()).await {
            Err(CryptoError::UnknownMasterKey { needed, .. }) => assert_eq!(needed, new.kid()),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a keyring under a key the store does not use must not open"),
        }
    }
    let needs = Keyring::vault_needs_master_key(&*f.vault())
        .await
        .expect("needs");
    assert_eq!(
        needs.as_deref(),
        Some(new.kid()),
        "a keyless server is told which key"
    );
}

/// An altered ciphertext reads as tampered (never as other data, never an error), and
/// the chain check reports the alteration.
pub async fn a_tampered_ciphertext_reads_as_tampered<F: Fixture>(f: &F) {
    let keys = keyring(f, &MasterKeys::new(MasterKey::random().expect("key"))).await;
    let store = sealed(f.store(), &keys);
    let execution = Uuid::now_v7();
    let stream = StreamId::execution(execution);
    store
        .append(&stream, 0, payload_events(execution, "acme", "secret-ish"))
        .await
        .expect("append");
    let raw = f.store().read_stream(&stream, 0, 10).await.expect("raw");
    let (_, mut data) = raw[0].event.to_parts().expect("parts");
    let token = data["input"]["$sealed"]
        .as_str()
        .expect("sealed input")
        .to_owned();
    // Flip one character of the ciphertext (after the version and execution id).
    let mut chars: Vec<char> = token.chars().collect();
    let at = chars.len() - 5;
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    data["input"]["$sealed"] = Value::String(chars.into_iter().collect());
    f.tamper(&stream, 1, &data.to_string()).await;

    let log = store
        .read_stream(&stream, 0, 10)
        .await
        .expect("a read, not an error");
    match &log[0].event {
        Event::ExecutionStarted { input, .. } => {
            assert_eq!(input, &json!({"redacted": "tampered"}))
        }
        other => panic!("{other:?}"),
    }
    match &log[1].event {
        Event::TaskFailed { error, .. } => {
            assert_eq!(error, "declined: secret-ish", "the rest opens")
        }
        other => panic!("{other:?}"),
    }
    let verdict = f.store().verify_stream(&stream).await.expect("verify");
    assert!(!verdict.valid, "the chain check catches it too");
}

/// With a master key, secret values are sealed under their tenant's key: they open for
/// that tenant and name only, survive a master key rotation, go with the tenant's
/// erasure, and values sealed before the master key was set still open.
pub async fn secret_values_follow_their_tenants_key<F: Fixture>(f: &F) {
    use conflux_engine::secrets::{SecretCipher, StoreKeyCipher, TenantKeyCipher};
    let (old, new) = (
        MasterKey::random().expect("old"),
        MasterKey::random().expect("new"),
    );
    let store_key = StoreKeyCipher::from_key(&[9; 32]);
    let earlier = store_key
        .seal("acme", b"acme\0OLD", b"before")
        .await
        .expect("seal");
    let keys = keyring(f, &MasterKeys::new(old.clone())).await;
    let cipher = TenantKeyCipher::new(keys.clone(), store_key.clone());
    let sealed = cipher
        .seal("acme", b"acme\0TOKEN", b"hunter2")
        .await
        .expect("seal");
    assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
    assert_eq!(
        cipher
            .open("acme", b"acme\0TOKEN", &sealed)
            .await
            .expect("open"),
        b"hunter2"
    );
    assert!(
        cipher.open("acme", b"acme\0OTHER", &sealed).await.is_err(),
        "another name"
    );
    assert_eq!(
        cipher
            .open("acme", b"acme\0OLD", &earlier)
            .await
            .expect("earlier"),
        b"before"
    );
    let globex = cipher
        .seal("globex", b"globex\0TOKEN", b"other")
        .await
        .expect("seal");

    let during = keyring(f, &MasterKeys::new(new.clone()).with_previous(old)).await;
    during.rotate_master(|_| {}).await.expect("rotate");
    let after_keys = keyring(f, &MasterKeys::new(new)).await;
    let after = TenantKeyCipher::new(after_keys.clone(), store_key.clone());
    assert_eq!(
        after
            .open("acme", b"acme\0TOKEN", &sealed)
            .await
            .expect("open"),
        b"hunter2"
    );

    keys.erase_tenant("acme").await.expect("erase");
    after_keys.refresh().await.expect("another server notices");
    let err = after
        .open("acme", b"acme\0TOKEN", &sealed)
        .await
        .expect_err("erased");
    assert!(err.0.contains("erased"), "{}", err.0);
    assert_eq!(
        after
            .open("globex", b"globex\0TOKEN", &globex)
            .await
            .expect("open"),
        b"other"
    );
}

/// A sealed payload copied into another execution's event does not open there (each
/// token is bound to its execution): it reads as tampered, never as the other's data.
pub async fn a_token_copied_to_another_execution_reads_as_tampered<F: Fixture>(f: &F) {
    let keys = keyring(f, &MasterKeys::new(MasterKey::random().expect("key"))).await;
    let store = sealed(f.store(), &keys);
    let (victim, thief) = (Uuid::now_v7(), Uuid::now_v7());
    store
        .append(
            &StreamId::execution(victim),
            0,
            payload_events(victim, "acme", "victim-card"),
        )
        .await
        .expect("append");
    store
        .append(
            &StreamId::execution(thief),
            0,
            payload_events(thief, "acme", "own"),
        )
        .await
        .expect("append");
    let raw = f
        .store()
        .read_stream(&StreamId::execution(victim), 0, 1)
        .await
        .expect("raw");
    let (_, stolen) = raw[0].event.to_parts().expect("parts");
    let raw = f
        .store()
        .read_stream(&StreamId::execution(thief), 0, 1)
        .await
        .expect("raw");
    let (_, mut data) = raw[0].event.to_parts().expect("parts");
    data["input"] = stolen["input"].clone();
    f.tamper(&StreamId::execution(thief), 1, &data.to_string())
        .await;
    let log = store
        .read_stream(&StreamId::execution(thief), 0, 10)
        .await
        .expect("read");
    match &log[0].event {
        Event::ExecutionStarted { input, .. } => {
            assert_eq!(input, &json!({"redacted": "tampered"}))
        }
        other => panic!("{other:?}"),
    }
    assert!(!stored_text(&log).contains("victim-card"));
}

/// Many executions' keys created at once (as a burst of starts does, batched into one
/// statement) each get exactly one key, shared by every process; a key under an erased
/// tenant key is not stored.
pub async fn execution_keys_made_in_a_burst_are_one_each<F: Fixture>(f: &F) {
    let master = MasterKeys::new(MasterKey::random().expect("key"));
    let (a, b) = (
        keyring(f, &master).await,
        Arc::new(
            Keyring::open(master.clone(), f.second_vault().await)
                .await
                .expect("b"),
        ),
    );
    let executions: Vec<Uuid> = (0..200).map(|_| Uuid::now_v7()).collect();
    let writes = executions.iter().flat_map(|e| {
        [a.clone(), b.clone(), a.clone()]
            .map(|k| async move { (*e, k.key_for_writing("burst", *e).await) })
    });
    let results = futures::future::join_all(writes).await;
    let mut first: std::collections::HashMap<Uuid, Vec<u8>> = std::collections::HashMap::new();
    for (execution, state) in results {
        let KeyState::Live(key) = state.expect("a key") else {
            panic!("live")
        };
        let probe = key.seal(b"probe", b"x").expect("seal");
        // Every answer for one execution is the same key: each opens the others' seals.
        match first.get(&execution) {
            Some(sealed) => assert_eq!(key.open(b"probe", sealed).expect("same key"), b"x"),
            None => {
                first.insert(execution, probe);
            }
        }
    }
    assert_eq!(first.len(), 200);

    let vault = f.vault();
    let tenant = vault
        .active_tenant_key("burst")
        .await
        .expect("read")
        .expect("live");
    vault.erase_tenant("burst").await.expect("erase");
    use conflux_engine::crypto::vault::StoredExecutionKey;
    let late = StoredExecutionKey {
        execution_id: Uuid::now_v7(),
        tenant: "burst".into(),
        tenant_key_id: tenant.key_id,
        wrapped: Some(vec![1; 60]),
    };
    let stored = vault.create_execution_keys(&[late]).await.expect("batch");
    assert_eq!(stored, vec![None], "no key under an erased tenant key");
}
