//! Signing secrets: the same for every process of one store, made once.

use crate::fixtures::Fixture;

/// A named secret is 32 random bytes made once: processes that ask for it at the same
/// time (this store and a second one on the same database) all get the same bytes, so
/// does every later ask; another name has other bytes; `Debug` never shows them.
pub async fn signing_secrets_are_made_once_and_shared<F: Fixture>(f: &F) {
    let (store, second) = (f.store(), f.second_store().await);
    let asks = (0..8).map(|i| {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            second.clone()
        };
        async move { s.signing_secret("raced").await }
    });
    let answers = futures::future::join_all(asks).await;
    let raced = answers[0].clone().expect("a secret");
    for answer in answers {
        assert_eq!(answer.expect("a secret"), raced, "one secret per name");
    }
    assert_ne!(raced.expose(), &[0u8; 32]);

    let tokens = store.signing_secret("stream-tokens").await.expect("secret");
    assert_ne!(tokens, raced, "each name has its own");
    assert_eq!(
        second.signing_secret("stream-tokens").await.expect("again"),
        tokens
    );
    assert_eq!(
        f.second_store()
            .await
            .signing_secret("stream-tokens")
            .await
            .expect("after a restart"),
        tokens
    );
    assert_eq!(format!("{tokens:?}"), "SigningSecret(***)");
}
