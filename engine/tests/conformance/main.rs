//! One conformance suite for every store/bus backend pair (see `suite.rs`), instantiated
//! by `conformance!` for Postgres + Redis and for SQLite + the in-process bus.

mod fixtures;
mod suite;

macro_rules! conformance {
    ($backend:ident, $fixture:ty, [$($check:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    use crate::fixtures::Fixture as _;
                    let fixture = <$fixture>::setup().await;
                    crate::suite::$check(&fixture).await;
                    fixture.teardown().await;
                }
            )*
        }
    };
}

macro_rules! all_checks {
    ($backend:ident, $fixture:ty) => {
        conformance!(
            $backend,
            $fixture,
            [
                concurrent_appends_have_one_winner,
                many_writers_lose_nothing,
                slow_transaction_is_not_skipped,
                tampering_breaks_the_hash_chain,
                relay_survives_crash_and_flush,
                dead_consumer_entries_are_claimed,
                appends_do_not_wait_for_the_bus,
                lookups_find_the_right_streams,
                a_bad_append_does_not_fail_its_batch,
                reads_past_the_largest_position_find_nothing,
                the_bus_knows_its_store,
            ]
        );
    };
}

all_checks!(postgres_redis, crate::fixtures::PgRedis);
all_checks!(sqlite_local, crate::fixtures::SqliteLocal);
