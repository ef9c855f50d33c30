//! ceiling: one big room whose members raise their send rate step by step
//! until delivery drops below the bar or p99 latency passes the limit; the
//! highest step that held is the sustained deliveries per second.

use std::time::Duration;

use anyhow::Result;

use super::{Common, Fleet, Workload, MAX_PHASES};
use crate::report::{Report, Step};

/// Options of the ceiling scenario. `--duration` is the length of each step.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Members of the one room (the server's room-size limit must allow it).
    #[arg(long, default_value_t = 200)]
    pub clients: usize,
    /// Per-client rate of the first step, messages/s.
    #[arg(long, default_value_t = 1.0)]
    pub start_rate: f64,
    /// Each step multiplies the rate by this.
    #[arg(long, default_value_t = 1.25)]
    pub factor: f64,
    /// Stop after this many steps even if the server keeps up.
    #[arg(long, default_value_t = 24)]
    pub max_steps: usize,
    /// Lowest delivery ratio that counts as sustained.
    #[arg(long, default_value_t = 0.999)]
    pub min_ratio: f64,
    /// Highest p99 latency that counts as sustained.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "50ms")]
    pub max_p99: Duration,
    /// Times a missed step is tried again at the same rate before stopping.
    #[arg(long, default_value_t = 1)]
    pub retries: usize,
    /// Wait after each step for deliveries in flight.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub drain: Duration,
}

/// Runs the steps.
pub async fn run(args: &Args) -> Result<Report> {
    let c = &args.common;
    let fleet = Fleet::join(c, 1, args.clients, Workload::Chat, Duration::from_secs(1)).await?;
    let mut report = Report::new("ceiling", &c.label, &c.url);
    report.rooms = Some(1);
    report.clients_per_room = Some(args.clients as u64);
    let mut rate = args.start_rate;
    let mut best: Option<f64> = None;
    let (mut phase, mut rates, mut attempt) = (0, 0, 0);
    while rates < args.max_steps && phase < MAX_PHASES - 2 {
        phase += 1;
        let r = fleet
            .run_phase(phase, rate, c.duration, args.drain, c.server_pid)
            .await;
        let latency = r
            .latency
            .clone()
            .unwrap_or_else(|| crate::stats::LatencySummary {
                samples: 0,
                mean_us: 0.0,
                p50_us: 0,
                p90_us: 0,
                p99_us: u64::MAX,
                p999_us: 0,
                max_us: 0,
                curve: Vec::new(),
            });
        let ratio = r.ratio();
        let p99_ok = latency.p99_us <= args.max_p99.as_micros() as u64;
        let sustained = ratio >= args.min_ratio && p99_ok;
        report.generator_cpu_s += r.generator_cpu_s;
        report.steps.push(Step {
            rate_per_client: rate,
            offered_deliveries_per_s: r.expected as f64 / r.window_s,
            deliveries_per_s: r.per_s(),
            delivery_ratio: ratio,
            p50_us: latency.p50_us,
            p99_us: latency.p99_us,
            server_cpu_s: r.server.as_ref().map(|s| s.cpu_s),
            generator_cpu_s: r.generator_cpu_s,
            sustained,
        });
        eprintln!(
            "ceiling step {phase}: rate {rate:.2}/s -> {:.0} deliveries/s, ratio {ratio:.5}, p99 {} µs, server cpu {:.2} s, generator cpu {:.2} s",
            r.per_s(),
            latency.p99_us,
            r.server.as_ref().map_or(0.0, |s| s.cpu_s),
            r.generator_cpu_s
        );
        if !sustained && attempt < args.retries {
            // A shared machine can stall either side for a moment; a miss
            // counts only if the same rate misses again.
            attempt += 1;
            tokio::time::sleep(args.drain).await;
            continue;
        }
        if !sustained {
            report.stop_reason = Some(if ratio < args.min_ratio {
                format!("delivery ratio {ratio:.5} < {}", args.min_ratio)
            } else {
                format!(
                    "p99 {} µs > {} µs",
                    latency.p99_us,
                    args.max_p99.as_micros()
                )
            });
            break;
        }
        best = Some(best.map_or(r.per_s(), |b: f64| b.max(r.per_s())));
        report.server = r.server.clone();
        report.latency = r.latency.clone();
        report.rate_per_client = Some(rate);
        report.deliveries_per_s = Some(r.per_s());
        report.delivery_ratio = Some(ratio);
        report.sent = Some(r.sent);
        report.expected = Some(r.expected);
        report.delivered = Some(r.delivered);
        report.duration_s = r.window_s;
        if let Some(s) = &r.server {
            if s.cpu_s > 0.0 {
                report.deliveries_per_server_cpu_s = Some(r.delivered as f64 / s.cpu_s);
            }
        }
        rate *= args.factor;
        rates += 1;
        attempt = 0;
    }
    if report.stop_reason.is_none() {
        report.stop_reason = Some(format!("reached {rates} rates"));
    }
    report.max_sustained_deliveries_per_s = best;
    if fleet.failed > 0 {
        report
            .warnings
            .push(format!("{} clients failed to join", fleet.failed));
    }
    fleet.close().await;
    Ok(report)
}
