//! One conformance suite for every store/bus backend pair (see `suite.rs`), instantiated
//! by `conformance!` for Postgres + Redis and for SQLite + the in-process bus.

mod fixtures;
mod hook_store;
mod keys;
mod secret_store;
mod secrets;
mod suite;
mod usage;

macro_rules! conformance {
    ($backend:ident, $fixture:ty, [$($module:ident :: $check:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    use crate::fixtures::Fixture as _;
                    let fixture = <$fixture>::setup().await;
                    crate::$module::$check(&fixture).await;
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
                suite::concurrent_appends_have_one_winner,
                suite::many_writers_lose_nothing,
                suite::slow_transaction_is_not_skipped,
                suite::tampering_breaks_the_hash_chain,
                suite::relay_survives_crash_and_flush,
                suite::dead_consumer_entries_are_claimed,
                suite::appends_do_not_wait_for_the_bus,
                suite::lookups_find_the_right_streams,
                suite::a_bad_append_does_not_fail_its_batch,
                suite::reads_past_the_largest_position_find_nothing,
                suite::the_bus_knows_its_store,
                secrets::signing_secrets_are_made_once_and_shared,
                keys::payloads_are_sealed_in_the_log_and_opened_on_read,
                keys::data_keys_are_made_once_and_shared,
                keys::erasure_redacts_payloads_and_keeps_the_chain,
                keys::master_key_rotation_rewraps_tenant_keys_only,
                keys::a_tampered_ciphertext_reads_as_tampered,
                keys::secret_values_follow_their_tenants_key,
                keys::a_token_copied_to_another_execution_reads_as_tampered,
                keys::execution_keys_made_in_a_burst_are_one_each,
                secret_store::secret_values_are_sealed_scoped_and_managed,
                hook_store::hook_leases_cursors_and_deliveries,
                usage::usage_counters_follow_the_log,
                usage::schedules_are_counted_and_tailed,
            ]
        );
    };
}

all_checks!(postgres_redis, crate::fixtures::PgRedis);
all_checks!(sqlite_local, crate::fixtures::SqliteLocal);
