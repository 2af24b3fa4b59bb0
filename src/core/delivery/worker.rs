//! One section's delivery worker: its own memory queue, its own lanes, its own HTTP client, so
//! a slow or dead endpoint never delays another. Each call's events go out in order (start,
//! answer, end), one after the other; different calls go out at once, on up to `concurrency`
//! lanes, and a call that waits — for a retry, or for an endpoint that does not answer — holds
//! back only its own later events.
//!
//! Fast path: the memory queue, no disk. When an attempt fails and is to be retried, or the
//! memory queue is full, the section switches to *spool mode*: the failed delivery and the
//! rest of its call go to the spool, new deliveries follow them there (moved from the memory
//! queue once per round, in one transaction), and the worker sends from the spool until it is
//! empty. Memory stays bounded however long an endpoint is down.
//!
//! How the work is shared: the [`Sched`] holds the calls whose deliveries are about to be sent
//! (from memory or from the spool), one lane at a time per call. Every lane — the worker's own
//! thread and up to `concurrency - 1` helpers — takes a call, sends its deliveries in order,
//! and takes the next one; whichever lane is free also *coordinates* (feeds the Sched from the
//! memory queue or the spool, commits what was sent from the spool in one transaction). No
//! lane waits for another: a call that hangs holds its own lane only. Helpers start for a
//! backlog, for an endpoint seen slow, and when calls wait in the Sched for longer than
//! [`LANES_AFTER`] ([`tick`], called by the correlation thread, notices that), and stop after
//! [`HELPER_IDLE`] without work.
//!
//! Each lane is supervised: a panic in it (a bug) is logged and counted, the delivery it held
//! goes back to its call's queue, and the lane starts over. A panic inside one attempt is
//! contained there and the delivery retried like a failed attempt.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use super::nats::{NatsSink, NatsTarget};
use super::rate_limit::Pacer;
use super::retry::{classify, next_delay, Verdict};
use super::signal::Signal;
use super::signing;
use super::spool::{Spool, SpoolError, Spooled};
use super::stats::{ErrorLog, ErrorRecord, SectionStats};
use super::{Delivery, EndpointPolicy};
use crate::core::http::client::{self, Client, Outcome};
use crate::core::instrument::{fault, panic};
use crate::core::model::attempt::Attempt;

/// Deliveries one section keeps in memory before it spools.
pub const MEMORY_QUEUE: usize = 4096;

/// Most deliveries taken from the memory queue into the Sched per round.
const MEMORY_BATCH: usize = 64;

/// Most due spooled deliveries fed into the Sched per scan of the spool.
const SPOOL_WINDOW: usize = 256;

/// The Sched is fed again when it holds fewer deliveries than this waiting for a lane.
const LOW_WATER: usize = 32;

/// Calls waiting in the Sched longer than this while every lane is busy get another lane.
/// (Above the few ms a preemption costs on a busy 2-core machine, so a fast endpoint never
/// starts one.)
pub const LANES_AFTER: Duration = Duration::from_millis(20);

/// A feed of this many calls is a backlog (a burst, or a spool draining): every lane starts
/// at once, for throughput. Smaller ones — normal load — go on the worker's thread alone.
const LANES_FOR_CALLS: usize = 32;

/// Spooled deliveries sent are committed (removed, rescheduled, dead-lettered) in one
/// transaction once this many are waiting, or after [`COMMIT_AFTER`], or when the Sched runs low.
const COMMIT_ROWS: usize = 256;
const COMMIT_AFTER: Duration = Duration::from_millis(50);

/// A helper lane with nothing to do for this long stops.
const HELPER_IDLE: Duration = Duration::from_secs(5);

/// The drain remembers at most this many waiting calls at the head of the spool (so it need
/// not read them again each round); beyond that it reads them again.
const MAX_SKIPPED_CALLS: usize = 100_000;

/// What the dispatcher and a worker's lanes share.
pub struct SectionShared {
    pub name: String,
    pub policy: RwLock<EndpointPolicy>,
    pub client: RwLock<Option<Client>>,
    /// Paces attempts when the section has a `rate_limit`.
    pub pacer: RwLock<Option<Arc<Pacer>>>,
    /// `type = nats`: the JetStream publisher used instead of the HTTP client.
    pub nats: RwLock<Option<Arc<NatsSink>>>,
    /// The memory queue; each delivery carries the sequence number it got at submit, which
    /// is also its key if it ever goes to the spool, so order survives any spill.
    pub tx: Sender<(u64, Delivery)>,
    pub rx: Receiver<(u64, Delivery)>,
    /// Set while the spool holds this section's deliveries: new ones must queue behind them.
    pub spooling: AtomicBool,
    /// Serialises "check spooling, then move from the memory queue" against "switch to
    /// spooling, then drain". Never held across network I/O.
    pub gate: Mutex<()>,
    pub stop: AtomicBool,
    /// Set when the section starts with deliveries spooled by an earlier run: the first one is
    /// tried at once instead of waiting out a retry delay computed before the restart.
    pub fresh_start: AtomicBool,
    pub wake: Signal,
    /// Whether the latest attempt reached the endpoint. When it does again after an outage, the
    /// deliveries waiting only because it could not be reached go at once.
    pub reachable: AtomicBool,
    /// The last attempt took more than [`LANES_AFTER`]: start every lane a feed needs at once.
    pub slow: AtomicBool,
    pub stats: SectionStats,
    sched: Mutex<Sched>,
    lanes: Lanes,
    /// The coordinator's own state; `try_lock`ed, so lanes never wait for each other here.
    drain: Mutex<Drain>,
    /// Since when (see [`mono_ms`]) the memory queue has held deliveries no lane took; 0 when
    /// it is empty. [`tick`] starts a lane when this gets old.
    queued_since: AtomicI64,
}

/// The helper lanes of a section.
struct Lanes {
    running: AtomicUsize,
    parked: AtomicUsize,
    help: Signal,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Calls about to be sent, at most one lane per call.
#[derive(Default)]
struct Sched {
    calls: HashMap<String, CallJob>,
    /// Calls with deliveries and no lane, oldest first.
    ready: VecDeque<String>,
    /// Deliveries waiting for a lane.
    waiting: usize,
    /// Spooled rows held here (waiting, in flight or waiting for their commit): the drain
    /// skips them.
    spool_seqs: HashSet<u64>,
    /// Results of spooled rows, for the coordinator to commit.
    done: Vec<(u64, Spooled, Verdict)>,
    done_since: Option<Instant>,
    /// When a lane last took a call while others waited (or calls started waiting); `None`
    /// when none waits. [`tick`] starts a lane when this gets old.
    progress: Option<Instant>,
}

#[derive(Default)]
struct CallJob {
    items: VecDeque<Item>,
    /// A lane is sending this call.
    lane: bool,
    /// Results of this call's spooled rows not yet committed.
    committing: usize,
}

struct Item {
    seq: u64,
    spooled: Spooled,
    from_spool: bool,
}

impl Sched {
    fn push(&mut self, call: &str, item: Item) {
        if item.from_spool {
            self.spool_seqs.insert(item.seq);
        }
        let job = self.calls.entry(call.to_string()).or_default();
        job.items.push_back(item);
        self.waiting += 1;
        if !job.lane && job.items.len() == 1 {
            self.ready.push_back(call.to_string());
            self.progress.get_or_insert_with(Instant::now);
        }
    }

    /// Forgets a call with nothing left to do here.
    fn settle(&mut self, call: &str) {
        if let Some(job) = self.calls.get(call) {
            if job.items.is_empty() && !job.lane && job.committing == 0 {
                self.calls.remove(call);
            }
        }
    }

    fn memory_items(&self) -> usize {
        self.calls
            .values()
            .flat_map(|j| j.items.iter())
            .filter(|i| !i.from_spool)
            .count()
    }
}

/// Where the drain can skip ahead: the spool's first rows, up to `end`, all belong to calls
/// waiting for a retry until at least `due_ms`.
#[derive(Default)]
struct Drain {
    end: u64,
    calls: HashSet<String>,
    due_ms: i64,
    unreachable: bool,
}

impl SectionShared {
    pub fn new(policy: EndpointPolicy) -> SectionShared {
        let pacer = policy.rate_limit.map(|r| Arc::new(Pacer::new(r)));
        let (policy_name, policy_nats) = (policy.name.clone(), policy.nats.clone());
        let (tx, rx) = bounded(MEMORY_QUEUE);
        let client = Client::new(policy.timeout, policy.tls_ca.as_deref(), policy.concurrency)
            .map_err(|e| {
                log::error!(
                    "[{}] {e}; deliveries wait in the spool until it is fixed",
                    policy.name
                )
            })
            .ok();
        SectionShared {
            name: policy.name.clone(),
            policy: RwLock::new(policy),
            client: RwLock::new(client),
            pacer: RwLock::new(pacer),
            nats: RwLock::new(nats_sink(&policy_name, policy_nats.as_ref())),
            tx,
            rx,
            spooling: AtomicBool::new(false),
            gate: Mutex::new(()),
            stop: AtomicBool::new(false),
            fresh_start: AtomicBool::new(false),
            wake: Signal::new(1),
            reachable: AtomicBool::new(false),
            slow: AtomicBool::new(false),
            stats: SectionStats::default(),
            sched: Mutex::new(Sched::default()),
            lanes: Lanes {
                running: AtomicUsize::new(0),
                parked: AtomicUsize::new(0),
                help: Signal::new(super::MAX_LANES),
                threads: Mutex::new(Vec::new()),
            },
            drain: Mutex::new(Drain::default()),
            queued_since: AtomicI64::new(0),
        }
    }

    pub fn set_policy(&self, policy: EndpointPolicy) {
        {
            let mut pacer = self.pacer.write().unwrap_or_else(|p| p.into_inner());
            // The same limit keeps its pacing state across a reload.
            if pacer.as_ref().map(|p| p.limit()) != policy.rate_limit {
                *pacer = policy.rate_limit.map(|r| Arc::new(Pacer::new(r)));
            }
        }
        let client = Client::new(policy.timeout, policy.tls_ca.as_deref(), policy.concurrency)
            .map_err(|e| log::error!("[{}] {e}", policy.name))
            .ok();
        *self.client.write().unwrap_or_else(|p| p.into_inner()) = client;
        let same_nats = self.policy.read().unwrap_or_else(|p| p.into_inner()).nats == policy.nats;
        if !same_nats {
            // Dropped outside the lock: dropping a sink joins its thread.
            let old = std::mem::replace(
                &mut *self.nats.write().unwrap_or_else(|p| p.into_inner()),
                nats_sink(&policy.name, policy.nats.as_ref()),
            );
            drop(old);
        }
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    pub fn wake(&self) {
        self.wake.post();
    }

    fn sched(&self) -> MutexGuard<'_, Sched> {
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn gate(&self) -> MutexGuard<'_, ()> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client requests may be pipelined through: an HTTP section's, while it still
    /// pipelines, unless the section publishes to NATS or paces its requests (a rate limit
    /// spaces them one by one).
    fn pipelining_client(&self) -> Option<Client> {
        let one_by_one = self
            .nats
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
            || self
                .pacer
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .is_some();
        let client = self.client.read().unwrap_or_else(|p| p.into_inner());
        client
            .as_ref()
            .filter(|c| !one_by_one && c.pipelines())
            .cloned()
    }

    fn pipeline_depth(&self) -> usize {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .pipeline
    }

    /// How many calls a lane takes at once: the section's `pipeline` while requests can be
    /// pipelined and the endpoint's last answer came quickly, else 1 (a slow endpoint gets a
    /// lane per call instead, so one slow answer holds up no other call's request).
    fn pipeline(&self) -> usize {
        if self.slow.load(Ordering::Relaxed) || self.pipelining_client().is_none() {
            return 1;
        }
        self.pipeline_depth().max(1)
    }

    /// The section may pipeline, but its client stopped after an endpoint failed at it.
    pub fn pipelining_off(&self) -> bool {
        self.pipeline_depth() > 1
            && self
                .client
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .is_some_and(|c| !c.pipelines())
    }

    fn concurrency(&self) -> usize {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .concurrency
            .max(1)
    }

    /// Deliveries in memory not yet attempted (the memory queue and the Sched).
    pub fn queued(&self) -> usize {
        self.rx.len() + self.sched().memory_items()
    }

    /// Helper lanes running besides the worker's thread.
    pub fn helpers(&self) -> usize {
        self.lanes.running.load(Ordering::Relaxed)
    }
}

/// The section's JetStream publisher, when it is a `type = nats` section.
fn nats_sink(section: &str, target: Option<&NatsTarget>) -> Option<Arc<NatsSink>> {
    let target = target?.clone();
    NatsSink::start(section, target)
        .map_err(|e| log::error!("[{section}] {e}; deliveries wait in the spool"))
        .ok()
        .map(Arc::new)
}

/// Everything a worker needs besides its section.
#[derive(Clone)]
pub struct WorkerEnv {
    pub spool: Arc<Spool>,
    pub seq: Arc<AtomicU64>,
    pub errors: Arc<ErrorLog>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Milliseconds on a monotonic clock, never 0.
fn mono_ms() -> i64 {
    static EPOCH: once_cell::sync::Lazy<Instant> = once_cell::sync::Lazy::new(Instant::now);
    EPOCH.elapsed().as_millis() as i64 + 1
}

/// Notes whether the memory queue still holds deliveries after a lane took from it.
fn note_queue(s: &SectionShared) {
    let v = if s.rx.is_empty() { 0 } else { mono_ms() };
    s.queued_since.store(v, Ordering::Relaxed);
}

/// Puts a delivery in a section's memory queue without waking the worker (the caller calls
/// [`SectionShared::wake`] once after a batch); when the queue is full, it goes to the spool in
/// one transaction. In spool mode the worker moves the memory queue to the spool (behind what
/// is there) before each round, so the spool is written once per round, not per delivery.
pub fn enqueue(s: &SectionShared, env: &WorkerEnv, d: Delivery) {
    let _gate = s.gate();
    let seq = env.seq.fetch_add(1, Ordering::SeqCst) + 1;
    match s.tx.try_send((seq, d)) {
        Ok(()) => {
            if s.queued_since.load(Ordering::Relaxed) == 0 {
                s.queued_since.store(mono_ms(), Ordering::Relaxed);
            }
        }
        Err(TrySendError::Full((seq, d))) | Err(TrySendError::Disconnected((seq, d))) => {
            if !s.spooling.load(Ordering::SeqCst) {
                log::warn!(
                    "[{}] memory queue full ({MEMORY_QUEUE}): spooling to disk",
                    s.name
                );
            }
            spool_locked(s, env, vec![(seq, fresh(d))]);
        }
    }
}

fn fresh(d: Delivery) -> Spooled {
    Spooled {
        delivery: d,
        attempts: 0,
        next_at_ms: 0,
        last_error: String::new(),
        unreachable: false,
    }
}

/// Writes `items` and everything in the memory queue to the spool and enters spool mode.
/// The spool orders by sequence number, so the write order does not matter. Caller holds the
/// gate. The spool keeps in memory what the disk refuses; only what neither can take is
/// dropped (counted and logged by the spool, counted here too).
fn spool_locked(s: &SectionShared, env: &WorkerEnv, mut items: Vec<(u64, Spooled)>) {
    // Spool mode first, then drain: a delivery the coordinator takes from memory meanwhile
    // sees the flag (under the gate) and joins the spool in its place.
    s.spooling.store(true, Ordering::SeqCst);
    while let Ok((seq, d)) = s.rx.try_recv() {
        items.push((seq, fresh(d)));
    }
    let n = items.len();
    match env.spool.push(&items) {
        Ok(()) => {
            s.stats.spooled_total.fetch_add(n as u64, Ordering::Relaxed);
        }
        Err(e) => {
            let dropped = match e {
                SpoolError::Full { dropped } => dropped,
                _ => n,
            };
            s.stats.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
            log::error!("[{}] {e}", s.name);
        }
    }
}

/// Which lane is running: the worker's own thread, or a helper.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Lane {
    Worker,
    Helper,
}

/// The worker thread: lane 0 under its supervisor; at the end, everything still in memory goes
/// to the spool. It sleeps on the wake channel, never on the memory queue itself: a producer
/// that queues several deliveries wakes it once, and a wake given while it is busy is kept.
pub fn run(s: Arc<SectionShared>, env: WorkerEnv) {
    supervised(&s, Lane::Worker, || lane(&s, &env, Lane::Worker));
    // Shutdown: helpers first (they finish the attempt they are in), then what is left.
    for _ in 0..super::MAX_LANES {
        s.lanes.help.post();
    }
    let threads = std::mem::take(&mut *s.lanes.threads.lock().unwrap_or_else(|p| p.into_inner()));
    for t in threads {
        let _ = t.join();
    }
    commit(&s, &env, true);
    let _gate = s.gate();
    let mut left: Vec<(u64, Spooled)> = Vec::new();
    {
        let mut sched = s.sched();
        for (_, job) in sched.calls.drain() {
            left.extend(
                job.items
                    .into_iter()
                    .filter(|i| !i.from_spool)
                    .map(|i| (i.seq, i.spooled)),
            );
        }
        sched.ready.clear();
        sched.waiting = 0;
        sched.spool_seqs.clear();
    }
    let n = left.len() + s.rx.len();
    if n > 0 {
        spool_locked(&s, &env, left);
        log::info!(
            "[{}] {n} queued delivery(ies) kept in the spool for the next start",
            s.name
        );
    }
}

/// Runs a lane, restarting it after a panic (logged, counted): the queue, the Sched and the
/// spool are shared, so nothing the lane did not hold in its hands is lost, and what it held
/// goes back (see [`Holding`]).
fn supervised(s: &SectionShared, which: Lane, mut body: impl FnMut()) {
    loop {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut body)) {
            Ok(()) => return,
            Err(p) => {
                let n = s.stats.panics.fetch_add(1, Ordering::Relaxed) + 1;
                log::error!(
                    "[{}] delivery {} panicked ({}); restarted it, its deliveries are kept ({n} so far, webhook show status)",
                    s.name,
                    if which == Lane::Worker { "worker" } else { "lane" },
                    panic::message(&*p)
                );
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                // A bug that panics at once again must not spin.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// One lane: coordinate when it can, send the next call, park when there is nothing to do.
fn lane(s: &Arc<SectionShared>, env: &WorkerEnv, which: Lane) {
    loop {
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        let hint = coordinate(s, env, false);
        let mut calls = take_calls(s, s.pipeline());
        if calls.len() > 1 {
            send_round(s, env, calls);
            continue;
        }
        if let Some(call) = calls.pop() {
            send_call(s, env, call);
            continue;
        }
        // Nothing to send: commit what waits, then sleep.
        let hint = coordinate(s, env, true).min(hint);
        if take_ready_exists(s) {
            continue;
        }
        match which {
            Lane::Worker => {
                s.wake.wait(hint);
            }
            Lane::Helper => {
                s.lanes.parked.fetch_add(1, Ordering::SeqCst);
                let woken = s.lanes.help.wait(HELPER_IDLE);
                s.lanes.parked.fetch_sub(1, Ordering::SeqCst);
                if !woken && !take_ready_exists(s) {
                    return;
                }
            }
        }
    }
}

fn take_ready_exists(s: &SectionShared) -> bool {
    !s.sched().ready.is_empty()
}

/// Takes up to `n` of the calls waiting for a lane, oldest first.
fn take_calls(s: &SectionShared, n: usize) -> Vec<String> {
    let mut sched = s.sched();
    let n = n.min(sched.ready.len());
    let calls: Vec<String> = sched.ready.drain(..n).collect();
    if !calls.is_empty() {
        sched.progress = (!sched.ready.is_empty()).then(Instant::now);
    }
    for call in &calls {
        if let Some(job) = sched.calls.get_mut(call) {
            job.lane = true;
        }
    }
    calls
}

/// Gives a call back when its lane is done with it, or when the lane unwinds (a panic): the
/// delivery in the lane's hands goes back to the front of its call.
struct Holding<'a> {
    s: &'a SectionShared,
    call: String,
    item: Option<Item>,
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        let mut sched = self.s.sched();
        let item = self.item.take();
        let mut back = false;
        let mut ready = false;
        if let Some(job) = sched.calls.get_mut(&self.call) {
            if let Some(item) = item {
                job.items.push_front(item);
                back = true;
            }
            job.lane = false;
            ready = !job.items.is_empty();
        }
        if back {
            sched.waiting += 1;
        }
        if ready {
            sched.ready.push_back(self.call.clone());
            sched.progress.get_or_insert_with(Instant::now);
        }
        sched.settle(&self.call);
    }
}

/// Sends a call's deliveries in order until none is left or one is to be retried.
fn send_call(s: &Arc<SectionShared>, env: &WorkerEnv, call: String) {
    let mut hold = Holding {
        s,
        call,
        item: None,
    };
    loop {
        if s.stop.load(Ordering::SeqCst) || !hold.take_next() {
            return;
        }
        if attempt_held(s, env, &mut hold).is_break() {
            return;
        }
    }
}

/// Attempts the delivery in `hold` on its own and acts on the verdict.
fn attempt_held(s: &Arc<SectionShared>, env: &WorkerEnv, hold: &mut Holding) -> ControlFlow<()> {
    let item = hold.item.as_mut().expect("taken");
    fault_point(&item.spooled.delivery);
    let verdict = attempt(s, env, &mut item.spooled);
    help_if_slow(s, env);
    settle_attempt(s, env, hold, verdict)
}

/// Where a test can make a delivery's attempt panic.
fn fault_point(d: &Delivery) {
    fault::point(fault::Place::Worker, &d.id, &d.request.body);
}

/// Sends the next delivery of each of several calls together: one write on one connection
/// where the endpoint allows it (see [`attempt_all`]). A call with more to send goes back to
/// the Sched for the next round, so each call's own deliveries still go out one after the
/// other, never two in one write: a later event must not reach the CRM while an earlier one
/// may still be retried. A delivery that failed before goes alone, after the others: it is
/// the likeliest to hang, and on a connection an endpoint answers in order it would hold up
/// every request written after it.
fn send_round(s: &Arc<SectionShared>, env: &WorkerEnv, calls: Vec<String>) {
    let mut holds: Vec<Holding> = calls
        .into_iter()
        .map(|call| Holding {
            s,
            call,
            item: None,
        })
        .collect();
    holds.retain_mut(Holding::take_next);
    if s.stop.load(Ordering::SeqCst) {
        return;
    }
    let (mut fresh, retried): (Vec<Holding>, Vec<Holding>) = holds
        .into_iter()
        .partition(|h| h.item.as_ref().is_some_and(|i| i.spooled.attempts == 0));
    for h in &fresh {
        fault_point(&h.item.as_ref().expect("just taken").spooled.delivery);
    }
    let verdicts = attempt_all(s, env, &mut fresh);
    help_if_slow(s, env);
    for (hold, verdict) in fresh.iter_mut().zip(verdicts) {
        // `None`: not answered, so not attempted; it stays in the hold, and dropping the hold
        // puts it back at the front of its call.
        if let Some(verdict) = verdict {
            let _ = settle_attempt(s, env, hold, verdict);
        }
    }
    drop(fresh);
    for mut hold in retried {
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        let _ = attempt_held(s, env, &mut hold);
    }
}

/// A slow endpoint: the calls waiting behind this lane's get lanes of their own.
fn help_if_slow(s: &Arc<SectionShared>, env: &WorkerEnv) {
    if s.slow.load(Ordering::Relaxed) {
        let waiting = s.sched().ready.len();
        if waiting > 0 {
            help(s, env, waiting);
        }
    }
}

impl Holding<'_> {
    /// Takes the call's next delivery into the hold; false when it has none left.
    fn take_next(&mut self) -> bool {
        let mut sched = self.s.sched();
        let Some(item) = sched
            .calls
            .get_mut(&self.call)
            .and_then(|j| j.items.pop_front())
        else {
            return false;
        };
        sched.waiting = sched.waiting.saturating_sub(1);
        self.item = Some(item);
        true
    }
}

/// Acts on the verdict of the delivery in `hold`: records a spooled one for the next commit,
/// dead-letters one that failed for good, spools one to be retried with the rest of its call.
/// `Break`: the call's lane is done with it (retried, or stopping).
fn settle_attempt(
    s: &SectionShared,
    env: &WorkerEnv,
    hold: &mut Holding,
    verdict: Verdict,
) -> ControlFlow<()> {
    let item = hold.item.take().expect("held");
    let retry = matches!(verdict, Verdict::Retry { .. });
    if item.from_spool {
        let mut sched = s.sched();
        sched.done_since.get_or_insert_with(Instant::now);
        sched.done.push((item.seq, item.spooled, verdict));
        let mut held = Vec::new();
        if let Some(job) = sched.calls.get_mut(&hold.call) {
            job.committing += 1;
            if retry {
                // The rest of the call waits in the spool behind this one.
                held = job.items.drain(..).map(|i| i.seq).collect();
            }
        }
        sched.waiting = sched.waiting.saturating_sub(held.len());
        for seq in held {
            sched.spool_seqs.remove(&seq);
        }
        let stale = sched
            .done_since
            .is_some_and(|t| t.elapsed() >= COMMIT_AFTER);
        drop(sched);
        if retry {
            return ControlFlow::Break(());
        }
        // A slow endpoint: what this call already delivered is recorded now rather than
        // after its last delivery (fewer re-sends after a crash).
        if stale {
            if let Ok(_turn) = s.drain.try_lock() {
                commit(s, env, false);
            }
        }
        return ControlFlow::Continue(());
    }
    match verdict {
        Verdict::Delivered => {}
        Verdict::Fail => dead_letter(s, env, item.seq, item.spooled),
        Verdict::Retry { .. } => {
            // It and the rest of its call go to the spool, in order, and the section
            // switches to spool mode. Under the gate, so no later delivery of this call
            // can be taken from memory meanwhile.
            let _gate = s.gate();
            let mut rows = vec![(item.seq, item.spooled)];
            {
                let mut sched = s.sched();
                let rest: Vec<Item> = sched
                    .calls
                    .get_mut(&hold.call)
                    .map(|j| j.items.drain(..).collect())
                    .unwrap_or_default();
                sched.waiting = sched.waiting.saturating_sub(rest.len());
                rows.extend(rest.into_iter().map(|i| (i.seq, i.spooled)));
            }
            spool_locked(s, env, rows);
            return ControlFlow::Break(());
        }
    }
    ControlFlow::Continue(())
}

/// The coordinator's turn, if no other lane has it: commit, spool the memory queue in spool
/// mode, feed the Sched. Returns how long a lane with nothing to do may sleep.
fn coordinate(s: &Arc<SectionShared>, env: &WorkerEnv, force_commit: bool) -> Duration {
    let idle = Duration::from_millis(250);
    let Ok(mut drain) = s.drain.try_lock() else {
        return idle;
    };
    env.spool.maintain();
    commit(s, env, force_commit);
    let waiting = s.sched().waiting;
    if waiting >= LOW_WATER {
        return idle;
    }
    if !s.spooling.load(Ordering::SeqCst) {
        *drain = Drain::default();
        let fed = {
            let _gate = s.gate();
            if s.spooling.load(Ordering::SeqCst) {
                0
            } else {
                let mut sched = s.sched();
                let mut n = 0;
                while n < MEMORY_BATCH {
                    let Ok((seq, d)) = s.rx.try_recv() else { break };
                    let call = d.call_id.clone();
                    sched.push(
                        &call,
                        Item {
                            seq,
                            spooled: fresh(d),
                            from_spool: false,
                        },
                    );
                    n += 1;
                }
                note_queue(s);
                n
            }
        };
        if fed > 0 {
            lanes_for_feed(s, env);
        }
        return idle;
    }
    if !s.rx.is_empty() {
        // What arrived meanwhile joins the spool behind everything already there.
        let _gate = s.gate();
        spool_locked(s, env, Vec::new());
        note_queue(s);
    }
    feed_from_spool(s, env, &mut drain)
}

/// Starts helper lanes for what was just fed: all that the Sched's calls can use for a backlog
/// or a slow endpoint; none otherwise (the worker's thread sends it, [`tick`] adds lanes if
/// that takes too long).
fn lanes_for_feed(s: &Arc<SectionShared>, env: &WorkerEnv) {
    let calls = s.sched().ready.len();
    if calls >= LANES_FOR_CALLS || (s.slow.load(Ordering::Relaxed) && calls > 1) {
        help(s, env, calls.saturating_sub(1));
    }
}

/// Wakes (or starts) up to `n` helper lanes, within `concurrency - 1`.
pub fn help(s: &Arc<SectionShared>, env: &WorkerEnv, n: usize) {
    let max = s.concurrency() - 1;
    for _ in 0..n {
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        if s.lanes.parked.load(Ordering::SeqCst) > 0 && s.lanes.help.post() {
            continue;
        }
        let running = s.lanes.running.load(Ordering::SeqCst);
        if running >= max {
            return;
        }
        s.lanes.running.fetch_add(1, Ordering::SeqCst);
        let (s2, env2) = (s.clone(), env.clone());
        let spawned = std::thread::Builder::new()
            .name(format!(
                "webhook-{}",
                s.name.chars().take(7).collect::<String>()
            ))
            .spawn(move || {
                supervised(&s2, Lane::Helper, || lane(&s2, &env2, Lane::Helper));
                s2.lanes.running.fetch_sub(1, Ordering::SeqCst);
            });
        match spawned {
            Ok(t) => {
                let mut threads = s.lanes.threads.lock().unwrap_or_else(|p| p.into_inner());
                threads.retain(|t| !t.is_finished());
                threads.push(t);
            }
            Err(e) => {
                s.lanes.running.fetch_sub(1, Ordering::SeqCst);
                log::warn!("[{}] cannot start a delivery lane: {e}", s.name);
                return;
            }
        }
    }
}

/// Called regularly from outside (the correlation thread): when calls have waited in the Sched
/// for [`LANES_AFTER`] without a lane taking one — every lane is in a slow or hanging request —
/// another lane starts.
pub fn tick(s: &Arc<SectionShared>, env: &WorkerEnv) {
    let since = s.queued_since.load(Ordering::Relaxed);
    let stalled = (since != 0 && mono_ms() - since >= LANES_AFTER.as_millis() as i64)
        || s.sched()
            .progress
            .is_some_and(|t| t.elapsed() >= LANES_AFTER);
    if stalled {
        help(s, env, 1);
    }
}

/// Rows the drain cannot read go to the spool's `unreadable` table, kept as they are: the
/// rows behind them go on, and the error is logged once, not at every scan.
fn set_aside(s: &SectionShared, env: &WorkerEnv, seqs: &[u64], why: &SpoolError) {
    match env.spool.set_aside(&s.name, seqs) {
        Ok(n) => {
            s.stats.unreadable.fetch_add(n as u64, Ordering::Relaxed);
            s.stats
                .set_last_error(&format!("{n} unreadable spool row(s) set aside"));
            log::error!(
                "[{}] {n} spool row(s) could not be read ({why}); moved to the spool's unreadable table as they were, not sent",
                s.name
            );
        }
        Err(e) => log::error!("[{}] spool row unreadable ({why}); {e}", s.name),
    }
}

/// Commits the results of spooled rows: delivered ones removed, retried ones rescheduled,
/// failed ones dead-lettered; then their calls may be fed again.
fn commit(s: &SectionShared, env: &WorkerEnv, force: bool) {
    let done = {
        let mut sched = s.sched();
        let due = !sched.done.is_empty()
            && (force
                || sched.done.len() >= COMMIT_ROWS
                || sched.waiting < LOW_WATER
                || sched
                    .done_since
                    .is_some_and(|t| t.elapsed() >= COMMIT_AFTER));
        if !due {
            return;
        }
        sched.done_since = None;
        std::mem::take(&mut sched.done)
    };
    let mut delivered = Vec::new();
    let mut retry = Vec::new();
    let mut dead = Vec::new();
    let mut calls: Vec<(u64, String)> = Vec::with_capacity(done.len());
    for (seq, item, verdict) in done {
        calls.push((seq, item.delivery.call_id.clone()));
        match verdict {
            Verdict::Delivered => delivered.push(seq),
            Verdict::Retry { .. } => retry.push((seq, item)),
            Verdict::Fail => {
                s.stats.dead.fetch_add(1, Ordering::Relaxed);
                dead.push((seq, item));
            }
        }
    }
    for result in [
        env.spool.remove_many(&s.name, &delivered),
        env.spool.update_many(&retry),
        env.spool.bury_many(&dead),
    ] {
        if let Err(e) = result {
            log::error!("[{}] spool write failed: {e}", s.name);
        }
    }
    let mut sched = s.sched();
    for (seq, call) in calls {
        sched.spool_seqs.remove(&seq);
        if let Some(job) = sched.calls.get_mut(&call) {
            job.committing = job.committing.saturating_sub(1);
        }
        sched.settle(&call);
    }
}

/// Feeds the Sched with due spooled deliveries: reads the spool from its head, skipping calls
/// that wait for a retry (with their later deliveries) and calls already in the Sched, until
/// [`SPOOL_WINDOW`] due deliveries are found or the spool ends — however many calls wait at
/// its head. Leaves spool mode when it is empty. Returns how long to sleep when nothing is due.
fn feed_from_spool(s: &Arc<SectionShared>, env: &WorkerEnv, drain: &mut Drain) -> Duration {
    let fresh = s.fresh_start.swap(false, Ordering::SeqCst);
    // The endpoint answers again: what waits only because it did not is due now (its retry
    // delay was for an outage that is over), so a backlog drains at full speed once the first
    // retry gets through rather than as each call's own timer comes up.
    let reachable = s.reachable.load(Ordering::Relaxed);
    let now = now_ms();
    if fresh || now >= drain.due_ms || (reachable && drain.unreachable) {
        *drain = Drain::default();
    }
    let (busy_calls, busy_seqs): (HashSet<String>, HashSet<u64>) = {
        let sched = s.sched();
        (
            sched.calls.keys().cloned().collect(),
            sched.spool_seqs.clone(),
        )
    };
    let mut extending = true;
    let mut waiting: HashSet<String> = HashSet::new();
    let mut soonest = drain.due_ms.saturating_sub(now);
    if drain.calls.is_empty() {
        soonest = i64::MAX;
        drain.due_ms = i64::MAX;
    }
    let mut seen_rows = !drain.calls.is_empty();
    let mut due: Vec<(u64, Spooled)> = Vec::new();
    let mut failed = None;
    let mut unreadable: Vec<u64> = Vec::new();
    let scanned = env.spool.scan(&s.name, drain.end, |seq, row| {
        seen_rows = true;
        if busy_seqs.contains(&seq) {
            extending = false;
            return ControlFlow::Continue(());
        }
        let peek = match row.peek() {
            Ok(p) => p,
            Err(e) => {
                failed = Some(e);
                unreadable.push(seq);
                extending = false;
                return ControlFlow::Continue(());
            }
        };
        if busy_calls.contains(&peek.call_id) {
            extending = false;
            return ControlFlow::Continue(());
        }
        if drain.calls.contains(&peek.call_id) || waiting.contains(&peek.call_id) {
            if extending {
                drain.end = seq;
            }
            return ControlFlow::Continue(());
        }
        let wait = peek.next_at_ms - now;
        if wait > 0 && !fresh && !(reachable && peek.unreachable) {
            soonest = soonest.min(wait);
            if extending && drain.calls.len() < MAX_SKIPPED_CALLS {
                drain.end = seq;
                drain.due_ms = drain.due_ms.min(peek.next_at_ms);
                drain.unreachable |= peek.unreachable;
                drain.calls.insert(peek.call_id);
            } else {
                extending = false;
                waiting.insert(peek.call_id);
            }
            return ControlFlow::Continue(());
        }
        extending = false;
        match row.decode() {
            Ok(item) => due.push((seq, item)),
            Err(e) => {
                failed = Some(e);
                unreadable.push(seq);
            }
        }
        if due.len() >= SPOOL_WINDOW {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    if let Some(e) = scanned.err() {
        log::error!("[{}] spool read failed: {e}", s.name);
    }
    if let Some(e) = failed {
        set_aside(s, env, &unreadable, &e);
    }
    if !due.is_empty() {
        {
            let mut sched = s.sched();
            for (seq, item) in due {
                let call = item.delivery.call_id.clone();
                sched.push(
                    &call,
                    Item {
                        seq,
                        spooled: item,
                        from_spool: true,
                    },
                );
            }
        }
        lanes_for_feed(s, env);
        return Duration::ZERO;
    }
    if !seen_rows {
        // Nothing pending in the spool for this section: back to direct delivery once what
        // was sent from it is committed.
        let sched_clear = s.sched().spool_seqs.is_empty();
        if sched_clear {
            let _gate = s.gate();
            if s.rx.is_empty() && matches!(env.spool.has_pending(&s.name), Ok(false)) {
                s.spooling.store(false, Ordering::SeqCst);
                *drain = Drain::default();
                log::info!("[{}] spool drained; back to direct delivery", s.name);
            }
        }
        return Duration::from_millis(250);
    }
    // Sleep until the first retry is due, but wake for shutdown or replay.
    Duration::from_millis(soonest.clamp(1, 1000) as u64)
}

/// One attempt; updates stats and the error log; sets `item.attempts`, `last_error`,
/// `next_at_ms` (for a retry). Returns the verdict, with `Retry` turned into `Fail` when the
/// schedule is exhausted. A panic inside (a bug in a client library, signing) is contained:
/// it counts as a failed attempt to be retried.
fn attempt(s: &SectionShared, env: &WorkerEnv, item: &mut Spooled) -> Verdict {
    let pacer = s.pacer.read().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(pacer) = pacer {
        if !pacer.pace(&s.stop) {
            // Stopping while waiting for a slot: not attempted, kept (spooled) as it is.
            return Verdict::Retry { after: None };
        }
    }
    s.stats.in_flight.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let verdict = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        attempt_and_record(s, env, item)
    })) {
        Ok(v) => v,
        Err(p) => {
            s.stats.panics.fetch_add(1, Ordering::Relaxed);
            let why = format!("internal error: {}", panic::message(&*p));
            log::error!(
                "[{}] call {} {}: {why} (contained; retried)",
                s.name,
                item.delivery.call_id,
                item.delivery.event
            );
            record(
                s,
                env,
                item,
                Outcome {
                    attempt: Attempt::Error(why),
                    latency: started.elapsed(),
                    excerpt: String::new(),
                    unreachable: false,
                },
            )
        }
    };
    s.slow
        .store(started.elapsed() >= LANES_AFTER, Ordering::Relaxed);
    s.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    verdict
}

fn attempt_and_record(s: &SectionShared, env: &WorkerEnv, item: &mut Spooled) -> Verdict {
    let policy = s.policy.read().unwrap_or_else(|p| p.into_inner()).clone();
    let client = s.client.read().unwrap_or_else(|p| p.into_inner()).clone();
    let nats = s.nats.read().unwrap_or_else(|p| p.into_inner()).clone();
    let d = &item.delivery;
    let outcome = match (nats, client) {
        (Some(nats), _) => {
            // The subject is the rendered `url`; `Nats-Msg-Id` (= webhook-id) lets the
            // server drop a re-send.
            let mut headers = d.request.headers.clone();
            headers.push(("webhook-id".into(), d.id.clone()));
            nats.publish(
                &d.request.url,
                &headers,
                &d.request.body,
                &d.id,
                policy.timeout,
            )
        }
        (None, Some(client)) => client::send(&client, &d.request, &extra_headers(&policy, d)),
        (None, None) => Outcome {
            attempt: Attempt::Error("no HTTP client (bad tls_ca?)".into()),
            latency: Duration::ZERO,
            excerpt: String::new(),
            unreachable: false,
        },
    };
    record(s, env, item, outcome)
}

/// The headers a delivery adds to its request: `webhook-id` always (the same on every re-send,
/// so a CRM can drop duplicates); with a secret, the Standard Webhooks timestamp and signature.
fn extra_headers(policy: &EndpointPolicy, d: &Delivery) -> Vec<(String, String)> {
    match &policy.secret {
        Some(secret) => signing::headers(
            secret,
            &d.id,
            chrono::Utc::now().timestamp(),
            &d.request.body,
        )
        .to_vec(),
        None => vec![("webhook-id".to_string(), d.id.clone())],
    }
}

/// One attempt for the delivery in each hold, sent together ([`client::send_all`]: pipelined
/// when the endpoint is plain HTTP, else one by one); like [`attempt`] for each. `None` for a
/// delivery the connection closed before: not attempted. A section with a rate limit or NATS
/// sends one at a time.
fn attempt_all(s: &SectionShared, env: &WorkerEnv, holds: &mut [Holding]) -> Vec<Option<Verdict>> {
    let items = holds
        .iter_mut()
        .map(|h| &mut h.item.as_mut().expect("held").spooled);
    // A reload may have changed the section since the lane took its calls.
    let Some(client) = s.pipelining_client() else {
        return items.map(|item| Some(attempt(s, env, item))).collect();
    };
    let mut items: Vec<&mut Spooled> = items.collect();
    let n = items.len();
    s.stats.in_flight.fetch_add(n, Ordering::Relaxed);
    let started = Instant::now();
    let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let policy = s.policy.read().unwrap_or_else(|p| p.into_inner()).clone();
        let requests: Vec<_> = items
            .iter()
            .map(|i| (&i.delivery.request, extra_headers(&policy, &i.delivery)))
            .collect();
        client::send_all(&client, &requests)
    }));
    let outcomes = match sent {
        Ok((outcomes, broke)) => {
            if broke {
                log::warn!(
                    "[{}] the endpoint did not answer pipelined requests (it closed a new \
                     connection after one answer, or stopped answering mid-way); from now on \
                     one request at a time until a reload (pipeline = 1 says so in \
                     webhook.conf); the unanswered ones are sent again",
                    s.name
                );
            }
            outcomes
        }
        Err(p) => {
            s.stats.panics.fetch_add(1, Ordering::Relaxed);
            let why = format!("internal error: {}", panic::message(&*p));
            log::error!("[{}] {n} deliveries: {why} (contained; retried)", s.name);
            (0..n)
                .map(|_| {
                    Some(Outcome {
                        attempt: Attempt::Error(why.clone()),
                        latency: started.elapsed(),
                        excerpt: String::new(),
                        unreachable: false,
                    })
                })
                .collect()
        }
    };
    // Slow is one answer that took long, not a round of many quick ones.
    let mut before = Duration::ZERO;
    let mut slowest = Duration::ZERO;
    for o in outcomes.iter().flatten() {
        slowest = slowest.max(o.latency.saturating_sub(before));
        before = o.latency;
    }
    s.slow.store(slowest >= LANES_AFTER, Ordering::Relaxed);
    s.stats.in_flight.fetch_sub(n, Ordering::Relaxed);
    items
        .iter_mut()
        .zip(outcomes)
        .map(|(item, outcome)| outcome.map(|o| record(s, env, item, o)))
        .collect()
}

/// Counts and logs one attempt's outcome; returns the verdict.
fn record(s: &SectionShared, env: &WorkerEnv, item: &mut Spooled, outcome: Outcome) -> Verdict {
    let policy_retry = s
        .policy
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .retry
        .clone();
    let d = &item.delivery;
    item.attempts += 1;
    item.unreachable = outcome.unreachable;
    s.reachable.store(!outcome.unreachable, Ordering::Relaxed);
    s.stats.attempts.fetch_add(1, Ordering::Relaxed);
    let mut verdict = classify(&outcome.attempt);
    let what = match &outcome.attempt {
        Attempt::Status { code, .. } => format!("HTTP {code}"),
        Attempt::Error(e) => e.clone(),
    };
    match &verdict {
        Verdict::Delivered => {
            s.stats.delivered.fetch_add(1, Ordering::Relaxed);
            s.stats
                .latency_us
                .record(outcome.latency.as_micros() as u64);
            s.stats
                .e2e_ms
                .record((now_ms() - d.created_ms).max(0) as u64);
            if item.attempts > 1 {
                log::info!(
                    "[{}] call {} {}: delivered after {} attempts",
                    s.name,
                    d.call_id,
                    d.event,
                    item.attempts
                );
            }
            return verdict;
        }
        Verdict::Retry { after } => match next_delay(&policy_retry, item.attempts as usize, *after)
        {
            Some(delay) => {
                item.next_at_ms = now_ms() + delay.as_millis() as i64;
                s.stats.retries.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "[{}] call {} {}: {what}; attempt {} failed, retrying in {:.1} s",
                    s.name,
                    d.call_id,
                    d.event,
                    item.attempts,
                    delay.as_secs_f64()
                );
            }
            None => {
                log::error!(
                    "[{}] call {} {}: {what}; dead-lettered after {} attempts (webhook replay {} re-sends it)",
                    s.name, d.call_id, d.event, item.attempts, s.name
                );
                verdict = Verdict::Fail;
            }
        },
        Verdict::Fail => {
            log::error!(
                "[{}] call {} {}: {what} {}; not retried (4xx), dead-lettered",
                s.name,
                d.call_id,
                d.event,
                outcome.excerpt
            );
        }
    }
    item.last_error = format!("{what} {}", outcome.excerpt).trim().to_string();
    s.stats.set_last_error(&item.last_error);
    env.errors.push(ErrorRecord {
        at: chrono::Utc::now(),
        section: s.name.clone(),
        call_id: d.call_id.clone(),
        event: d.event.clone(),
        error: item.last_error.clone(),
        attempt: item.attempts,
        status: match &outcome.attempt {
            Attempt::Status { code, .. } => Some(*code),
            Attempt::Error(_) => None,
        },
        dead: matches!(verdict, Verdict::Fail),
    });
    verdict
}

/// Keeps a delivery sent from memory that failed for good among the dead letters.
fn dead_letter(s: &SectionShared, env: &WorkerEnv, seq: u64, item: Spooled) {
    s.stats.dead.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = env
        .spool
        .push(&[(seq, item.clone())])
        .and_then(|_| env.spool.bury(seq, &item))
    {
        log::error!("[{}] cannot keep the dead letter: {e}", s.name);
    }
}
