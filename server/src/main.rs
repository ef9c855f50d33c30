//! attractio's server binary: configuration, start-up and graceful
//! shutdown. The map of the code is in ARCHITECTURE.md at the repo root.

mod admission;
mod api;
mod auth;
mod cluster;
mod config;
mod connection;
mod deadline;
mod history;
mod http;
mod hub;
mod identity;
mod metrics;
mod outbox;
mod room;
mod rules;
mod store;
mod webhooks;
mod ws;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::history::{HistoryBudget, HistoryLimits};
use crate::hub::Hub;
use crate::identity::{CrashedRun, TokenKey};
use crate::metrics::Metrics;
use crate::room::RoomContext;
use crate::rules::RoomLimits;
use crate::store::{RoomStore, SledStore};
use protocol::limits::BoardLimits;

/// What every request and connection shares.
pub struct AppState {
    config: Config,
    /// Connection counts and room-creation buckets (`admission.rs`).
    admission: Arc<Admission>,
    /// The keys that verify the app's tokens, and who may join which room
    /// (`auth.rs`).
    auth: Arc<crate::auth::Auth>,
    /// The server API's keys and remembered publishes (`api/`).
    api: crate::api::Api,
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
    /// A single server's state (for the unit tests).
    #[cfg(test)]
    fn open(config: Config) -> anyhow::Result<Arc<AppState>> {
        AppState::open_node(config, None)
    }

    /// Opens the store and builds what every connection and room shares.
    /// `cluster`: this server is a node (`--redis-url`).
    fn open_node(config: Config, cluster: Option<Arc<Cluster>>) -> anyhow::Result<Arc<AppState>> {
        let auth = Arc::new(crate::auth::Auth::from_config(&config)?);
        let store = SledStore::open(&config.data_dir)
            .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
        let mut boot = store.boot().context("reading the store's boot record")?;
        if let Some(cluster) = &cluster {
            // cluster hook: client ids carry the node's number, tokens the
            // cluster's key (a client resumes on any node), and no local
            // crash matters (the rooms live in Redis).
            boot.number = cluster.node;
            boot.secret = cluster.token_secret;
            boot.previous_run_clean = true;
        }
        // In a cluster every node signs as the same run.
        let token_boot = if cluster.is_some() { 0 } else { boot.number };
        let store: Arc<dyn RoomStore> = Arc::new(store);
        let metrics = Arc::new(Metrics::default());
        let tokens = Arc::new(TokenKey::new(boot.secret, token_boot));
        let shutdown = CancellationToken::new();
        let history = Arc::new(HistoryBudget::new(config.history_total_bytes));
        let webhooks =
            crate::webhooks::Webhooks::start(&config, metrics.webhooks.clone(), shutdown.clone())?;
        let hub = Hub::new(Arc::new(RoomContext {
            max_room_size: config.max_room_size,
            limits: RoomLimits {
                board: BoardLimits {
                    words: config.max_board_words,
                    text_chars: config.max_word_text,
                    bytes: config.max_board_bytes,
                },
                locks_per_member: config.max_locks_per_member,
            },
            max_room_stored_bytes: config.max_room_stored_bytes,
            max_turn_bytes: config.max_turn_bytes,
            save_interval: config.save_interval,
            state_timeout: config.state_timeout,
            history: HistoryLimits {
                frames: config.history,
                bytes: config.history_bytes,
                budget: history.clone(),
            },
            resume_window: config.resume_window,
            api_idempotency_keys: usize::try_from(config.api_idempotency_keys)
                .unwrap_or(usize::MAX),
            api_idempotency_window: config.api_idempotency_window,
            previous_run_clean: boot.previous_run_clean,
            crashed_run: (!boot.previous_run_clean)
                .then(|| CrashedRun::new(boot.number, config.resume_window)),
            tokens: tokens.clone(),
            store: store.clone(),
            cluster,
            webhooks,
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        }));
        let max_connections = config
            .max_connections
            .unwrap_or_else(admission::default_max_connections);
        let max_per_address = config
            .max_connections_per_ip
            .unwrap_or_else(|| admission::default_max_per_address(max_connections));
        let max_http_per_address = match config.max_http_connections_per_ip {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => admission::default_max_http_per_address(max_connections, max_per_address),
        };
        let admission = Admission::new(
            max_connections,
            max_per_address,
            max_http_per_address,
            config.new_rooms_per_minute,
        );
        Ok(Arc::new(AppState {
            admission,
            auth,
            api: crate::api::Api::from_config(&config),
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
        // Its fallback for a failed write is `eprintln!`, which panics
        // when stderr is gone (a closed pipe, a log collector restarted):
        // every task that logs would die with it. A log line lost is
        // better.
        .log_internal_errors(false)
        .init();
    let config = Config::parse();

    let cluster = match &config.redis_url {
        Some(url) => {
            let retention = cluster::snapshot::Retention {
                snapshot_every: config.cluster_snapshot_every,
                snapshot_bytes: config.cluster_snapshot_bytes,
                keys_for: config.room_retention,
            };
            let queues = cluster::Queues {
                append: config.cluster_append_queue as usize,
                early: config.cluster_early_entries as usize,
                live: config.cluster_live_queue as usize,
            };
            let cluster = Cluster::connect(url, config.redis_cluster, (retention, queues)).await?;
            cluster.vouch_for_hosted_rooms();
            Some(cluster)
        }
        None => None,
    };
    let state = AppState::open_node(config, cluster)?;
    let (config, hub, shutdown) = (&state.config, state.hub.clone(), state.shutdown.clone());

    let listener = http::listen(config.addr).with_context(|| format!("binding {}", config.addr))?;
    let addr = listener.local_addr()?;
    // Tests and tools read this line to find the port (not `println!`: it
    // panics when nobody reads stdout any more).
    {
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "attractio listening on http://{addr}");
    }
    tracing::info!(static_dir = %state.static_dir.display(), data_dir = %config.data_dir.display(), "ready");

    // In a cluster (hook) held seats live in Redis, not in the local store.
    if state.hub.previous_run_clean() && state.hub.cluster().is_none() {
        open_rooms_holding_seats(&state).await;
    }
    let app = http::router(state.clone());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        stop.cancel();
        tracing::info!("shutting down");
    });
    let sweep = tokio::spawn(sweep_stored_rooms(state.clone()));
    tokio::spawn(state.auth.clone().watch_jwks(shutdown.clone()));
    http::serve(listener, app, state.clone()).await;
    sweep.abort();
    // Connections close with 1001, then rooms flush their boards. A client
    // that stopped reading cannot hold the stop past the timeout: its task
    // is dropped with the runtime (rooms already let go of it).
    state.connections.close();
    if tokio::time::timeout(config.shutdown_timeout, state.connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = state.connections.len(),
            "connections still closing after --shutdown-timeout: dropped"
        );
    }
    hub.tracker.close();
    hub.tracker.wait().await;
    state
        .store
        .mark_clean_stop()
        .context("marking the clean stop")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// After a clean stop, starts the rooms that hold seats for a resume, so
/// those seats count (for the cap and `roomFull`'s suggestions) before
/// anyone joins; each ends when its seats are given up. A second's margin
/// keeps out rooms whose seats would lapse while they load (a room with no
/// seat would wait for a join to end).
async fn open_rooms_holding_seats(state: &AppState) {
    let store = state.store.clone();
    let now = crate::history::now_ms() + 1000;
    match tokio::task::spawn_blocking(move || store.rooms_holding_seats(now)).await {
        Ok(Ok(rooms)) => {
            for room in rooms.iter().filter_map(|r| protocol::RoomName::new(r).ok()) {
                state.hub.open(&room);
            }
        }
        Ok(Err(e)) => {
            state.metrics.store_errors.fetch_add(1, Relaxed);
            tracing::error!("listing rooms that hold seats: {e}");
        }
        Err(e) => tracing::error!("listing rooms that hold seats: {e}"),
    }
}

/// Deletes stored rooms nobody opened or changed for `--room-retention`,
/// on the blocking pool, a few times per retention period (at most hourly,
/// at least every 100 ms); also forgets idle room-creation buckets.
async fn sweep_stored_rooms(state: Arc<AppState>) {
    let retention = state.config.room_retention;
    let period = (retention / 4).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(3600),
    );
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        state.admission.forget_idle();
        let cutoff = crate::history::now_ms().saturating_sub(retention.as_millis() as u64);
        let (store, hub) = (state.store.clone(), state.hub.clone());
        let swept = tokio::task::spawn_blocking(move || {
            store.sweep(cutoff, &|name| {
                protocol::RoomName::new(name).is_ok_and(|room| hub.is_open(&room))
            })
        })
        .await;
        match swept {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                state
                    .metrics
                    .limits
                    .rooms_expired
                    .fetch_add(n as u64, Relaxed);
                tracing::info!(rooms = n, "deleted stored rooms past --room-retention");
            }
            Ok(Err(e)) => {
                state.metrics.store_errors.fetch_add(1, Relaxed);
                tracing::error!("retention sweep: {e}");
            }
            Err(e) => tracing::error!("retention sweep task: {e}"),
        }
    }
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
