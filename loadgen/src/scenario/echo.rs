//! echo: a closed loop. K joined clients each send `echo` carrying a send
//! time and wait for it to come back before sending the next; reports round
//! trips per second and their latency.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::time::Instant;

use super::Common;
use crate::client::{self, contains, now_us, number_after, Target};
use crate::procfs::{self, ServerWatch};
use crate::raw::{self, Incoming};
use crate::report::Report;
use crate::stats::Tally;

/// Options of the echo scenario.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Clients, each with one echo in flight.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Clients per room they join first (like real clients do).
    #[arg(long, default_value_t = 10)]
    pub per_room: usize,
    /// At most this many echoes per second per client (0: as fast as the
    /// replies come). Servers with a per-client rate limit need it.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
}

/// Runs the scenario once.
pub async fn run(args: &Args) -> Result<Report> {
    let c = &args.common;
    let target = Target::resolve(&c.url).await?;
    let mut clients = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let room = c.room(i / args.per_room.max(1));
        let (tx, rx) = raw::connect(&target).await?;
        tx.text(client::join_frame(&room).as_bytes()).await?;
        clients.push((tx, rx));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = Arc::new(Tally::default());
    let running = Arc::new(AtomicBool::new(true));
    let refused = Arc::new(AtomicU64::new(0));
    let watch = ServerWatch::start(c.server_pid);
    let cpu0 = procfs::own_cpu_seconds();
    let start = Instant::now();
    let mut loops = Vec::with_capacity(args.clients);
    for (tx, mut rx) in clients {
        let tally = tally.clone();
        let running = running.clone();
        let refused = refused.clone();
        let mut pace = (args.rate > 0.0).then(|| {
            let mut i = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        loops.push(tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                if let Some(p) = pace.as_mut() {
                    p.tick().await;
                }
                let frame = format!(r#"{{"action":"echo","data":{{"t":{}}}}}"#, now_us());
                tx.text(frame.as_bytes()).await?;
                tally.sent(1);
                loop {
                    let Incoming::Text(bytes) = rx.next().await? else {
                        anyhow::bail!("server closed");
                    };
                    if contains(bytes, br#""action":"error""#) {
                        // Refused (say, rate limited): the loop goes on.
                        refused.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    if !contains(bytes, br#""echo""#) {
                        continue;
                    }
                    if let Some(sent) = number_after(bytes, br#""t":"#) {
                        if running.load(Ordering::Relaxed) {
                            tally.delivered(Some(now_us().saturating_sub(sent)));
                        }
                        break;
                    }
                }
            }
            tx.close().await;
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(c.duration).await;
    running.store(false, Ordering::Relaxed);
    let window = start.elapsed().as_secs_f64();
    let server = watch.and_then(|w| w.finish());
    let generator_cpu_s = procfs::own_cpu_seconds() - cpu0;
    let mut errors = Vec::new();
    for l in loops {
        match tokio::time::timeout(Duration::from_secs(2), l).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => errors.push(format!("{e:#}")),
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(_) => errors.push("an echo never came back".to_string()),
        }
    }
    let (_, _, round_trips) = tally.counts();
    let mut report = Report::new("echo", &c.label, &c.url);
    report.duration_s = window;
    report.clients_per_room = Some(args.per_room as u64);
    report.round_trips = Some(round_trips);
    report.round_trips_per_s = Some(round_trips as f64 / window);
    report.latency = tally.latency();
    report.generator_cpu_s = generator_cpu_s;
    if let Some(s) = &server {
        if s.cpu_s > 0.0 {
            report.deliveries_per_server_cpu_s = Some(round_trips as f64 / s.cpu_s);
        }
    }
    report.server = server;
    errors.dedup();
    report.warnings = errors;
    let refused = refused.load(Ordering::Relaxed);
    if refused > 0 {
        report
            .warnings
            .push(format!("{refused} echoes refused with an error frame"));
    }
    Ok(report)
}
