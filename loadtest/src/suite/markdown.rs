//! The suite report for people: context, one results table (figure, value, goal, ratio
//! to the raw limit), the raw limits, notes, and the reference figures of other
//! systems (context only, not measured here).

use std::fmt::Write as _;

use super::SuiteReport;
use crate::report::{figure, thousands};
use crate::scenarios::Figure;
use crate::stats::Kind;

/// Figures of other systems, quoted for context.
const REFERENCE: &[&str] = &[
    "Celery 5.7 with a Redis broker on this machine (figures from the issue, not re-measured): \
     W1 median 42–47 ms, W2 180–250 tasks/s.",
    "W6 shape (40 chained tasks of ~10 ms), published totals on their own hardware: \
     Hatchet 1.22 s, Windmill 2.09 s, Temporal 2.97 s, Prefect 4.87 s, Airflow 116 s.",
];

/// Renders `r` as markdown.
pub(super) fn render(r: &SuiteReport) -> String {
    let mut md = String::new();
    header(&mut md, r);
    results(&mut md, r);
    limits(&mut md, r);
    notes(&mut md, r);
    md.push_str("\n## Reference (context only)\n\n");
    for line in REFERENCE {
        let _ = writeln!(md, "- {line}");
    }
    md
}

fn header(md: &mut String, r: &SuiteReport) {
    let m = &r.machine;
    let memory = m.memory_total_bytes.map_or("unknown memory".into(), |b| {
        format!("{:.1} GiB RAM", b as f64 / (1u64 << 30) as f64)
    });
    let _ = writeln!(md, "# Conflux benchmark: {}\n", r.title);
    let _ = writeln!(md, "- date: {}", r.date);
    let _ = writeln!(md, "- command: `{}`", r.command_line);
    let _ = writeln!(
        md,
        "- git commit: {} ({})",
        r.git_commit.as_deref().unwrap_or("unknown"),
        r.tool
    );
    let _ = writeln!(
        md,
        "- machine: {} cores, {memory}, {}, {}",
        m.cores,
        m.cpu_model.as_deref().unwrap_or("unknown CPU"),
        m.os
    );
    let _ = writeln!(
        md,
        "- server: {} — mode {}",
        r.server.url,
        r.server.mode.as_deref().unwrap_or("unknown")
    );
    match (&r.limits, &r.limits_note) {
        (Some(l), _) => {
            let _ = writeln!(
                md,
                "- raw limits: measured in this run (postgres {}, fsync={}, synchronous_commit={}; redis {}){}",
                l.servers.postgres_version,
                l.servers.fsync,
                l.servers.synchronous_commit,
                l.servers.redis_version,
                if r.server.mode.as_deref() == Some("embedded") {
                    " — the server ran embedded (SQLite), so ratios to Postgres/Redis are context only"
                } else {
                    ""
                }
            );
        }
        (None, Some(note)) => {
            let _ = writeln!(md, "- raw limits: {note}");
        }
        (None, None) => {}
    }
    md.push_str(
        "- method: client, server and databases share the machine; latencies are client-side \
         unless a figure says otherwise\n",
    );
}

fn results(md: &mut String, r: &SuiteReport) {
    md.push_str("\n## Results\n\n| scenario | figure | value | goal | vs raw limit |\n");
    md.push_str("|---|---|---:|---|---|\n");
    for s in &r.scenarios {
        match (&s.run, &s.error) {
            (Some(run), _) => {
                for f in &run.figures {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} | {} |",
                        s.name,
                        f.name,
                        value_cell(f),
                        goal_cell(f),
                        f.vs_raw.as_ref().map_or("—", |v| v.text.as_str())
                    );
                }
            }
            (None, error) => {
                let _ = writeln!(
                    md,
                    "| {} | **failed**: {} | — | — | — |",
                    s.name,
                    error.as_deref().unwrap_or("?").replace('|', "\\|")
                );
            }
        }
    }
    md.push_str(
        "\n\"vs raw limit\" reads a rate as a share of the raw rate, a latency as a multiple of \
         the raw latency (a durable INSERT for writes, a `SELECT 1` for reads), both from this \
         run's `limits`; — where no raw measurement bounds the figure.\n",
    );
    let g = &r.goals;
    let _ = writeln!(
        md,
        "\nGoals: {} met, {} missed, {} not measured (of {}).",
        g.met,
        g.missed,
        g.unknown,
        g.met + g.missed + g.unknown
    );
}

fn value_cell(f: &Figure) -> String {
    match f.value {
        Some(v) if v.fract() == 0.0 => format!("{} {}", thousands(v), f.unit),
        Some(v) => format!("{} {}", figure(v), f.unit),
        None => "n/a".to_owned(),
    }
}

fn goal_cell(f: &Figure) -> String {
    match (f.goal_text(), f.met) {
        (Some(goal), Some(true)) => format!("{goal}: met"),
        (Some(goal), Some(false)) => format!("{goal}: **missed**"),
        (Some(goal), None) => format!("{goal}: n/a"),
        (None, _) => "—".to_owned(),
    }
}

fn limits(md: &mut String, r: &SuiteReport) {
    let Some(l) = &r.limits else { return };
    md.push_str("\n## Raw limits (same run, median of rounds)\n\n");
    md.push_str("| measurement | per second | p50 | p99 |\n|---|---:|---:|---:|\n");
    for m in &l.measurements {
        let rate = match m.info.kind {
            Kind::RoundTrip => format!("{} calls", thousands(m.median_rate)),
            _ => format!("{} events", thousands(m.median_rate)),
        };
        let _ = writeln!(
            md,
            "| {} | {rate} | {} µs | {} µs |",
            m.info.label,
            figure(m.median_p50_us),
            figure(m.median_p99_us)
        );
    }
}

fn notes(md: &mut String, r: &SuiteReport) {
    let notes: Vec<&String> = r
        .scenarios
        .iter()
        .filter_map(|s| s.run.as_ref())
        .flat_map(|run| &run.notes)
        .collect();
    if notes.is_empty() {
        return;
    }
    md.push_str("\n## Notes\n\n");
    for n in notes {
        let _ = writeln!(md, "- {n}");
    }
}
