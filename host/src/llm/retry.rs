//! When to try a call again, and how long to wait first.

use std::time::Duration;

/// Retries of calls that failed in a way worth retrying (429, 5xx, 408,
/// timeouts, broken connections): exponential backoff with full jitter,
/// and the provider's `Retry-After` when it gives one (never waiting
/// longer than `max_delay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all, the first included (at least 1).
    pub attempts: u32,
    /// The backoff before the second try; doubled for each try after.
    pub base_delay: Duration,
    /// The longest wait between tries.
    pub max_delay: Duration,
    /// The limit of each try, from sending the request to the answer's end.
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            timeout: Duration::from_secs(120),
        }
    }
}

impl Retry {
    /// The wait before try `next` (2 for the first retry), given the
    /// provider's `Retry-After`. Full jitter: uniform in [0, backoff], so
    /// agents limited together do not retry together.
    pub fn delay(&self, next: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_delay);
        }
        let exponent = next.saturating_sub(2).min(20);
        let backoff = self.base_delay.saturating_mul(1 << exponent).min(self.max_delay);
        backoff.mul_f64(unit_random())
    }
}

/// A random number in [0, 1) (the OS's randomness; 0 if it has none).
fn unit_random() -> f64 {
    let bits = getrandom::u64().unwrap_or(0) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// A `Retry-After` header's value: seconds, or an HTTP date (the wait until
/// then; a date in the past is no wait).
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.25", now), Some(Duration::from_millis(250)));
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:30 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_within_its_cap_and_retry_after_wins() {
        let retry = Retry {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..Retry::default()
        };
        for _ in 0..50 {
            assert!(retry.delay(2, None) <= Duration::from_millis(100));
            assert!(retry.delay(4, None) <= Duration::from_millis(400));
            assert!(retry.delay(30, None) <= Duration::from_secs(1));
        }
        assert_eq!(retry.delay(2, Some(Duration::from_millis(700))), Duration::from_millis(700));
        assert_eq!(retry.delay(2, Some(Duration::from_secs(60))), Duration::from_secs(1));
    }
}
