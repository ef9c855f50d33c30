//! Counting and timing deliveries: a per-phase tally of frames sent and
//! received plus an HdrHistogram of latencies in microseconds, and the
//! summary (percentiles and the percentile curve) that reports carry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency the histograms track: one minute, in microseconds.
const MAX_LATENCY_US: u64 = 60_000_000;

/// A new latency histogram (µs, three significant figures).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

/// What one measured phase (a run, or one ceiling step) saw. Shared by the
/// sending and receiving tasks of every client.
pub struct Tally {
    /// Frames sent by all clients.
    pub sent: AtomicU64,
    /// Frames that should arrive: each sent frame times its recipients.
    pub expected: AtomicU64,
    /// Frames that did arrive.
    pub delivered: AtomicU64,
    /// Latency of each delivery that carried a timestamp.
    pub latency: Mutex<Histogram<u64>>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            sent: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            latency: Mutex::new(histogram()),
        }
    }
}

impl Tally {
    /// Records one sent frame that `recipients` others should receive.
    pub fn sent(&self, recipients: u64) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.expected.fetch_add(recipients, Ordering::Relaxed);
    }

    /// Records one delivery, timed if the frame carried a send time.
    pub fn delivered(&self, latency_us: Option<u64>) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if let Some(us) = latency_us {
            let mut h = self.latency.lock().unwrap_or_else(|e| e.into_inner());
            h.saturating_record(us.max(1));
        }
    }

    /// Sent, expected and delivered counts right now.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.expected.load(Ordering::Relaxed),
            self.delivered.load(Ordering::Relaxed),
        )
    }

    /// The latency summary so far.
    pub fn latency(&self) -> Option<LatencySummary> {
        let h = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        LatencySummary::of(&h)
    }
}

/// Latency percentiles, in microseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of timed samples.
    pub samples: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// `[percentile, µs]` points for the percentile-curve plot.
    pub curve: Vec<(f64, u64)>,
}

impl LatencySummary {
    /// Summarises `h`; `None` when it holds no samples.
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        Some(Self {
            samples: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            curve: curve(h),
        })
    }
}

/// The percentile curve at fixed points, up to 99.999% and the maximum.
fn curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    const POINTS: [f64; 16] = [
        0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999,
        99.9999, 100.0,
    ];
    POINTS
        .iter()
        .map(|&p| {
            let v = if p >= 100.0 {
                h.max()
            } else {
                h.value_at_quantile(p / 100.0)
            };
            (p, v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let tally = Tally::default();
        for us in 1..=1000 {
            tally.delivered(Some(us));
        }
        let s = tally.latency().expect("samples were recorded");
        assert_eq!(s.samples, 1000);
        assert_eq!(s.p50_us, 500);
        assert_eq!(s.p90_us, 900);
        assert_eq!(s.p99_us, 990);
        assert_eq!(s.max_us, 1000);
        assert!((s.mean_us - 500.5).abs() < 1.0);
        assert_eq!(s.curve.last(), Some(&(100.0, 1000)));
        assert!(
            s.curve.windows(2).all(|w| w[0].1 <= w[1].1),
            "curve is monotone"
        );
    }

    #[test]
    fn untimed_deliveries_count_but_have_no_latency() {
        let tally = Tally::default();
        tally.sent(9);
        tally.delivered(None);
        assert_eq!(tally.counts(), (1, 9, 1));
        assert!(tally.latency().is_none());
    }

    #[test]
    fn latencies_past_a_minute_are_clamped_not_lost() {
        let tally = Tally::default();
        tally.delivered(Some(10 * MAX_LATENCY_US));
        assert_eq!(tally.latency().map(|s| s.samples), Some(1));
    }
}
