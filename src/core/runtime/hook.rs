//! The call path's hand-off: what a host callback may do (copy in, `try_send`, return) and the
//! state it shares with the engine — the queue, the drop counters and the channel variables
//! templates read. Nothing here blocks, logs, or touches disk or network. (An adapter with a
//! feed of its own, see [`HostFeed`], uses only the counters.)
//!
//! [`HostFeed`]: crate::core::ingest::feed::HostFeed

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crossbeam_channel::{Sender, TrySendError};

use crate::core::ingest::host_event::HostEvent;
use crate::core::instrument::latency::Histogram;

/// How many host events may wait for the correlator before the hook starts dropping them.
pub const HOOK_QUEUE_CAPACITY: usize = 100_000;

/// State shared by the call path and the engine.
pub(super) struct HookShared {
    pub(super) closed: AtomicBool,
    /// Events refused because the queue was full (the correlation thread is behind).
    pub(super) dropped: AtomicU64,
    /// Events refused because nothing receives them any more (the correlation thread is gone).
    pub(super) dropped_disconnected: AtomicU64,
    pub(super) cost_ns: Histogram,
    pub(super) wanted_vars: RwLock<Arc<HashSet<String>>>,
    /// At least one webhook section is configured.
    pub(super) webhooks: AtomicBool,
}

impl HookShared {
    /// Open, nothing counted, no variable wanted.
    pub(super) fn new() -> HookShared {
        HookShared {
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            dropped_disconnected: AtomicU64::new(0),
            cost_ns: Histogram::default(),
            wanted_vars: RwLock::new(Arc::new(HashSet::new())),
            webhooks: AtomicBool::new(false),
        }
    }

    /// Logs the hook's dropped events (it may not log itself) each time the total has at least
    /// doubled since the last report, so a long overload does not flood the log. Runs on the
    /// correlation thread.
    pub(super) fn report_drops(&self, reported: &mut u64) {
        let n = self.dropped.load(Ordering::Relaxed);
        if n > 0 && n >= reported.saturating_mul(2).max(1) {
            log::error!(
                "event queue full ({HOOK_QUEUE_CAPACITY}): {n} channel events dropped so far"
            );
            *reported = n;
        }
    }
}

/// What crosses the hook's queue: one pointer per event.
pub(super) type Queued = Box<HostEvent>;

/// Why an adapter's own queue refused an event (see [`Hook::refused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The queue is full: the correlation thread is behind.
    Full,
    /// Nothing reads the queue any more.
    Disconnected,
}

/// The call path's side: copy in, `try_send`, return. Never blocks, never touches the network
/// or the disk.
pub struct Hook {
    pub(super) tx: Sender<Queued>,
    pub(super) shared: Arc<HookShared>,
}

impl Hook {
    /// Hands one event to the engine; `false` (and counted) when the queue is full or closed.
    pub fn send(&self, ev: HostEvent) -> bool {
        if !self.is_open() {
            return false;
        }
        match self.tx.try_send(Box::new(ev)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => self.refused(Refusal::Full),
            Err(TrySendError::Disconnected(_)) => self.refused(Refusal::Disconnected),
        }
    }

    /// Whether events are still taken (not shutting down).
    fn is_open(&self) -> bool {
        !self.shared.closed.load(Ordering::Relaxed)
    }

    /// Counts an event a queue refused; always `false`, the value a refusing hook returns.
    pub fn refused(&self, why: Refusal) -> bool {
        // Counted only: the hook runs on the host's publishing thread, where logging is not
        // allowed; the correlation thread reports drops (see `report_drops`), and
        // `webhook show status` shows both counts.
        let counter = match why {
            Refusal::Full => &self.shared.dropped,
            Refusal::Disconnected => &self.shared.dropped_disconnected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// The channel variables the hook should copy, as a sorted list (the shim keeps its own
    /// copy to filter on before calling Rust).
    pub fn wanted_variables(&self) -> Vec<String> {
        let set = self
            .shared
            .wanted_vars
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut v: Vec<String> = set.iter().cloned().collect();
        v.sort();
        v
    }

    /// Whether any webhook section is configured: the shim listens to channel events only then.
    pub fn wants_events(&self) -> bool {
        self.shared.webhooks.load(Ordering::SeqCst)
    }

    /// Records what one host callback cost, for `webhook show status`.
    pub fn record_cost_ns(&self, ns: u64) {
        self.shared.cost_ns.record(ns);
    }

    /// Refuses further events (shutdown).
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ingest::host_event::{ChannelChange, ChannelInfo};
    use std::time::SystemTime;

    #[test]
    fn a_hook_with_no_correlation_thread_counts_drops_as_such_not_as_a_full_queue() {
        let (tx, rx) = crossbeam_channel::bounded(4);
        drop(rx); // the correlation thread is gone
        let shared = Arc::new(HookShared::new());
        let hook = Hook {
            tx,
            shared: shared.clone(),
        };
        let ev = HostEvent::Channel {
            change: ChannelChange::New,
            info: ChannelInfo {
                linkedid: "a".into(),
                uniqueid: "a".into(),
                ..Default::default()
            },
            at: SystemTime::now(),
        };
        assert!(!hook.send(ev));
        assert_eq!(
            shared.dropped.load(Ordering::Relaxed),
            0,
            "not a full queue"
        );
        assert_eq!(shared.dropped_disconnected.load(Ordering::Relaxed), 1);
        let mut reported = 0;
        shared.report_drops(&mut reported);
        assert_eq!(reported, 0, "no \"event queue full\" report for it");
    }
}
