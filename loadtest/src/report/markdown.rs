//! The report for people: the run's context as a list, then tables. The main table's
//! columns are fixed (`measurement | events/s (median) | ratio to raw | raw reference`)
//! so runs can be compared by eye; each goal sits next to the ratio it judges.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::{Comparison, Report};
use crate::stats::{Kind, Measurement};

/// Renders `report` as markdown.
pub(super) fn render(report: &Report) -> String {
    let mut md = String::new();
    header(&mut md, report);
    throughput(&mut md, report);
    details(&mut md, report);
    round_trips(&mut md, report);
    md
}

fn header(md: &mut String, r: &Report) {
    let title = match r.run.scenario.as_str() {
        "limits" => "raw limits",
        "store" => "store appends against raw limits",
        other => other,
    };
    let (m, s) = (&r.machine, &r.servers);
    let memory = m.memory_total_bytes.map_or("unknown memory".into(), |b| {
        format!("{:.1} GiB RAM", b as f64 / (1u64 << 30) as f64)
    });
    let cpu = m.cpu_model.as_deref().unwrap_or("unknown CPU");
    let commit = r.run.git_commit.as_deref().unwrap_or("unknown");
    let _ = writeln!(md, "# Conflux benchmark: {title}\n");
    let _ = writeln!(md, "- date: {}", r.run.date);
    let _ = writeln!(md, "- command: `{}`", r.run.command_line);
    let _ = writeln!(md, "- git commit: {commit} ({})", r.tool);
    let _ = writeln!(
        md,
        "- machine: {} cores, {memory}, {cpu}, {}",
        m.cores, m.os
    );
    let _ = writeln!(
        md,
        "- postgres: {}; fsync={}, synchronous_commit={}",
        s.postgres_version, s.fsync, s.synchronous_commit
    );
    let _ = writeln!(md, "- redis: {}", s.redis_version);
    let _ = writeln!(
        md,
        "- method: {} s per round, {} round(s) interleaved across measurements, median \
         round shown; client and servers share the machine",
        r.run.seconds, r.run.rounds
    );
}

fn throughput(md: &mut String, r: &Report) {
    md.push_str("\n| measurement | events/s (median) | ratio to raw | raw reference |\n");
    md.push_str("|---|---:|---|---|\n");
    let mut rows: Vec<&Measurement> = r
        .measurements
        .iter()
        .filter(|m| m.info.kind != Kind::RoundTrip)
        .collect();
    rows.sort_by_key(|m| kind_order(m.info.kind));
    for m in rows {
        let (ratio, reference) = match r.comparison(&m.info.id) {
            Some(c) => (ratio_cell(c), reference_cell(r, &c.reference)),
            None => ("—".to_owned(), "—".to_owned()),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {ratio} | {reference} |",
            m.info.label,
            thousands(m.median_rate)
        );
    }
    let goals: Vec<&Comparison> = r.comparisons.iter().filter(|c| c.met.is_some()).collect();
    if !goals.is_empty() {
        let met = goals.iter().filter(|c| c.met == Some(true)).count();
        let mut stated: Vec<&str> = goals
            .iter()
            .filter_map(|c| c.goal.as_ref().map(|g| g.description.as_str()))
            .collect();
        stated.dedup();
        let _ = writeln!(
            md,
            "\nGoals met: {met} of {} ({}).",
            goals.len(),
            stated.join("; ")
        );
    }
}

/// One row per measurement that reported details, one column per detail key.
fn details(md: &mut String, r: &Report) {
    let rows: Vec<&Measurement> = r
        .measurements
        .iter()
        .filter(|m| !m.details.is_empty())
        .collect();
    let keys: BTreeSet<&str> = rows
        .iter()
        .flat_map(|m| m.details.keys().map(String::as_str))
        .collect();
    if rows.is_empty() {
        return;
    }
    md.push_str("\n| details (median) |");
    for key in &keys {
        let _ = write!(md, " {} |", key.replace('_', " "));
    }
    md.push_str("\n|---|");
    md.push_str(&"---:|".repeat(keys.len()));
    md.push('\n');
    for m in rows {
        let _ = write!(md, "| {} |", m.info.label);
        for key in &keys {
            let cell = m.details.get(*key).map_or("—".to_owned(), |v| figure(*v));
            let _ = write!(md, " {cell} |");
        }
        md.push('\n');
    }
}

fn round_trips(md: &mut String, r: &Report) {
    let rows: Vec<&Measurement> = r
        .measurements
        .iter()
        .filter(|m| m.info.kind == Kind::RoundTrip)
        .collect();
    if rows.is_empty() {
        return;
    }
    md.push_str("\n| round trip | p50 | p99 | calls/s (median) |\n");
    md.push_str("|---|---:|---:|---:|\n");
    for m in rows {
        let _ = writeln!(
            md,
            "| {} | {} µs | {} µs | {} |",
            m.info.label,
            figure(m.median_p50_us),
            figure(m.median_p99_us),
            thousands(m.median_rate)
        );
    }
}

fn kind_order(kind: Kind) -> u8 {
    match kind {
        Kind::Conflux => 0,
        Kind::RawPostgres => 1,
        Kind::RawRedis => 2,
        Kind::RoundTrip => 3,
    }
}

fn ratio_cell(c: &Comparison) -> String {
    let pct = format!("{:.1} %", c.ratio * 100.0);
    match (&c.goal, c.met) {
        (Some(goal), Some(met)) => format!(
            "{pct} (goal ≥ {:.0} %: {})",
            goal.min_ratio * 100.0,
            if met { "met" } else { "missed" }
        ),
        _ => pct,
    }
}

fn reference_cell(r: &Report, id: &str) -> String {
    match r.measurement(id) {
        Some(m) => format!("{} ({}/s)", m.info.label, thousands(m.median_rate)),
        None => id.to_owned(),
    }
}

/// `1234567.8` as `1,234,568`.
pub(crate) fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Three significant figures or so: `1,234`, `123`, `12.3`, `1.23`.
pub(crate) fn figure(value: f64) -> String {
    match value.abs() {
        v if v >= 1_000.0 => thousands(value),
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        _ => format!("{value:.2}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Goal;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1234.0), "1,234");
        assert_eq!(thousands(1234567.8), "1,234,568");
    }

    #[test]
    fn figures_keep_about_three_digits() {
        assert_eq!(figure(1.234), "1.23");
        assert_eq!(figure(12.34), "12.3");
        assert_eq!(figure(123.4), "123");
        assert_eq!(figure(12345.0), "12,345");
    }

    #[test]
    fn ratio_cells_show_the_goal() {
        let c = Comparison {
            measurement: "a".into(),
            reference: "b".into(),
            ratio: 0.551,
            goal: Some(Goal {
                min_ratio: 0.6,
                description: "x".into(),
            }),
            met: Some(false),
        };
        assert_eq!(ratio_cell(&c), "55.1 % (goal ≥ 60 %: missed)");
    }
}
