//! The result of one scenario run: a serialisable record (one JSON line per
//! scenario, read back by `loadgen plot`) and its human table.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::procfs::ServerUsage;
use crate::stats::LatencySummary;

/// One scenario's results. Fields a scenario does not measure stay `None`
/// and are left out of the JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    /// Which server was measured (e.g. "attractio", "seed-node").
    pub label: String,
    pub url: String,
    /// Length of the measured window, in seconds.
    pub duration_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients_per_room: Option<u64>,
    /// Frames each client sends per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_client: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliveries_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_trips: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_trips_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerUsage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliveries_per_server_cpu_s: Option<f64>,
    /// CPU seconds the generator itself used during the window.
    pub generator_cpu_s: f64,
    /// Ceiling: one entry per rate step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sustained_deliveries_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm: Option<StormStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_writes: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_writes_per_s: Option<f64>,
    /// Failed connections or other trouble worth a second look.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One ceiling step: an offered rate and what came of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub rate_per_client: f64,
    /// What the clients tried to cause: sends × recipients per second.
    pub offered_deliveries_per_s: f64,
    pub deliveries_per_s: f64,
    pub delivery_ratio: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu_s: Option<f64>,
    pub generator_cpu_s: f64,
    /// Delivery and p99 within bounds.
    pub sustained: bool,
}

/// Idle scenario: what holding many joined connections costs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IdleStats {
    pub requested: u64,
    pub connected: u64,
    pub failed: u64,
    /// Wall time to connect and join them all (joins confirmed by an echo).
    pub connect_join_s: f64,
    pub connect_join_per_s: f64,
    /// CPU seconds the generator and the server spent while connecting.
    pub generator_connect_cpu_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_connect_cpu_s: Option<f64>,
    pub source_addresses: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_rss_before_kb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_rss_after_kb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_rss_per_connection_bytes: Option<f64>,
    /// Connections still open at the end of the hold.
    pub still_open: u64,
    pub generator_rss_kb: u64,
}

/// Storm scenario: every client dropped at once and resumed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StormStats {
    pub clients: u64,
    /// The resumes were spread over this long after the drop.
    pub resume_within_s: f64,
    /// Every client resumed and its presence view exact before the timeout.
    pub settled: bool,
    /// From the drop until every client was resumed with an exact view.
    pub settle_s: f64,
    /// From the drop until the last `resumed` arrived.
    pub last_resumed_s: f64,
    pub recovered: u64,
    pub unrecovered: u64,
    /// Resumes that failed (connect error, or cut before `resumed`).
    pub failed: u64,
    /// Resumed clients the server cut afterwards (e.g. as slow consumers).
    #[serde(default)]
    pub cut: u64,
    /// Resumes answered `roomFull` because the server had not yet seen the
    /// old socket drop (the seat was still taken); each was sent again.
    #[serde(default)]
    pub room_full: u64,
    /// Clients whose view was exact when the storm was over.
    pub exact: u64,
    /// What the server wrote meanwhile (`wchar`), if its pid was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_written_bytes: Option<u64>,
    /// What the resumed connections received (text payloads).
    pub received_frames: u64,
    pub received_bytes: u64,
    /// Of those, `presence` and `presenceDiff` frames.
    pub presence_frames: u64,
    pub presence_bytes: u64,
}

impl Report {
    /// A report for `scenario` against `url`.
    pub fn new(scenario: &str, label: &str, url: &str) -> Self {
        Self {
            scenario: scenario.to_string(),
            label: label.to_string(),
            url: url.to_string(),
            ..Self::default()
        }
    }

    /// The human table: one `name  value` row per measured field.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |k: &str, v: String| rows.push((k.to_string(), v));
        row("scenario", format!("{} ({})", self.scenario, self.label));
        row("url", self.url.clone());
        row("window", format!("{:.2} s", self.duration_s));
        if let (Some(r), Some(c)) = (self.rooms, self.clients_per_room) {
            row("rooms × clients", format!("{r} × {c}"));
        }
        if let Some(r) = self.rate_per_client {
            row("rate per client", format!("{r:.2} /s"));
        }
        opt(&mut row, "sent", self.sent.map(group));
        opt(&mut row, "expected deliveries", self.expected.map(group));
        opt(&mut row, "delivered", self.delivered.map(group));
        opt(
            &mut row,
            "delivery ratio",
            self.delivery_ratio.map(|r| format!("{:.5}", r)),
        );
        opt(
            &mut row,
            "deliveries/s",
            self.deliveries_per_s.map(|v| group(v as u64)),
        );
        opt(&mut row, "round trips", self.round_trips.map(group));
        opt(
            &mut row,
            "round trips/s",
            self.round_trips_per_s.map(|v| group(v as u64)),
        );
        if let Some(l) = &self.latency {
            row(
                "latency p50/p90/p99",
                format!("{} / {} / {}", ms(l.p50_us), ms(l.p90_us), ms(l.p99_us)),
            );
            row(
                "latency p99.9/max",
                format!("{} / {}", ms(l.p999_us), ms(l.max_us)),
            );
        }
        if let Some(s) = &self.server {
            row("server cpu", format!("{:.2} s", s.cpu_s));
            row(
                "server rss / peak",
                format!("{} / {} KiB", group(s.rss_kb), group(s.peak_rss_kb)),
            );
        }
        opt(
            &mut row,
            "deliveries per server cpu-s",
            self.deliveries_per_server_cpu_s.map(|v| group(v as u64)),
        );
        row("generator cpu", format!("{:.2} s", self.generator_cpu_s));
        for s in &self.steps {
            row(
                &format!("step {:>7.2}/s", s.rate_per_client),
                format!(
                    "offered {:>10} delivered {:>10}/s ratio {:.4} p50 {} p99 {} {}",
                    group(s.offered_deliveries_per_s as u64),
                    group(s.deliveries_per_s as u64),
                    s.delivery_ratio,
                    ms(s.p50_us),
                    ms(s.p99_us),
                    if s.sustained { "ok" } else { "MISS" }
                ),
            );
        }
        opt(
            &mut row,
            "max sustained deliveries/s",
            self.max_sustained_deliveries_per_s.map(|v| group(v as u64)),
        );
        opt(&mut row, "stopped because", self.stop_reason.clone());
        if let Some(i) = &self.idle {
            row(
                "connections",
                format!(
                    "{} of {} ({} failed)",
                    group(i.connected),
                    group(i.requested),
                    i.failed
                ),
            );
            row(
                "connect+join",
                format!(
                    "{:.2} s, {}/s",
                    i.connect_join_s,
                    group(i.connect_join_per_s as u64)
                ),
            );
            row(
                "generator cpu connecting",
                format!("{:.2} s", i.generator_connect_cpu_s),
            );
            opt(
                &mut row,
                "server cpu connecting",
                i.server_connect_cpu_s.map(|v| format!("{v:.2} s")),
            );
            row("source addresses", i.source_addresses.to_string());
            opt(
                &mut row,
                "server rss before",
                i.server_rss_before_kb.map(|v| format!("{} KiB", group(v))),
            );
            opt(
                &mut row,
                "server rss after",
                i.server_rss_after_kb.map(|v| format!("{} KiB", group(v))),
            );
            opt(
                &mut row,
                "server rss per connection",
                i.server_rss_per_connection_bytes
                    .map(|v| format!("{:.0} B", v)),
            );
            row("still open after hold", group(i.still_open));
            row(
                "generator rss",
                format!("{} KiB", group(i.generator_rss_kb)),
            );
        }
        if let Some(st) = &self.storm {
            row(
                "clients resumed",
                format!(
                    "{} recovered, {} not, {} failed, {} cut after, {} exact ({} roomFull, asked again)",
                    group(st.recovered),
                    st.unrecovered,
                    st.failed,
                    st.cut,
                    group(st.exact),
                    st.room_full
                ),
            );
            row(
                "resumed with presence exact",
                format!(
                    "{:.2} s{} (last resumed {:.2} s; resumes over {:.2} s)",
                    st.settle_s,
                    if st.settled { "" } else { " NOT SETTLED" },
                    st.last_resumed_s,
                    st.resume_within_s
                ),
            );
            opt(
                &mut row,
                "server wrote",
                st.server_written_bytes.map(|b| format!("{} B", group(b))),
            );
            row(
                "received",
                format!(
                    "{} frames, {} B",
                    group(st.received_frames),
                    group(st.received_bytes)
                ),
            );
            row(
                "of which presence",
                format!(
                    "{} frames, {} B",
                    group(st.presence_frames),
                    group(st.presence_bytes)
                ),
            );
        }
        opt(
            &mut row,
            "store writes",
            self.store_writes.map(|v| format!("{v:.0}")),
        );
        opt(
            &mut row,
            "store writes/s",
            self.store_writes_per_s.map(|v| format!("{v:.1}")),
        );
        for w in &self.warnings {
            row("warning", w.clone());
        }
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "  {k:<width$}  {v}");
        }
        out
    }

    /// The report as one JSON line.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }

    /// Appends the JSON line to `path`.
    pub fn append_to(&self, path: &Path) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{}", self.json_line())?;
        Ok(())
    }
}

/// Reads every report from JSON-lines files.
pub fn read_reports(paths: &[impl AsRef<Path>]) -> Result<Vec<Report>> {
    let mut out = Vec::new();
    for p in paths {
        let p = p.as_ref();
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            out.push(
                serde_json::from_str(line)
                    .with_context(|| format!("{}:{}: not a report", p.display(), n + 1))?,
            );
        }
    }
    Ok(out)
}

fn opt(row: &mut impl FnMut(&str, String), k: &str, v: Option<String>) {
    if let Some(v) = v {
        row(k, v);
    }
}

/// Milliseconds with three decimals from microseconds.
fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

/// `1234567` as `1,234,567`.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            rooms: Some(50),
            clients_per_room: Some(10),
            sent: Some(5000),
            expected: Some(45000),
            delivered: Some(45000),
            delivery_ratio: Some(1.0),
            deliveries_per_s: Some(45000.0),
            steps: vec![Step {
                rate_per_client: 10.0,
                sustained: true,
                ..Step::default()
            }],
            ..Report::new("broadcast", "attractio", "ws://127.0.0.1:3000/")
        }
    }

    #[test]
    fn a_report_survives_its_json_line() {
        let r = sample();
        let line = r.json_line();
        assert!(!line.contains('\n'));
        assert!(!line.contains("idle"), "unmeasured fields are left out");
        assert_eq!(serde_json::from_str::<Report>(&line).expect("parses"), r);
    }

    #[test]
    fn the_table_shows_what_was_measured() {
        let t = sample().table();
        assert!(t.contains("broadcast (attractio)"));
        assert!(t.contains("45,000"));
        assert!(t.contains("50 × 10"));
        assert!(!t.contains("round trips"));
    }

    #[test]
    fn reports_are_read_back_from_json_lines_files() {
        let path =
            std::env::temp_dir().join(format!("loadgen-report-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        sample().append_to(&path).expect("written");
        sample().append_to(&path).expect("written");
        assert_eq!(read_reports(&[&path]).expect("read").len(), 2);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn digits_are_grouped_in_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }
}
