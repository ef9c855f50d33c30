//! idle: N connections joined to rooms and then just held, reading so that
//! the server's pings are answered. Measures the connect+join rate and the
//! server's resident memory per held connection. Past `--per-source`
//! connections the generator binds further 127.0.0.x source addresses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::Common;
use crate::client::{self, contains, source_for, Target};
use crate::procfs;
use crate::report::{IdleStats, Report};

/// Options of the idle scenario. `--duration` is how long they are held.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Connections per room.
    #[arg(long, default_value_t = 10)]
    pub per_room: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Connections per source address (127.0.0.1, then .2, …). The kernel's
    /// search for a free ephemeral port gets slower as the range fills (at
    /// 19k connections from one address it cost 5× the CPU of 4 addresses),
    /// so spreading early keeps the generator off the critical path.
    #[arg(long, default_value_t = 4_000)]
    pub per_source: usize,
    /// Count a join only once an echo sent after it came back (the server
    /// handles a connection's frames in order, so the join was processed).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub confirm: bool,
    /// Wait after the last join before reading the server's memory.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub settle: Duration,
    /// Give up on connecting after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
    pub connect_timeout: Duration,
}

/// Runs the scenario once.
pub async fn run(args: &Args) -> Result<Report> {
    let c = &args.common;
    let limit = procfs::raise_nofile(args.connections as u64 + 10_000);
    if (limit as usize) < args.connections + 100 {
        eprintln!(
            "warning: open-file limit {limit} is below {} connections",
            args.connections
        );
    }
    let target = Target::resolve(&c.url).await?;
    let server_pid = c.server_pid.map(|p| p.to_string());
    let rss = |pid: &Option<String>| {
        pid.as_ref()
            .and_then(|p| procfs::memory(p).ok())
            .map(|m| m.rss_kb)
    };
    let rss_before = rss(&server_pid);
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let joined = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let open = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let connect_watch = procfs::ServerWatch::start(c.server_pid);
    let connect_cpu0 = procfs::own_cpu_seconds();
    let start = Instant::now();
    let mut held = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let room = c.room(i / args.per_room.max(1));
        let source = source_for(i, args.per_source);
        let (target, gate, joined, failed, open, first_error) = (
            target.clone(),
            gate.clone(),
            joined.clone(),
            failed.clone(),
            open.clone(),
            first_error.clone(),
        );
        let confirm = args.confirm;
        held.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let ws = match connect_and_join(&target, &room, source, confirm).await {
                Ok(ws) => ws,
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    let mut first = first_error.lock().unwrap_or_else(|e| e.into_inner());
                    first.get_or_insert_with(|| format!("{e:#}"));
                    return;
                }
            };
            drop(permit);
            joined.fetch_add(1, Ordering::Relaxed);
            open.fetch_add(1, Ordering::Relaxed);
            let mut ws = ws;
            // Reading answers pings (tungstenite queues and flushes the pong).
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_close() {
                    break;
                }
            }
            open.fetch_sub(1, Ordering::Relaxed);
        }));
    }
    let wanted = args.connections as u64;
    let deadline = start + args.connect_timeout;
    let mut last_print = Instant::now();
    while joined.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < wanted
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if last_print.elapsed() > Duration::from_secs(5) {
            last_print = Instant::now();
            eprintln!(
                "idle: {} joined, {} failed",
                joined.load(Ordering::Relaxed),
                failed.load(Ordering::Relaxed)
            );
        }
    }
    let connect_join_s = start.elapsed().as_secs_f64();
    let generator_connect_cpu_s = procfs::own_cpu_seconds() - connect_cpu0;
    let server_connect_cpu_s = connect_watch.and_then(|w| w.finish()).map(|u| u.cpu_s);
    let connected = joined.load(Ordering::Relaxed);
    tokio::time::sleep(args.settle).await;
    let rss_after = rss(&server_pid);
    let watch = procfs::ServerWatch::start(c.server_pid);
    let cpu0 = procfs::own_cpu_seconds();
    tokio::time::sleep(c.duration).await;
    let still_open = open.load(Ordering::Relaxed);
    let server = watch.and_then(|w| w.finish());
    let generator_cpu_s = procfs::own_cpu_seconds() - cpu0;
    let generator_rss_kb = procfs::memory("self").map(|m| m.rss_kb).unwrap_or(0);
    for h in &held {
        h.abort();
    }
    for h in held {
        let _ = h.await;
    }
    let mut report = Report::new("idle", &c.label, &c.url);
    report.duration_s = c.duration.as_secs_f64();
    report.clients_per_room = Some(args.per_room as u64);
    report.generator_cpu_s = generator_cpu_s;
    report.server = server;
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if connected > 0 => {
            Some((a as f64 - b as f64) * 1024.0 / connected as f64)
        }
        _ => None,
    };
    report.idle = Some(IdleStats {
        requested: wanted,
        connected,
        failed: failed.load(Ordering::Relaxed),
        connect_join_s,
        connect_join_per_s: connected as f64 / connect_join_s.max(1e-9),
        generator_connect_cpu_s,
        server_connect_cpu_s,
        source_addresses: args.connections.div_ceil(args.per_source.max(1)) as u64,
        server_rss_before_kb: rss_before,
        server_rss_after_kb: rss_after,
        server_rss_per_connection_bytes: per_conn,
        still_open,
        generator_rss_kb,
    });
    if let Some(e) = first_error.lock().unwrap_or_else(|e| e.into_inner()).take() {
        report.warnings.push(format!("first connect error: {e}"));
    }
    Ok(report)
}

async fn connect_and_join(
    target: &Target,
    room: &str,
    source: Option<std::net::Ipv4Addr>,
    confirm: bool,
) -> Result<client::Ws> {
    let mut ws = client::join(target, room, source, 2048).await?;
    if confirm {
        ws.send(Message::text(r#"{"action":"echo","data":{"j":1}}"#))
            .await?;
        loop {
            let msg = ws
                .next()
                .await
                .context("closed before the echo came back")??;
            if let Message::Text(t) = &msg {
                if contains(t.as_bytes(), br#""echo""#) {
                    break;
                }
            }
        }
    }
    Ok(ws)
}
