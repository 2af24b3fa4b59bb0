//! Counters and the error log behind `webhook show status` and `webhook show errors`: every
//! delivered, retried, dead-lettered or dropped delivery is counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::core::latency::Histogram;

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
}

/// The last failed attempts of all sections (a ring).
pub struct ErrorLog {
    ring: Mutex<VecDeque<ErrorRecord>>,
    cap: usize,
}

impl ErrorLog {
    pub fn new(cap: usize) -> ErrorLog {
        ErrorLog {
            ring: Mutex::new(VecDeque::with_capacity(cap)),
            cap,
        }
    }

    pub fn push(&self, r: ErrorRecord) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == self.cap {
            ring.pop_front();
        }
        ring.push_back(r);
    }

    pub fn recent(&self, section: Option<&str>) -> Vec<ErrorRecord> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter()
            .filter(|r| section.is_none_or(|s| s == r.section))
            .cloned()
            .collect()
    }
}
