//! storm: N clients in rooms of `--per-room` all drop at once (no close
//! frame, as when a load balancer or a Wi-Fi network goes) and resume within
//! `--resume-within` with their token, epoch and last seq. Measures the time
//! until every client is resumed and its presence view is exact (every
//! member of its room listed once, none away), and the bytes the server
//! wrote meanwhile (`wchar` of `/proc/<pid>/io`).
//!
//! Each client keeps its room's member list as the protocol says: a
//! `presence` frame replaces it, a `presenceDiff` changes it. A server that
//! sends only whole lists (the seed, attractio before presence diffs) is
//! measured the same way.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::Common;
use crate::client::{self, leading_action, source_for, Target, Ws};
use crate::procfs;
use crate::report::{Report, StormStats};

/// Options of the storm scenario.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Clients in all.
    #[arg(long, default_value_t = 5000)]
    pub clients: usize,
    /// Clients per room.
    #[arg(long, default_value_t = 100)]
    pub per_room: usize,
    /// Resumes are spread evenly over this long after the drop.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub resume_within: Duration,
    /// Handshakes in flight at once while joining.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Connections per source address (127.0.0.1, then .2, …).
    #[arg(long, default_value_t = 4_000)]
    pub per_source: usize,
    /// Give up waiting for joins, or for the storm to settle, after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
    pub timeout: Duration,
}

/// What every client task reports into.
#[derive(Default)]
struct Shared {
    /// Clients whose view is exact right now.
    exact: AtomicUsize,
    /// Clients that got `resumed` with `recovered:true` / `false`.
    recovered: AtomicUsize,
    unrecovered: AtomicUsize,
    /// Clients whose socket failed before they got `resumed` (connect
    /// error, or cut by the server), and after.
    failed: AtomicUsize,
    cut: AtomicUsize,
    /// Resumes answered `roomFull` (and sent again 100 ms later).
    room_full: AtomicUsize,
    /// Frames, presence frames and their bytes received after the drop.
    frames: AtomicU64,
    presence_frames: AtomicU64,
    bytes: AtomicU64,
    presence_bytes: AtomicU64,
    /// Microseconds from the drop to the last `resumed`.
    last_resumed_us: AtomicU64,
}

/// The phases the clients go through, told by the run.
#[derive(Clone, Copy, Debug)]
enum Phase {
    Hold,
    /// Drop now; resume at `at + offset`.
    Drop {
        at: Instant,
    },
    Stop,
}

/// One client's session and its view of the room.
struct Member {
    index: usize,
    room: String,
    /// Members its room has.
    room_size: usize,
    token: String,
    epoch: u64,
    last_seq: u64,
    /// `(id, away)`, most recently active first.
    view: Vec<(u64, bool)>,
    /// The room's ids before the drop: the view must come back to these.
    expected: Option<HashSet<u64>>,
    exact: bool,
}

impl Member {
    /// Takes in one frame: numbering, token, presence.
    fn see(&mut self, text: &str) -> Result<()> {
        let action = leading_action(text.as_bytes()).unwrap_or_default();
        let interesting = matches!(
            action,
            b"presence" | b"presenceDiff" | b"resumed" | b"hydrate" | b"newRoom" | b"hello"
        );
        let seq = client::number_after(text.as_bytes(), br#""seq":"#);
        if let Some(seq) = seq {
            self.last_seq = self.last_seq.max(seq);
        }
        if !interesting {
            return Ok(());
        }
        if action == b"presence" {
            // Whole lists run to 7 KB at 100 members and a server without
            // diffs sends hundreds of thousands: read only ids and `away`.
            #[derive(serde::Deserialize)]
            struct Entry {
                id: u64,
                #[serde(default)]
                away: bool,
            }
            #[derive(serde::Deserialize)]
            struct List {
                data: Vec<Entry>,
            }
            let list: List = serde_json::from_str(text)?;
            self.view = list.data.into_iter().map(|e| (e.id, e.away)).collect();
            return Ok(());
        }
        let v: Value = serde_json::from_str(text)?;
        if let Some(epoch) = v["epoch"].as_u64() {
            self.epoch = epoch;
        }
        let d = &v["data"];
        let ids = |key: &str| -> Vec<u64> {
            d[key]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default()
        };
        let entry = |m: &Value| (m["id"].as_u64().unwrap_or(0), m["away"] == true);
        match action {
            // A new connection's own token is not the session's.
            b"hello" if !self.token.is_empty() => {}
            b"hello" | b"resumed" => {
                if let Some(t) = d["resumeToken"].as_str() {
                    self.token = t.to_owned();
                }
            }
            b"presenceDiff" => {
                let leaves = ids("leaves");
                self.view.retain(|(id, _)| !leaves.contains(id));
                for join in d["joins"].as_array().into_iter().flatten() {
                    let (id, away) = entry(join);
                    self.view.retain(|(m, _)| *m != id);
                    self.view.push((id, away));
                }
                for (key, away) in [("away", true), ("back", false)] {
                    for id in ids(key) {
                        for e in self.view.iter_mut().filter(|(m, _)| *m == id) {
                            e.1 = away;
                        }
                    }
                }
                if d.get("order").is_some() {
                    let order = ids("order");
                    self.view.sort_by_key(|(id, _)| {
                        order.iter().position(|o| o == id).unwrap_or(usize::MAX)
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether the view lists exactly the room: every member once, none
    /// away, and after the drop the same members as before it.
    fn view_is_exact(&self) -> bool {
        let ids: HashSet<u64> = self.view.iter().map(|(id, _)| *id).collect();
        self.view.len() == self.room_size
            && ids.len() == self.room_size
            && self.view.iter().all(|(_, away)| !away)
            && self.expected.as_ref().is_none_or(|e| *e == ids)
    }

    fn update_exact(&mut self, shared: &Shared) {
        let now = self.view_is_exact();
        if now != self.exact {
            if now {
                shared.exact.fetch_add(1, Relaxed);
            } else {
                shared.exact.fetch_sub(1, Relaxed);
            }
            self.exact = now;
        }
    }
}

/// The next text frame; `None` when the socket closed.
async fn next_text(ws: &mut Ws) -> Result<Option<String>> {
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(t) => return Ok(Some(t.as_str().to_owned())),
            Message::Close(_) => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}

/// Reads frames into `m` until one with `action` arrives; returns it.
async fn until(ws: &mut Ws, m: &mut Member, actions: &[&[u8]]) -> Result<String> {
    loop {
        let text = next_text(ws).await?.context("closed")?;
        m.see(&text)?;
        if leading_action(text.as_bytes()).is_some_and(|a| actions.contains(&a)) {
            return Ok(text);
        }
    }
}

/// Connects client `index` and joins its room; the first of each room gives
/// it a board (so that joiners are sent it, not asked around for one).
async fn join(args: &Args, target: &Target, index: usize) -> Result<(Member, Ws)> {
    let c = &args.common;
    let rooms = args.clients.div_ceil(args.per_room);
    let room_index = index % rooms;
    let room = c.room(room_index);
    let room_size = (args.clients - room_index).div_ceil(rooms);
    let first = index < rooms;
    let source = source_for(index, args.per_source);
    let mut ws = client::connect(target, source, 16 * 1024).await?;
    let mut m = Member {
        index,
        room: room.clone(),
        room_size,
        token: String::new(),
        epoch: 0,
        last_seq: 0,
        view: Vec::new(),
        expected: None,
        exact: false,
    };
    until(&mut ws, &mut m, &[b"hello"]).await?;
    ws.send(Message::text(client::join_frame(&room))).await?;
    let answer = until(&mut ws, &mut m, &[b"hydrate", b"newRoom", b"roomFull"]).await?;
    if answer.contains(r#""roomFull""#) {
        bail!("{room} is full: start the server with --max-room-size {room_size} or more");
    }
    if first {
        let board =
            json!({"action":"stateUpdate","data":[{"id":"w1","text":"moon","x":10,"y":10}]});
        ws.send(Message::text(board.to_string())).await?;
        // Answered by the room itself, so the board is there once it comes.
        let probe = json!({"action":"freeze","elementID":"no-such-word"});
        ws.send(Message::text(probe.to_string())).await?;
        until(&mut ws, &mut m, &[b"error"]).await?;
    }
    if m.token.is_empty() {
        bail!("no resumeToken in hello: the server does not resume sessions");
    }
    Ok((m, ws))
}

/// A client's life after joining: hold (reading), drop without a close
/// frame, resume at its time, then read until told to stop.
async fn live(
    mut m: Member,
    mut ws: Ws,
    mut phase: watch::Receiver<Phase>,
    shared: Arc<Shared>,
    args: Arc<Args>,
    target: Target,
) {
    let at = loop {
        m.update_exact(&shared);
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() { return; }
                match *phase.borrow_and_update() {
                    Phase::Hold => {}
                    Phase::Drop { at } => break at,
                    Phase::Stop => return,
                }
            }
            text = next_text(&mut ws) => match text {
                Ok(Some(text)) => { let _ = m.see(&text); }
                _ => { shared.failed.fetch_add(1, Relaxed); return; }
            },
        }
    };
    m.expected = Some(m.view.iter().map(|(id, _)| *id).collect());
    drop(ws);
    m.view.clear();
    m.update_exact(&shared);
    // Evenly over the window, rooms interleaved.
    let n = args.clients.max(1);
    let offset = args.resume_within.mul_f64(m.index as f64 / n as f64);
    tokio::time::sleep_until(at + offset).await;
    let resumed = async {
        let source = source_for(m.index + n, args.per_source);
        let mut ws = client::connect(&target, source, 16 * 1024).await?;
        until(&mut ws, &mut m, &[b"hello"]).await?;
        let resume = json!({"action":"newClient","room":m.room,"resumeToken":m.token,
            "epoch":m.epoch,"lastSeq":m.last_seq})
        .to_string();
        ws.send(Message::text(resume.clone())).await?;
        anyhow::Ok((ws, resume))
    }
    .await;
    let Ok((mut ws, resume)) = resumed else {
        shared.failed.fetch_add(1, Relaxed);
        return;
    };
    let mut back = false;
    loop {
        tokio::select! {
            _ = phase.changed() => return,
            text = next_text(&mut ws) => {
                let Ok(Some(text)) = text else {
                    let counter = if back { &shared.cut } else { &shared.failed };
                    counter.fetch_add(1, Relaxed);
                    return;
                };
                let bytes = text.len() as u64;
                shared.frames.fetch_add(1, Relaxed);
                shared.bytes.fetch_add(bytes, Relaxed);
                let action = leading_action(text.as_bytes()).unwrap_or_default();
                if action.starts_with(b"presence") {
                    shared.presence_frames.fetch_add(1, Relaxed);
                    shared.presence_bytes.fetch_add(bytes, Relaxed);
                }
                if action == b"roomFull" && !back {
                    // The server has not seen the old socket go yet, so the
                    // seat is not free to take back: ask again, as a client
                    // that reconnects would.
                    shared.room_full.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if ws.send(Message::text(resume.clone())).await.is_err() {
                        shared.failed.fetch_add(1, Relaxed);
                        return;
                    }
                }
                if action == b"resumed" {
                    back = true;
                    let recovered = text.contains(r#""recovered":true"#);
                    let counter = if recovered { &shared.recovered } else { &shared.unrecovered };
                    counter.fetch_add(1, Relaxed);
                    shared
                        .last_resumed_us
                        .fetch_max(at.elapsed().as_micros() as u64, Relaxed);
                }
                let _ = m.see(&text);
                m.update_exact(&shared);
            }
        }
    }
}

/// Waits until `done` holds (checked every 5 ms) or `timeout` passes.
async fn wait_for(timeout: Duration, done: impl Fn() -> bool) -> bool {
    let give_up = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= give_up {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Runs the scenario once.
pub async fn run(args: &Args) -> Result<Report> {
    let c = &args.common;
    let n = args.clients;
    if n == 0 || args.per_room == 0 {
        bail!("--clients and --per-room must be positive");
    }
    procfs::raise_nofile(2 * n as u64 + 10_000);
    let target = Target::resolve(&c.url).await?;
    let args = Arc::new(args.clone());
    let rooms = n.div_ceil(args.per_room);

    // Join: the first of each room (with the board), then everyone else.
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut joined = Vec::with_capacity(n);
    for wave in [0..rooms, rooms..n] {
        let tasks: Vec<_> = wave
            .map(|i| {
                let (args, target, gate) = (args.clone(), target.clone(), gate.clone());
                tokio::spawn(async move {
                    let _permit = gate.acquire_owned().await;
                    join(&args, &target, i).await
                })
            })
            .collect();
        for t in tasks {
            joined.push(t.await.context("join task")??);
        }
        eprintln!("storm: {} joined", joined.len());
    }
    let shared = Arc::new(Shared::default());
    let (phase, _) = watch::channel(Phase::Hold);
    let mut tasks = Vec::with_capacity(n);
    for (m, ws) in joined {
        tasks.push(tokio::spawn(live(
            m,
            ws,
            phase.subscribe(),
            shared.clone(),
            args.clone(),
            target.clone(),
        )));
    }
    if !wait_for(args.timeout, || shared.exact.load(Relaxed) == n).await {
        bail!(
            "only {} of {n} clients saw their whole room after joining",
            shared.exact.load(Relaxed)
        );
    }

    eprintln!("storm: every view exact; dropping all {n}");
    // The storm.
    let pid = c.server_pid;
    let written = || pid.and_then(|p| procfs::written_bytes(p).ok());
    let written_before = written();
    let watch = procfs::ServerWatch::start(pid);
    let cpu0 = procfs::own_cpu_seconds();
    let at = Instant::now();
    let _ = phase.send(Phase::Drop { at });
    let all_back = || {
        shared.recovered.load(Relaxed)
            + shared.unrecovered.load(Relaxed)
            + shared.failed.load(Relaxed)
            >= n
    };
    let settled = wait_for(args.timeout, || {
        all_back() && shared.exact.load(Relaxed) == n
    })
    .await;
    let settle_s = at.elapsed().as_secs_f64();
    // Read now: stopping drops every socket, which the others see as aways.
    let exact = shared.exact.load(Relaxed) as u64;
    let written_after = written();
    let server = watch.and_then(|w| w.finish());
    let generator_cpu_s = procfs::own_cpu_seconds() - cpu0;
    let _ = phase.send(Phase::Stop);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }

    let mut report = Report::new("storm", &c.label, &c.url);
    report.duration_s = settle_s;
    report.rooms = Some(rooms as u64);
    report.clients_per_room = Some(args.per_room as u64);
    report.server = server;
    report.generator_cpu_s = generator_cpu_s;
    report.storm = Some(StormStats {
        clients: n as u64,
        resume_within_s: args.resume_within.as_secs_f64(),
        settled,
        settle_s,
        last_resumed_s: shared.last_resumed_us.load(Relaxed) as f64 / 1e6,
        recovered: shared.recovered.load(Relaxed) as u64,
        unrecovered: shared.unrecovered.load(Relaxed) as u64,
        failed: shared.failed.load(Relaxed) as u64,
        cut: shared.cut.load(Relaxed) as u64,
        room_full: shared.room_full.load(Relaxed) as u64,
        exact,
        server_written_bytes: written_before
            .zip(written_after)
            .map(|(b, a)| a.saturating_sub(b)),
        received_frames: shared.frames.load(Relaxed),
        received_bytes: shared.bytes.load(Relaxed),
        presence_frames: shared.presence_frames.load(Relaxed),
        presence_bytes: shared.presence_bytes.load(Relaxed),
    });
    if !settled {
        report.warnings.push(format!(
            "not settled within {:?}: {} of {n} exact",
            args.timeout,
            shared.exact.load(Relaxed)
        ));
    }
    Ok(report)
}
