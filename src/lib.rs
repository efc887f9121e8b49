//! # conflux — the one binary
//!
//! Configuration, the choice of backends, and wiring roles together. The binary
//! (`src/main.rs`) only parses the command line and calls into here, so tests can start
//! the very same server on a random port.
//!
//! # Layout
//! - [`config`]: every setting, from flags and `CONFLUX_*`/`DATABASE_URL`/`REDIS_URL`.
//! - [`engine_config`]: the engine's round sizes (sharing between tenants vs throughput).
//! - [`backends`]: Postgres + Redis, or the embedded store + in-process bus.
//! - [`app`]: the HTTP router and the roles `serve` runs.
//! - [`bootstrap`]: the system administrator's bootstrap token.
//! - [`bus_admin`]: `conflux bus status|reset`, for a bus that holds another store's events.
//! - [`cli`]: `conflux events`/`replay`/`verify`, audit commands over a server's HTTP API.
//! - [`keys_cli`]: `conflux keys create|list|revoke` over a server's HTTP API.
//! - [`quota_config`]: the default per-tenant quotas.
//! - [`schedules_cli`]: `conflux schedules create|list|get|pause|resume|delete` over a
//!   server's HTTP API.
//! - [`secrets_cli`]: `conflux secrets put|list|delete` over a server's HTTP API.
//! - [`rebuild`]: `conflux projector rebuild`, with a progress bar.
//! - [`telemetry`]: tracing setup (text on a terminal, JSON on request).
//! - [`shutdown`]: SIGTERM/Ctrl-C handling.

pub mod app;
pub mod backends;
pub mod bootstrap;
pub mod bus_admin;
pub mod cli;
pub mod config;
pub mod engine_config;
pub mod hook_config;
pub mod keys_cli;
pub mod quota_config;
pub mod rebuild;
pub mod schedules_cli;
pub mod secrets_cli;
pub mod shutdown;
pub mod telemetry;
