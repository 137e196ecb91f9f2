//! Per-client message rate limiting: a token bucket that delays, then drops.

use std::time::{Duration, Instant};

/// A token bucket for one client's messages.
///
/// Up to `burst` messages pass at once (`burst` = the rate, at least 5);
/// after that messages are delayed to the rate, so a quick paste is slowed
/// down but not lost. A client that keeps sending faster than the rate for
/// more than `2 × burst` delayed messages in a row is flooding and should
/// be disconnected.
#[derive(Debug, Clone)]
pub struct Throttle {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    delayed_in_a_row: u32,
}

/// What to do with the next message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Handle it now.
    Now,
    /// Handle it after this delay (read nothing more meanwhile).
    After(Duration),
    /// The client is flooding: disconnect it.
    Flood,
}

impl Throttle {
    /// A throttle for `per_second` messages a second; `None` when 0 (off).
    pub fn new(per_second: u32, now: Instant) -> Option<Self> {
        (per_second > 0).then(|| {
            let burst = f64::from(per_second.max(5));
            Throttle {
                per_second: f64::from(per_second),
                burst,
                tokens: burst,
                last: now,
                delayed_in_a_row: 0,
            }
        })
    }

    /// The rate, in messages a second.
    pub fn rate(&self) -> u32 {
        self.per_second as u32
    }

    /// Accounts for one message arriving at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            self.delayed_in_a_row = 0;
            return Verdict::Now;
        }
        self.delayed_in_a_row += 1;
        if f64::from(self.delayed_in_a_row) > 2.0 * self.burst {
            return Verdict::Flood;
        }
        Verdict::After(Duration::from_secs_f64(-self.tokens / self.per_second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_delay_then_flood() {
        let start = Instant::now();
        let mut throttle = Throttle::new(10, start).unwrap();
        for _ in 0..10 {
            assert_eq!(throttle.check(start), Verdict::Now);
        }
        let mut now = start;
        for _ in 0..20 {
            match throttle.check(now) {
                Verdict::After(delay) => {
                    assert!(delay <= Duration::from_millis(101));
                    now += delay;
                }
                other => panic!("expected a delay, got {other:?}"),
            }
        }
        assert_eq!(throttle.check(now), Verdict::Flood);
    }

    #[test]
    fn a_pause_refills_the_bucket() {
        let start = Instant::now();
        let mut throttle = Throttle::new(5, start).unwrap();
        for _ in 0..5 {
            assert_eq!(throttle.check(start), Verdict::Now);
        }
        assert!(matches!(throttle.check(start), Verdict::After(_)));
        let later = start + Duration::from_secs(2);
        for _ in 0..5 {
            assert_eq!(throttle.check(later), Verdict::Now);
        }
    }

    #[test]
    fn zero_is_off() {
        assert!(Throttle::new(0, Instant::now()).is_none());
    }
}
