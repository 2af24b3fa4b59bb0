//! The runtime: the call path's hand-off ([`Hook`]) and the background thread that turns host
//! events into calls and calls into deliveries.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use super::config::raw::RawConfig;
use super::host_event::HostEvent;
use super::latency::Histogram;

/// How many host events may wait for the correlator before the hook starts dropping them.
pub const HOOK_QUEUE_CAPACITY: usize = 100_000;

/// Where the engine keeps its files unless `spool_dir` says otherwise.
pub struct EngineSettings {
    pub spool_default: PathBuf,
}

/// State shared by the call path and the engine.
struct HookShared {
    closed: AtomicBool,
    dropped: AtomicU64,
    cost_ns: Histogram,
    wanted_vars: RwLock<Arc<HashSet<String>>>,
}

/// The call path's side: copy in, `try_send`, return. Never blocks, never allocates a lock-held
/// resource, never touches the network or the disk.
pub struct Hook {
    tx: Sender<HostEvent>,
    shared: Arc<HookShared>,
}

impl Hook {
    /// Hands one event to the engine; `false` (and counted) when the queue is full or closed.
    pub fn send(&self, ev: HostEvent) -> bool {
        if self.shared.closed.load(Ordering::Relaxed) {
            return false;
        }
        match self.tx.try_send(ev) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    log::error!(
                        "event queue full ({HOOK_QUEUE_CAPACITY}): {} channel events dropped so far",
                        n + 1
                    );
                }
                false
            }
        }
    }

    /// Whether a channel variable is read by any template (others are not worth copying).
    pub fn wants_variable(&self, name: &str) -> bool {
        let set = self
            .shared
            .wanted_vars
            .read()
            .unwrap_or_else(|p| p.into_inner());
        set.contains(name)
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

/// The running engine. Dropping it without [`Engine::shutdown`] leaves threads running.
pub struct Engine {
    tx: Sender<HostEvent>,
    shared: Arc<HookShared>,
    #[allow(dead_code)]
    settings: EngineSettings,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Engine {
    pub fn start(settings: EngineSettings) -> Result<Engine, String> {
        let (tx, rx) = bounded(HOOK_QUEUE_CAPACITY);
        let shared = Arc::new(HookShared {
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            cost_ns: Histogram::default(),
            wanted_vars: RwLock::new(Arc::new(HashSet::new())),
        });
        let thread = std::thread::Builder::new()
            .name("webhook-calls".into())
            .spawn(move || run(rx))
            .map_err(|e| e.to_string())?;
        Ok(Engine {
            tx,
            shared,
            settings,
            thread: Some(thread),
        })
    }

    /// The hand-off for the call path.
    pub fn hook(&self) -> Hook {
        Hook {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }

    pub fn apply_config(&self, _raw: RawConfig) {}

    /// Runs a CLI command (words after `webhook`); `Err` means a usage error.
    pub fn cli(&self, _args: &[String]) -> Result<String, ()> {
        Err(())
    }

    /// Stops and joins every thread.
    pub fn shutdown(mut self) {
        drop(self.tx);
        self.shared.closed.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(rx: Receiver<HostEvent>) {
    let mut correlator = super::correlator::Correlator::new(vec!["from-internal".into()]);
    while let Ok(ev) = rx.recv() {
        log::info!("host event {ev:?}");
        for ce in correlator.handle(ev) {
            log::info!("CALL EVENT {} {:?}", ce.kind.as_str(), ce.call);
        }
    }
}
