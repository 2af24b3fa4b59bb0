//! One section's delivery worker: its own memory queue, its own thread, its own HTTP agent, so
//! a slow or dead endpoint never delays another. Each call's events go out in order (start,
//! answer, end), one after the other; different calls go out at once, on up to `concurrency`
//! connections, and a call waiting for a retry does not hold back the others.
//!
//! Fast path: the memory queue, no disk. When an attempt fails and is to be retried, or the
//! memory queue is full, the section switches to *spool mode*: the failed delivery and
//! everything queued behind it go to the spool (in order), new deliveries follow them there
//! (moved from the memory queue once per round, in one transaction), and the worker sends from
//! the spool until it is empty. Memory stays bounded however long an endpoint is down.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};

use super::client::{self, Outcome};
use super::nats::{NatsSink, NatsTarget};
use super::rate_limit::Pacer;
use super::retry::{classify, next_delay, Attempt, Verdict};
use super::signing;
use super::spool::{Spool, Spooled};
use super::stats::{ErrorLog, ErrorRecord, SectionStats};
use super::{Delivery, EndpointPolicy};

/// Deliveries one section keeps in memory before it spools.
pub const MEMORY_QUEUE: usize = 4096;

/// Most deliveries taken from the memory queue per round (sent at once when they belong to
/// different calls).
const MEMORY_BATCH: usize = 64;

/// Spooled deliveries looked at per round while draining; the ones due are sent, and the
/// delivered ones acknowledged in one spool transaction.
const SPOOL_WINDOW: usize = 256;

/// How long a batch may take on the worker's own thread before the other lanes start.
/// (Above the few ms a preemption costs on a busy 2-core machine, so a fast endpoint never
/// starts them; a slow one starts them after its first call or, once seen slow, at once.)
const LANES_AFTER: Duration = Duration::from_millis(20);

/// A batch of this many calls is a backlog (a burst, or a spool draining): every lane starts
/// at once, for throughput. Smaller batches — normal load — go on the worker's thread alone.
const LANES_FOR_CALLS: usize = 32;

/// What the dispatcher and a worker thread share.
pub struct SectionShared {
    pub name: String,
    pub policy: RwLock<EndpointPolicy>,
    pub agent: RwLock<Option<ureq::Agent>>,
    /// Paces attempts when the section has a `rate_limit`.
    pub pacer: RwLock<Option<Arc<Pacer>>>,
    /// `type = nats`: the JetStream publisher used instead of the HTTP agent.
    pub nats: RwLock<Option<Arc<NatsSink>>>,
    /// The memory queue; each delivery carries the sequence number it got at submit, which
    /// is also its key if it ever goes to the spool, so order survives any spill.
    pub tx: Sender<(u64, Delivery)>,
    pub rx: Receiver<(u64, Delivery)>,
    /// Set while the spool holds this section's deliveries: new ones must queue behind them.
    pub spooling: AtomicBool,
    /// Serialises "check spooling, then enqueue" against "switch to spooling, then drain".
    pub gate: Mutex<()>,
    pub stop: AtomicBool,
    /// Set when the section starts with deliveries spooled by an earlier run: the first one is
    /// tried at once instead of waiting out a retry delay computed before the restart.
    pub fresh_start: AtomicBool,
    pub wake: (Sender<()>, Receiver<()>),
    /// Whether the latest attempt reached the endpoint. When it does again after an outage, the
    /// deliveries waiting only because it could not be reached go at once.
    pub reachable: AtomicBool,
    /// The last batch took more than [`LANES_AFTER`] per call: start every lane at once.
    pub slow: AtomicBool,
    pub stats: SectionStats,
}

impl SectionShared {
    pub fn new(policy: EndpointPolicy) -> SectionShared {
        let pacer = policy.rate_limit.map(|r| Arc::new(Pacer::new(r)));
        let (policy_name, policy_nats) = (policy.name.clone(), policy.nats.clone());
        let (tx, rx) = bounded(MEMORY_QUEUE);
        let agent = client::agent(policy.timeout, policy.tls_ca.as_deref(), policy.concurrency)
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
            agent: RwLock::new(agent),
            pacer: RwLock::new(pacer),
            nats: RwLock::new(nats_sink(&policy_name, policy_nats.as_ref())),
            tx,
            rx,
            spooling: AtomicBool::new(false),
            gate: Mutex::new(()),
            stop: AtomicBool::new(false),
            fresh_start: AtomicBool::new(false),
            wake: bounded(1),
            reachable: AtomicBool::new(false),
            slow: AtomicBool::new(false),
            stats: SectionStats::default(),
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
        let agent = client::agent(policy.timeout, policy.tls_ca.as_deref(), policy.concurrency)
            .map_err(|e| log::error!("[{}] {e}", policy.name))
            .ok();
        *self.agent.write().unwrap_or_else(|p| p.into_inner()) = agent;
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
        let _ = self.wake.0.try_send(());
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
pub struct WorkerEnv {
    pub spool: Option<Arc<Spool>>,
    pub seq: Arc<AtomicU64>,
    pub errors: Arc<ErrorLog>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Puts a delivery in a section's memory queue without waking the worker (the caller calls
/// [`SectionShared::wake`] once after a batch); when the queue is full, it goes to the spool in
/// one transaction. In spool mode the worker moves the memory queue to the spool (behind what
/// is there) before each round, so the spool is written once per round, not per delivery.
pub fn enqueue(s: &SectionShared, env: &WorkerEnv, d: Delivery) {
    let _gate = s.gate.lock().unwrap_or_else(|p| p.into_inner());
    let seq = env.seq.fetch_add(1, Ordering::SeqCst) + 1;
    match s.tx.try_send((seq, d)) {
        Ok(()) => {}
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
/// gate.
fn spool_locked(s: &SectionShared, env: &WorkerEnv, mut items: Vec<(u64, Spooled)>) {
    // Spool mode first, then drain: a delivery the worker takes from memory meanwhile sees the
    // flag and joins the spool in its place instead of overtaking the ones drained before it.
    s.spooling.store(true, Ordering::SeqCst);
    while let Ok((seq, d)) = s.rx.try_recv() {
        items.push((seq, fresh(d)));
    }
    let Some(spool) = &env.spool else {
        s.spooling.store(false, Ordering::SeqCst);
        for (_, it) in items {
            s.stats.dropped.fetch_add(1, Ordering::Relaxed);
            log::error!(
                "[{}] call {} {}: dropped: no spool to keep it in",
                s.name,
                it.delivery.call_id,
                it.delivery.event
            );
        }
        return;
    };
    let n = items.len();
    match spool.push(&items) {
        Ok(()) => {
            s.stats.spooled_total.fetch_add(n as u64, Ordering::Relaxed);
        }
        Err(e) => {
            s.spooling.store(false, Ordering::SeqCst);
            // The disk failed too: keep trying in memory rather than lose them.
            log::error!(
                "[{}] spool write failed ({e}); keeping {n} delivery(ies) in memory",
                s.name
            );
            for (seq, it) in items {
                let _ =
                    s.tx.try_send((seq, it.delivery))
                        .map_err(|_| s.stats.dropped.fetch_add(1, Ordering::Relaxed));
            }
        }
    }
}

/// The worker thread's loop. It sleeps on the wake channel, never on the memory queue itself:
/// a producer that queues several deliveries wakes it once (one futex call and one context
/// switch per batch instead of per delivery), and a wake given while it is busy is kept (the
/// channel holds one), so none is lost.
pub fn run(s: Arc<SectionShared>, env: WorkerEnv) {
    while !s.stop.load(Ordering::SeqCst) {
        if s.spooling.load(Ordering::SeqCst) {
            drain_spool_step(&s, &env);
            continue;
        }
        match s.rx.try_recv() {
            Err(TryRecvError::Empty) => {
                let _ = s.wake.1.recv_timeout(Duration::from_millis(250));
            }
            Ok(first) => {
                let mut batch = vec![(first.0, fresh(first.1))];
                while batch.len() < MEMORY_BATCH {
                    match s.rx.try_recv() {
                        Ok((seq, d)) => batch.push((seq, fresh(d))),
                        Err(_) => break,
                    }
                }
                if s.spooling.load(Ordering::SeqCst) {
                    // A spill happened while we took these: they join the spool in their place.
                    let _gate = s.gate.lock().unwrap_or_else(|p| p.into_inner());
                    spool_locked(&s, &env, batch);
                    continue;
                }
                let mut to_spool = Vec::new();
                for (seq, item, sent) in send_batch(&s, &env, batch) {
                    match sent {
                        Sent::Done(Verdict::Delivered) => {}
                        Sent::Done(Verdict::Fail) => bury_fresh(&s, &env, seq, item),
                        Sent::Done(Verdict::Retry { .. }) | Sent::Held => {
                            to_spool.push((seq, item))
                        }
                    }
                }
                if !to_spool.is_empty() {
                    let _gate = s.gate.lock().unwrap_or_else(|p| p.into_inner());
                    spool_locked(&s, &env, to_spool);
                }
            }
            Err(TryRecvError::Disconnected) => break,
        }
    }
    // Shutdown: whatever is still in memory goes to the spool, in order.
    let _gate = s.gate.lock().unwrap_or_else(|p| p.into_inner());
    if !s.rx.is_empty() {
        let n = s.rx.len();
        spool_locked(&s, &env, Vec::new());
        log::info!(
            "[{}] {n} queued delivery(ies) kept in the spool for the next start",
            s.name
        );
    }
}

/// What became of one delivery of a batch.
enum Sent {
    /// It was attempted; the classifier's verdict.
    Done(Verdict),
    /// Not attempted: an earlier delivery of the same call is to be retried first (or the
    /// section is stopping).
    Held,
}

/// Sends a batch: each call's deliveries in order, a call stopping at its first delivery to be
/// retried; different calls at once, on up to `concurrency` connections. Returns every item
/// with what became of it, in sequence order.
fn send_batch(
    s: &SectionShared,
    env: &WorkerEnv,
    items: Vec<(u64, Spooled)>,
) -> Vec<(u64, Spooled, Sent)> {
    let n = items.len();
    let mut calls: Vec<Vec<(u64, Spooled)>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (seq, item) in items {
        let i = *index
            .entry(item.delivery.call_id.clone())
            .or_insert_with(|| {
                calls.push(Vec::new());
                calls.len() - 1
            });
        calls[i].push((seq, item));
    }
    let lanes = s
        .policy
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .concurrency
        .clamp(1, calls.len().max(1));
    let calls: Vec<Mutex<Vec<(u64, Spooled)>>> = calls.into_iter().map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::with_capacity(n));
    // Sends the next call's deliveries; false when none is left.
    let one_call = || {
        let Some(call) = calls.get(next.fetch_add(1, Ordering::SeqCst)) else {
            return false;
        };
        let call = std::mem::take(&mut *call.lock().unwrap_or_else(|p| p.into_inner()));
        let mut held = false;
        let mut done = Vec::with_capacity(call.len());
        for (seq, mut item) in call {
            if held || s.stop.load(Ordering::SeqCst) {
                done.push((seq, item, Sent::Held));
                continue;
            }
            let verdict = attempt(s, env, &mut item);
            held = matches!(verdict, Verdict::Retry { .. });
            done.push((seq, item, Sent::Done(verdict)));
        }
        out.lock().unwrap_or_else(|p| p.into_inner()).extend(done);
        true
    };
    // The worker sends on its own thread first; only when the batch is still unfinished after
    // LANES_AFTER (a slow endpoint) does it start the other lanes. A fast endpoint (a local
    // receiver answers in ~0.1 ms) so costs no thread start and no switch between threads.
    // A section whose last batch was slow, or a batch of many calls, starts them at once.
    let started = Instant::now();
    std::thread::scope(|scope| {
        let mut helpers = false;
        let mut start_helpers =
            lanes > 1 && (s.slow.load(Ordering::Relaxed) || calls.len() >= LANES_FOR_CALLS);
        loop {
            if start_helpers && !helpers && next.load(Ordering::SeqCst) < calls.len() {
                helpers = true;
                for _ in 1..lanes {
                    let spawned = std::thread::Builder::new()
                        .name(format!("webhook-{}", s.name))
                        .spawn_scoped(scope, || while one_call() {});
                    if let Err(e) = spawned {
                        log::warn!("[{}] cannot start a delivery lane: {e}", s.name);
                    }
                }
            }
            if !one_call() {
                break;
            }
            start_helpers = lanes > 1 && started.elapsed() >= LANES_AFTER;
        }
    });
    // Slow: more than LANES_AFTER per call on average.
    let per_call = started.elapsed() / calls.len().max(1) as u32;
    s.slow.store(per_call >= LANES_AFTER, Ordering::Relaxed);
    let mut out = out.into_inner().unwrap_or_else(|p| p.into_inner());
    out.sort_by_key(|(seq, _, _)| *seq);
    out
}

/// One attempt; updates stats and the error log; sets `item.attempts`, `last_error`,
/// `next_at_ms` (for a retry). Returns the verdict, with `Retry` turned into `Fail` when the
/// schedule is exhausted.
fn attempt(s: &SectionShared, env: &WorkerEnv, item: &mut Spooled) -> Verdict {
    let pacer = s.pacer.read().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(pacer) = pacer {
        if !pacer.pace(&s.stop) {
            // Stopping while waiting for a slot: not attempted, kept (spooled) as it is.
            return Verdict::Retry { after: None };
        }
    }
    s.stats.in_flight.fetch_add(1, Ordering::Relaxed);
    let verdict = attempt_and_record(s, env, item);
    s.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    verdict
}

fn attempt_and_record(s: &SectionShared, env: &WorkerEnv, item: &mut Spooled) -> Verdict {
    let policy = s.policy.read().unwrap_or_else(|p| p.into_inner()).clone();
    let agent = s.agent.read().unwrap_or_else(|p| p.into_inner()).clone();
    let nats = s.nats.read().unwrap_or_else(|p| p.into_inner()).clone();
    let d = &item.delivery;
    let outcome = match (nats, agent) {
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
        (None, Some(agent)) => {
            // webhook-id always (the same on every re-send, so a CRM can drop duplicates);
            // with a secret, the Standard Webhooks timestamp and signature too.
            let extra: Vec<(String, String)> = match &policy.secret {
                Some(secret) => signing::headers(
                    secret,
                    &d.id,
                    chrono::Utc::now().timestamp(),
                    &d.request.body,
                )
                .to_vec(),
                None => vec![("webhook-id".to_string(), d.id.clone())],
            };
            client::send(&agent, &d.request, &extra)
        }
        (None, None) => Outcome {
            attempt: Attempt::Error("no HTTP client (bad tls_ca?)".into()),
            latency: Duration::ZERO,
            excerpt: String::new(),
            unreachable: false,
        },
    };
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
        Verdict::Retry { after } => match next_delay(&policy.retry, item.attempts as usize, *after)
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

fn bury_fresh(s: &SectionShared, env: &WorkerEnv, seq: u64, item: Spooled) {
    s.stats.dead.fetch_add(1, Ordering::Relaxed);
    match &env.spool {
        Some(spool) => {
            if let Err(e) = spool
                .push(&[(seq, item.clone())])
                .and_then(|_| spool.bury(seq, &item))
            {
                log::error!("[{}] cannot keep the dead letter: {e}", s.name);
            }
        }
        None => log::error!(
            "[{}] call {} {}: dead letter lost: no spool",
            s.name,
            item.delivery.call_id,
            item.delivery.event
        ),
    }
}

/// Sends what is due at the head of this section's spool (calls whose next delivery waits
/// for a retry are skipped, with their later deliveries); leaves spool mode when it is empty.
fn drain_spool_step(s: &SectionShared, env: &WorkerEnv) {
    let Some(spool) = &env.spool else {
        s.spooling.store(false, Ordering::SeqCst);
        return;
    };
    if !s.rx.is_empty() {
        // What arrived meanwhile joins the spool behind everything already there.
        let _gate = s.gate.lock().unwrap_or_else(|p| p.into_inner());
        spool_locked(s, env, Vec::new());
    }
    let window = match spool.head_batch(&s.name, SPOOL_WINDOW) {
        Ok(b) => b,
        Err(e) => {
            log::error!("[{}] spool read failed: {e}", s.name);
            let _ = s.wake.1.recv_timeout(Duration::from_secs(1));
            return;
        }
    };
    if window.is_empty() {
        let _gate = s.gate.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(spool.head(&s.name), Ok(None)) {
            s.spooling.store(false, Ordering::SeqCst);
            log::info!("[{}] spool drained; back to direct delivery", s.name);
        }
        return;
    }
    let fresh = s.fresh_start.swap(false, Ordering::SeqCst);
    // The endpoint answers again: what waits only because it did not is due now (its retry
    // delay was for an outage that is over), so a backlog drains at full speed once the first
    // retry gets through rather than as each call's own timer comes up.
    let reachable = s.reachable.load(Ordering::Relaxed);
    let now = now_ms();
    let mut waiting: HashSet<String> = HashSet::new();
    let mut soonest = i64::MAX;
    let mut due = Vec::new();
    for (seq, item) in window {
        if waiting.contains(&item.delivery.call_id) {
            continue;
        }
        let wait = item.next_at_ms - now;
        if wait > 0 && !fresh && !(reachable && item.unreachable) {
            soonest = soonest.min(wait);
            waiting.insert(item.delivery.call_id.clone());
            continue;
        }
        due.push((seq, item));
    }
    if due.is_empty() {
        // Sleep until the first retry is due, but wake for shutdown or replay.
        let _ = s
            .wake
            .1
            .recv_timeout(Duration::from_millis(soonest.clamp(1, 1000) as u64));
        return;
    }
    let mut delivered = Vec::new();
    for (seq, item, sent) in send_batch(s, env, due) {
        let result = match sent {
            Sent::Held => Ok(()),
            Sent::Done(Verdict::Delivered) => {
                delivered.push(seq);
                Ok(())
            }
            Sent::Done(Verdict::Retry { .. }) => spool.update(seq, &item),
            Sent::Done(Verdict::Fail) => {
                s.stats.dead.fetch_add(1, Ordering::Relaxed);
                spool.bury(seq, &item)
            }
        };
        if let Err(e) = result {
            log::error!("[{}] spool write failed: {e}", s.name);
        }
    }
    if let Err(e) = spool.remove_many(&s.name, &delivered) {
        log::error!("[{}] spool write failed: {e}", s.name);
    }
}
