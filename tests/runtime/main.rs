//! End-to-end tests of the runtime: the real server (HTTP API, engine, relay) started
//! in-process, driven over HTTP only, by test agents and against a local HTTP service.
//!
//! Each scenario is written once and runs in both modes: Postgres + Redis (a fresh
//! database and Redis prefix per test) and embedded (SQLite in a temporary directory,
//! in-process bus and queues). Every scenario asserts on the final execution state and
//! on the event log. Together they prove that executions run in dependency order, pass
//! data with its types, retry and fail as their policies say, time out silent agents,
//! obey pause, resume and cancel, compensate in reverse, start once per idempotency key,
//! and reject bad input without changing anything; and that two engines on one
//! database complete every task exactly once.
//!
//! # Layout
//! - `harness`: `TestServer` (start, stop, HTTP helpers, waits, the event `Log`).
//! - `agent` (in `tests/support`): the HTTP-only test agent.
//! - `auth` (in `tests/support`): the token every request carries.
//! - `target`: the local HTTP service `http` tasks call.
//! - `access`: tokens, roles and keys.
//! - `stream_tokens`: short-lived tokens that open one live stream.
//! - `jwt`: the identity provider's JWTs, against a JWKS the test writes.
//! - `oversized`: 413 answers reach a client that is still sending (raw TCP).
//! - `fairness`: one tenant's backlog does not hold back another tenant's first task.
//! - `tenants`: two tenants never cross; the access matrix (every route × role × own
//!   or another tenant); `upgrade`: a store from before tenants upgrades in place.
//! - `secrets`: `${secrets.NAME}` end to end; `raw_scan`: where a string is stored
//!   (tables, SQLite files, Redis keys, the log), for the proof that a secret's value
//!   is nowhere at rest.
//! - `schedules`: workflows on a cron, one execution per tick, pause/resume/delete, the
//!   `schedules` quota.
//! - `quotas`: per-tenant quotas and policies; `egress`: the egress policy, the
//!   operator's and a tenant's own.
//! - `hooks`: webhooks — signed, complete, in-order deliveries through failures and a
//!   restart, dead-lettered deliveries, bad input refused with nothing recorded.
//! - `conformance`: every documented operation answers with a documented status and a
//!   body that validates against its documented schema.
//! - `control_flow`: switches, conditions, trigger rules, maps, the default deadline.
//! - `waits`: the waiting kinds (signals, approvals) over HTTP and the WebSocket.
//! - `fleet`: the agent registry: liveness, filters, drain, deregistration.
//! - `budgets`: usage reported by agents, budgets that stop an execution.
//! - `dead_letters`: tasks that failed their execution, listed, redriven, acknowledged.
//! - `task_hooks`: tasks' `pre`/`post` hooks: annotations, vetoes, failing hooks.
//! - `children`: sub-workflows: outputs, pause and cancel reaching children, failures,
//!   refused definitions, the depth limit.
//! - `patterns`: orchestration patterns created, run by the Python agent, streamed and
//!   audited; bad parameters refused.
//! - `flow`, `failures`, `control`, `saga`, `input`, `junk`, `strict`, `scale`: the
//!   scenarios.

mod access;
#[path = "../support/agent.rs"]
mod agent;
#[allow(dead_code)]
#[path = "../support/auth.rs"]
mod auth;
mod budgets;
mod capacity;
mod children;
mod concurrency;
mod conformance;
mod control;
mod control_flow;
mod dead_letters;
mod egress;
mod erasure;
mod failures;
mod fairness;
mod fleet;
mod flow;
mod harness;
mod hook_receiver;
mod hooks;
mod input;
mod junk;
mod jwt;
mod live;
mod matrix;
mod outage;
mod oversized;
mod patterns;
mod priority;
mod projection;
mod proxy;
mod query_params;
mod quotas;
mod rates;
mod raw_scan;
mod revocation;
mod routing;
mod saga;
mod scale;
mod schedules;
mod secrets;
#[allow(dead_code)]
#[path = "../support/raw_scan.rs"]
mod stored;
mod stream_tokens;
mod strict;
mod target;
mod task_hooks;
mod tenants;
mod upgrade;
mod visibility;
mod waits;
mod ws_load;

/// Instantiates each scenario for one mode: a fresh server, the scenario, a clean stop.
macro_rules! scenarios {
    ($mode_mod:ident, $mode:expr, [$($module:ident :: $scenario:ident),* $(,)?]) => {
        mod $mode_mod {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let server = crate::harness::TestServer::start($mode).await;
                    crate::$module::$scenario(&server).await;
                    server.stop().await;
                }
            )*
        }
    };
}

/// Every scenario, in one mode.
macro_rules! all_scenarios {
    ($mode_mod:ident, $mode:expr) => {
        scenarios!(
            $mode_mod,
            $mode,
            [
                access::tokens_are_required,
                access::roles_get_their_routes,
                access::keys_are_managed_and_events_name_their_actor,
                access::agent_keys_serve_only_their_roles,
                tenants::two_tenants_never_cross,
                matrix::every_role_gets_its_status_on_every_route,
                conformance::answers_match_the_document,
                stream_tokens::stream_tokens_open_one_stream,
                stream_tokens::stream_tokens_are_scoped_to_their_tenant,
                flow::chain_runs_in_order,
                flow::diamond_joins_after_every_branch,
                flow::data_flows_with_types,
                flow::idempotent_execute,
                failures::http_retries_5xx_not_4xx,
                failures::agent_results_and_failures,
                failures::silent_agent_times_out_and_is_retried,
                failures::http_nul_characters_fail_cleanly,
                control::pause_holds_back_new_work,
                control::pause_holds_back_retries,
                control::cancel_makes_the_lease_stale,
                control::cancel_races_with_completion,
                control::workflow_deadline_fails_the_execution,
                control::workflow_pause_applies_to_every_execution,
                control_flow::a_switch_and_conditions_choose_what_runs,
                control_flow::bad_conditions_are_refused,
                control_flow::a_condition_that_fails_at_run_time_fails_the_task,
                control_flow::a_planner_fans_out_to_a_map_and_a_reducer,
                control_flow::a_wide_map_completes_in_order,
                control_flow::bad_maps_are_refused,
                saga::compensation_runs_in_reverse,
                input::bad_requests_are_rejected,
                oversized::oversized_bodies_get_their_413_on_keep_alive,
                junk::junk_bodies_are_rejected_cleanly,
                strict::unknown_fields_are_rejected,
                live::live_stream_is_exactly_the_log,
                live::many_clients_see_the_same_events,
                live::unknown_executions_are_closed_with_4404,
                live::workflow_stream_is_exactly_the_workflow_log,
                live::workflow_definition_and_status,
                ws_load::hundred_clients_see_exactly_the_log,
                query_params::bad_query_parameters_are_json_400s,
                query_params::bad_command_parameters_are_json_400s,
                query_params::undecodable_path_ids_are_json_404s,
                projection::rebuilt_read_models_equal_live,
                projection::agent_results_are_rebuilt_from_the_log,
                secrets::secrets_are_managed_by_their_tenant,
                secrets::unknown_secrets_are_refused_at_create,
                secrets::http_tasks_send_values_the_log_never_holds,
                secrets::agents_receive_values_in_their_poll_only,
                secrets::a_deleted_secret_fails_its_task_for_good,
                quotas::every_quota_refuses_and_records_nothing,
                quotas::policies_are_the_system_administrators,
                waits::signals_arrive_before_and_after_their_task,
                waits::bad_signals_change_nothing,
                waits::two_person_approval,
                children::a_child_workflow_runs_as_a_task,
                patterns::pattern_supervisor_loops_until_accepted,
                patterns::pattern_hierarchical_delegates_to_teams,
                patterns::pattern_handoff_follows_each_next_role,
                patterns::pattern_swarm_votes,
                patterns::pattern_network_exchanges_signals,
                patterns::pattern_parameters_are_checked,
                patterns::pattern_over_quota_creates_nothing,
                children::a_parent_with_two_children_is_cancelled_mid_run,
                children::a_failing_child_fails_its_task,
                children::bad_sub_workflows_are_refused,
                budgets::a_budget_stops_an_execution_that_spends_past_it,
                budgets::bad_budgets_and_usage_are_refused,
                fleet::the_fleet_is_listed_with_liveness,
                fleet::a_drained_agent_takes_nothing_new,
                fleet::a_deregistered_agent_s_work_moves_on,
                fleet::an_agent_never_holds_more_than_its_capacity,
                fleet::tasks_requiring_capabilities_go_to_agents_that_have_them,
                routing::the_best_scored_waiting_agent_gets_the_task,
                routing::a_ticket_taken_by_a_worse_agent_is_handed_to_the_best,
                routing::bad_routing_weights_are_refused,
                priority::higher_priorities_are_leased_first,
                priority::bad_priorities_are_refused,
                rates::agent_leases_wait_for_their_tokens,
                rates::bad_rate_limits_are_refused,
                concurrency::at_most_max_running_per_key,
                concurrency::cancel_strategies_cancel_exactly_the_right_ones,
                concurrency::bad_concurrency_is_refused,
                dead_letters::a_dead_letter_is_redriven_to_completion,
                dead_letters::an_acknowledged_dead_letter_is_closed_and_junk_is_refused,
                dead_letters::a_redrive_waits_for_a_concurrency_slot,
                task_hooks::hooks_annotate_veto_and_fail_attempts,
                task_hooks::a_pre_veto_keeps_the_task_from_agents_and_a_failing_hook_is_retried,
            ]
        );
    };
}

all_scenarios!(postgres_redis, crate::harness::Mode::PostgresRedis);
all_scenarios!(embedded, crate::harness::Mode::Embedded);
all_scenarios!(sealed, crate::harness::Mode::Sealed);

/// A scenario on a server whose configuration `tune` changed, in the Postgres + Redis
/// and the embedded modes: `<scenario>::postgres_redis` and `<scenario>::embedded`.
macro_rules! tuned_scenario {
    ($(#[$doc:meta])* $module:ident :: $scenario:ident, $tune:expr) => {
        $(#[$doc])*
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_redis() {
                let mode = crate::harness::Mode::PostgresRedis;
                let server = crate::harness::TestServer::start_tuned(mode, $tune).await;
                crate::$module::$scenario(&server).await;
                server.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                let mode = crate::harness::Mode::Embedded;
                let server = crate::harness::TestServer::start_tuned(mode, $tune).await;
                crate::$module::$scenario(&server).await;
                server.stop().await;
            }
        }
    };
}

tuned_scenario!(
    /// The default attempt deadline, on a server configured with one second.
    control_flow::a_silent_agent_meets_the_default_deadline,
    |c: &mut conflux::config::Config| c.default_task_timeout_seconds = 1
);
tuned_scenario!(
    /// Agent liveness on a server whose agents go stale after 1 s and offline after 2 s.
    fleet::liveness_goes_stale_then_offline,
    |c: &mut conflux::config::Config| {
        c.agent_stale_after_seconds = 1;
        c.agent_offline_after_seconds = 2;
    }
);
tuned_scenario!(
    /// The workflow depth limit, on a server configured with a depth of one.
    children::nesting_past_the_depth_limit_fails,
    |c: &mut conflux::config::Config| c.max_workflow_depth = 1
);

/// A child's end that its parent never heard is reported when an engine starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_a_child_that_ended_unheard_is_reported_on_start() {
    children::a_child_that_ended_unheard_is_reported_on_start(harness::Mode::PostgresRedis).await;
}

/// The same in the embedded mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_child_that_ended_unheard_is_reported_on_start() {
    children::a_child_that_ended_unheard_is_reported_on_start(harness::Mode::Embedded).await;
}

/// The raw-bytes proof: a secret's value is in no table, Redis key or log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_secret_values_are_nowhere_at_rest() {
    secrets::secret_values_are_nowhere_at_rest(harness::Mode::PostgresRedis).await;
}

/// The same in the embedded mode: in no SQLite file (`-wal` included) or log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_secret_values_are_nowhere_at_rest() {
    secrets::secret_values_are_nowhere_at_rest(harness::Mode::Embedded).await;
}

/// With encryption at rest, neither secret values nor payloads are stored in plain text
/// (Postgres tables, Redis keys, the server's log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_secret_values_and_payloads_are_nowhere_at_rest() {
    secrets::secret_values_are_nowhere_at_rest(harness::Mode::Sealed).await;
}

/// A schedule firing every second: one execution per tick (Postgres + Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_a_schedule_starts_one_execution_per_tick() {
    let server = harness::TestServer::start(harness::Mode::PostgresRedis).await;
    schedules::a_schedule_starts_one_execution_per_tick(&server).await;
    server.stop().await;
}

/// The same in the embedded mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_schedule_starts_one_execution_per_tick() {
    let server = harness::TestServer::start(harness::Mode::Embedded).await;
    schedules::a_schedule_starts_one_execution_per_tick(&server).await;
    server.stop().await;
}

/// The `schedules` quota, and schedules are their tenant's (both backends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_schedules_are_counted_by_the_quota() {
    let server = harness::TestServer::start(harness::Mode::PostgresRedis).await;
    schedules::schedules_are_counted_by_the_quota(&server).await;
    server.stop().await;
}

/// The same in the embedded mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_schedules_are_counted_by_the_quota() {
    let server = harness::TestServer::start(harness::Mode::Embedded).await;
    schedules::schedules_are_counted_by_the_quota(&server).await;
    server.stop().await;
}

/// Fair shares between tenants, with an engine of small rounds (both backends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_a_backlog_does_not_hold_back_another_tenant() {
    fairness::a_backlog_does_not_hold_back_another_tenant(harness::Mode::PostgresRedis).await;
}

/// The same in the embedded mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_backlog_does_not_hold_back_another_tenant() {
    fairness::a_backlog_does_not_hold_back_another_tenant(harness::Mode::Embedded).await;
}

/// Scaling out needs a shared database and bus: Postgres + Redis only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_two_engines_complete_everything_once() {
    scale::two_engines_complete_everything_once().await;
}

/// A database outage needs a database: Postgres + Redis only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_results_survive_a_store_outage() {
    outage::results_survive_a_store_outage().await;
}

/// Handing work over needs a second server on the same backends: Postgres + Redis only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_a_stopping_engine_hands_over_its_work() {
    scale::a_stopping_engine_hands_over_its_work().await;
}

/// A dead engine's started built-in is taken over by a running engine's sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_an_abandoned_execution_is_taken_over() {
    scale::an_abandoned_execution_is_taken_over(harness::Mode::PostgresRedis).await;
}

/// The same in the embedded mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_an_abandoned_execution_is_taken_over() {
    scale::an_abandoned_execution_is_taken_over(harness::Mode::Embedded).await;
}

/// A revocation through one server reaches another on the same store: Postgres + Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_revocation_reaches_every_server_within_a_second() {
    revocation::revocation_reaches_every_server_within_a_second().await;
}

/// A stream token's lifetime is configured per server: its own server in each mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_stream_tokens_expire() {
    stream_tokens::stream_tokens_expire(harness::Mode::PostgresRedis).await;
}

/// The same in the embedded mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_stream_tokens_expire() {
    stream_tokens::stream_tokens_expire(harness::Mode::Embedded).await;
}

/// A token minted on one server opens its stream on another: Postgres + Redis only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_stream_tokens_work_on_every_server() {
    stream_tokens::stream_tokens_work_on_every_server().await;
}

/// The identity provider's JWTs over HTTP (a server configured with its JWKS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_jwts_end_to_end() {
    jwt::jwts_end_to_end(harness::Mode::PostgresRedis).await;
}

/// The same in the embedded mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_jwts_end_to_end() {
    jwt::jwts_end_to_end(harness::Mode::Embedded).await;
}

/// A master key for a server of this test alone.
fn master_key() -> String {
    conflux_engine::crypto::MasterKey::random()
        .expect("a master key")
        .to_base64()
}

/// Erasure on Postgres + Redis with encryption at rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_erasure_redacts_everywhere_and_keeps_the_chain() {
    let server = harness::TestServer::start(harness::Mode::Sealed).await;
    erasure::erasure_redacts_everywhere_and_keeps_the_chain(&server).await;
    server.stop().await;
}

/// Erasure on the embedded store with encryption at rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sealed_erasure_redacts_everywhere_and_keeps_the_chain() {
    let server = harness::TestServer::start_tuned(harness::Mode::Embedded, |c| {
        c.master_key = Some(master_key().into())
    })
    .await;
    erasure::erasure_redacts_everywhere_and_keeps_the_chain(&server).await;
    server.stop().await;
}

/// No allowlist: loopback and the other denied ranges are never called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_denied_addresses_are_never_called() {
    let server =
        harness::TestServer::start_tuned(harness::Mode::Embedded, |c| c.egress_allow.clear()).await;
    egress::denied_addresses_are_never_called(&server).await;
    server.stop().await;
}

/// An allowlist naming one address opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_an_allowlist_opens_what_it_names() {
    let server = harness::TestServer::start_tuned(harness::Mode::Embedded, |c| {
        c.egress_allow = "127.0.0.1".to_owned()
    })
    .await;
    egress::an_allowlist_opens_what_it_names(&server).await;
    server.stop().await;
}

/// A tenant's own allowlist opens what it names for that tenant alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_tenants_allowlist_is_its_own() {
    let server =
        harness::TestServer::start_tuned(harness::Mode::Embedded, |c| c.egress_allow.clear()).await;
    egress::a_tenants_allowlist_is_its_own(&server).await;
    server.stop().await;
}

/// The same on Postgres + Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_a_tenants_allowlist_is_its_own() {
    let server =
        harness::TestServer::start_tuned(harness::Mode::PostgresRedis, |c| c.egress_allow.clear())
            .await;
    egress::a_tenants_allowlist_is_its_own(&server).await;
    server.stop().await;
}

/// The configured default quotas apply to tenants without their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_configured_quota_defaults_apply_until_overridden() {
    let server = harness::TestServer::start_tuned(harness::Mode::Embedded, |c| {
        c.quotas.quota_definitions = Some(1)
    })
    .await;
    quotas::configured_defaults_apply_until_overridden(&server).await;
    server.stop().await;
}

/// A rate limit holds across both engines of one store (Postgres + Redis), and within
/// the one embedded engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_a_rate_limit_holds_across_every_engine() {
    let first = harness::TestServer::start(harness::Mode::PostgresRedis).await;
    let second = first.join().await;
    rates::a_rate_limit_holds_across_every_engine(&first, Some(&second)).await;
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_rate_limit_holds() {
    let server = harness::TestServer::start(harness::Mode::Embedded).await;
    rates::a_rate_limit_holds_across_every_engine(&server, None).await;
    server.stop().await;
}

/// 1,000 agent tasks at once never exceed their agents' capacity (from the log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_a_thousand_concurrent_tasks_never_exceed_capacity() {
    let server = harness::TestServer::start(harness::Mode::PostgresRedis).await;
    capacity::a_thousand_concurrent_tasks_never_exceed_capacity(&server).await;
    server.stop().await;
}

/// An erasure reaches every server of the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_erasure_reaches_every_server() {
    let server = harness::TestServer::start(harness::Mode::Sealed).await;
    erasure::erasure_reaches_every_server(&server).await;
    server.stop().await;
}

/// Without encryption at rest, erasure is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_erasure_needs_encryption_at_rest() {
    let server = harness::TestServer::start(harness::Mode::Embedded).await;
    erasure::erasure_needs_encryption_at_rest(&server).await;
    server.stop().await;
}

/// `CONFLUX_VIEWER_PAYLOADS=hidden`, with encryption at rest (payloads opened for the
/// others, hidden from viewers) and without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_see_payloads_hidden() {
    for sealed in [true, false] {
        let server = harness::TestServer::start_tuned(harness::Mode::Embedded, |c| {
            c.viewer_payloads = conflux::config::ViewerPayloads::Hidden;
            if sealed {
                c.master_key = Some(master_key().into());
            }
        })
        .await;
        let viewer =
            tenants::key_in(&server, "default", conflux_schema::access::Role::Viewer).await;
        visibility::viewers_see_payloads_hidden(&server, viewer.token()).await;
        server.stop().await;
    }
}
