//! broadcast: R rooms × C clients each sending timestamped `talkToRoom` at a
//! fixed rate; every other member of the room should receive each one.
//! Reports deliveries, their ratio and rate, latency, and the server's cost.

use std::time::Duration;

use anyhow::Result;

use super::{Common, Fleet, PhaseResult, Workload};
use crate::report::Report;

/// Options of the broadcast scenario.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Number of rooms.
    #[arg(long, default_value_t = 50)]
    pub rooms: usize,
    /// Clients per room.
    #[arg(long, default_value_t = 10)]
    pub clients: usize,
    /// Messages per second each client sends.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// How long to wait after the window for deliveries still in flight.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub drain: Duration,
    /// Pause between joining and the window, for joins to settle.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub settle: Duration,
}

impl Args {
    /// Broadcast options with defaults for `common`.
    pub fn new(common: Common, rooms: usize, clients: usize, rate: f64) -> Self {
        Self {
            common,
            rooms,
            clients,
            rate,
            drain: Duration::from_secs(2),
            settle: Duration::from_millis(500),
        }
    }
}

/// Runs the scenario once.
pub async fn run(args: &Args) -> Result<Report> {
    let c = &args.common;
    let fleet = Fleet::join(c, args.rooms, args.clients, Workload::Chat, args.settle).await?;
    let result = fleet
        .run_phase(1, args.rate, c.duration, args.drain, c.server_pid)
        .await;
    let failed = fleet.failed;
    fleet.close().await;
    let mut report = report_of("broadcast", c, &result);
    report.rooms = Some(args.rooms as u64);
    report.clients_per_room = Some(args.clients as u64);
    report.rate_per_client = Some(args.rate);
    if failed > 0 {
        report
            .warnings
            .push(format!("{failed} clients failed to join"));
    }
    Ok(report)
}

/// The common part of a report built from one phase.
pub fn report_of(scenario: &str, c: &Common, r: &PhaseResult) -> Report {
    let mut report = Report::new(scenario, &c.label, &c.url);
    report.duration_s = r.window_s;
    report.sent = Some(r.sent);
    report.expected = Some(r.expected);
    report.delivered = Some(r.delivered);
    report.delivery_ratio = Some(r.ratio());
    report.deliveries_per_s = Some(r.per_s());
    report.latency = r.latency.clone();
    report.generator_cpu_s = r.generator_cpu_s;
    if let Some(s) = &r.server {
        if s.cpu_s > 0.0 {
            report.deliveries_per_server_cpu_s = Some(r.delivered as f64 / s.cpu_s);
        }
    }
    report.server = r.server.clone();
    report
}
