//! Hooks' delivery state: one contract for both backends — one lease holder at a time
//! (taken over only once it ran out), a cursor only its holder moves and never back,
//! delivery records written only by the holder, listed newest first, and forgotten
//! with their hook.

use chrono::{DateTime, Utc};
use conflux_engine::hooks::{DeliveryRecord, HookRow};
use conflux_schema::api::DeliveryState;
use uuid::Uuid;

use crate::fixtures::Fixture;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("a time")
}

fn delivery(hook: Uuid, position: u64, state: DeliveryState, attempts: u32) -> DeliveryRecord {
    DeliveryRecord {
        hook_id: hook,
        position,
        event_id: Uuid::now_v7(),
        event_type: "ExecutionCompleted".into(),
        state,
        attempts,
        last_status: Some(500),
        last_error: Some("the receiver answered 500".into()),
        created_at: at(position as i64),
        updated_at: at(position as i64 + 1),
    }
}

pub async fn hook_leases_cursors_and_deliveries<F: Fixture>(f: &F) {
    let store = f.hook_store();
    let hook = Uuid::now_v7();
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    assert_eq!(
        store.acquire(hook, a, 0, 10).await.expect("acquire"),
        None,
        "no row"
    );
    store
        .insert(&HookRow {
            hook_id: hook,
            tenant: "acme".into(),
            sealed_secret: vec![1, 2, 3],
            cursor: 41,
            created_at: at(0),
        })
        .await
        .expect("insert");
    assert!(
        store
            .insert(&HookRow {
                hook_id: hook,
                tenant: "acme".into(),
                sealed_secret: vec![],
                cursor: 0,
                created_at: at(0),
            })
            .await
            .is_err(),
        "one row per hook"
    );
    assert_eq!(
        store.sealed_secret(hook).await.expect("secret"),
        Some(vec![1, 2, 3])
    );
    assert_eq!(
        store.sealed_secret(Uuid::now_v7()).await.expect("secret"),
        None
    );

    // One holder at a time; the holder takes it again; another only once it ran out.
    assert_eq!(
        store.acquire(hook, a, 1_000, 2_000).await.expect("acquire"),
        Some(41)
    );
    assert_eq!(
        store.acquire(hook, b, 1_500, 2_500).await.expect("acquire"),
        None
    );
    assert_eq!(
        store.acquire(hook, a, 1_500, 3_000).await.expect("acquire"),
        Some(41)
    );
    assert!(store.renew(hook, a, 4_000).await.expect("renew"));
    assert!(
        !store.renew(hook, b, 4_000).await.expect("renew"),
        "not b's"
    );
    assert_eq!(
        store.acquire(hook, b, 3_999, 5_000).await.expect("acquire"),
        None,
        "renewed"
    );

    // Only the holder moves the cursor, and never back.
    assert!(store.advance(hook, a, 50).await.expect("advance"));
    assert!(store.advance(hook, a, 45).await.expect("advance"));
    assert!(
        !store.advance(hook, b, 60).await.expect("advance"),
        "not b's"
    );

    // Only the holder records; a record is replaced by the next for its position.
    assert!(store
        .record(&delivery(hook, 43, DeliveryState::Pending, 1), a)
        .await
        .expect("record"));
    assert!(!store
        .record(&delivery(hook, 44, DeliveryState::Pending, 1), b)
        .await
        .expect("record"));
    let done = DeliveryRecord {
        last_status: Some(204),
        last_error: None,
        ..delivery(hook, 43, DeliveryState::Delivered, 2)
    };
    assert!(store.record(&done, a).await.expect("record"));
    let read = store
        .delivery(hook, 43)
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(read.state, DeliveryState::Delivered);
    assert_eq!(read.attempts, 2);
    assert_eq!(read.last_status, Some(204));
    assert_eq!(read.last_error, None);
    assert_eq!(read.created_at, at(43), "the first attempt's time stays");
    assert_eq!(read.updated_at, at(44));
    assert_eq!(store.delivery(hook, 44).await.expect("read"), None);

    // The lease runs out: another process takes it over, at the cursor a moved.
    assert_eq!(
        store.acquire(hook, b, 4_001, 6_000).await.expect("acquire"),
        Some(50)
    );
    assert!(
        !store.advance(hook, a, 70).await.expect("advance"),
        "a lost it"
    );
    assert!(store
        .record(&delivery(hook, 48, DeliveryState::DeadLettered, 8), b)
        .await
        .expect("record"));
    assert!(store
        .record(&delivery(hook, 46, DeliveryState::Pending, 3), b)
        .await
        .expect("record"));
    let all = store.deliveries(hook, None, 10).await.expect("list");
    assert_eq!(
        all.iter().map(|d| d.position).collect::<Vec<_>>(),
        vec![48, 46, 43]
    );
    assert_eq!(all[0].state, DeliveryState::DeadLettered);
    let page = store.deliveries(hook, Some(48), 1).await.expect("list");
    assert_eq!(
        page.iter().map(|d| d.position).collect::<Vec<_>>(),
        vec![46]
    );

    // Released: free at once.
    store
        .release(hook, a)
        .await
        .expect("release by a non-holder does nothing");
    assert_eq!(
        store.acquire(hook, a, 4_002, 7_000).await.expect("acquire"),
        None
    );
    store.release(hook, b).await.expect("release");
    assert_eq!(
        store.acquire(hook, a, 4_003, 7_000).await.expect("acquire"),
        Some(50)
    );

    // Removed: the row, its secret and its deliveries are gone.
    store.remove(hook).await.expect("remove");
    assert_eq!(store.sealed_secret(hook).await.expect("secret"), None);
    assert!(store
        .deliveries(hook, None, 10)
        .await
        .expect("list")
        .is_empty());
    assert_eq!(
        store.acquire(hook, a, 5_000, 9_000).await.expect("acquire"),
        None
    );
}
