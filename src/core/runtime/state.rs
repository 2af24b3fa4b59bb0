//! What the engine's parts share: the configuration in force, the dispatcher and caller
//! history (opened by the first config apply), and the counters `webhook show status` reads.
//! Its own file so the engine, config apply and the correlation thread each use it without
//! using each other.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use once_cell::sync::OnceCell;

use crate::core::calls::caller_history::CallerHistory;
use crate::core::calls::correlator::summary::CallSummary;
use crate::core::config::Config;
use crate::core::delivery::Dispatcher;

/// Where the correlation thread sends its list of calls in progress.
pub(super) type CallsReply = Sender<Vec<CallSummary>>;

/// What the CLI, the loader and the correlation thread share.
pub(super) struct Runtime {
    pub(super) config: Arc<RwLock<Arc<Config>>>,
    pub(super) generation: AtomicU64,
    pub(super) dispatcher: OnceCell<Dispatcher>,
    pub(super) history: OnceCell<CallerHistory>,
    pub(super) spool_default: PathBuf,
    pub(super) active_calls: AtomicUsize,
    pub(super) call_events: AtomicU64,
    pub(super) render_failures: AtomicU64,
    /// Channel events skipped because the call model panicked on them (a bug; logged).
    pub(super) correlator_panics: AtomicU64,
    /// Times the correlation thread's loop panicked outside the call model and was restarted.
    pub(super) thread_panics: AtomicU64,
    pub(super) sweep_every: Duration,
    /// Sweeps of calls that never ended, done so far.
    pub(super) sweeps: AtomicU64,
    /// `webhook show calls` asks the correlation thread, which owns the call table, for a
    /// list of the calls in progress; it answers on the channel it is handed.
    pub(super) calls_view: (Sender<CallsReply>, Receiver<CallsReply>),
    pub(super) node: String,
}

impl Runtime {
    pub(super) fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
