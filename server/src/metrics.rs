//! Counters for `/metrics`, in the Prometheus text format. Plain atomics:
//! cheap enough to bump on every message.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use protocol::ErrorCode;

/// Actions counted by name; anything else is counted as `custom`.
const ACTIONS: &[&str] = &[
    "newClient",
    "echo",
    "talkToRoom",
    "privateMessage",
    "stateUpdate",
    "emptyRoom",
    "newWord",
    "moving",
    "moveEnd",
    "freeze",
    "unfreeze",
    "delete",
    "modify",
    "hello",
    "presence",
    "presenceDiff",
    "roomFull",
    "error",
    "hydrate",
    "rehydrate",
    "newRoom",
    "requestCurrentState",
    "resumed",
    "custom",
];

fn action_slot(action: &str) -> usize {
    ACTIONS
        .iter()
        .position(|a| *a == action)
        .unwrap_or(ACTIONS.len() - 1)
}

#[derive(Default)]
pub struct Metrics {
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub rooms_created: AtomicU64,
    pub rooms_disposed: AtomicU64,
    pub slow_consumer_disconnects: AtomicU64,
    pub volatile_dropped: AtomicU64,
    pub heartbeat_timeouts: AtomicU64,
    pub sessions_taken_over: AtomicU64,
    /// Messages dropped because their `opId` was applied already.
    pub duplicate_ops: AtomicU64,
    pub broadcasts: AtomicU64,
    pub broadcast_recipients: AtomicU64,
    pub saves_written: AtomicU64,
    pub saves_skipped_duplicate: AtomicU64,
    pub save_seconds_micros: AtomicU64,
    pub store_errors: AtomicU64,
    /// What the app's backend did through the server API (`api/`).
    pub api_published: AtomicU64,
    pub api_disconnected: AtomicU64,
    pub api_rooms_closed: AtomicU64,
    messages_in: [AtomicU64; ACTIONS.len()],
    messages_out: [AtomicU64; ACTIONS.len()],
    errors: [AtomicU64; ErrorCode::ALL.len()],
    pub limits: LimitMetrics,
    /// What the webhook sender did (`webhooks.rs`).
    pub webhooks: Arc<crate::webhooks::WebhookMetrics>,
}

/// What the limits of `admission.rs` and the retention sweep did.
#[derive(Default)]
pub struct LimitMetrics {
    /// Upgrades answered 503: `--max-connections` reached.
    pub refused_server_full: AtomicU64,
    /// Upgrades answered 429: `--max-connections-per-ip` reached.
    pub refused_address_full: AtomicU64,
    /// TCP connections answered 429 and closed:
    /// `--max-http-connections-per-ip` reached.
    pub refused_http_address_full: AtomicU64,
    /// Joins refused with `too_many_rooms`.
    pub rooms_refused: AtomicU64,
    /// Stored rooms deleted by the retention sweep.
    pub rooms_expired: AtomicU64,
}

impl LimitMetrics {
    /// Renders these counters and the store's gauges (read by the caller
    /// on the blocking pool).
    pub fn render(&self, stored_rooms: usize, store_bytes: u64) -> String {
        let mut out = String::with_capacity(1024);
        for (name, help, v) in [
            ("stored_rooms", "Rooms in the store.", stored_rooms as u64),
            ("store_bytes", "Bytes the store takes on disk.", store_bytes),
        ] {
            let _ = writeln!(
                out,
                "# HELP attractio_{name} {help}\n# TYPE attractio_{name} gauge\nattractio_{name} {v}"
            );
        }
        for (name, help, v) in [
            (
                "upgrades_refused_server_full_total",
                "WebSocket upgrades answered 503 (--max-connections).",
                &self.refused_server_full,
            ),
            (
                "upgrades_refused_address_full_total",
                "WebSocket upgrades answered 429 (--max-connections-per-ip).",
                &self.refused_address_full,
            ),
            (
                "connections_refused_address_full_total",
                "TCP connections answered 429 and closed (--max-http-connections-per-ip).",
                &self.refused_http_address_full,
            ),
            (
                "rooms_refused_total",
                "Joins refused because the address created too many rooms (--new-rooms-per-minute, --max-stored-rooms-per-ip).",
                &self.rooms_refused,
            ),
            (
                "rooms_expired_total",
                "Stored rooms deleted after --room-retention.",
                &self.rooms_expired,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP attractio_{name} {help}\n# TYPE attractio_{name} counter\nattractio_{name} {}",
                v.load(Relaxed)
            );
        }
        out
    }
}

impl Metrics {
    pub fn message_in(&self, action: &str) {
        self.messages_in[action_slot(action)].fetch_add(1, Relaxed);
    }

    pub fn messages_out(&self, action: &str, n: u64) {
        self.messages_out[action_slot(action)].fetch_add(n, Relaxed);
    }

    pub fn error(&self, code: ErrorCode) {
        let i = ErrorCode::ALL.iter().position(|c| *c == code).unwrap_or(0);
        self.errors[i].fetch_add(1, Relaxed);
    }

    /// Renders every counter; `rooms`, `connections` and `history_bytes`
    /// are gauges read by the caller.
    pub fn render(&self, rooms: usize, connections: u64, history_bytes: u64) -> String {
        let mut out = String::with_capacity(4096);
        let mut gauge = |name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP attractio_{name} {help}\n# TYPE attractio_{name} {kind}\nattractio_{name} {v}"
            );
        };
        gauge(
            "connections",
            "Open WebSocket connections.",
            "gauge",
            connections,
        );
        gauge("rooms", "Rooms in memory.", "gauge", rooms as u64);
        gauge(
            "history_bytes",
            "Bytes of frames kept for resume, all rooms together.",
            "gauge",
            history_bytes,
        );
        let counters: [(&str, &str, &AtomicU64); 17] = [
            (
                "connections_opened_total",
                "WebSocket connections accepted.",
                &self.connections_opened,
            ),
            (
                "rooms_created_total",
                "Rooms started in memory.",
                &self.rooms_created,
            ),
            (
                "rooms_disposed_total",
                "Rooms dropped from memory after their last member left.",
                &self.rooms_disposed,
            ),
            (
                "slow_consumer_disconnects_total",
                "Clients closed because their outbound queue was full.",
                &self.slow_consumer_disconnects,
            ),
            (
                "volatile_dropped_total",
                "Transient frames (moving) dropped for lagging clients.",
                &self.volatile_dropped,
            ),
            (
                "heartbeat_timeouts_total",
                "Clients cut for not answering a ping.",
                &self.heartbeat_timeouts,
            ),
            (
                "sessions_taken_over_total",
                "Resumes that took a session from a connection still open (closed 4000).",
                &self.sessions_taken_over,
            ),
            (
                "duplicate_ops_total",
                "Messages dropped as already applied (an opId sent again after an unknown outcome).",
                &self.duplicate_ops,
            ),
            (
                "broadcasts_total",
                "Frames fanned out to a room.",
                &self.broadcasts,
            ),
            (
                "broadcast_recipients_total",
                "Deliveries made by fan-out (sum of recipients).",
                &self.broadcast_recipients,
            ),
            (
                "store_saves_total",
                "Room snapshots written to the store.",
                &self.saves_written,
            ),
            (
                "store_saves_skipped_total",
                "Saves skipped because the board equals the stored one.",
                &self.saves_skipped_duplicate,
            ),
            (
                "store_save_seconds_total",
                "Time spent writing snapshots.",
                &self.save_seconds_micros,
            ),
            (
                "store_errors_total",
                "Store reads or writes that failed.",
                &self.store_errors,
            ),
            (
                "api_published_total",
                "Messages the app's backend published (POST /api/rooms/{room}/publish), each once.",
                &self.api_published,
            ),
            (
                "api_disconnected_total",
                "Seats the app's backend gave up (POST /api/rooms/{room}/disconnect).",
                &self.api_disconnected,
            ),
            (
                "api_rooms_closed_total",
                "Rooms the app's backend closed (DELETE /api/rooms/{room}).",
                &self.api_rooms_closed,
            ),
        ];
        for (name, help, v) in counters {
            let v = v.load(Relaxed);
            if name == "store_save_seconds_total" {
                let _ = writeln!(
                    out,
                    "# HELP attractio_{name} {help}\n# TYPE attractio_{name} counter\nattractio_{name} {}",
                    v as f64 / 1e6
                );
            } else {
                let _ = writeln!(
                    out,
                    "# HELP attractio_{name} {help}\n# TYPE attractio_{name} counter\nattractio_{name} {v}"
                );
            }
        }
        for (name, help, values) in [
            (
                "messages_in_total",
                "Frames received, by action.",
                &self.messages_in,
            ),
            (
                "messages_out_total",
                "Frames sent, by action.",
                &self.messages_out,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP attractio_{name} {help}\n# TYPE attractio_{name} counter"
            );
            for (action, v) in ACTIONS.iter().zip(values.iter()) {
                let _ = writeln!(
                    out,
                    "attractio_{name}{{action=\"{action}\"}} {}",
                    v.load(Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP attractio_errors_total Error frames sent, by code.\n# TYPE attractio_errors_total counter"
        );
        for (code, v) in ErrorCode::ALL.iter().zip(self.errors.iter()) {
            let _ = writeln!(
                out,
                "attractio_errors_total{{code=\"{}\"}} {}",
                code.as_str(),
                v.load(Relaxed)
            );
        }
        self.webhooks.render(&mut out);
        out
    }
}

/// What the node met on its way to and from Redis (cluster mode), for
/// `/metrics`: faults counted, and how long its own appends took to be
/// applied here.
#[derive(Default)]
pub struct ClusterMetrics {
    /// Redis commands that failed (a timeout, a refused connection, an
    /// error reply), whatever was done next.
    pub redis_errors: AtomicU64,
    /// Appends tried again after an unknown outcome.
    pub retries: AtomicU64,
    /// Times the pub/sub connection was opened again and every hosted
    /// room subscribed anew.
    pub resubscriptions: AtomicU64,
    /// Reads of the log for entries the room's channel did not bring.
    pub holes_read: AtomicU64,
    /// Rooms started over because Redis lost their log (or its tail).
    pub rooms_started_over: AtomicU64,
    /// Another node proposed as gone for a lapsed lease, once per room
    /// here that had members on it.
    pub nodes_declared_gone: AtomicU64,
    /// From Redis taking one of this node's appends to the room here
    /// applying it.
    pub append_to_apply: Histogram,
}

impl ClusterMetrics {
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        for (name, help, v) in [
            (
                "redis_errors_total",
                "Redis commands that failed (timeouts, refused connections, error replies).",
                &self.redis_errors,
            ),
            (
                "redis_retries_total",
                "Appends tried again after an unknown outcome.",
                &self.retries,
            ),
            (
                "redis_resubscriptions_total",
                "Times the pub/sub connection was opened again and the hosted rooms subscribed anew.",
                &self.resubscriptions,
            ),
            (
                "log_holes_read_total",
                "Reads of a room's log for entries its channel did not bring.",
                &self.holes_read,
            ),
            (
                "rooms_started_over_total",
                "Rooms started over because Redis lost their log or its tail.",
                &self.rooms_started_over,
            ),
            (
                "nodes_declared_gone_total",
                "Other nodes proposed as gone for a lapsed lease (once per room here with members on them).",
                &self.nodes_declared_gone,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP attractio_{name} {help}\n# TYPE attractio_{name} counter\nattractio_{name} {}",
                v.load(Relaxed)
            );
        }
        self.append_to_apply.render(
            &mut out,
            "append_to_apply_seconds",
            "From Redis taking this node's append to the room here applying it.",
        );
        out
    }
}

/// A Prometheus histogram of durations, by hand like the counters: one
/// atomic per bucket, rendered cumulative.
pub struct Histogram {
    /// Per bucket of [`BOUNDS`], then the one past the last.
    counts: [AtomicU64; BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

/// A [`Histogram`]'s upper bounds in seconds: a round trip to Redis is a
/// millisecond or so; seconds mean a room that stopped applying its log.
const BOUNDS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0];

impl Histogram {
    pub fn observe(&self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        let i = BOUNDS.iter().position(|b| s <= *b).unwrap_or(BOUNDS.len());
        self.counts[i].fetch_add(1, Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(
            out,
            "# HELP attractio_{name} {help}\n# TYPE attractio_{name} histogram"
        );
        let mut total = 0;
        for (i, count) in self.counts.iter().enumerate() {
            total += count.load(Relaxed);
            let le = BOUNDS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "attractio_{name}_bucket{{le=\"{le}\"}} {total}");
        }
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "attractio_{name}_sum {sum}\nattractio_{name}_count {total}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets_a_sum_and_a_count() {
        let h = Histogram::default();
        h.observe(std::time::Duration::from_micros(500));
        h.observe(std::time::Duration::from_millis(20));
        h.observe(std::time::Duration::from_secs(9));
        let mut out = String::new();
        h.render(&mut out, "lag_seconds", "Lag.");
        assert!(
            out.contains("# TYPE attractio_lag_seconds histogram"),
            "{out}"
        );
        assert!(
            out.contains("attractio_lag_seconds_bucket{le=\"0.001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("attractio_lag_seconds_bucket{le=\"0.025\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("attractio_lag_seconds_bucket{le=\"5\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("attractio_lag_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("attractio_lag_seconds_sum 9.0205\n"), "{out}");
        assert!(out.contains("attractio_lag_seconds_count 3\n"), "{out}");
    }
}
