//! Counters and the error log behind `webhook show status` and `webhook show errors`: every
//! delivered, retried, dead-lettered or dropped delivery is counted.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::core::instrument::latency::Histogram;

/// Per-section counters.
#[derive(Default)]
pub struct SectionStats {
    pub delivered: AtomicU64,
    pub attempts: AtomicU64,
    pub retries: AtomicU64,
    pub dead: AtomicU64,
    pub dropped: AtomicU64,
    pub spooled_total: AtomicU64,
    pub in_flight: AtomicUsize,
    /// Panics contained in this section's lanes (a bug; logged).
    pub panics: AtomicU64,
    /// Spool rows that could not be read and were set aside (logged).
    pub unreadable: AtomicU64,
    /// HTTP round trip of delivered attempts, µs.
    pub latency_us: Histogram,
    /// Event to delivered, ms (includes queueing and retries).
    pub e2e_ms: Histogram,
    last_error: Mutex<Option<(DateTime<Utc>, String)>>,
}

impl SectionStats {
    pub fn set_last_error(&self, e: &str) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Utc::now(), e.to_string()));
    }

    pub fn last_error(&self) -> Option<(DateTime<Utc>, String)> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// One failed attempt, as `webhook show errors` lists it.
#[derive(Debug, Clone)]
pub struct ErrorRecord {
    pub at: DateTime<Utc>,
    pub section: String,
    pub call_id: String,
    pub event: String,
    pub error: String,
    pub attempt: u32,
    /// The endpoint's HTTP status, when it answered.
    pub status: Option<u16>,
    /// The delivery was dead-lettered (4xx, or its retry schedule ran out).
    pub dead: bool,
}

/// What the host hears about a failed attempt (an AMI event, for Asterisk): the record, and
/// how many failures of the same kind in the same section were not reported before it.
#[derive(Debug, Clone)]
pub struct Notice {
    pub record: ErrorRecord,
    pub suppressed: u64,
}

/// Receives [`Notice`]s, on a delivery worker's thread.
pub type Notifier = Arc<dyn Fn(&Notice) + Send + Sync>;

/// At most one notice per section and kind (failed, dead) per this long: an endpoint that is
/// down fails every delivery, and a notice per failure would flood the host.
pub const NOTICE_EVERY: Duration = Duration::from_secs(1);

/// The last failed attempts of all sections (a ring), and the notices they give the host.
pub struct ErrorLog {
    ring: Mutex<VecDeque<ErrorRecord>>,
    cap: usize,
    notifier: RwLock<Option<Notifier>>,
    /// (section, dead) → when last notified, failures held back since.
    throttle: Mutex<HashMap<(String, bool), (Instant, u64)>>,
}

impl ErrorLog {
    pub fn new(cap: usize) -> ErrorLog {
        ErrorLog {
            ring: Mutex::new(VecDeque::with_capacity(cap)),
            cap,
            notifier: RwLock::new(None),
            throttle: Mutex::new(HashMap::new()),
        }
    }

    /// Who hears about failures from now on.
    pub fn set_notifier(&self, n: Notifier) {
        *self.notifier.write().unwrap_or_else(|p| p.into_inner()) = Some(n);
    }

    pub fn push(&self, r: ErrorRecord) {
        let notice = self.notice_for(&r);
        {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            if ring.len() == self.cap {
                ring.pop_front();
            }
            ring.push_back(r);
        }
        let notifier = self
            .notifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let (Some(n), Some(notice)) = (notifier, notice) {
            n(&notice);
        }
    }

    /// The notice to give for `r`, unless one of its kind went out less than
    /// [`NOTICE_EVERY`] ago (then it is counted, and told with the next one).
    fn notice_for(&self, r: &ErrorRecord) -> Option<Notice> {
        let mut t = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let slot = t
            .entry((r.section.clone(), r.dead))
            .or_insert((now - NOTICE_EVERY, 0));
        if now.duration_since(slot.0) < NOTICE_EVERY {
            slot.1 += 1;
            return None;
        }
        let suppressed = std::mem::take(&mut slot.1);
        slot.0 = now;
        Some(Notice {
            record: r.clone(),
            suppressed,
        })
    }

    pub fn recent(&self, section: Option<&str>) -> Vec<ErrorRecord> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter()
            .filter(|r| section.is_none_or(|s| s == r.section))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(section: &str, dead: bool) -> ErrorRecord {
        ErrorRecord {
            at: Utc::now(),
            section: section.into(),
            call_id: "1700000000.1".into(),
            event: "end".into(),
            error: "HTTP 503".into(),
            attempt: 1,
            status: Some(503),
            dead,
        }
    }

    #[test]
    fn notices_are_throttled_per_section_and_kind_and_count_what_they_held_back() {
        let log = ErrorLog::new(10);
        let got: Arc<Mutex<Vec<Notice>>> = Arc::default();
        let sink = got.clone();
        log.set_notifier(Arc::new(move |n| sink.lock().unwrap().push(n.clone())));
        for _ in 0..5 {
            log.push(record("crm", false));
        }
        log.push(record("crm", true));
        log.push(record("analytics", false));
        let kinds: Vec<(String, bool, u64)> = got
            .lock()
            .unwrap()
            .iter()
            .map(|n| (n.record.section.clone(), n.record.dead, n.suppressed))
            .collect();
        assert_eq!(
            kinds,
            [
                ("crm".into(), false, 0),
                ("crm".into(), true, 0),
                ("analytics".into(), false, 0)
            ]
        );
        assert_eq!(
            log.recent(Some("crm")).len(),
            6,
            "every failure is still listed"
        );
        // After the quiet period the next one goes out and tells how many were held back.
        log.throttle
            .lock()
            .unwrap()
            .get_mut(&("crm".to_string(), false))
            .unwrap()
            .0 -= NOTICE_EVERY;
        log.push(record("crm", false));
        let last = got.lock().unwrap().last().unwrap().clone();
        assert_eq!((last.record.section.as_str(), last.suppressed), ("crm", 4));
    }
}
