//! Webhooks: the app's backend told what happens in its rooms (README
//! "Webhooks"). Rooms hand events to a bounded queue and never wait; one
//! task posts them to `--webhook-url`, oldest first, each signed the way
//! Stripe and Svix sign theirs (`Attractio-Signature: t=<unix>,v1=<hex
//! HMAC-SHA256 of "t.body">`), and retries one that fails with exponential
//! backoff for `--webhook-retry-for` before it gives up on it and moves on.
//! One sender and one queue keep the events of a room in order.
//!
//! In cluster mode every node applies every entry of a room's log, but an
//! event is sent only by the node where the entry's member or call came
//! from (its socket or its API request is there): that node knows it at
//! once, no two nodes send it, and if it dies first nobody does — a
//! receiver sees the gap in `seq` and reads `GET /api/rooms/{room}/history`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Attractio-Signature";

/// How long one POST may take before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first retry's wait; each next one waits twice as long, up to
/// [`LONGEST_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(100);
const LONGEST_WAIT: Duration = Duration::from_secs(30);

/// What happened, as the receiver gets it.
pub use protocol::api::WebhookEvent as Event;

/// Why a member's seat was given up (`member.left`'s `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Left,
    WindowEnded,
    Kicked,
    RoomClosed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Left => "left",
            Reason::WindowEnded => "window ended",
            Reason::Kicked => "kicked",
            Reason::RoomClosed => "room closed",
        }
    }
}

/// The rooms' way to the sender.
pub struct Webhooks {
    queue: mpsc::Sender<Queued>,
    /// Actions whose messages are sent as `message` events.
    actions: HashSet<String>,
    metrics: Arc<WebhookMetrics>,
}

struct Queued {
    event: Event,
    at: Instant,
}

impl Webhooks {
    /// Starts the sender if `--webhook-url` is set.
    pub fn start(
        config: &Config,
        metrics: Arc<WebhookMetrics>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Option<Arc<Webhooks>>> {
        let Some(url) = config.webhook_url.clone() else {
            return Ok(None);
        };
        let Some(secret) = config.webhook_secret.clone() else {
            anyhow::bail!("--webhook-url needs --webhook-secret (events are signed)");
        };
        let url = reqwest::Url::parse(&url).map_err(|e| anyhow::anyhow!("--webhook-url: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .build()?;
        let (queue, events) = mpsc::channel(config.webhook_queue as usize);
        let sender = Sender {
            client,
            url,
            secret: secret.into_bytes(),
            retry_for: config.webhook_retry_for,
            metrics: metrics.clone(),
        };
        tokio::spawn(sender.run(events, shutdown));
        Ok(Some(Arc::new(Webhooks {
            queue,
            actions: config.webhook_actions.iter().cloned().collect(),
            metrics,
        })))
    }

    /// Whether messages with `action` are sent as `message` events.
    pub fn wants(&self, action: &str) -> bool {
        self.actions.contains(action)
    }

    /// Queues `event`, never waiting: with the queue full it is dropped
    /// (and counted).
    pub fn send(&self, event: Event) {
        let queued = Queued {
            event,
            at: Instant::now(),
        };
        if self.queue.try_send(queued).is_err() {
            self.metrics.dropped.fetch_add(1, Relaxed);
        }
    }
}

struct Sender {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Vec<u8>,
    retry_for: Duration,
    metrics: Arc<WebhookMetrics>,
}

impl Sender {
    async fn run(self, mut events: mpsc::Receiver<Queued>, shutdown: CancellationToken) {
        loop {
            let queued = tokio::select! {
                queued = events.recv() => match queued {
                    Some(queued) => queued,
                    None => return,
                },
                _ = shutdown.cancelled() => return,
            };
            tokio::select! {
                () = self.deliver(queued) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Posts one event until the receiver takes it (any 2xx) or
    /// `--webhook-retry-for` has passed since its first try.
    async fn deliver(&self, queued: Queued) {
        let body = match serde_json::to_vec(&queued.event) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!("webhook event not serialisable: {e}");
                return;
            }
        };
        let give_up = Instant::now() + self.retry_for;
        let mut wait = FIRST_WAIT;
        loop {
            match self.post(&body).await {
                Ok(()) => {
                    self.metrics.sent.fetch_add(1, Relaxed);
                    self.metrics.latency.observe(queued.at.elapsed());
                    return;
                }
                Err(why) => {
                    if Instant::now() + wait > give_up {
                        self.metrics.failed.fetch_add(1, Relaxed);
                        tracing::warn!(id = %queued.event.id, "webhook given up: {why}");
                        return;
                    }
                    tracing::debug!(id = %queued.event.id, "webhook failed, retrying in {wait:?}: {why}");
                    self.metrics.retried.fetch_add(1, Relaxed);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(LONGEST_WAIT);
                }
            }
        }
    }

    async fn post(&self, body: &[u8]) -> Result<(), String> {
        let t = crate::history::now_ms() / 1000;
        let response = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature(&self.secret, t, body))
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", response.status()))
        }
    }
}

/// `t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// What the sender did, for `/metrics`.
#[derive(Default)]
pub struct WebhookMetrics {
    pub sent: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    /// From queued to taken by the receiver.
    latency: Histogram,
}

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0, 300.0];

#[derive(Default)]
struct Histogram {
    /// Counts per bucket (not cumulative), the last one for `+Inf`.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(took.as_micros() as u64, Relaxed);
    }
}

impl WebhookMetrics {
    /// Prometheus text: the counters and the latency histogram.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        for (name, help, v) in [
            ("sent", "Webhook events the receiver took.", &self.sent),
            (
                "retried",
                "Webhook posts tried again after a failure.",
                &self.retried,
            ),
            (
                "failed",
                "Webhook events given up after --webhook-retry-for.",
                &self.failed,
            ),
            (
                "dropped",
                "Webhook events dropped because --webhook-queue was full.",
                &self.dropped,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP attractio_webhooks_{name}_total {help}\n# TYPE attractio_webhooks_{name}_total counter\nattractio_webhooks_{name}_total {}",
                v.load(Relaxed)
            );
        }
        let name = "attractio_webhook_delivery_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} From an event queued to the receiver taking it.\n# TYPE {name} histogram"
        );
        let mut total = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            total += self.latency.counts[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {total}");
        }
        total += self.latency.counts[BUCKETS.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.latency.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
}
