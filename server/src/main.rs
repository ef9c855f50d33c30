//! attractio's server binary: configuration, start-up and graceful
//! shutdown. The map of the code is in ARCHITECTURE.md at the repo root.

mod config;
mod connection;
mod history;
mod http;
mod hub;
mod identity;
mod metrics;
mod outbox;
mod room;
mod rules;
mod store;
mod ws;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::history::{HistoryBudget, HistoryLimits};
use crate::hub::Hub;
use crate::identity::TokenKey;
use crate::metrics::Metrics;
use crate::room::RoomContext;
use crate::store::{RoomStore, SledStore};

/// What every request and connection shares.
pub struct AppState {
    config: Config,
    hub: Arc<Hub>,
    store: Arc<dyn RoomStore>,
    metrics: Arc<Metrics>,
    tokens: Arc<TokenKey>,
    /// The bytes of history every room keeps, for `/metrics`.
    history: Arc<HistoryBudget>,
    /// Embedded in client ids so ids are never reused, even across restarts.
    boot: u64,
    /// Per-connection counter: the low half of client ids.
    next_conn: AtomicU64,
    static_dir: PathBuf,
    shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for their close frames.
    connections: TaskTracker,
}

impl AppState {
    /// Opens the store and builds what every connection and room shares.
    fn open(config: Config) -> anyhow::Result<Arc<AppState>> {
        let store = SledStore::open(&config.data_dir)
            .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
        let boot = store.boot().context("reading the store's boot record")?;
        let store: Arc<dyn RoomStore> = Arc::new(store);
        let metrics = Arc::new(Metrics::default());
        let tokens = Arc::new(TokenKey::new(boot.secret));
        let shutdown = CancellationToken::new();
        let history = Arc::new(HistoryBudget::new(config.history_total_bytes));
        let hub = Hub::new(Arc::new(RoomContext {
            max_room_size: config.max_room_size,
            save_interval: config.save_interval,
            state_timeout: config.state_timeout,
            history: HistoryLimits {
                frames: config.history,
                bytes: config.history_bytes,
                budget: history.clone(),
            },
            resume_window: config.resume_window,
            previous_run_clean: boot.previous_run_clean,
            tokens: tokens.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        }));
        Ok(Arc::new(AppState {
            static_dir: config.resolved_static_dir(),
            config,
            hub,
            store,
            metrics,
            tokens,
            history,
            boot: boot.number & 0x1f_ffff,
            next_conn: AtomicU64::new(1),
            shutdown,
            connections: TaskTracker::new(),
        }))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::parse();

    let state = AppState::open(config)?;
    let (config, hub, shutdown) = (&state.config, state.hub.clone(), state.shutdown.clone());

    let listener = http::listen(config.addr).with_context(|| format!("binding {}", config.addr))?;
    let addr = listener.local_addr()?;
    // Tests and tools read this line to find the port.
    println!("attractio listening on http://{addr}");
    tracing::info!(static_dir = %state.static_dir.display(), data_dir = %config.data_dir.display(), "ready");

    let app = http::router(state.clone());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    http::serve(listener, app, shutdown.clone()).await;
    // Connections close with 1001, then rooms flush their boards.
    state.connections.close();
    state.connections.wait().await;
    hub.tracker.close();
    hub.tracker.wait().await;
    state
        .store
        .mark_clean_stop()
        .context("marking the clean stop")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
