//! Reading the Prometheus text exposition of the operator's /metrics.

use std::collections::BTreeMap;

/// One sample: metric name, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name (with `_bucket`/`_sum`/`_count` suffixes as exposed).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// Parses the text format (comments skipped; unparsable lines ignored).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        None => (head.to_string(), BTreeMap::new()),
        Some((name, rest)) => (name.to_string(), parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

fn parse_labels(s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').trim().to_string(), value);
        rest = after[end? + 1..].trim_start_matches(',');
    }
    Some(out)
}

/// Sum of every sample named `name` whose labels include all of `with`.
pub fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// A histogram's (or summary's) observation count and sum of values for
/// each key `key` gives its samples (samples it gives no key are skipped).
pub fn count_and_sum_by(
    samples: &[Sample],
    name: &str,
    key: impl Fn(&Sample) -> Option<String>,
) -> BTreeMap<String, (f64, f64)> {
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for s in samples {
        let count = match s.name.strip_prefix(name) {
            Some("_count") => true,
            Some("_sum") => false,
            _ => continue,
        };
        let Some(k) = key(s) else { continue };
        let e = out.entry(k).or_default();
        if count {
            e.0 += s.value;
        } else {
            e.1 += s.value;
        }
    }
    out
}

/// Upper-bound estimate of quantile `q` (0..1) of a histogram from its
/// cumulative buckets (summed over label sets): the first bucket bound
/// holding at least `q` of the observations. `None` without observations.
pub fn histogram_quantile(samples: &[Sample], name: &str, q: f64) -> Option<f64> {
    let bucket = format!("{name}_bucket");
    let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == bucket) {
        let le = s.labels.get("le")?;
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().ok()?
        };
        let e = by_le.entry(bound.to_bits()).or_insert((bound, 0.0));
        e.1 += s.value;
    }
    let mut buckets: Vec<(f64, f64)> = by_le.into_values().collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, c)| *c >= q * total)
        .map(|(b, _)| *b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP x y
# TYPE kubernetes_executor_api_requests_total counter
kubernetes_executor_api_requests_total{outcome="ok",resource="pods",verb="list"} 3
kubernetes_executor_api_requests_total{outcome="ok",resource="jobs",verb="create"} 2
kubernetes_executor_api_requests_total{outcome="error",resource="jobs",verb="create"} 1
process_resident_memory_bytes 1.2e+07
policy_evaluation_duration_seconds_bucket{policy="kubernetes_executor.safety",le="0.0005"} 90
policy_evaluation_duration_seconds_bucket{policy="kubernetes_executor.safety",le="0.001"} 99
policy_evaluation_duration_seconds_bucket{policy="kubernetes_executor.safety",le="+Inf"} 100
weird{a="q\"uote,d",b="x"} 5
"#;

    #[test]
    fn parses_and_sums() {
        let s = parse(TEXT);
        assert_eq!(sum(&s, "kubernetes_executor_api_requests_total", &[]), 6.0);
        assert_eq!(
            sum(
                &s,
                "kubernetes_executor_api_requests_total",
                &[("resource", "jobs")]
            ),
            3.0
        );
        assert_eq!(sum(&s, "process_resident_memory_bytes", &[]), 12_000_000.0);
        let w = s.iter().find(|x| x.name == "weird").expect("weird");
        assert_eq!(w.labels["a"], "q\"uote,d");
        assert_eq!(w.labels["b"], "x");
    }

    #[test]
    fn histogram_quantiles_are_bucket_upper_bounds() {
        let s = parse(TEXT);
        let h = "policy_evaluation_duration_seconds";
        assert_eq!(histogram_quantile(&s, h, 0.5), Some(0.0005));
        assert_eq!(histogram_quantile(&s, h, 0.99), Some(0.001));
        assert_eq!(histogram_quantile(&s, h, 1.0), Some(f64::INFINITY));
        assert_eq!(histogram_quantile(&s, "absent", 0.5), None);
    }

    #[test]
    fn counts_and_sums_by_key() {
        let s = parse(
            r#"wait_seconds_count{level="a"} 4
wait_seconds_sum{level="a"} 2
wait_seconds_count{level="b"} 1
wait_seconds_count{level="a",flow="x"} 1
wait_seconds_sum{level="a",flow="x"} 0.5
wait_seconds_bucket{level="a",le="1"} 5
wait_seconds_other_count{level="a"} 9
wait_seconds_count 7
"#,
        );
        let by = count_and_sum_by(&s, "wait_seconds", |x| x.labels.get("level").cloned());
        assert_eq!(by.len(), 2, "{by:?}");
        assert_eq!(by["a"], (5.0, 2.5));
        assert_eq!(by["b"], (1.0, 0.0));
    }
}

/// `after − before` for every series of `name*` (counters and histogram
/// buckets), matched by labels; series new in `after` count from 0. Series
/// whose labels do not pass `keep` are left out.
pub fn delta(
    before: &[Sample],
    after: &[Sample],
    name: &str,
    keep: impl Fn(&BTreeMap<String, String>) -> bool,
) -> Vec<Sample> {
    let old: BTreeMap<(&str, &BTreeMap<String, String>), f64> = before
        .iter()
        .filter(|s| s.name.starts_with(name))
        .map(|s| ((s.name.as_str(), &s.labels), s.value))
        .collect();
    after
        .iter()
        .filter(|s| s.name.starts_with(name) && keep(&s.labels))
        .map(|s| Sample {
            value: s.value
                - old
                    .get(&(s.name.as_str(), &s.labels))
                    .copied()
                    .unwrap_or(0.0),
            ..s.clone()
        })
        .collect()
}

#[cfg(test)]
mod delta_tests {
    use super::*;

    #[test]
    fn deltas_subtract_matching_series_and_filter() {
        let before =
            parse("x_bucket{verb=\"GET\",le=\"1\"} 2\nx_bucket{verb=\"GET\",le=\"+Inf\"} 3\n");
        let after = parse(
            "x_bucket{verb=\"GET\",le=\"1\"} 5\nx_bucket{verb=\"GET\",le=\"+Inf\"} 9\nx_bucket{verb=\"WATCH\",le=\"+Inf\"} 4\n",
        );
        let d = delta(&before, &after, "x", |l| {
            l.get("verb").map(String::as_str) != Some("WATCH")
        });
        assert_eq!(d.len(), 2);
        assert_eq!(sum(&d, "x_bucket", &[("le", "1")]), 3.0);
        assert_eq!(sum(&d, "x_bucket", &[("le", "+Inf")]), 6.0);
    }
}
