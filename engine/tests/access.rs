//! Tenants and API keys through the real stores (Postgres and the embedded SQLite):
//! issued keys authenticate with their tenant and role, revoked and expired ones do
//! not, a revocation through one process reaches another within a second, and the log
//! never holds a secret. Stream tokens minted by one process open their stream on
//! another, as their minter, nowhere else, and stop with the minting key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use conflux_engine::access::{Access, AccessError, AuthError, NewKey};
use conflux_engine::store::postgres::{PgStore, PgStoreOptions};
use conflux_engine::store::sqlite::SqliteStore;
use conflux_engine::store::EventStore;
use conflux_engine::testing::TestDatabase;
use conflux_schema::access::{Role, TenantName};
use conflux_schema::EventMetadata;
use tokio_util::sync::CancellationToken;

fn by(actor: &str) -> EventMetadata {
    EventMetadata {
        actor: Some(actor.to_owned()),
        ..EventMetadata::default()
    }
}

fn key(name: &str, tenant: &str, role: Role) -> NewKey {
    NewKey {
        name: name.to_owned(),
        tenant: TenantName::parse(tenant).expect("tenant"),
        role,
        agent_roles: if role == Role::Agent {
            vec!["picker".into()]
        } else {
            Vec::new()
        },
        expires_at: None,
    }
}

async fn keys_and_revocation(store: Arc<dyn EventStore>, second: Arc<dyn EventStore>) {
    const ADMIN: &str = "an-admin-token-of-at-least-32-characters";
    let access = Access::open(store.clone(), Some(ADMIN.to_owned()))
        .await
        .expect("open");
    assert_eq!(access.authenticate(ADMIN).expect("admin").actor, "admin");
    assert_eq!(access.authenticate(""), Err(AuthError::Missing));
    assert_eq!(access.authenticate("nope"), Err(AuthError::Unknown));

    // Tenants: default exists; a new one once.
    let acme = TenantName::parse("acme").expect("tenant");
    access
        .create_tenant(acme.clone(), by("admin"))
        .await
        .expect("create");
    assert!(matches!(
        access.create_tenant(acme.clone(), by("admin")).await,
        Err(AccessError::Conflict(_))
    ));
    assert!(matches!(
        access
            .create_key(key("k", "ghost", Role::Viewer), by("admin"))
            .await,
        Err(AccessError::NotFound(_))
    ));
    assert!(matches!(
        access
            .create_key(
                NewKey {
                    agent_roles: Vec::new(),
                    ..key("a", "acme", Role::Agent)
                },
                by("admin")
            )
            .await,
        Err(AccessError::Invalid(_))
    ));

    let (record, token) = access
        .create_key(key("ci", "acme", Role::Developer), by("admin"))
        .await
        .expect("key");
    let who = access.authenticate(&token).expect("the new key works");
    assert_eq!(who.tenant, acme);
    assert_eq!(who.role, Some(Role::Developer));
    assert_eq!(who.actor, format!("key:{}", record.key_id.simple()));
    let (_, agent_token) = access
        .create_key(key("bot", "acme", Role::Agent), by("admin"))
        .await
        .expect("agent key");
    let bot = access.authenticate(&agent_token).expect("agent");
    assert!(bot.may_serve("picker") && !bot.may_serve("packer"));
    let mut wrong = token.clone();
    wrong.pop();
    wrong.push(if token.ends_with('0') { '1' } else { '0' });
    assert_eq!(access.authenticate(&wrong), Err(AuthError::Unknown));

    // Another process on the same store learns of the key, and of its revocation
    // within a second.
    let other = Access::open(second, None).await.expect("second");
    assert!(other.authenticate(&token).is_ok());
    assert_eq!(
        other.authenticate(ADMIN),
        Err(AuthError::Unknown),
        "no admin token there"
    );
    let stop = CancellationToken::new();
    tokio::spawn(other.clone().run(stop.clone()));
    let mut revocations = other.revocations();
    let revoked_at = Instant::now();
    access
        .revoke_key(
            record.key_id,
            Some(&TenantName::default_tenant()),
            by("admin"),
        )
        .await
        .expect_err("another tenant's key is not found");
    access
        .revoke_key(record.key_id, Some(&acme), by("admin"))
        .await
        .expect("revoke");
    assert_eq!(access.authenticate(&token), Err(AuthError::Revoked));
    tokio::time::timeout(Duration::from_secs(1), revocations.changed())
        .await
        .expect("the other process saw the revocation within a second")
        .expect("watch");
    assert_eq!(other.authenticate(&token), Err(AuthError::Revoked));
    assert!(revoked_at.elapsed() < Duration::from_secs(1));
    stop.cancel();

    // Expiry.
    let soon = NewKey {
        expires_at: Some(Utc::now() + chrono::Duration::milliseconds(300)),
        ..key("short", "acme", Role::Viewer)
    };
    let (_, short) = access.create_key(soon, by("admin")).await.expect("key");
    assert!(access.authenticate(&short).is_ok());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(access.authenticate(&short), Err(AuthError::Expired));

    // The log keeps hashes, never secrets, and records who acted.
    let events = store.read_all(0, 1000).await.expect("read");
    let text = serde_json::to_string(&events).expect("json");
    for t in [&token, &agent_token, &short] {
        let secret = t.rsplit('_').next().expect("secret");
        assert!(!text.contains(secret), "a secret is in the log");
    }
    assert!(events
        .iter()
        .all(|e| e.metadata.actor.as_deref() == Some("admin")));
    assert_eq!(access.keys(Some(&acme)).len(), 3);
    assert_eq!(access.tenants().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_work_and_revocation_spreads_on_postgres() {
    let db = TestDatabase::create().await;
    let open = || async {
        Arc::new(
            PgStore::connect(&db.url, &PgStoreOptions::default())
                .await
                .expect("store"),
        ) as Arc<dyn EventStore>
    };
    keys_and_revocation(open().await, open().await).await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_work_and_revocation_spreads_embedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let first = Arc::new(SqliteStore::open(&path).await.expect("store")) as Arc<dyn EventStore>;
    let second = Arc::new(SqliteStore::open(&path).await.expect("store")) as Arc<dyn EventStore>;
    keys_and_revocation(first, second).await;
}

/// Stream tokens through two processes of one store: minted by one, they open their
/// stream on the other as their minter (tenant, role, actor, key), nowhere else, and
/// not after the minting key is revoked; on no route do they count as a bearer token.
async fn stream_tokens_across_processes(store: Arc<dyn EventStore>, second: Arc<dyn EventStore>) {
    const STREAM: &str = "/ws/executions/0190f5c4-7a2b-7cc3-9d1e-5b8a9c0d1e2f";
    let access = Access::open(store.clone(), None).await.expect("open");
    let other = Access::open(second, None).await.expect("open");
    let acme = TenantName::parse("acme").expect("tenant");
    access
        .create_tenant(acme.clone(), by("admin"))
        .await
        .expect("tenant");
    let (record, token) = access
        .create_key(key("watcher", "acme", Role::Viewer), by("admin"))
        .await
        .expect("key");
    other.refresh().await.expect("refresh");
    let minter = access.authenticate(&token).expect("the key");
    let minted = access
        .mint_stream_token(&minter, STREAM)
        .expect("a stream token");
    let ttl = minted.expires_at - Utc::now();
    assert!(ttl <= chrono::Duration::seconds(60) && ttl > chrono::Duration::seconds(50));
    let who = other
        .authenticate_for(&minted.token, Some(STREAM))
        .expect("the other process verifies it: one secret per store");
    assert!(
        who.expires_at.is_some(),
        "a stream token's caller expires with it"
    );
    assert_eq!(
        conflux_engine::access::Principal {
            expires_at: None,
            ..who.clone()
        },
        minter
    );
    assert_eq!(who.key_id, Some(record.key_id));
    for elsewhere in [
        Some("/ws/executions/0190f5c4-7a2b-7cc3-9d1e-5b8a9c0d1e30"),
        Some("/ws/workflows/0190f5c4-7a2b-7cc3-9d1e-5b8a9c0d1e2f"),
        None,
    ] {
        assert_eq!(
            other.authenticate_for(&minted.token, elsewhere),
            Err(AuthError::Unknown),
            "{elsewhere:?}"
        );
    }
    assert_eq!(other.authenticate(&minted.token), Err(AuthError::Unknown));
    // Any other token is the ordinary one, wherever it is used.
    assert_eq!(other.authenticate_for(&token, Some(STREAM)), Ok(minter));

    access
        .revoke_key(record.key_id, None, by("admin"))
        .await
        .expect("revoke");
    other.refresh().await.expect("refresh");
    for process in [&access, &other] {
        assert_eq!(
            process.authenticate_for(&minted.token, Some(STREAM)),
            Err(AuthError::Revoked)
        );
    }

    // Short-lived: past its time, refused as expired.
    let quick = Access::open(store, None)
        .await
        .expect("open")
        .with_stream_token_ttl(Duration::from_secs(1));
    let admin = conflux_engine::access::Principal::system_admin();
    let brief = quick.mint_stream_token(&admin, STREAM).expect("minted");
    assert!(quick.authenticate_for(&brief.token, Some(STREAM)).is_ok());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        quick.authenticate_for(&brief.token, Some(STREAM)),
        Err(AuthError::Expired)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_tokens_verify_across_processes_on_postgres() {
    let db = TestDatabase::create().await;
    let open = || async {
        Arc::new(
            PgStore::connect(&db.url, &PgStoreOptions::default())
                .await
                .expect("store"),
        ) as Arc<dyn EventStore>
    };
    stream_tokens_across_processes(open().await, open().await).await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_tokens_verify_across_processes_embedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let first = Arc::new(SqliteStore::open(&path).await.expect("store")) as Arc<dyn EventStore>;
    let second = Arc::new(SqliteStore::open(&path).await.expect("store")) as Arc<dyn EventStore>;
    stream_tokens_across_processes(first, second).await;
}
