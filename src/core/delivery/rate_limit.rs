//! `rate_limit = 2/s` (and `rate_burst`): how fast one endpoint is sent to.
//!
//! Some CRMs block an integration that goes faster than they allow (Bitrix24 answers 503
//! `QUERY_LIMIT_EXCEEDED` above ≈ 2 requests/s), while a spool drain runs at thousands per
//! second. Each attempt reserves the next free slot of a generic cell rate algorithm (a token
//! bucket written as one timestamp) and the sending thread waits for it — never a call-path
//! thread. Deliveries behind it wait in the queue (and spool when it fills), each call's
//! events still in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate as configured: `burst` requests at once, then one every `interval`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub interval: Duration,
    pub burst: u32,
}

impl RateLimit {
    /// Parses `2/s`, `120/min`, `1000/h` (also `/second`, `/minute`, `/hour`).
    pub fn parse(s: &str) -> Result<RateLimit, String> {
        let bad = || format!("`{s}` is not a rate (e.g. 2/s, 120/min, 1000/h)");
        let (n, per) = s.trim().split_once('/').ok_or_else(bad)?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        let per = match per.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        if n == 0 {
            return Err("a rate of 0 sends nothing; use enabled = no".into());
        }
        Ok(RateLimit {
            interval: per / n,
            // A second's worth at once by default (at least one): a burst of events from one
            // call goes out together, the average stays at the rate.
            burst: (Duration::from_secs(1).as_nanos() / (per / n).as_nanos().max(1)).max(1) as u32,
        })
    }
}

/// The pacing state of one endpoint, shared by the threads sending to it.
#[derive(Debug)]
pub struct Pacer {
    limit: RateLimit,
    /// When the next request would be on time if none had gone before (GCRA's TAT).
    tat: Mutex<Option<Instant>>,
}

impl Pacer {
    pub fn new(limit: RateLimit) -> Pacer {
        Pacer {
            limit,
            tat: Mutex::new(None),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Reserves the next slot at or after `now`; how long to wait for it.
    pub fn reserve(&self, now: Instant) -> Duration {
        let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let t = tat.map_or(now, |t| t.max(now));
        let tolerance = self.limit.interval * self.limit.burst.saturating_sub(1);
        let allowed_at = t.checked_sub(tolerance).unwrap_or(now).max(now);
        *tat = Some(t + self.limit.interval);
        allowed_at - now
    }

    /// Waits for this thread's slot, in short sleeps so a stop is seen soon; `false` when
    /// `stop` was set meanwhile (the slot is then simply not used).
    pub fn pace(&self, stop: &AtomicBool) -> bool {
        let until = Instant::now() + self.reserve(Instant::now());
        loop {
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(100)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_a_seconds_worth_of_burst() {
        let r = RateLimit::parse("2/s").unwrap();
        assert_eq!((r.interval, r.burst), (Duration::from_millis(500), 2));
        let r = RateLimit::parse(" 120 / min ").unwrap();
        assert_eq!((r.interval, r.burst), (Duration::from_millis(500), 2));
        let r = RateLimit::parse("30/h").unwrap();
        assert_eq!((r.interval, r.burst), (Duration::from_secs(120), 1));
        for bad in ["", "2", "2/fortnight", "x/s", "0/s", "-1/s"] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_goes_at_once_then_one_per_interval() {
        let p = Pacer::new(RateLimit {
            interval: Duration::from_millis(500),
            burst: 2,
        });
        let t0 = Instant::now();
        let waits: Vec<Duration> = (0..5).map(|_| p.reserve(t0)).collect();
        assert_eq!(
            waits,
            [0, 0, 500, 1000, 1500].map(Duration::from_millis),
            "2 at once, then every 500 ms"
        );
        // Idle long enough, the burst is available again.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(p.reserve(later), Duration::ZERO);
        assert_eq!(p.reserve(later), Duration::ZERO);
        assert_eq!(p.reserve(later), Duration::from_millis(500));
    }

    #[test]
    fn a_stop_ends_the_wait() {
        let p = Pacer::new(RateLimit {
            interval: Duration::from_secs(3600),
            burst: 1,
        });
        let stop = AtomicBool::new(false);
        assert!(p.pace(&stop), "the first slot is free");
        stop.store(true, Ordering::SeqCst);
        let started = Instant::now();
        assert!(!p.pace(&stop));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
