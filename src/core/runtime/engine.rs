//! The engine: starts the correlation thread, owns the services (contact lookup,
//! click-to-call, the dispatcher once a configuration is applied) and stops them. What it
//! does lives next door: the call path's hand-off in [`hook`], configuration in [`apply`],
//! the `webhook-calls` thread in [`correlation`]; the CLI reads it through the accessors here.
//!
//! Threads: the host's callbacks only touch [`Hook`]; one `webhook-calls` thread owns the
//! correlator and renders requests; the [`Dispatcher`] runs one worker per section.
//! Configuration is applied on the caller's thread (module load / reload / CLI).
//!
//! [`hook`]: super::hook
//! [`apply`]: super::apply
//! [`correlation`]: super::correlation

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};
use once_cell::sync::OnceCell;

use super::correlation::correlate;
use super::hook::{Hook, HookShared, Queued, HOOK_QUEUE_CAPACITY};
use super::state::Runtime;
use crate::core::calls::correlator::summary::CallSummary;
use crate::core::click_to_call::ClickToCall;
use crate::core::config::Config;
use crate::core::delivery::stats::Notifier;
use crate::core::delivery::{Dispatcher, SectionStatus};
use crate::core::ingest::feed::HostFeed;
use crate::core::lookup::LookupService;

/// How often calls that never ended (a lost hangup) are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// How the engine is started.
pub struct EngineSettings {
    /// Where the engine keeps its files unless `spool_dir` says otherwise.
    pub spool_default: PathBuf,
    /// Told about failed deliveries and dead letters (throttled), on a worker's thread.
    pub on_failure: Option<Notifier>,
    /// How often calls that never ended are swept ([`SWEEP_EVERY`]; shorter in tests).
    pub sweep_every: Duration,
    /// This PBX's name, the `node` field of every call.
    pub node: String,
    /// The adapter's own queue of events, read after the engine's (see [`HostFeed`]).
    pub feed: Option<Arc<dyn HostFeed>>,
}

impl EngineSettings {
    pub fn new(spool_default: PathBuf) -> EngineSettings {
        EngineSettings {
            spool_default,
            on_failure: None,
            sweep_every: SWEEP_EVERY,
            node: String::new(),
            feed: None,
        }
    }
}

/// The running engine. Call [`Engine::shutdown`] to stop it; dropping it leaves threads running.
///
/// Every method takes `&self` and the engine is shared (`Arc`) by the adapter, which holds no
/// lock while a method runs: a CLI command that waits on an endpoint, or a reload that opens the
/// spool and joins workers, never holds up a channel thread's `WEBHOOK_LOOKUP`.
pub struct Engine {
    pub(super) tx: Sender<Queued>,
    pub(super) shared: Arc<HookShared>,
    pub(super) stop: Sender<()>,
    pub(super) thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    pub(super) runtime: Arc<Runtime>,
    pub(super) lookups: Arc<LookupService>,
    pub(super) click_to_call: Arc<ClickToCall>,
    /// Serialises configuration loads (two `module reload`s at once); no channel thread takes it.
    pub(super) applying: std::sync::Mutex<()>,
    pub(super) on_failure: Option<Notifier>,
}

impl Engine {
    pub fn start(settings: EngineSettings) -> Result<Engine, StartError> {
        let (tx, rx) = bounded(HOOK_QUEUE_CAPACITY);
        let (stop, stop_rx) = bounded(1);
        let shared = Arc::new(HookShared::new());
        let feed = settings.feed;
        let runtime = Arc::new(Runtime {
            config: Arc::new(RwLock::new(Arc::new(Config::default()))),
            generation: AtomicU64::new(0),
            dispatcher: OnceCell::new(),
            history: OnceCell::new(),
            spool_default: settings.spool_default,
            active_calls: AtomicUsize::new(0),
            call_events: AtomicU64::new(0),
            render_failures: AtomicU64::new(0),
            correlator_panics: AtomicU64::new(0),
            thread_panics: AtomicU64::new(0),
            sweep_every: settings.sweep_every,
            sweeps: AtomicU64::new(0),
            calls_view: bounded(4),
            node: settings.node.clone(),
        });
        let rt = runtime.clone();
        let thread = std::thread::Builder::new()
            .name("webhook-calls".into())
            .spawn({
                let shared = shared.clone();
                move || correlate(rx, feed, stop_rx, rt, shared)
            })
            .map_err(StartError::CorrelationThread)?;
        let lookups = Arc::new(LookupService::new(runtime.config.clone()));
        let hook = Hook {
            tx: tx.clone(),
            shared: shared.clone(),
        };
        let click_to_call = Arc::new(ClickToCall::new(
            runtime.config.clone(),
            Box::new(move |ev| hook.send(ev)),
        ));
        Ok(Engine {
            tx,
            shared,
            stop,
            thread: std::sync::Mutex::new(Some(thread)),
            runtime,
            lookups,
            click_to_call,
            applying: std::sync::Mutex::new(()),
            on_failure: settings.on_failure,
        })
    }

    /// The contact-lookup service (`WEBHOOK_LOOKUP`), usable without holding the engine.
    pub fn lookups(&self) -> Arc<LookupService> {
        self.lookups.clone()
    }

    /// The click-to-call service, usable without holding the engine.
    pub fn click_to_call(&self) -> Arc<ClickToCall> {
        self.click_to_call.clone()
    }

    /// The hand-off for the call path.
    pub fn hook(&self) -> Hook {
        Hook {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }

    /// The configuration in force (empty before the first apply).
    pub fn config(&self) -> Arc<Config> {
        self.runtime.config()
    }

    /// The dispatcher: `None` until the first configuration is applied (it opens the spool).
    pub fn dispatcher(&self) -> Option<&Dispatcher> {
        self.runtime.dispatcher.get()
    }

    /// Every webhook section's delivery counters (empty before the spool is open).
    pub fn status_rows(&self) -> Vec<SectionStatus> {
        self.runtime
            .dispatcher
            .get()
            .map(Dispatcher::status_rows)
            .unwrap_or_default()
    }

    /// The engine's own counters now (the delivery counters are [`Engine::status_rows`]).
    pub fn counters(&self) -> EngineCounters {
        let rt = &self.runtime;
        let hook = &self.shared;
        EngineCounters {
            calls_in_progress: rt.active_calls.load(Ordering::Relaxed),
            call_events: rt.call_events.load(Ordering::Relaxed),
            render_failures: rt.render_failures.load(Ordering::Relaxed),
            call_model_errors: rt.correlator_panics.load(Ordering::Relaxed),
            thread_restarts: rt.thread_panics.load(Ordering::Relaxed),
            hook_events: hook.cost_ns.count(),
            hook_cost_p50_ns: hook.cost_ns.quantile(0.5),
            hook_cost_p99_ns: hook.cost_ns.quantile(0.99),
            hook_dropped_full: hook.dropped.load(Ordering::Relaxed),
            hook_dropped_disconnected: hook.dropped_disconnected.load(Ordering::Relaxed),
        }
    }

    /// The calls in progress, from the correlation thread, which owns the call table (it
    /// answers within one poll).
    pub fn calls_in_progress(&self) -> Result<Vec<CallSummary>, CallsUnavailable> {
        let (tx, rx) = bounded(1);
        if self.runtime.calls_view.0.try_send(tx).is_err() {
            return Err(CallsUnavailable::Busy);
        }
        rx.recv_timeout(CallsUnavailable::WAIT)
            .map_err(|_| CallsUnavailable::NoAnswer)
    }

    /// Asterisk is exiting without unloading modules (`core stop now`, SIGTERM): writes the
    /// caller history durably; the adapter then calls [`Engine::shutdown`].
    pub fn at_exit(&self) {
        if let Some(h) = self.runtime.history.get() {
            h.flush();
        }
    }

    /// Stops the correlation thread and the dispatcher (which spools what is still queued) and
    /// joins every thread. A second call does nothing.
    pub fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let _ = self.stop.try_send(());
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        if let Some(d) = self.runtime.dispatcher.get() {
            d.shutdown();
        }
    }
}

/// Why the engine did not start.
#[derive(Debug)]
pub enum StartError {
    /// The `webhook-calls` thread could not be spawned.
    CorrelationThread(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::CorrelationThread(e) => {
                write!(f, "cannot start the correlation thread: {e}")
            }
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::CorrelationThread(e) => Some(e),
        }
    }
}

/// The engine's counters at one moment (`webhook show status`, metrics).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineCounters {
    pub calls_in_progress: usize,
    pub call_events: u64,
    pub render_failures: u64,
    /// Channel events skipped because the call model panicked on them.
    pub call_model_errors: u64,
    /// Times the correlation thread's loop panicked and was restarted.
    pub thread_restarts: u64,
    /// Host callbacks measured, and what one cost on the publishing thread (filter to enqueue).
    pub hook_events: u64,
    pub hook_cost_p50_ns: Option<u64>,
    pub hook_cost_p99_ns: Option<u64>,
    /// Events the hook refused: the queue was full / the correlation thread was not running.
    pub hook_dropped_full: u64,
    pub hook_dropped_disconnected: u64,
}

/// Why `webhook show calls` has no list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallsUnavailable {
    /// Other requests are waiting for the correlation thread.
    Busy,
    /// The correlation thread did not answer within [`CallsUnavailable::WAIT`].
    NoAnswer,
}

impl CallsUnavailable {
    /// How long a caller waits for the correlation thread's answer.
    pub const WAIT: Duration = Duration::from_secs(2);
}

impl std::fmt::Display for CallsUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallsUnavailable::Busy => f.write_str("the call model is busy answering; try again"),
            CallsUnavailable::NoAnswer => f.write_str("the call model did not answer within 2 s"),
        }
    }
}

impl std::error::Error for CallsUnavailable {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::raw::RawConfig;
    use crate::core::ingest::host_event::{ChannelChange, ChannelInfo, HostEvent};
    use crate::core::instrument::fault;
    use std::sync::Mutex;
    use std::time::{Instant, SystemTime};

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "rw-engine-{name}-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A local endpoint recording `call_id:event` of each JSON delivery.
    fn receiver() -> (String, Arc<Mutex<Vec<String>>>, Arc<tiny_http::Server>) {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!(
            "http://127.0.0.1:{}/hook",
            server.server_addr().to_ip().unwrap().port()
        );
        let got = Arc::new(Mutex::new(Vec::new()));
        let (srv, g) = (server.clone(), got.clone());
        std::thread::spawn(move || {
            for mut req in srv.incoming_requests() {
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let j: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                g.lock().unwrap().push(format!(
                    "{}:{}",
                    j["call_id"].as_str().unwrap_or(""),
                    j["event"].as_str().unwrap_or("")
                ));
                let _ = req.respond(tiny_http::Response::from_string("ok"));
            }
        });
        (url, got, server)
    }

    fn engine(name: &str, url: &str, settings: impl FnOnce(&mut EngineSettings)) -> Engine {
        let mut s = EngineSettings::new(temp_dir(name));
        settings(&mut s);
        let e = Engine::start(s).unwrap();
        e.apply_config(RawConfig::parse_text(
            "webhook.conf",
            &format!(
                "[crm]\ntype = webhook\nurl = {url}\nparam = call_id => ${{call_id}}\nparam = event => ${{event}}\n"
            ),
        ));
        e
    }

    fn channel(change: ChannelChange, call: &str, caller: &str) -> HostEvent {
        HostEvent::Channel {
            change,
            info: ChannelInfo {
                linkedid: call.into(),
                uniqueid: call.into(),
                name: compact_str::format_compact!("PJSIP/trunk-{call}"),
                caller_number: caller.into(),
                context: "from-trunk".into(),
                exten: "74951234567".into(),
                ..Default::default()
            },
            at: SystemTime::now(),
        }
    }

    fn wait_for(got: &Mutex<Vec<String>>, want: &[&str]) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let g = got.lock().unwrap().clone();
            if want.iter().all(|w| g.iter().any(|x| x == w)) || Instant::now() > deadline {
                return g;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn the_correlation_thread_survives_a_panic_with_its_calls_intact() {
        fault::arm(fault::Place::Calls, "79990005555");
        let (url, got, _srv) = receiver();
        let e = engine("calls-panic", &url, |_| {});
        let hook = e.hook();
        // Call a's start panics while it is rendered (one event lost: a bug's cost); the
        // thread starts over with the same call table, so a's end and call b still go out.
        hook.send(channel(ChannelChange::New, "a", "79990005555"));
        std::thread::sleep(Duration::from_millis(200));
        hook.send(channel(ChannelChange::Dead, "a", "79990005555"));
        hook.send(channel(ChannelChange::New, "b", "79161234567"));
        hook.send(channel(ChannelChange::Dead, "b", "79161234567"));
        let g = wait_for(&got, &["a:end", "b:start", "b:end"]);
        assert!(
            ["a:end", "b:start", "b:end"]
                .iter()
                .all(|w| g.iter().any(|x| x == w)),
            "{g:?}"
        );
        assert!(!g.iter().any(|x| x == "a:start"), "{g:?}");
        assert_eq!(e.counters().thread_restarts, 1, "{:?}", e.counters());
        e.shutdown();
    }

    #[test]
    fn timed_chores_run_while_events_keep_coming() {
        let (url, _got, _srv) = receiver();
        let e = engine("chores", &url, |s| {
            s.sweep_every = Duration::from_millis(100)
        });
        let hook = e.hook();
        let started = Instant::now();
        let before = e.runtime.sweeps.load(Ordering::Relaxed);
        // Keep the queue from ever being empty for a second.
        let mut i = 0u64;
        while started.elapsed() < Duration::from_secs(1) {
            for _ in 0..1000 {
                i += 1;
                hook.send(HostEvent::CallData {
                    linkedid: format!("x{}", i % 64),
                    name: "N".into(),
                    value: "v".into(),
                    at: SystemTime::now(),
                });
            }
        }
        let sweeps = e.runtime.sweeps.load(Ordering::Relaxed) - before;
        assert!(
            sweeps >= 5,
            "{sweeps} sweeps in 1 s of constant events (every 100 ms)"
        );
        e.shutdown();
    }
}
