//! The scenarios and the machinery they share: command-line options common
//! to all of them, and the [`Fleet`] — rooms of joined clients whose senders
//! follow timed phases (a rate for a window) while their receivers tally
//! deliveries into that phase's [`Tally`].

pub mod broadcast;
pub mod ceiling;
pub mod drag;
pub mod echo;
pub mod idle;
pub mod smoke;
pub mod storm;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

use crate::client::{self, contains, leading_action, now_us, number_after, Target};
use crate::procfs::{self, ServerUsage, ServerWatch};
use crate::raw;
use crate::stats::Tally;

/// Options every scenario takes.
#[derive(clap::Args, Clone, Debug)]
pub struct Common {
    /// WebSocket URL of the server; must resolve to a loopback address.
    /// For broadcast, ceiling and drag it may list several, comma-separated
    /// (the nodes of one cluster): each room's members are spread over them
    /// in turn, so every room spans the nodes.
    #[arg(long, default_value = "ws://127.0.0.1:3000/")]
    pub url: String,
    /// Name of the server under test, carried into reports and plots.
    #[arg(long, default_value = "server")]
    pub label: String,
    /// The server's process id: report its CPU seconds and memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The server's Prometheus page (http://127.0.0.1:PORT/metrics), for store writes.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Length of the measured window.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub duration: Duration,
    /// Append the JSON report line to this file instead of printing it.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also draw the report as an SVG plot here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Prefix of room names; a per-run token is added so runs never mix.
    #[arg(long, default_value = "lg")]
    pub room_prefix: String,
}

impl Common {
    /// Options for tests and the smoke run: `url`, everything else default.
    pub fn for_url(url: &str) -> Self {
        Self {
            url: url.to_string(),
            label: "server".to_string(),
            server_pid: None,
            metrics_url: None,
            duration: Duration::from_secs(1),
            json: None,
            svg: None,
            room_prefix: "lg".to_string(),
        }
    }

    /// The name of room `i` for this run.
    pub fn room(&self, i: usize) -> String {
        static TOKEN: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let token = TOKEN.get_or_init(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            (t ^ std::process::id()) % 1_000_000
        });
        format!("{}{token}-{i}", self.room_prefix)
    }
}

/// What the fleet's clients send each tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Workload {
    /// `talkToRoom` with `{"t":send µs,"s":sender,"k":phase}`.
    Chat,
    /// `moving` on word `w1`, plus a `moveEnd` every `moves_per_end` ticks.
    Drag { moves_per_end: u64 },
}

/// One client's place in the fleet.
#[derive(Clone, Debug)]
struct Slot {
    room: String,
    /// Index over the whole fleet, used to stagger send times.
    index: usize,
    total: usize,
    /// Members of its room other than itself.
    recipients: u64,
}

/// What senders are told to do.
#[derive(Clone, Copy, Debug)]
enum Command {
    Wait,
    Run {
        phase: usize,
        rate: f64,
        start: Instant,
        end: Instant,
    },
    Stop,
}

/// Tallies of every phase, indexed by phase number; receivers find the
/// phase in the frame (chat) or use the current one (drag).
pub struct Phases {
    tallies: Vec<Tally>,
    current: AtomicUsize,
    /// Sender tasks still alive.
    senders: AtomicUsize,
    /// Every frame received, measured or not: joins are settled when it stops
    /// moving (a server may send each joiner a presence list per join).
    frames: AtomicU64,
    /// Senders not yet done with the running phase; the drain waits for
    /// them so a late (CPU-starved) sender's frames are still counted.
    busy: AtomicUsize,
}

/// Most phases a fleet can run (ceiling steps).
pub const MAX_PHASES: usize = 64;

impl Phases {
    fn new() -> Self {
        Self {
            tallies: (0..MAX_PHASES).map(|_| Tally::default()).collect(),
            current: AtomicUsize::new(0),
            senders: AtomicUsize::new(0),
            frames: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    /// The tally of `phase`.
    pub fn tally(&self, phase: usize) -> &Tally {
        &self.tallies[phase.min(MAX_PHASES - 1)]
    }

    fn record(&self, workload: Workload, frame: &[u8]) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        let action = leading_action(frame);
        match workload {
            Workload::Chat => {
                if action.is_some_and(|a| a != b"talkToRoom") {
                    return;
                }
                let Some(phase) = number_after(frame, br#""k":"#) else {
                    return;
                };
                let latency = number_after(frame, br#""t":"#).map(|t| now_us().saturating_sub(t));
                self.tally(phase as usize).delivered(latency);
            }
            Workload::Drag { .. } => {
                let moved = match action {
                    Some(a) => a == b"moving" || a == b"moveEnd",
                    None => contains(frame, br#""moving""#) || contains(frame, br#""moveEnd""#),
                };
                if moved {
                    self.tally(self.current.load(Ordering::Relaxed))
                        .delivered(None);
                }
            }
        }
    }
}

/// Rooms of joined clients, ready to run phases.
pub struct Fleet {
    workload: Workload,
    commands: watch::Sender<Command>,
    phases: Arc<Phases>,
    tasks: Vec<JoinHandle<()>>,
    /// Clients that failed to connect.
    pub failed: usize,
    pub rooms: usize,
    pub clients_per_room: usize,
}

/// How one phase went.
pub struct PhaseResult {
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub window_s: f64,
    pub latency: Option<crate::stats::LatencySummary>,
    pub server: Option<ServerUsage>,
    pub generator_cpu_s: f64,
}

impl PhaseResult {
    pub fn ratio(&self) -> f64 {
        if self.expected == 0 {
            0.0
        } else {
            self.delivered as f64 / self.expected as f64
        }
    }

    pub fn per_s(&self) -> f64 {
        self.delivered as f64 / self.window_s.max(1e-9)
    }
}

impl Fleet {
    /// Connects `rooms × clients` clients (at most 256 handshakes at once),
    /// joins them, and for drag has each room's first member create the word
    /// everyone will move. Waits `settle` for joins to finish.
    pub async fn join(
        common: &Common,
        rooms: usize,
        clients: usize,
        workload: Workload,
        settle: Duration,
    ) -> Result<Self> {
        let mut targets = Vec::new();
        for url in common.url.split(',') {
            targets.push(Target::resolve(url.trim()).await?);
        }
        let total = rooms * clients;
        let phases = Arc::new(Phases::new());
        let (commands, _) = watch::channel(Command::Wait);
        let gate = Arc::new(Semaphore::new(256));
        let mut joining = Vec::with_capacity(total);
        for r in 0..rooms {
            let room = common.room(r);
            for c in 0..clients {
                let slot = Slot {
                    room: room.clone(),
                    index: c * rooms + r,
                    total,
                    recipients: clients as u64 - 1,
                };
                // Member c of every room on node c (mod the nodes).
                let target = targets[c % targets.len()].clone();
                let gate = gate.clone();
                joining.push(tokio::spawn(async move {
                    let _permit = gate.acquire_owned().await;
                    let (tx, rx) = raw::connect(&target).await?;
                    tx.text(client::join_frame(&slot.room).as_bytes()).await?;
                    if c == 0 {
                        if let Workload::Drag { .. } = workload {
                            tx.text(state_update_frame(&slot.room).as_bytes()).await?;
                        }
                    }
                    anyhow::Ok((slot, tx, rx))
                }));
            }
        }
        let mut tasks = Vec::with_capacity(total * 2);
        let mut failed = 0;
        let mut first_error = None;
        for j in joining {
            match j.await.context("join task")? {
                Ok((slot, tx, rx)) => {
                    phases.senders.fetch_add(1, Ordering::Relaxed);
                    let phases_r = phases.clone();
                    tasks.push(tokio::spawn(async move {
                        rx.each_text(|t| phases_r.record(workload, t)).await
                    }));
                    tasks.push(tokio::spawn(send(
                        tx,
                        commands.subscribe(),
                        slot,
                        workload,
                        phases.clone(),
                    )));
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            if failed == total {
                return Err(e.context("no client could connect"));
            }
            eprintln!("warning: {failed} of {total} clients failed to join: {e:#}");
        }
        // At least `settle`, then until no frame arrived for 300 ms (at most 60 s).
        tokio::time::sleep(settle).await;
        let give_up = Instant::now() + Duration::from_secs(60);
        let mut seen = phases.frames.load(Ordering::Relaxed);
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = phases.frames.load(Ordering::Relaxed);
            if now == seen || Instant::now() >= give_up {
                break;
            }
            seen = now;
        }
        Ok(Self {
            workload,
            commands,
            phases,
            tasks,
            failed,
            rooms,
            clients_per_room: clients,
        })
    }

    /// Runs phase `phase`: every client sends at `rate`/s for `window`, then
    /// waits up to `drain` for the deliveries still in flight.
    pub async fn run_phase(
        &self,
        phase: usize,
        rate: f64,
        window: Duration,
        drain: Duration,
        server_pid: Option<u32>,
    ) -> PhaseResult {
        let phase = phase.min(MAX_PHASES - 1);
        self.phases.current.store(phase, Ordering::Relaxed);
        let watch = ServerWatch::start(server_pid);
        let cpu0 = procfs::own_cpu_seconds();
        let start = Instant::now() + Duration::from_millis(20);
        self.phases.busy.store(
            self.phases.senders.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let end = start + window;
        let _ = self.commands.send(Command::Run {
            phase,
            rate,
            start,
            end,
        });
        tokio::time::sleep_until(end).await;
        let tally = self.phases.tally(phase);
        let drain_end = Instant::now() + drain;
        loop {
            let (_, expected, delivered) = tally.counts();
            let sending = self.phases.busy.load(Ordering::Relaxed) > 0;
            if (!sending && delivered >= expected) || Instant::now() >= drain_end {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Workload::Drag { .. } = self.workload {
            // Drag deliveries are tallied by the current phase; park them.
            self.phases.current.store(MAX_PHASES - 1, Ordering::Relaxed);
        }
        let _ = self.commands.send(Command::Wait);
        let (sent, expected, delivered) = tally.counts();
        PhaseResult {
            sent,
            expected,
            delivered,
            window_s: window.as_secs_f64(),
            latency: tally.latency(),
            server: watch.and_then(|w| w.finish()),
            generator_cpu_s: procfs::own_cpu_seconds() - cpu0,
        }
    }

    /// Closes every client.
    pub async fn close(self) {
        let _ = self.commands.send(Command::Stop);
        let deadline = Instant::now() + Duration::from_secs(2);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// `stateUpdate` creating word `w1`, so servers that check the board accept moves.
fn state_update_frame(room: &str) -> String {
    serde_json::json!({
        "action": "stateUpdate",
        "room": room,
        "data": [{"id": "w1", "text": "moon", "x": 10, "y": 10}]
    })
    .to_string()
}

fn chat_frame(room: &str, sender: usize, phase: usize) -> String {
    format!(
        r#"{{"action":"talkToRoom","room":"{room}","data":{{"t":{},"s":{sender},"k":{phase}}}}}"#,
        now_us()
    )
}

fn moving_frame(room: &str) -> String {
    format!(r#"{{"action":"moving","room":"{room}","elementID":"w1","dx":1,"dy":1}}"#)
}

fn move_end_frame(room: &str, n: u64) -> String {
    let x = 10 + n % 500;
    format!(r#"{{"action":"moveEnd","room":"{room}","elementID":"w1","finalX":{x},"finalY":{x}}}"#)
}

async fn send(
    sink: raw::Sender,
    mut commands: watch::Receiver<Command>,
    slot: Slot,
    workload: Workload,
    phases: Arc<Phases>,
) {
    while commands.changed().await.is_ok() {
        let command = *commands.borrow_and_update();
        let (phase, rate, start, end) = match command {
            Command::Wait => continue,
            Command::Stop => break,
            Command::Run {
                phase,
                rate,
                start,
                end,
            } => (phase, rate, start, end),
        };
        if rate <= 0.0 {
            phases.busy.fetch_sub(1, Ordering::Relaxed);
            continue;
        }
        let period = Duration::from_secs_f64(1.0 / rate);
        let offset = period.mul_f64(slot.index as f64 / slot.total.max(1) as f64);
        let mut tick = interval_at(start + offset, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let tally = phases.tally(phase);
        // Exactly rate × window ticks, whatever the float rounding of period.
        let ticks = ((end - start).as_secs_f64() * rate).round() as u64;
        let mut n: u64 = 0;
        while n < ticks {
            let at = tick.tick().await;
            if at >= end + period {
                break;
            }
            let ok = match workload {
                Workload::Chat => send_one(&sink, chat_frame(&slot.room, slot.index, phase)).await,
                Workload::Drag { moves_per_end } => {
                    let mut ok = send_one(&sink, moving_frame(&slot.room)).await;
                    if ok && (n + 1).is_multiple_of(moves_per_end.max(1)) {
                        tally.sent(slot.recipients);
                        ok = send_one(&sink, move_end_frame(&slot.room, n)).await;
                    }
                    ok
                }
            };
            if !ok {
                phases.busy.fetch_sub(1, Ordering::Relaxed);
                phases.senders.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            tally.sent(slot.recipients);
            n += 1;
        }
        phases.busy.fetch_sub(1, Ordering::Relaxed);
    }
    phases.senders.fetch_sub(1, Ordering::Relaxed);
    sink.close().await;
}

async fn send_one(sink: &raw::Sender, frame: String) -> bool {
    sink.text(frame.as_bytes()).await.is_ok()
}
