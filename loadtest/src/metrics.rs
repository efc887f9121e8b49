//! Reading the server's `GET /metrics` (Prometheus text format): just enough of a
//! parser to pick one sample by name and labels. A metric the server does not (yet)
//! export is simply absent: callers report it as "n/a".

use std::collections::BTreeMap;

/// One scrape of `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    samples: Vec<Sample>,
}

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Scrape {
    /// Parses Prometheus text; lines it cannot read are skipped.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(parse_line)
            .collect();
        Self { samples }
    }

    /// The value of the first sample named `name` whose labels include `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    /// The sum of every sample named `name` (over all label sets), None if there is
    /// none.
    pub fn total(&self, name: &str) -> Option<f64> {
        let mut found = false;
        let mut sum = 0.0;
        for s in self.samples.iter().filter(|s| s.name == name) {
            found = true;
            sum += s.value;
        }
        found.then_some(sum)
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close])?,
                &line[close + 1..],
            )
        }
        None => {
            let (name, rest) = line.split_once(char::is_whitespace)?;
            (name, BTreeMap::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.trim().to_owned(),
        labels,
        value,
    })
}

fn parse_labels(raw: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut chars = raw.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(labels);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        }
        labels.insert(key.trim().to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP conflux_http_request_duration_seconds HTTP request durations.
# TYPE conflux_http_request_duration_seconds histogram
conflux_http_request_duration_seconds_sum{method="POST",route="/api/v1/workflows"} 0.25
conflux_http_request_duration_seconds_count{method="POST",route="/api/v1/workflows"} 3
conflux_http_request_duration_seconds_count{method="GET",route="/x,\"y\""} 7
conflux_events_appended_total 1234
conflux_projector_lag_events 0
"#;

    #[test]
    fn samples_are_found_by_name_and_labels() {
        let s = Scrape::parse(TEXT);
        let post = [("method", "POST"), ("route", "/api/v1/workflows")];
        assert_eq!(
            s.value("conflux_http_request_duration_seconds_sum", &post),
            Some(0.25)
        );
        assert_eq!(
            s.value(
                "conflux_http_request_duration_seconds_count",
                &[("route", "/x,\"y\"")]
            ),
            Some(7.0)
        );
        assert_eq!(s.value("conflux_events_appended_total", &[]), Some(1234.0));
        assert_eq!(
            s.total("conflux_http_request_duration_seconds_count"),
            Some(10.0)
        );
        assert_eq!(s.value("conflux_projector_lag_events", &[]), Some(0.0));
        assert_eq!(s.value("absent", &[]), None);
    }
}
