//! The raw-bytes scan (`tests/support/raw_scan.rs`) of an in-process server, with its
//! log captured in memory.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use crate::harness::TestServer;
pub use crate::stored::Scan;

/// Everything `server` stores (its database or data directory, its Redis prefix) and
/// what this process logged so far.
pub fn scan_of(server: &TestServer) -> Scan {
    let config = &server.config;
    Scan::new(
        config.database_url.clone(),
        Some(config.data_dir.clone()),
        config
            .redis_url
            .clone()
            .map(|url| (url, config.redis_prefix.clone())),
    )
    .with_log(log_lines())
}

/// What the process logged since [`capture_logs`].
static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

/// Sends every log line of this process (all targets, `debug` and above) to memory, for
/// [`scan_of`]. Call before starting the server; the test runner gives each
/// test its own process, so the subscriber is this test's.
pub fn capture_logs() {
    let buffer = LOG.get_or_init(Arc::default).clone();
    let writer = move || LogWriter(buffer.clone());
    let _ = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(writer)
        .try_init();
    tracing::info!("log capture on");
}

/// The captured log lines (none without [`capture_logs`]).
pub fn log_lines() -> Vec<String> {
    LOG.get()
        .and_then(|log| {
            log.lock()
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut log) = self.0.lock() {
            log.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
