//! What a run produces: its results plus everything needed to judge them later — the
//! machine, the server versions and durability settings, the commit, the date and the
//! exact command. A benchmark figure without that context cannot be compared with the
//! next one. The same [`Report`] renders as markdown (for people) and JSON (for tools).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::sandbox::redact_url;

mod markdown;
use crate::stats::Measurement;
pub(crate) use markdown::{figure, thousands};

/// The hardware the run happened on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// Cores available to this process.
    pub cores: usize,
    /// Total memory, from `/proc/meminfo`.
    pub memory_total_bytes: Option<u64>,
    /// CPU model, from `/proc/cpuinfo`.
    pub cpu_model: Option<String>,
    /// Operating system and kernel release.
    pub os: String,
}

impl MachineInfo {
    /// Reads what this machine says about itself; missing pieces are `None`.
    pub fn detect() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let memory_total_bytes = read("/proc/meminfo").and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
        });
        let cpu_model = read("/proc/cpuinfo").and_then(|c| {
            c.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == "model name")
                .map(|(_, v)| v.trim().to_owned())
        });
        let kernel = read("/proc/sys/kernel/osrelease").map(|k| k.trim().to_owned());
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_total_bytes,
            cpu_model,
            os: match kernel {
                Some(k) => format!("{} {k}", std::env::consts::OS),
                None => std::env::consts::OS.to_owned(),
            },
        }
    }
}

/// The servers measured and the settings that decide what a commit costs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Postgres `server_version`.
    pub postgres_version: String,
    /// Postgres `fsync`.
    pub fsync: String,
    /// Postgres `synchronous_commit`.
    pub synchronous_commit: String,
    /// Redis `redis_version`.
    pub redis_version: String,
}

/// How the run was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The subcommand (`store`, `limits`).
    pub scenario: String,
    /// When the report was made (RFC 3339, UTC).
    pub date: String,
    /// The command line, with any URL password replaced by `***`.
    pub command_line: String,
    /// `git rev-parse --short HEAD` of the working directory, if it answered.
    pub git_commit: Option<String>,
    /// Seconds per round of each measurement.
    pub seconds: f64,
    /// Rounds per measurement.
    pub rounds: usize,
}

/// A threshold a Conflux rate must reach, as a share of its raw reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    /// The least acceptable `conflux / raw` ratio.
    pub min_ratio: f64,
    /// The goal as the issue states it.
    pub description: String,
}

/// Which measurement to compare with which reference, before results exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonSpec {
    /// The measured id (a Conflux probe).
    pub measurement: String,
    /// The reference id (a raw probe).
    pub reference: String,
    /// The goal, if the issue sets one.
    pub goal: Option<Goal>,
}

/// A measurement as a share of its raw reference, from medians of the same run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The measured id.
    pub measurement: String,
    /// The reference id.
    pub reference: String,
    /// `median rate of measurement / median rate of reference`.
    pub ratio: f64,
    /// The goal, if any.
    pub goal: Option<Goal>,
    /// Whether the ratio reaches the goal (None without a goal).
    pub met: Option<bool>,
}

/// A whole run's results and context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The tool and its version.
    pub tool: String,
    /// How the run was made.
    pub run: RunInfo,
    /// The hardware.
    pub machine: MachineInfo,
    /// The servers.
    pub servers: ServerInfo,
    /// Every measurement, in run order.
    pub measurements: Vec<Measurement>,
    /// Conflux measurements against their raw references.
    pub comparisons: Vec<Comparison>,
}

impl Report {
    /// Assembles a report, detecting the machine and computing each comparison that
    /// has both sides measured.
    pub fn new(
        run: RunInfo,
        servers: ServerInfo,
        measurements: Vec<Measurement>,
        specs: &[ComparisonSpec],
    ) -> Self {
        let rate = |id: &str| {
            measurements
                .iter()
                .find(|m| m.info.id == id)
                .map(|m| m.median_rate)
        };
        let comparisons = specs
            .iter()
            .filter_map(|spec| {
                let (m, r) = (rate(&spec.measurement)?, rate(&spec.reference)?);
                let ratio = if r > 0.0 { m / r } else { 0.0 };
                Some(Comparison {
                    measurement: spec.measurement.clone(),
                    reference: spec.reference.clone(),
                    ratio,
                    met: spec.goal.as_ref().map(|g| ratio >= g.min_ratio),
                    goal: spec.goal.clone(),
                })
            })
            .collect();
        Self {
            tool: format!("conflux-loadtest {}", env!("CARGO_PKG_VERSION")),
            run,
            machine: MachineInfo::detect(),
            servers,
            measurements,
            comparisons,
        }
    }

    /// The measurement with this id.
    pub fn measurement(&self, id: &str) -> Option<&Measurement> {
        self.measurements.iter().find(|m| m.info.id == id)
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).context("serialising the report")
    }

    /// The report as markdown: the context, the throughput table with ratios and
    /// goals, the store's batching, and the round-trip table.
    pub fn to_markdown(&self) -> String {
        markdown::render(self)
    }

    /// Writes the JSON and/or markdown report where asked.
    pub fn write_files(&self, json: Option<&Path>, markdown: Option<&Path>) -> Result<()> {
        write_report_files(json, markdown, || self.to_json(), || self.to_markdown())
    }

    /// The comparison whose measured side is `id`.
    pub fn comparison(&self, id: &str) -> Option<&Comparison> {
        self.comparisons.iter().find(|c| c.measurement == id)
    }
}

/// This process's command line, quoted where a shell would need it, with URL
/// passwords and the `--token` value replaced by `***`.
pub fn current_command_line() -> String {
    command_line(std::env::args())
}

/// `args` as [`current_command_line`] shows them.
fn command_line(args: impl IntoIterator<Item = String>) -> String {
    let mut after_token_flag = false;
    args.into_iter()
        .map(|arg| {
            let arg = if std::mem::take(&mut after_token_flag) {
                "***".to_owned()
            } else if arg == "--token" {
                after_token_flag = true;
                arg
            } else if arg.starts_with("--token=") {
                "--token=***".to_owned()
            } else if arg.contains("://") {
                redact_url(&arg)
            } else {
                arg
            };
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
            if plain {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `git rev-parse --short HEAD` in the working directory; None if git is missing or
/// this is not a checkout.
pub fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !commit.is_empty()).then_some(commit)
}

/// Writes a report's JSON (made only if asked) and/or markdown to the paths given.
pub fn write_report_files(
    json: Option<&Path>,
    markdown: Option<&Path>,
    to_json: impl FnOnce() -> Result<String>,
    to_markdown: impl FnOnce() -> String,
) -> Result<()> {
    if let Some(path) = json {
        std::fs::write(path, to_json()? + "\n")
            .with_context(|| format!("writing the JSON report to {}", path.display()))?;
    }
    if let Some(path) = markdown {
        std::fs::write(path, to_markdown())
            .with_context(|| format!("writing the markdown report to {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::command_line;

    #[test]
    fn the_token_never_reaches_the_report() {
        let args = [
            "conflux-loadtest",
            "all",
            "--token",
            "s3cret",
            "--token=s3cret",
            "--out",
            "b.json",
        ];
        let line = command_line(args.map(str::to_owned));
        assert!(!line.contains("s3cret"), "{line}");
        assert_eq!(
            line,
            "conflux-loadtest all --token '***' '--token=***' --out b.json"
        );
    }
}
