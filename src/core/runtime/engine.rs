//! The runtime: the call path's hand-off ([`Hook`]) and the background thread that turns host
//! events into calls and calls into deliveries.
//!
//! Threads: the host's callbacks only touch [`Hook`]; one `webhook-calls` thread owns the
//! [`Correlator`] and renders requests; the [`Dispatcher`] runs one worker per section.
//! Configuration is applied on the caller's thread (module load / reload / CLI).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};
use once_cell::sync::OnceCell;

use crate::core::calls::caller_history::CallerHistory;
use crate::core::calls::correlator::summary::{self, CallSummary};
use crate::core::calls::correlator::{Correlator, DIALSTATUS_VARIABLE, RECORDING_VARIABLE};
use crate::core::cli::metrics;
use crate::core::click_to_call::ClickToCall;
use crate::core::config::raw::RawConfig;
use crate::core::config::{describe, Config, SectionKind};
use crate::core::delivery::stats::Notifier;
use crate::core::delivery::{Delivery, Dispatcher, EndpointPolicy, SectionStatus};
use crate::core::ingest::host_event::HostEvent;
use crate::core::ingest::packed_event::{PackedEvent, PackedStrings};
use crate::core::lookup::LookupService;
use crate::core::model::call::{CallEvent, EventKind};
use crate::core::model::synthetic;
use crate::core::runtime::fault;
use crate::core::runtime::latency::Histogram;

/// How many host events may wait for the correlator before the hook starts dropping them.
pub const HOOK_QUEUE_CAPACITY: usize = 100_000;

/// Packing buffers kept for reuse (see [`PackedStrings`]).
const BUFFER_POOL: usize = 4096;

/// Capacity of a fresh packing buffer: a channel's strings fit without growing.
const BUFFER_CAPACITY: usize = 512;

/// How long the correlation thread sleeps when the hook's queue is empty.
const IDLE_POLL: Duration = Duration::from_millis(40);

/// How often the correlation thread does its timed chores (report drops, let the delivery
/// workers notice a stalled lane), also while events keep coming.
const CHORES_EVERY: Duration = Duration::from_millis(40);

/// How often calls that never ended (a lost hangup) are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A CLI command with the wrong words: the host shows the command's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageError;

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
}

impl EngineSettings {
    pub fn new(spool_default: PathBuf) -> EngineSettings {
        EngineSettings {
            spool_default,
            on_failure: None,
            sweep_every: SWEEP_EVERY,
            node: String::new(),
        }
    }
}

/// State shared by the call path and the engine.
struct HookShared {
    closed: AtomicBool,
    /// Events refused because the queue was full (the correlation thread is behind).
    dropped: AtomicU64,
    /// Events refused because nothing receives them any more (the correlation thread is gone).
    dropped_disconnected: AtomicU64,
    cost_ns: Histogram,
    wanted_vars: RwLock<Arc<HashSet<String>>>,
    /// At least one webhook section is configured.
    webhooks: AtomicBool,
    /// Packing buffers the correlation thread gives back after unpacking.
    buffers: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
}

impl HookShared {
    /// Open, nothing counted, no variable wanted, `pool` packing buffers at most.
    fn new(pool: usize) -> HookShared {
        HookShared {
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            dropped_disconnected: AtomicU64::new(0),
            cost_ns: Histogram::default(),
            wanted_vars: RwLock::new(Arc::new(HashSet::new())),
            webhooks: AtomicBool::new(false),
            buffers: bounded(pool),
        }
    }
}

/// What crosses the hook's queue.
enum Queued {
    Event(Box<HostEvent>),
    Packed(PackedEvent),
}

/// The call path's side: copy in, `try_send`, return. Never blocks, never touches the network
/// or the disk.
pub struct Hook {
    tx: Sender<Queued>,
    shared: Arc<HookShared>,
}

impl Hook {
    /// Hands one event to the engine; `false` (and counted) when the queue is full or closed.
    pub fn send(&self, ev: HostEvent) -> bool {
        self.enqueue(Queued::Event(Box::new(ev)))
    }

    /// Hands over a packed event (the call path's way: no allocation); `false` like [`send`].
    ///
    /// [`send`]: Hook::send
    pub fn send_packed(&self, ev: PackedEvent) -> bool {
        self.enqueue(Queued::Packed(ev))
    }

    /// An empty packing buffer, reused when one is free.
    pub fn strings(&self) -> PackedStrings {
        PackedStrings::new(
            self.shared
                .buffers
                .1
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(BUFFER_CAPACITY)),
        )
    }

    fn enqueue(&self, ev: Queued) -> bool {
        if self.shared.closed.load(Ordering::Relaxed) {
            return false;
        }
        match self.tx.try_send(ev) {
            Ok(()) => true,
            // Counted only: the hook runs on Asterisk's publishing thread, where logging is
            // not allowed; the correlation thread reports drops (see `report_drops`), and
            // `webhook show status` shows both counts.
            Err(TrySendError::Full(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared
                    .dropped_disconnected
                    .fetch_add(1, Ordering::Relaxed);
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

/// Where the correlation thread sends its list of calls in progress.
type CallsReply = Sender<Vec<CallSummary>>;

/// What the CLI, the loader and the correlation thread share.
struct Runtime {
    config: Arc<RwLock<Arc<Config>>>,
    generation: AtomicU64,
    dispatcher: OnceCell<Dispatcher>,
    history: OnceCell<CallerHistory>,
    spool_default: PathBuf,
    active_calls: AtomicUsize,
    call_events: AtomicU64,
    render_failures: AtomicU64,
    /// Channel events skipped because the call model panicked on them (a bug; logged).
    correlator_panics: AtomicU64,
    /// Times the correlation thread's loop panicked outside the call model and was restarted.
    thread_panics: AtomicU64,
    sweep_every: Duration,
    /// Sweeps of calls that never ended, done so far.
    sweeps: AtomicU64,
    /// `webhook show calls` asks the correlation thread, which owns the call table, for a
    /// list of the calls in progress; it answers on the channel it is handed.
    calls_view: (Sender<CallsReply>, Receiver<CallsReply>),
    node: String,
}

impl Runtime {
    fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The running engine. Call [`Engine::shutdown`] to stop it; dropping it leaves threads running.
///
/// Every method takes `&self` and the engine is shared (`Arc`) by the adapter, which holds no
/// lock while a method runs: a CLI command that waits on an endpoint, or a reload that opens the
/// spool and joins workers, never holds up a channel thread's `WEBHOOK_LOOKUP`.
pub struct Engine {
    tx: Sender<Queued>,
    shared: Arc<HookShared>,
    stop: Sender<()>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    runtime: Arc<Runtime>,
    lookups: Arc<LookupService>,
    click_to_call: Arc<ClickToCall>,
    /// Serialises configuration loads (two `module reload`s at once); no channel thread takes it.
    applying: std::sync::Mutex<()>,
    on_failure: Option<Notifier>,
}

impl Engine {
    pub fn start(settings: EngineSettings) -> Result<Engine, String> {
        let (tx, rx) = bounded(HOOK_QUEUE_CAPACITY);
        let (stop, stop_rx) = bounded(1);
        let shared = Arc::new(HookShared::new(BUFFER_POOL));
        let buffers = shared.buffers.0.clone();
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
                move || correlate(rx, stop_rx, buffers, rt, shared)
            })
            .map_err(|e| format!("cannot start the correlation thread: {e}"))?;
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

    /// Loads (first call) or reloads the configuration. Bad sections are logged and skipped;
    /// on reload a section that became invalid keeps its previous version. What is queued stays.
    pub fn apply_config(&self, raw: RawConfig) {
        let _one_at_a_time = self.applying.lock().unwrap_or_else(|p| p.into_inner());
        let rt = &self.runtime;
        let previous = rt.config();
        let first = rt.generation.load(Ordering::SeqCst) == 0;
        if raw.missing {
            log::warn!(
                "{} not found: no webhooks are sent until it exists and the module is reloaded",
                raw.file
            );
        }
        let (config, errors) = if first {
            Config::from_raw(&raw)
        } else {
            Config::reload(&previous, &raw)
        };
        for e in &errors {
            log::error!("{e}");
        }

        let spool_dir = config
            .general
            .spool_dir
            .clone()
            .unwrap_or_else(|| rt.spool_default.clone());
        if rt.dispatcher.get().is_none() {
            let d = Dispatcher::open(&spool_dir);
            if let Some(n) = &self.on_failure {
                d.set_notifier(n.clone());
            }
            let _ = rt.dispatcher.set(d);
            match CallerHistory::open(&spool_dir.join("history.redb")) {
                Ok(h) => {
                    let _ = rt.history.set(h);
                }
                Err(e) => log::error!(
                    "caller history {}: {e}; is_new/is_duplicate are empty",
                    spool_dir.display()
                ),
            }
        } else if previous.general.spool_dir != config.general.spool_dir {
            log::warn!("spool_dir changes take effect after an Asterisk restart");
        }

        let mut wanted = config.referenced_variables();
        wanted.insert(RECORDING_VARIABLE.to_string());
        wanted.insert(DIALSTATUS_VARIABLE.to_string());
        *self
            .shared
            .wanted_vars
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(wanted);

        if let Some(d) = rt.dispatcher.get() {
            d.configure(endpoint_policies(&config));
        }
        let webhooks = config
            .sections
            .iter()
            .filter(|s| matches!(s.kind, SectionKind::Webhook(_)))
            .count();
        self.shared.webhooks.store(webhooks > 0, Ordering::SeqCst);
        log::info!(
            "{}: {} section(s) loaded ({} webhook), {} error(s)",
            raw.file,
            config.sections.len(),
            webhooks,
            errors.len()
        );
        self.lookups.configure(&config);
        *rt.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        rt.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Runs a CLI command (the words after `webhook`); `Err` means a usage error.
    pub fn cli(&self, args: &[String]) -> Result<String, UsageError> {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        let rt = &self.runtime;
        let Some(dispatcher) = rt.dispatcher.get() else {
            return Ok("res_webhook: no configuration loaded yet; nothing to show\n".into());
        };
        match words.as_slice() {
            ["show", "status"] => Ok(format!(
                "{}\nCalls in progress: {}   call events: {}   render failures: {}   call model errors: {}   correlation thread restarts: {}\n\
                 Hook cost (C callback + copy + enqueue): p50 {}  p99 {}  over {} events; dropped: {} (queue full), {} (correlation thread not running)\n\
                 Lookups that reached a CRM: {}  p50 {}  p99 {}\n",
                dispatcher.status_text(),
                rt.active_calls.load(Ordering::Relaxed),
                rt.call_events.load(Ordering::Relaxed),
                rt.render_failures.load(Ordering::Relaxed),
                rt.correlator_panics.load(Ordering::Relaxed),
                rt.thread_panics.load(Ordering::Relaxed),
                fmt_ns(self.shared.cost_ns.quantile(0.5)),
                fmt_ns(self.shared.cost_ns.quantile(0.99)),
                self.shared.cost_ns.count(),
                self.shared.dropped.load(Ordering::Relaxed),
                self.shared.dropped_disconnected.load(Ordering::Relaxed),
                self.lookups.latency_us.count(),
                fmt_ns(self.lookups.latency_us.quantile(0.5).map(|us| us * 1000)),
                fmt_ns(self.lookups.latency_us.quantile(0.99).map(|us| us * 1000)),
            )),
            ["show", "calls"] => Ok(self.calls_text()),
            ["show", "section", name] => {
                let config = rt.config();
                Ok(match config.sections.iter().find(|s| s.name == *name) {
                    Some(s) => describe::section_text(s),
                    None => format!("no section [{name}] loaded (see the log for errors)\n"),
                })
            }
            ["show", "errors"] => Ok(dispatcher.errors_text(None)),
            ["show", "errors", section] => Ok(dispatcher.errors_text(Some(section))),
            ["test", section] => Ok(self.test(dispatcher, section, EventKind::Start)),
            ["test", section, event] => match EventKind::parse(event) {
                Some(kind) => Ok(self.test(dispatcher, section, kind)),
                None => Err(UsageError),
            },
            ["replay", "all"] => Ok(format!("{} delivery(ies) re-queued\n", dispatcher.replay(None))),
            ["replay", section] => Ok(format!(
                "{} delivery(ies) of [{section}] re-queued\n",
                dispatcher.replay(Some(section))
            )),
            _ => Err(UsageError),
        }
    }

    /// Every webhook section's delivery counters (empty before the spool is open).
    pub fn status_rows(&self) -> Vec<SectionStatus> {
        self.runtime
            .dispatcher
            .get()
            .map(Dispatcher::status_rows)
            .unwrap_or_default()
    }

    /// The Prometheus exposition text of everything the module counts.
    pub fn metrics_text(&self) -> String {
        let rt = &self.runtime;
        let dispatcher = rt.dispatcher.get();
        metrics::render(&metrics::Snapshot {
            sections: self.status_rows(),
            section_latency: dispatcher
                .map(|d| d.latencies(metrics::Buckets::of))
                .unwrap_or_default(),
            lookup_latency: metrics::Buckets::of(&self.lookups.latency_us),
            lookups: std::array::from_fn(|i| self.lookups.answered[i].load(Ordering::Relaxed)),
            hook_events: self.shared.cost_ns.count(),
            hook_dropped: self.shared.dropped.load(Ordering::Relaxed),
            calls_in_progress: rt.active_calls.load(Ordering::Relaxed),
            call_events: rt.call_events.load(Ordering::Relaxed),
        })
    }

    /// The calls in progress, from the correlation thread (it answers within one poll).
    fn calls_text(&self) -> String {
        let (tx, rx) = bounded(1);
        if self.runtime.calls_view.0.try_send(tx).is_err() {
            return "the call model is busy answering; try again\n".into();
        }
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(calls) => summary::table(&calls),
            Err(_) => "the call model did not answer within 2 s\n".into(),
        }
    }

    fn test(&self, dispatcher: &Dispatcher, section: &str, kind: EventKind) -> String {
        let config = self.runtime.config();
        let Some(webhook) = config.webhook(section) else {
            return format!("no webhook section [{section}]\n");
        };
        let event = synthetic::call_event(kind, SystemTime::now());
        match webhook.render(&event) {
            Ok(request) => {
                let head = format!(
                    "[{section}] {} {} {}\n",
                    kind.as_str(),
                    request.method.as_str(),
                    request.url
                );
                head + &dispatcher.send_now(section, request)
            }
            Err(e) => format!(
                "[{section}] cannot render the {} event: {e}\n",
                kind.as_str()
            ),
        }
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

fn fmt_ns(ns: Option<u64>) -> String {
    match ns {
        None => "-".into(),
        Some(ns) if ns < 10_000 => format!("{ns} ns"),
        Some(ns) => format!("{:.1} µs", ns as f64 / 1000.0),
    }
}

fn endpoint_policies(config: &Config) -> Vec<EndpointPolicy> {
    config
        .sections
        .iter()
        .filter_map(|s| match &s.kind {
            SectionKind::Webhook(w) => Some(EndpointPolicy {
                name: s.name.clone(),
                timeout: w.timeout,
                retry: w.retry.clone(),
                secret: w.secret.clone(),
                tls_ca: w.tls_ca.clone(),
                concurrency: w.concurrency,
                rate_limit: w.rate_limit,
                nats: w.nats.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// Feeds one host event to the correlator. A panic (a bug) loses that one event, is logged and
/// counted, and the thread goes on with the next: every other call keeps its events.
fn handle_guarded(correlator: &mut Correlator, ev: HostEvent, rt: &Runtime) -> Vec<CallEvent> {
    match caught(|| correlator.handle(ev)) {
        Ok(events) => events,
        Err(why) => {
            rt.correlator_panics.fetch_add(1, Ordering::Relaxed);
            log::error!(
                "call model bug ({why}): one channel event skipped (trace_calls = yes shows them)"
            );
            Vec::new()
        }
    }
}

/// Runs `f`, turning a panic into its message.
fn caught<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into())
    })
}

/// What the correlation thread keeps across a restart of its loop.
struct Correlation {
    correlator: Correlator,
    /// Deliveries rendered since the queue was last empty: handed to the workers together, so
    /// each section's worker wakes once per burst of events rather than once per delivery.
    outbox: Vec<Delivery>,
    generation: u64,
    config: Arc<Config>,
    history_on: bool,
    dropped_reported: u64,
    last_chores: Instant,
    last_sweep: Instant,
}

/// The `webhook-calls` thread: host events in, deliveries out. Supervised: a panic outside
/// the call model (which has its own guard, one event) is logged and counted, and the loop
/// starts over with the same queue and the same call table, so calls in progress keep their
/// events.
fn correlate(
    rx: Receiver<Queued>,
    stop: Receiver<()>,
    buffers: Sender<Vec<u8>>,
    rt: Arc<Runtime>,
    shared: Arc<HookShared>,
) {
    let config = rt.config();
    let mut st = Correlation {
        correlator: Correlator::new(config.general.internal_contexts.clone()),
        outbox: Vec::new(),
        generation: rt.generation.load(Ordering::SeqCst),
        history_on: config.uses_caller_history(),
        config,
        dropped_reported: 0,
        last_chores: Instant::now(),
        last_sweep: Instant::now(),
    };
    loop {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            correlate_loop(&rx, &stop, &buffers, &rt, &shared, &mut st)
        }));
        match run {
            Ok(()) => break,
            Err(p) => {
                let n = rt.thread_panics.fetch_add(1, Ordering::Relaxed) + 1;
                log::error!(
                    "correlation thread panicked ({}); restarted with its queue and calls intact ({n} so far, webhook show status)",
                    crate::core::delivery::worker::panic_text(&p)
                );
                // A bug that panics at once again must not spin.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    flush(&rt, &mut st.outbox);
    if let Some(h) = rt.history.get() {
        h.flush();
    }
    let unfinished = st.correlator.active_calls();
    if unfinished > 0 {
        log::warn!(
            "stopping with {unfinished} call(s) in progress: their remaining events are not sent"
        );
    }
}

/// The correlation loop; returns when stopped.
fn correlate_loop(
    rx: &Receiver<Queued>,
    stop: &Receiver<()>,
    buffers: &Sender<Vec<u8>>,
    rt: &Runtime,
    shared: &HookShared,
    st: &mut Correlation,
) {
    // The consumer polls instead of blocking in `recv`: with no receiver parked on the channel,
    // the hook's `try_send` never has to wake a thread (a futex call, and on 2 cores often a
    // preemption of the Stasis thread mid-hook). Costs ≤ 40 ms of latency when idle.
    loop {
        if st.last_chores.elapsed() >= CHORES_EVERY {
            st.last_chores = Instant::now();
            chores(rt, shared, st);
        }
        if let Ok(reply) = rt.calls_view.1.try_recv() {
            let _ = reply.try_send(st.correlator.in_progress(SystemTime::now()));
        }
        let ev = match rx.try_recv() {
            Ok(Queued::Event(ev)) => *ev,
            Ok(Queued::Packed(p)) => {
                let (ev, buffer) = p.unpack();
                let _ = buffers.try_send(buffer);
                ev
            }
            Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) => {
                if stop.try_recv().is_ok() {
                    return;
                }
                flush(rt, &mut st.outbox);
                std::thread::sleep(IDLE_POLL);
                continue;
            }
        };
        // Config may have changed since the last event: use the one in force now.
        let g = rt.generation.load(Ordering::SeqCst);
        if g != st.generation {
            st.generation = g;
            st.config = rt.config();
            st.history_on = st.config.uses_caller_history();
            st.correlator
                .set_internal_contexts(st.config.general.internal_contexts.clone());
        }
        let config = st.config.clone();
        if config.general.trace_calls {
            log::info!("trace: host event {ev:?}");
        }
        let events = handle_guarded(&mut st.correlator, ev, rt);
        rt.active_calls
            .store(st.correlator.active_calls(), Ordering::Relaxed);
        for mut ev in events {
            if ev.kind == EventKind::Start && st.history_on {
                if let Some(h) = rt.history.get() {
                    let (is_new, is_dup) = h.observe(
                        &ev.call.caller,
                        ev.call.time_start,
                        config.general.repeat_window_days,
                    );
                    st.correlator.annotate(&ev.call.call_id, is_new, is_dup);
                    ev.call.is_new = Some(is_new);
                    ev.call.is_duplicate = Some(is_dup);
                }
            }
            if config.general.trace_calls {
                log::info!(
                    "trace: call {} {}: {:?}",
                    ev.call.call_id,
                    ev.kind.as_str(),
                    ev.call
                );
            }
            dispatch(rt, &config, ev, &mut st.outbox);
        }
        if st.outbox.len() >= OUTBOX_MAX {
            flush(rt, &mut st.outbox);
        }
    }
}

/// The correlation thread's timed chores, also while events keep coming: report the hook's
/// drops, let the delivery workers notice a stalled lane, sweep calls that never ended.
fn chores(rt: &Runtime, shared: &HookShared, st: &mut Correlation) {
    report_drops(shared, &mut st.dropped_reported);
    if let Some(d) = rt.dispatcher.get() {
        d.tick();
    }
    if st.last_sweep.elapsed() >= rt.sweep_every {
        st.last_sweep = Instant::now();
        rt.sweeps.fetch_add(1, Ordering::Relaxed);
        let config = st.config.clone();
        for ev in st.correlator.expire(SystemTime::now()) {
            dispatch(rt, &config, ev, &mut st.outbox);
        }
    }
}

/// Logs the hook's dropped events (it may not log itself) each time the total has at least
/// doubled since the last report, so a long overload does not flood the log.
fn report_drops(shared: &HookShared, reported: &mut u64) {
    let n = shared.dropped.load(Ordering::Relaxed);
    if n > 0 && n >= reported.saturating_mul(2).max(1) {
        log::error!("event queue full ({HOOK_QUEUE_CAPACITY}): {n} channel events dropped so far");
        *reported = n;
    }
}

/// Renders one call event for every interested section and hands the requests over.
/// Hands the rendered deliveries to their workers; writes the burst's caller history.
fn flush(rt: &Runtime, outbox: &mut Vec<Delivery>) {
    if let Some(dispatcher) = rt.dispatcher.get() {
        dispatcher.submit_many(std::mem::take(outbox));
    }
    if let Some(h) = rt.history.get() {
        h.flush_burst();
    }
}

/// Most deliveries held back before they are handed over even though events keep coming.
const OUTBOX_MAX: usize = 256;

fn dispatch(rt: &Runtime, config: &Config, mut ev: CallEvent, outbox: &mut Vec<Delivery>) {
    rt.call_events.fetch_add(1, Ordering::Relaxed);
    ev.call.node.clone_from(&rt.node);
    fault::point(fault::Place::Calls, "calls", ev.call.caller.as_bytes());
    if let Some(t) = &config.general.recording_url {
        if !ev.call.recording.is_empty() {
            ev.call.recording_url = t.render_text(&ev, &config.general.format_context());
        }
    }
    if rt.dispatcher.get().is_none() {
        return;
    }
    for section in &config.sections {
        let SectionKind::Webhook(w) = &section.kind else {
            continue;
        };
        if !section.enabled || !w.wants(ev.kind, ev.call.direction) || !w.passes(&ev) {
            continue;
        }
        match w.render(&ev) {
            Ok(request) => outbox.push(Delivery {
                id: Delivery::new_id(),
                section: section.name.clone(),
                call_id: ev.call.call_id.clone(),
                event: ev.kind.as_str().to_string(),
                request,
                created_ms: chrono::Utc::now().timestamp_millis(),
            }),
            Err(e) => {
                rt.render_failures.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "[{}] call {} {}: cannot render the request: {e}",
                    section.name,
                    ev.call.call_id,
                    ev.kind.as_str()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ingest::host_event::{ChannelChange, ChannelInfo};
    use std::sync::Mutex;

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
                name: format!("PJSIP/trunk-{call}"),
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
        let status = e.cli(&["show".into(), "status".into()]).unwrap();
        assert!(
            status.contains("correlation thread restarts: 1"),
            "{status}"
        );
        e.shutdown();
    }

    #[test]
    fn a_hook_with_no_correlation_thread_counts_drops_as_such_not_as_a_full_queue() {
        let (tx, rx) = bounded(4);
        drop(rx); // the correlation thread is gone
        let shared = Arc::new(HookShared::new(1));
        let hook = Hook {
            tx,
            shared: shared.clone(),
        };
        assert!(!hook.send(channel(ChannelChange::New, "a", "1")));
        assert_eq!(
            shared.dropped.load(Ordering::Relaxed),
            0,
            "not a full queue"
        );
        assert_eq!(shared.dropped_disconnected.load(Ordering::Relaxed), 1);
        let mut reported = 0;
        report_drops(&shared, &mut reported);
        assert_eq!(reported, 0, "no \"event queue full\" report for it");
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

    #[test]
    fn a_panic_becomes_its_message_and_the_thread_goes_on() {
        assert_eq!(caught(|| 7), Ok(7));
        assert_eq!(
            caught(|| -> i32 { panic!("boom") }),
            Err("boom".to_string())
        );
        let n = 3;
        assert_eq!(
            caught(|| -> i32 { panic!("call {n} broke") }),
            Err("call 3 broke".to_string())
        );
        assert_eq!(caught(|| 8), Ok(8), "usable after a panic");
    }
}
