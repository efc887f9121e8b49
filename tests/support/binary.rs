//! The real `conflux` binary, started for an end-to-end test as a user would start it:
//! `conflux serve` (or any other role) on a random port with JSON logs, waited for until
//! it says it serves (or, for a role without HTTP, that it runs).
//! A test that fails half-way never leaves it running (it is killed on drop). It accepts
//! [`ADMIN_TOKEN`] (`crate::auth`, which the including crate declares) as the system
//! administrator's token; `crate::auth::client()` sends it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::auth::ADMIN_TOKEN;

/// A running `conflux serve` (or another role, see [`Binary::start_role`]).
pub struct Binary {
    child: Child,
    /// `http://127.0.0.1:<port>` (empty for a role that serves no HTTP).
    pub base: String,
    bad_lines: Arc<Mutex<Vec<String>>>,
    lines: Arc<Mutex<String>>,
}

impl Binary {
    /// Starts `conflux serve` in `dir` with `env` (and no `DATABASE_URL`/`REDIS_URL` but
    /// those `env` gives; `CONFLUX_ADMIN_TOKEN` is [`ADMIN_TOKEN`] unless `env` gives
    /// another), and waits until it listens.
    pub fn start(env: &[(&str, String)], dir: &Path) -> Binary {
        Self::start_role("serve", env, dir)
    }

    /// Starts `conflux <role>` as [`Binary::start`] starts `serve`, and waits until it
    /// serves HTTP, or, for `engine`, `relay` and `projector`, until it says it runs.
    pub fn start_role(role: &str, env: &[(&str, String)], dir: &Path) -> Binary {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_conflux"));
        cmd.arg(role)
            .current_dir(dir)
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env("CONFLUX_ADDR", "127.0.0.1:0")
            .env("CONFLUX_LOG_FORMAT", "json")
            .env("CONFLUX_ADMIN_TOKEN", ADMIN_TOKEN)
            // The test services `http` tasks call listen on loopback.
            .env("CONFLUX_EGRESS_ALLOW", "127.0.0.0/8,::1/128")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn conflux");
        let stderr = child.stderr.take().expect("stderr");
        let bad_lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let bad = bad_lines.clone();
        let lines = Arc::new(Mutex::new(String::new()));
        // What a role that serves no HTTP logs once it runs.
        let running = format!("{role} running");
        let all = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                {
                    let mut all = all.lock().expect("lock");
                    all.push_str(&line);
                    all.push('\n');
                }
                match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(v) if v["message"] == "conflux is serving" => {
                        let addr = v["addr"].as_str().unwrap_or_default();
                        let _ = tx.send(format!("http://{addr}"));
                    }
                    Ok(v) if v["message"].as_str() == Some(running.as_str()) => {
                        let _ = tx.send(String::new());
                    }
                    Ok(_) => {}
                    Err(_) => bad.lock().expect("lock").push(line),
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("conflux {role} did not start"));
        Binary {
            child,
            base,
            bad_lines,
            lines,
        }
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.lines.lock().expect("lock").clone()
    }

    /// Log lines that were not JSON (with `CONFLUX_LOG_FORMAT=json` there must be none).
    pub fn bad_log_lines(&self) -> Vec<String> {
        self.bad_lines.lock().expect("lock").clone()
    }

    /// SIGTERM, then waits (at most 15 s) for the process to exit; returns how it did.
    pub fn stop(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "conflux did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the process ends without any chance to clean up.
    pub fn kill(&mut self) {
        let status = Command::new("kill")
            .arg("-KILL")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait");
        assert!(!exit.success(), "SIGKILL ends the process: {exit}");
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Which backends a [`Served`] binary runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// SQLite in a temporary directory, in-process bus.
    Embedded,
    /// A fresh Postgres database and a unique Redis key prefix.
    Postgres,
}

/// `conflux serve` on backends of its own; [`Served::release`] gives them back.
pub struct Served {
    /// The running binary.
    pub bin: Binary,
    /// Its database (Postgres mode).
    pub db: Option<conflux_engine::testing::TestDatabase>,
    prefix: Option<String>,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Starts the binary in `mode` on a random port and waits until it listens.
    pub async fn start(mode: Mode) -> Served {
        Self::start_with(mode, &[]).await
    }

    /// [`Served::start`] with `extra` environment (a master key, a log level…).
    pub async fn start_with(mode: Mode, extra: &[(&str, String)]) -> Served {
        use conflux_engine::testing::{redis_url, unique_prefix, TestDatabase};
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env: Vec<(&str, String)> = extra.to_vec();
        let (db, prefix) = if mode == Mode::Postgres {
            let db = TestDatabase::create().await;
            let prefix = unique_prefix();
            env.push(("DATABASE_URL", db.url.clone()));
            env.push(("REDIS_URL", redis_url()));
            env.push(("CONFLUX_REDIS_PREFIX", prefix.clone()));
            (Some(db), Some(prefix))
        } else {
            (None, None)
        };
        let bin = Binary::start(&env, dir.path());
        Served {
            bin,
            db,
            prefix,
            _dir: dir,
        }
    }

    /// Its Redis key prefix (Postgres mode).
    pub fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// The directory it runs in (its embedded store is in `conflux-data/` there).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Drops the (stopped) server's database and Redis keys.
    pub async fn release(&mut self) {
        if let Some(prefix) = self.prefix.take() {
            conflux_engine::testing::delete_redis_prefix(&prefix).await;
        }
        if let Some(db) = self.db.take() {
            db.drop_database().await;
        }
    }
}
