//! A Markdown table comparing servers side by side: one column per report
//! label (in order of first appearance), one block of rows per scenario.
//! When a scenario ran several times against a server, the column shows the
//! run with the median of that scenario's key metric, and says how many runs
//! there were. BENCHMARKS.md quotes it as printed by `loadgen summary`.

use std::fmt::Write as _;

use crate::report::{group, Report};

/// One row: its name and how to read it off a report.
type Row = (&'static str, fn(&Report) -> Option<String>);

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn per_s(v: Option<f64>) -> Option<String> {
    v.map(|v| group(v.round() as u64))
}

const BROADCAST: &[Row] = &[
    ("deliveries/s", |r| per_s(r.deliveries_per_s)),
    ("delivery ratio", |r| {
        r.delivery_ratio.map(|v| format!("{v:.5}"))
    }),
    ("latency p50", |r| r.latency.as_ref().map(|l| ms(l.p50_us))),
    ("latency p90", |r| r.latency.as_ref().map(|l| ms(l.p90_us))),
    ("latency p99", |r| r.latency.as_ref().map(|l| ms(l.p99_us))),
    ("latency p99.9", |r| {
        r.latency.as_ref().map(|l| ms(l.p999_us))
    }),
    ("latency max", |r| r.latency.as_ref().map(|l| ms(l.max_us))),
    ("server CPU s", |r| {
        r.server.as_ref().map(|s| format!("{:.2}", s.cpu_s))
    }),
    ("deliveries per server CPU-s", |r| {
        per_s(r.deliveries_per_server_cpu_s)
    }),
    ("server peak RSS", |r| {
        r.server
            .as_ref()
            .map(|s| format!("{} KiB", group(s.peak_rss_kb)))
    }),
    ("generator CPU s", |r| {
        Some(format!("{:.2}", r.generator_cpu_s))
    }),
];

const CEILING: &[Row] = &[
    ("max sustained deliveries/s", |r| {
        per_s(r.max_sustained_deliveries_per_s)
    }),
    ("at rate per client", |r| {
        r.rate_per_client.map(|v| format!("{v:.2}/s"))
    }),
    ("latency p50 / p99 there", |r| {
        r.latency
            .as_ref()
            .map(|l| format!("{} / {}", ms(l.p50_us), ms(l.p99_us)))
    }),
    ("deliveries per server CPU-s there", |r| {
        per_s(r.deliveries_per_server_cpu_s)
    }),
    ("stopped because", |r| r.stop_reason.clone()),
    ("server peak RSS", |r| {
        r.server
            .as_ref()
            .map(|s| format!("{} KiB", group(s.peak_rss_kb)))
    }),
];

const ECHO: &[Row] = &[
    ("round trips/s", |r| per_s(r.round_trips_per_s)),
    ("latency p50", |r| r.latency.as_ref().map(|l| ms(l.p50_us))),
    ("latency p99", |r| r.latency.as_ref().map(|l| ms(l.p99_us))),
    ("server CPU s", |r| {
        r.server.as_ref().map(|s| format!("{:.2}", s.cpu_s))
    }),
    ("generator CPU s", |r| {
        Some(format!("{:.2}", r.generator_cpu_s))
    }),
    ("window s", |r| Some(format!("{:.2}", r.duration_s))),
];

const DRAG: &[Row] = &[
    ("deliveries/s (moving + moveEnd)", |r| {
        per_s(r.deliveries_per_s)
    }),
    ("delivery ratio", |r| {
        r.delivery_ratio.map(|v| format!("{v:.5}"))
    }),
    ("server CPU s", |r| {
        r.server.as_ref().map(|s| format!("{:.2}", s.cpu_s))
    }),
    ("deliveries per server CPU-s", |r| {
        per_s(r.deliveries_per_server_cpu_s)
    }),
    ("store writes/s", |r| {
        r.store_writes_per_s.map(|v| format!("{v:.1}"))
    }),
    ("generator CPU s", |r| {
        Some(format!("{:.2}", r.generator_cpu_s))
    }),
];

const IDLE: &[Row] = &[
    ("connections held", |r| {
        r.idle
            .as_ref()
            .map(|i| format!("{} of {}", group(i.still_open), group(i.requested)))
    }),
    ("connect+join/s", |r| {
        r.idle
            .as_ref()
            .map(|i| group(i.connect_join_per_s.round() as u64))
    }),
    ("server RSS per connection", |r| {
        r.idle
            .as_ref()
            .and_then(|i| i.server_rss_per_connection_bytes)
            .map(|b| format!("{:.0} B", b))
    }),
    ("server CPU s while connecting", |r| {
        r.idle
            .as_ref()
            .and_then(|i| i.server_connect_cpu_s)
            .map(|v| format!("{v:.2}"))
    }),
    ("generator CPU s while connecting", |r| {
        r.idle
            .as_ref()
            .map(|i| format!("{:.2}", i.generator_connect_cpu_s))
    }),
    ("server CPU s while held", |r| {
        r.server.as_ref().map(|s| format!("{:.2}", s.cpu_s))
    }),
];

/// The scenario's key metric: what "median run" is the median of.
fn key(r: &Report) -> f64 {
    let v = match r.scenario.as_str() {
        "ceiling" => r.max_sustained_deliveries_per_s,
        "echo" => r.round_trips_per_s,
        "idle" => r
            .idle
            .as_ref()
            .and_then(|i| i.server_rss_per_connection_bytes),
        _ => r.deliveries_per_server_cpu_s.or(r.deliveries_per_s),
    };
    v.unwrap_or(0.0)
}

/// The run with the median key metric (the lower middle for an even count).
fn median<'a>(runs: &[&'a Report]) -> Option<&'a Report> {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| key(a).total_cmp(&key(b)));
    sorted.get(sorted.len().saturating_sub(1) / 2).copied()
}

/// One report per (scenario, label): the median run where there are several.
pub fn representative(reports: &[Report]) -> Vec<Report> {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for r in reports {
        if !keys.contains(&(r.scenario.as_str(), r.label.as_str())) {
            keys.push((&r.scenario, &r.label));
        }
    }
    keys.iter()
        .filter_map(|(s, l)| {
            let runs: Vec<&Report> = reports
                .iter()
                .filter(|r| r.scenario == *s && r.label == *l)
                .collect();
            median(&runs).cloned()
        })
        .collect()
}

/// The comparison table for `reports`.
pub fn markdown(reports: &[Report]) -> String {
    let mut labels: Vec<&str> = Vec::new();
    for r in reports {
        if !labels.contains(&r.label.as_str()) {
            labels.push(&r.label);
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "| scenario / metric | {} |", labels.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(labels.len()));
    for (scenario, rows) in [
        ("broadcast", BROADCAST),
        ("ceiling", CEILING),
        ("echo", ECHO),
        ("drag", DRAG),
        ("idle", IDLE),
    ] {
        let all: Vec<Vec<&Report>> = labels
            .iter()
            .map(|l| {
                reports
                    .iter()
                    .filter(|r| r.scenario == scenario && r.label == *l)
                    .collect()
            })
            .collect();
        if all.iter().all(Vec::is_empty) {
            continue;
        }
        let runs: Vec<Option<&Report>> = all.iter().map(|rs| median(rs)).collect();
        let counts: Vec<String> = all
            .iter()
            .map(|rs| match rs.len() {
                0 | 1 => String::new(),
                n => format!(" median of {n}"),
            })
            .collect();
        let _ = writeln!(out, "| **{scenario}** |{} |", counts.join(" |"));
        for (name, get) in rows {
            let cells: Vec<String> = runs
                .iter()
                .map(|r| r.and_then(get).unwrap_or_else(|| "–".to_string()))
                .collect();
            let _ = writeln!(out, "| {name} | {} |", cells.join(" | "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_column_per_server_and_a_dash_where_a_run_is_missing() {
        let mut ours = Report::new("broadcast", "attractio", "ws://127.0.0.1:1/");
        ours.deliveries_per_s = Some(45_000.0);
        let mut seed = Report::new("broadcast", "seed-node", "ws://127.0.0.1:2/");
        seed.deliveries_per_s = Some(44_999.6);
        let echo = Report::new("echo", "seed-node", "ws://127.0.0.1:2/");
        let table = markdown(&[ours, seed, echo]);
        assert!(table.starts_with("| scenario / metric | attractio | seed-node |"));
        assert!(table.contains("| deliveries/s | 45,000 | 45,000 |"));
        assert!(table.contains("| **echo** |"));
        assert!(table.contains("| round trips/s | – | – |"));
        assert!(!table.contains("**idle**"));
    }

    #[test]
    fn repeated_runs_show_the_median_one() {
        let runs: Vec<Report> = [3.0, 1.0, 2.0]
            .into_iter()
            .map(|v| {
                let mut r = Report::new("echo", "seed-node", "ws://127.0.0.1:2/");
                r.round_trips_per_s = Some(v * 1000.0);
                r
            })
            .collect();
        let table = markdown(&runs);
        assert!(table.contains("| **echo** | median of 3 |"), "{table}");
        assert!(table.contains("| round trips/s | 2,000 |"));
    }
}
