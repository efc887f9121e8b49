//! Secret values (`${secrets.NAME}`): one store contract for every backend, checked
//! through the `Secrets` service with the store-keyed cipher.

use std::sync::Arc;

use conflux_engine::secrets::{SecretError, SecretName, SecretValue, Secrets, StoreKeyCipher};

use crate::fixtures::Fixture;

fn name(raw: &str) -> SecretName {
    SecretName::parse(raw).expect("name")
}

fn value(raw: &str) -> SecretValue {
    SecretValue::parse(raw.to_owned()).expect("value")
}

/// Create refuses an existing name, rotate and delete a missing one; lists are per
/// tenant, sorted, without values; values are stored sealed (never the plaintext, a
/// fresh nonce per write) and open only for their own tenant and name; a second process
/// on the same database reads what the first wrote.
pub async fn secret_values_are_sealed_scoped_and_managed<F: Fixture>(f: &F) {
    let store = f.store();
    let cipher = Arc::new(StoreKeyCipher::of(&*store).await.expect("cipher"));
    let secrets = Secrets::new(f.secret_store(), cipher);

    let created = secrets
        .create("acme", &name("TOKEN"), &value("hunter2-token"))
        .await
        .expect("create");
    assert_eq!(created.name, "TOKEN");
    assert_eq!(created.created_at, created.updated_at);
    assert!(matches!(
        secrets.create("acme", &name("TOKEN"), &value("other")).await,
        Err(SecretError::AlreadyExists(n)) if n == "TOKEN"
    ));
    secrets
        .create("acme", &name("A_first"), &value("a"))
        .await
        .expect("create");
    secrets
        .create("other", &name("TOKEN"), &value("other-tenant"))
        .await
        .expect("the same name in another tenant");

    let listed = secrets.list("acme").await.expect("list");
    let names: Vec<_> = listed.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["A_first", "TOKEN"]);
    assert!(secrets.list("nobody").await.expect("list").is_empty());

    let sealed = f
        .secret_store()
        .get("acme", "TOKEN")
        .await
        .expect("get")
        .expect("stored");
    assert!(
        !sealed.windows(7).any(|w| w == b"hunter2"),
        "the value is stored sealed"
    );
    assert_eq!(
        secrets.value("acme", "TOKEN").await.expect("value"),
        Some(value("hunter2-token"))
    );
    assert_eq!(
        secrets.value("other", "TOKEN").await.expect("value"),
        Some(value("other-tenant"))
    );
    assert_eq!(secrets.value("acme", "NOPE").await.expect("value"), None);

    // A sealed value moved to another row does not open there.
    f.secret_store()
        .insert("acme", &name("MOVED"), &sealed, chrono::Utc::now())
        .await
        .expect("insert raw");
    assert!(matches!(
        secrets.value("acme", "MOVED").await,
        Err(SecretError::Cipher { .. })
    ));

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let rotated = secrets
        .rotate("acme", &name("TOKEN"), &value("rotated-value"))
        .await
        .expect("rotate");
    assert_eq!(rotated.created_at, created.created_at);
    assert!(rotated.updated_at > created.updated_at);
    let resealed = f.secret_store().get("acme", "TOKEN").await.expect("get");
    assert_ne!(resealed, Some(sealed));
    assert!(matches!(
        secrets.rotate("acme", &name("NOPE"), &value("x")).await,
        Err(SecretError::NotFound(_))
    ));

    // Another process on the same database: the same key, the same values.
    let second = f.second_store().await;
    let again = Secrets::new(
        f.secret_store(),
        Arc::new(StoreKeyCipher::of(&*second).await.expect("cipher")),
    );
    assert_eq!(
        again.value("acme", "TOKEN").await.expect("value"),
        Some(value("rotated-value"))
    );

    secrets
        .delete("acme", &name("TOKEN"))
        .await
        .expect("delete");
    assert!(matches!(
        secrets.delete("acme", &name("TOKEN")).await,
        Err(SecretError::NotFound(_))
    ));
    assert_eq!(secrets.value("acme", "TOKEN").await.expect("value"), None);
    assert_eq!(
        secrets
            .missing("acme", ["TOKEN", "A_first", "TOKEN"])
            .await
            .expect("missing"),
        ["TOKEN"]
    );
    assert!(secrets
        .value("other", "TOKEN")
        .await
        .expect("value")
        .is_some());
    assert_eq!(format!("{:?}", value("hunter2")), "SecretValue(***)");
}
