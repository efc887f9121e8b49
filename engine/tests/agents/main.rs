//! The agent service without HTTP, on the real backends (Postgres + Redis task queues,
//! and the embedded SQLite store + in-memory queues), one suite instantiated per backend
//! by `agent_suite!`: registration, a poll turning a ticket into a lease, results by
//! lease, stale leases, agent keys held to their roles, tenants kept apart, and nothing
//! served while the bus is not the store's.
//!
//! The engine role is not running: each test steps the execution itself (start, then
//! one `Advance`, whose `EnqueueAgentTask` effects it enqueues as the engine would).

mod checks;
mod world;

/// Every check, once per backend: `agent_suite!(name: constructor, …; [checks])`.
macro_rules! agent_suite {
    ($($backend:ident: $setup:path),+; $checks:tt) => {
        $(agent_suite!(@backend $backend, $setup, $checks);)+
    };
    (@backend $backend:ident, $setup:path, [$($check:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let backend = $setup().await;
                    crate::checks::$check(&crate::world::World::new(&backend)).await;
                    backend.teardown().await;
                }
            )*
        }
    };
}

agent_suite!(postgres_redis: crate::world::Backend::postgres_redis, embedded: crate::world::Backend::embedded; [
    register_poll_heartbeat_complete,
    a_stale_lease_records_nothing,
    agent_keys_serve_only_their_roles,
    another_tenants_agents_and_leases_are_not_found,
    nothing_is_served_while_the_bus_is_not_the_stores,
    registrations_are_validated,
]);
