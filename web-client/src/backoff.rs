//! How long to wait before the next reconnect attempt: exponential backoff
//! with jitter, so a restarted server is not hit by every tab at once.

/// First retry waits about this long.
pub const BASE_MS: f64 = 500.0;
/// No retry waits longer than this.
pub const CAP_MS: f64 = 10_000.0;

/// The delay before attempt number `attempt` (0 for the first retry), given
/// a random `jitter` in [0, 1): somewhere between half and all of
/// `min(CAP, BASE * 2^attempt)` ("equal jitter").
pub fn reconnect_delay_ms(attempt: u32, jitter: f64) -> u32 {
    let ceiling = (BASE_MS * 2f64.powi(attempt.min(30) as i32)).min(CAP_MS);
    let jitter = jitter.clamp(0.0, 1.0);
    (ceiling / 2.0 + ceiling / 2.0 * jitter).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_stay_under_the_cap() {
        let d: Vec<u32> = (0..8).map(|a| reconnect_delay_ms(a, 1.0)).collect();
        assert_eq!(d[..5], [500, 1000, 2000, 4000, 8000]);
        assert_eq!(d[5], 10_000);
        assert!(d.iter().all(|&ms| ms <= CAP_MS as u32));
        assert_eq!(reconnect_delay_ms(1000, 1.0), CAP_MS as u32);
    }

    #[test]
    fn jitter_spreads_over_the_upper_half() {
        assert_eq!(reconnect_delay_ms(2, 0.0), 1000);
        assert_eq!(reconnect_delay_ms(2, 0.5), 1500);
    }
}
