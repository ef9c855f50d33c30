//! drag: attractio's real workload. Every member of every room drags word
//! `w1` (created first by one member with `stateUpdate`): `moving` at 30 Hz
//! and a `moveEnd` once a second. Counts relayed moves, and the server's
//! store writes from its `/metrics` when given.

use std::time::Duration;

use anyhow::Result;

use super::broadcast::report_of;
use super::{Common, Fleet, Workload};
use crate::metrics;
use crate::report::Report;

/// Options of the drag scenario.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 50)]
    pub rooms: usize,
    #[arg(long, default_value_t = 5)]
    pub clients: usize,
    /// `moving` frames per second per client.
    #[arg(long, default_value_t = 30.0)]
    pub hz: f64,
    /// A `moveEnd` after this many `moving` frames.
    #[arg(long, default_value_t = 30)]
    pub moves_per_end: u64,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub drain: Duration,
}

/// The counter of board saves on attractio's `/metrics`.
pub const STORE_SAVES: &str = "attractio_store_saves_total";

/// Runs the scenario once.
pub async fn run(args: &Args) -> Result<Report> {
    let c = &args.common;
    let workload = Workload::Drag {
        moves_per_end: args.moves_per_end,
    };
    let fleet = Fleet::join(
        c,
        args.rooms,
        args.clients,
        workload,
        Duration::from_secs(1),
    )
    .await?;
    let saves_before = scrape(c).await;
    let result = fleet
        .run_phase(1, args.hz, c.duration, args.drain, c.server_pid)
        .await;
    let saves_after = scrape(c).await;
    let failed = fleet.failed;
    fleet.close().await;
    let mut report = report_of("drag", c, &result);
    report.rooms = Some(args.rooms as u64);
    report.clients_per_room = Some(args.clients as u64);
    report.rate_per_client = Some(args.hz);
    if let (Some(a), Some(b)) = (saves_before, saves_after) {
        report.store_writes = Some(b - a);
        report.store_writes_per_s = Some((b - a) / result.window_s);
    }
    if failed > 0 {
        report
            .warnings
            .push(format!("{failed} clients failed to join"));
    }
    Ok(report)
}

async fn scrape(c: &Common) -> Option<f64> {
    let url = c.metrics_url.as_deref()?;
    match metrics::scrape(url, STORE_SAVES).await {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("warning: {e:#}");
            None
        }
    }
}
