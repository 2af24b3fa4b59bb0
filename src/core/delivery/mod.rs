//! The delivery engine: per-section queues and workers, retries, the durable spool, signing.
//! One file per stage: [`retry`] (the classifier), [`signing`], [`spool`], [`worker`],
//! [`stats`], [`rate_limit`], [`nats`]; one HTTP attempt is [`crate::core::http::client`].

pub mod nats;
pub mod rate_limit;
pub mod retry;
pub mod signal;
pub mod signing;
pub mod spool;
pub mod stats;
pub mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::http::client::{self, Outcome};
use crate::core::instrument::latency::Histogram;
use crate::core::model::request::{HttpRequest, Method};
use spool::{Spool, SpoolError};
use stats::ErrorLog;
use worker::{SectionShared, WorkerEnv};

/// One webhook to send. Rendered once at the event; byte-identical on every retry and re-send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// `webhook-id`: the same across retries and replays, so a CRM can drop duplicates.
    pub id: String,
    pub section: String,
    pub call_id: String,
    pub event: String,
    pub request: HttpRequest,
    pub created_ms: i64,
}

impl Delivery {
    /// A fresh `msg_…` id (128 random bits).
    pub fn new_id() -> String {
        format!("msg_{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
    }
}

/// Per-section policy, from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointPolicy {
    pub name: String,
    pub timeout: Duration,
    pub retry: Vec<Duration>,
    pub secret: Option<String>,
    pub tls_ca: Option<PathBuf>,
    /// Calls sent at once (each call's own events stay in order).
    pub concurrency: usize,
    /// `pipeline`: most calls' requests written at once on one connection (1: one at a time).
    pub pipeline: usize,
    /// `rate_limit`: requests per time this endpoint is sent at most.
    pub rate_limit: Option<rate_limit::RateLimit>,
    /// `type = nats`: publish to these servers' JetStream instead of HTTP.
    pub nats: Option<nats::NatsTarget>,
}

/// Most lanes a section can have (`concurrency`'s upper bound).
pub const MAX_LANES: usize = 64;

struct Section {
    shared: Arc<SectionShared>,
    thread: Option<JoinHandle<()>>,
}

/// One section's delivery counters at one moment.
#[derive(Debug, Clone)]
pub struct SectionStatus {
    pub name: String,
    /// In the memory queue.
    pub queued: usize,
    pub in_flight: usize,
    /// Since load: delivered, attempts made, attempts retried, dead-lettered, dropped.
    pub delivered: u64,
    pub attempts: u64,
    pub retries: u64,
    pub dead_total: u64,
    pub dropped: u64,
    /// Panics contained in the section's lanes.
    pub panics: u64,
    /// Now: spooled for a retry, dead letters kept, everything in the spool.
    pub retrying: usize,
    pub dead: usize,
    pub spooled: usize,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub last_error: Option<(chrono::DateTime<chrono::Utc>, String)>,
    /// `pipeline` allows several requests per write, but the endpoint did not answer pipelined
    /// requests (no keep-alive, or it stopped mid-way): it gets one at a time until a reload.
    pub pipelining_off: bool,
}

/// The spool's state at one moment.
#[derive(Debug, Clone)]
pub struct SpoolState {
    pub dir: PathBuf,
    pub health: spool::Health,
    /// Rows waiting in memory (the disk refused them, or the spool is unavailable).
    pub in_memory: usize,
    /// Rows lost because memory was full too.
    pub dropped: u64,
    /// Rows that could not be read, set aside in the spool's `unreadable` table.
    pub unreadable: u64,
}

/// Why [`Dispatcher::send_now`] sent nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendNowError {
    /// No webhook section of that name is running.
    NoSection,
    /// The section has no HTTP client (it could not be built; the log says why).
    NoClient,
}

impl std::fmt::Display for SendNowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendNowError::NoSection => f.write_str("no such webhook section"),
            SendNowError::NoClient => f.write_str("no HTTP client for this section (see the log)"),
        }
    }
}

impl std::error::Error for SendNowError {}

/// Owns the spool and one worker per section.
///
/// Locks: `sections` is held only to look a section up or change the map — never across a
/// spool write, an HTTP request or a thread join — so the correlation thread's hand-over
/// never waits for the CLI, a reload or a slow endpoint.
pub struct Dispatcher {
    spool: Arc<Spool>,
    spool_dir: PathBuf,
    seq: Arc<AtomicU64>,
    errors: Arc<ErrorLog>,
    sections: Mutex<HashMap<String, Section>>,
}

impl Dispatcher {
    /// Opens (creating) the spool in `spool_dir`. A corrupt spool is set aside and reported;
    /// a spool that cannot be opened at all keeps deliveries in memory and says so (ERROR
    /// log, `webhook show status`) until it can.
    pub fn open(spool_dir: &Path) -> Dispatcher {
        let spool = Spool::open(spool_dir);
        let seq = spool.max_seq().unwrap_or_else(|e| {
            log::error!("spool {}: {e}", spool_dir.display());
            0
        });
        match spool.pending_len() {
            Ok(pending) if pending > 0 => log::info!(
                "spool {}: {pending} delivery(ies) waiting from before",
                spool_dir.display()
            ),
            Ok(_) => {}
            Err(e) => log::error!("spool {}: {e}", spool_dir.display()),
        }
        Dispatcher {
            spool: Arc::new(spool),
            spool_dir: spool_dir.to_path_buf(),
            seq: Arc::new(AtomicU64::new(seq)),
            errors: Arc::new(ErrorLog::new(200)),
            sections: Mutex::new(HashMap::new()),
        }
    }

    fn env(&self) -> WorkerEnv {
        WorkerEnv {
            spool: self.spool.clone(),
            seq: self.seq.clone(),
            errors: self.errors.clone(),
        }
    }

    fn sections(&self) -> std::sync::MutexGuard<'_, HashMap<String, Section>> {
        self.sections.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sections' shared state, sorted by name (taken out of the lock).
    fn shared(&self) -> Vec<Arc<SectionShared>> {
        let mut v: Vec<Arc<SectionShared>> =
            self.sections().values().map(|s| s.shared.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Adds, updates and removes section workers. A removed section's queue goes to the spool
    /// and waits there for the section to come back.
    pub fn configure(&self, endpoints: Vec<EndpointPolicy>) {
        let wanted: Vec<String> = endpoints.iter().map(|e| e.name.clone()).collect();
        let gone: Vec<Section> = {
            let mut sections = self.sections();
            let names: Vec<String> = sections
                .keys()
                .filter(|k| !wanted.contains(k))
                .cloned()
                .collect();
            names.iter().filter_map(|n| sections.remove(n)).collect()
        };
        for s in gone {
            let name = s.shared.name.clone();
            stop(s);
            log::info!("[{name}] removed; anything queued for it stays in the spool");
        }
        let pending: Vec<String> = self.spool.pending_sections().unwrap_or_default();
        for policy in endpoints {
            let existing = self.sections().get(&policy.name).map(|s| s.shared.clone());
            if let Some(shared) = existing {
                shared.set_policy(policy);
                continue;
            }
            let name = policy.name.clone();
            let shared = Arc::new(SectionShared::new(policy));
            if pending.contains(&name) {
                shared.spooling.store(true, Ordering::SeqCst);
                shared.fresh_start.store(true, Ordering::SeqCst);
            }
            let (s2, env) = (shared.clone(), self.env());
            let thread = std::thread::Builder::new()
                .name(format!(
                    "webhook-{}",
                    name.chars().take(7).collect::<String>()
                ))
                .spawn(move || worker::run(s2, env))
                .map_err(|e| log::error!("[{name}] cannot start its worker: {e}"))
                .ok();
            self.sections().insert(name, Section { shared, thread });
        }
    }

    /// Hands over a delivery; never waits on the network.
    pub fn submit(&self, d: Delivery) {
        self.submit_many(vec![d]);
    }

    /// Hands over deliveries (each section's in the order given), waking each section's
    /// worker once; never waits on the network.
    pub fn submit_many(&self, deliveries: Vec<Delivery>) {
        if deliveries.is_empty() {
            return;
        }
        let sections = self.sections();
        let env = self.env();
        let mut woken: Vec<&str> = Vec::new();
        for d in deliveries {
            match sections.get(&d.section) {
                Some(s) => {
                    if !woken.contains(&s.shared.name.as_str()) {
                        woken.push(&s.shared.name);
                    }
                    worker::enqueue(&s.shared, &env, d);
                }
                None => log::error!(
                    "[{}] call {} {}: no such section; dropped",
                    d.section,
                    d.call_id,
                    d.event
                ),
            }
        }
        for name in woken {
            if let Some(s) = sections.get(name) {
                s.shared.wake();
            }
        }
    }

    /// Lets every section's worker notice lanes stuck in slow requests while calls wait
    /// (starting another lane), and a spool in trouble try its disk again. Cheap; the
    /// correlation thread calls it on every poll.
    pub fn tick(&self) {
        let env = self.env();
        for s in self.shared() {
            worker::tick(&s, &env);
        }
    }

    /// Sends one request now, outside the queue, signed like a delivery (`webhook test`).
    /// Holds no lock while it waits for the endpoint.
    pub fn send_now(&self, section: &str, request: &HttpRequest) -> Result<Outcome, SendNowError> {
        let Some(s) = self.sections().get(section).map(|s| s.shared.clone()) else {
            return Err(SendNowError::NoSection);
        };
        let policy = s.policy.read().unwrap_or_else(|p| p.into_inner()).clone();
        let client = s.client.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(client) = client else {
            return Err(SendNowError::NoClient);
        };
        let extra = match &policy.secret {
            Some(secret) => signing::headers(
                secret,
                &Delivery::new_id(),
                chrono::Utc::now().timestamp(),
                &request.body,
            )
            .to_vec(),
            None => Vec::new(),
        };
        Ok(client::send(&client, request, &extra))
    }

    /// The spool's state now (`webhook show status`'s first line).
    pub fn spool_state(&self) -> SpoolState {
        SpoolState {
            dir: self.spool_dir.clone(),
            health: self.spool.health(),
            in_memory: self.spool.in_memory(),
            dropped: self.spool.dropped(),
            unreadable: self.spool.unreadable_len().unwrap_or(0),
        }
    }

    /// The latest failed attempts (all sections, or one), oldest first.
    pub fn recent_errors(&self, section: Option<&str>) -> Vec<stats::ErrorRecord> {
        self.errors.recent(section)
    }

    /// The dead letters kept in the spool (all sections, or one).
    pub fn dead_letters(&self, section: Option<&str>) -> Result<Vec<spool::Spooled>, SpoolError> {
        Ok(self
            .spool
            .dead(section)?
            .into_iter()
            .map(|(_, d)| d)
            .collect())
    }

    /// Every section's counters now, by name (`webhook show status`, AMI, metrics).
    pub fn status_rows(&self) -> Vec<SectionStatus> {
        // The spool is read after the section table's lock is let go (it is disk I/O).
        let mut rows: Vec<SectionStatus> = self
            .shared()
            .iter()
            .map(|s| {
                let name = &s.name;
                let (spooled, dead) = self.spool.counts(name).unwrap_or((0, 0));
                let st = &s.stats;
                SectionStatus {
                    name: name.clone(),
                    queued: s.queued(),
                    in_flight: st.in_flight.load(Ordering::Relaxed),
                    delivered: st.delivered.load(Ordering::Relaxed),
                    attempts: st.attempts.load(Ordering::Relaxed),
                    retries: st.retries.load(Ordering::Relaxed),
                    dead_total: st.dead.load(Ordering::Relaxed),
                    dropped: st.dropped.load(Ordering::Relaxed),
                    panics: st.panics.load(Ordering::Relaxed),
                    retrying: if s.spooling.load(Ordering::Relaxed) {
                        spooled
                    } else {
                        0
                    },
                    dead,
                    spooled,
                    latency_ms_p50: st.latency_us.quantile(0.5).map(|us| us as f64 / 1000.0),
                    latency_ms_p99: st.latency_us.quantile(0.99).map(|us| us as f64 / 1000.0),
                    last_error: st.last_error(),
                    pipelining_off: s.pipelining_off(),
                }
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }

    /// What `f` makes of each section's delivery latency histogram (µs), by name.
    pub fn latencies<T>(&self, f: impl Fn(&Histogram) -> T) -> Vec<(String, T)> {
        let mut out: Vec<(String, T)> = self
            .shared()
            .into_iter()
            .map(|s| (s.name.clone(), f(&s.stats.latency_us)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Who hears about failed attempts and dead letters (throttled; see [`stats::Notice`]).
    pub fn set_notifier(&self, n: stats::Notifier) {
        self.errors.set_notifier(n);
    }

    /// Re-queues dead letters (of one section or all); returns how many.
    pub fn replay(&self, section: Option<&str>) -> usize {
        let moved = match self
            .spool
            .resurrect(section, || self.seq.fetch_add(1, Ordering::SeqCst) + 1)
        {
            Ok(m) => m,
            Err(e) => {
                log::error!("replay failed: {e}");
                return 0;
            }
        };
        for s in self.shared() {
            if moved.contains(&s.name) {
                let _gate = s.gate.lock().unwrap_or_else(|p| p.into_inner());
                s.spooling.store(true, Ordering::SeqCst);
                s.wake();
            }
        }
        moved.len()
    }

    /// Stops every worker (what is queued goes to the spool) and joins them. Idempotent.
    pub fn shutdown(&self) {
        let all: Vec<Section> = self.sections().drain().map(|(_, s)| s).collect();
        for s in all {
            stop(s);
        }
    }
}

fn stop(mut s: Section) {
    s.shared.stop.store(true, Ordering::SeqCst);
    s.shared.wake();
    if let Some(t) = s.thread.take() {
        let _ = t.join();
    }
}

/// Lets a `Method` travel through the spool.
impl Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Method, D::Error> {
        let s = String::deserialize(d)?;
        Method::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("bad method {s}")))
    }
}

#[cfg(test)]
mod tests {
    //! The dispatcher against a real local HTTP server (tiny_http on 127.0.0.1).
    use super::*;

    /// What `webhook show status` prints of the dispatcher (the CLI makes the text).
    fn status_text(d: &Dispatcher) -> String {
        crate::core::cli::status::delivery_text(&d.spool_state(), &d.status_rows())
    }

    /// What `webhook show errors [section]` prints.
    fn errors_text(d: &Dispatcher, section: Option<&str>) -> String {
        crate::core::cli::errors::of(d, section)
    }
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    struct Server {
        url: String,
        got: Arc<Mutex<Vec<(String, String)>>>, // (webhook-id, body) of accepted requests
        fail_first: Arc<AtomicUsize>,
        server: Arc<tiny_http::Server>,
    }

    impl Server {
        /// Answers `status` to the first `fail_first` requests, then 200.
        fn start(fail_first: usize, status: u16) -> Server {
            Self::on_port(0, fail_first, status)
        }

        fn on_port(port: u16, fail_first: usize, status: u16) -> Server {
            let server = Arc::new(tiny_http::Server::http(("127.0.0.1", port)).unwrap());
            let url = format!(
                "http://127.0.0.1:{}/hook",
                server.server_addr().to_ip().unwrap().port()
            );
            let got = Arc::new(Mutex::new(Vec::new()));
            let fail = Arc::new(AtomicUsize::new(fail_first));
            let (s, g, f) = (server.clone(), got.clone(), fail.clone());
            std::thread::spawn(move || {
                for mut req in s.incoming_requests() {
                    let mut body = String::new();
                    let _ = req.as_reader().read_to_string(&mut body);
                    let id = req
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("webhook-id"))
                        .map(|h| h.value.to_string())
                        .unwrap_or_default();
                    let code = if f.load(Ordering::SeqCst) > 0 {
                        f.fetch_sub(1, Ordering::SeqCst);
                        status
                    } else {
                        g.lock().unwrap().push((id, body));
                        200
                    };
                    let _ =
                        req.respond(tiny_http::Response::from_string("ok").with_status_code(code));
                }
            });
            Server {
                url,
                got,
                fail_first: fail,
                server,
            }
        }

        fn wait(&self, n: usize) -> Vec<(String, String)> {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let got = self.got.lock().unwrap().clone();
                if got.len() >= n || std::time::Instant::now() > deadline {
                    return got;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.server.unblock();
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "rw-{name}-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn policy(name: &str, retry_ms: &[u64]) -> EndpointPolicy {
        EndpointPolicy {
            name: name.into(),
            timeout: Duration::from_secs(2),
            retry: retry_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            secret: None,
            tls_ca: None,
            concurrency: 4,
            pipeline: crate::core::config::webhook::DEFAULT_PIPELINE,
            rate_limit: None,
            nats: None,
        }
    }

    /// A free local port nobody listens on yet (connections are refused), and its URL; a test
    /// brings the endpoint up there later with [`Server::on_port`].
    fn refused_endpoint() -> (u16, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        (port, format!("http://127.0.0.1:{port}/hook"))
    }

    fn delivery(section: &str, url: &str, call: &str, event: &str) -> Delivery {
        Delivery {
            id: Delivery::new_id(),
            section: section.into(),
            call_id: call.into(),
            event: event.into(),
            request: HttpRequest {
                method: Method::Post,
                url: url.into(),
                headers: vec![],
                body: format!("{call}:{event}").into_bytes(),
            },
            created_ms: 0,
        }
    }

    #[test]
    fn a_rate_limit_spaces_requests_and_keeps_each_calls_order() {
        let dir = temp_dir("rate");
        let srv = Server::start(0, 200);
        let d = Dispatcher::open(&dir);
        let mut p = policy("crm", &[1000]);
        p.rate_limit = Some(rate_limit::RateLimit::parse("10/s").unwrap()); // burst 10
        p.rate_limit.as_mut().unwrap().burst = 2;
        d.configure(vec![p]);
        let started = std::time::Instant::now();
        for call in ["a", "b", "c"] {
            for event in ["start", "answer", "end"] {
                d.submit(delivery("crm", &srv.url, call, event));
            }
        }
        let got = srv.wait(9);
        let took = started.elapsed();
        assert_eq!(got.len(), 9, "every delivery, none lost");
        // 2 at once, then one per 100 ms: 9 requests take at least 700 ms (the limit is a
        // floor; a slow machine only makes it longer).
        assert!(took >= Duration::from_millis(700), "9 requests in {took:?}");
        for call in ["a", "b", "c"] {
            let events: Vec<&str> = got
                .iter()
                .filter_map(|(_, b)| b.strip_prefix(&format!("{call}:")))
                .collect();
            assert_eq!(events, ["start", "answer", "end"], "call {call} in order");
        }
        d.shutdown();
    }

    #[test]
    fn calls_waiting_because_the_endpoint_was_down_go_once_it_answers_again() {
        let dir = temp_dir("recover");
        let (port, url) = refused_endpoint();
        let d = Dispatcher::open(&dir);
        d.configure(vec![policy("crm", &[60_000])]);
        d.submit(delivery("crm", &url, "a", "end"));
        d.submit(delivery("crm", &url, "b", "end"));
        wait_until(Duration::from_secs(5), || {
            status_text(&d)
                .lines()
                .nth(1)
                .is_some_and(|l| l.contains("refused"))
        });
        // a and b now wait 60 s for their retry; the endpoint comes back and a new call gets
        // through, so they go at once.
        let srv = Server::on_port(port, 0, 200);
        d.submit(delivery("crm", &url, "c", "end"));
        let got = srv.wait(3);
        let bodies: HashSet<String> = got.into_iter().map(|(_, b)| b).collect();
        assert_eq!(
            bodies,
            ["a:end", "b:end", "c:end"].map(String::from).into(),
            "{}",
            status_text(&d)
        );
        d.shutdown();
    }

    #[test]
    fn retried_5xx_keeps_order_and_the_same_webhook_id() {
        let srv = Server::start(2, 503);
        let dir = temp_dir("retry");
        let d = Dispatcher::open(&dir);
        d.configure(vec![policy("crm", &[50, 50, 50])]);
        let first = delivery("crm", &srv.url, "c1", "start");
        let first_id = first.id.clone();
        d.submit(first);
        d.submit(delivery("crm", &srv.url, "c1", "answer"));
        d.submit(delivery("crm", &srv.url, "c1", "end"));
        let got = srv.wait(3);
        let bodies: Vec<&str> = got.iter().map(|(_, b)| b.as_str()).collect();
        assert_eq!(bodies, ["c1:start", "c1:answer", "c1:end"]);
        assert_eq!(
            got[0].0, first_id,
            "the retried delivery kept its webhook-id"
        );
        assert!(status_text(&d).contains("crm"));
        assert!(errors_text(&d, Some("crm")).contains("HTTP 503"));
        d.shutdown();
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Each call's bodies in arrival order.
    fn per_call(got: &[(String, String)]) -> HashMap<String, Vec<String>> {
        let mut calls: HashMap<String, Vec<String>> = HashMap::new();
        for (_, body) in got {
            let (call, event) = body.split_once(':').unwrap();
            calls.entry(call.into()).or_default().push(event.into());
        }
        calls
    }

    #[test]
    fn a_full_memory_queue_spills_to_the_spool_and_loses_nothing() {
        let srv = Server::start(0, 200);
        let dir = temp_dir("spill");
        let d = Dispatcher::open(&dir);
        d.configure(vec![policy("crm", &[50])]);
        let calls = (worker::MEMORY_QUEUE + 500) / 3;
        for i in 0..calls {
            for e in ["start", "answer", "end"] {
                d.submit(delivery("crm", &srv.url, &format!("c{i}"), e));
            }
        }
        let got = srv.wait(calls * 3);
        assert_eq!(got.len(), calls * 3, "every delivery arrives once");
        let by_call = per_call(&got);
        assert_eq!(by_call.len(), calls);
        for (call, events) in by_call {
            assert_eq!(events, ["start", "answer", "end"], "{call} in order");
        }
        d.shutdown();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_call_waiting_for_a_retry_does_not_hold_back_other_calls() {
        let srv = Server::start(1, 503); // c1's start is refused once
        let dir = temp_dir("hol");
        let d = Dispatcher::open(&dir);
        d.configure(vec![policy("crm", &[400])]);
        d.submit(delivery("crm", &srv.url, "c1", "start"));
        std::thread::sleep(Duration::from_millis(100));
        for (c, e) in [("c1", "end"), ("c2", "start"), ("c2", "end")] {
            d.submit(delivery("crm", &srv.url, c, e));
        }
        let bodies: Vec<String> = srv.wait(4).into_iter().map(|(_, b)| b).collect();
        assert_eq!(bodies, ["c2:start", "c2:end", "c1:start", "c1:end"]);
        d.shutdown();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn calls_go_out_at_once_up_to_concurrency_and_each_call_in_order() {
        // A slow endpoint with many handler threads; it records how many requests it held at
        // once, overall and per call.
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!(
            "http://127.0.0.1:{}/hook",
            server.server_addr().to_ip().unwrap().port()
        );
        #[derive(Default)]
        struct Seen {
            now: usize,
            most: usize,
            busy_calls: HashSet<String>,
            same_call_overlap: bool,
            got: Vec<(String, String)>,
        }
        let seen = Arc::new(Mutex::new(Seen::default()));
        for _ in 0..8 {
            let (s, seen) = (server.clone(), seen.clone());
            std::thread::spawn(move || {
                for mut req in s.incoming_requests() {
                    let mut body = String::new();
                    let _ = req.as_reader().read_to_string(&mut body);
                    let call = body.split(':').next().unwrap().to_string();
                    {
                        let mut v = seen.lock().unwrap();
                        v.now += 1;
                        v.most = v.most.max(v.now);
                        if !v.busy_calls.insert(call.clone()) {
                            v.same_call_overlap = true;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(30));
                    {
                        let mut v = seen.lock().unwrap();
                        v.now -= 1;
                        v.busy_calls.remove(&call);
                        v.got.push((String::new(), body));
                    }
                    let _ = req.respond(tiny_http::Response::from_string("ok"));
                }
            });
        }
        let dir = temp_dir("lanes");
        let d = Dispatcher::open(&dir);
        d.configure(vec![EndpointPolicy {
            concurrency: 3,
            pipeline: 1,
            rate_limit: None,
            nats: None,
            ..policy("crm", &[50])
        }]);
        for i in 0..12 {
            for e in ["start", "answer", "end"] {
                d.submit(delivery("crm", &url, &format!("c{i}"), e));
            }
        }
        wait_until(Duration::from_secs(10), || {
            seen.lock().unwrap().got.len() >= 36
        });
        let v = seen.lock().unwrap();
        assert_eq!(v.got.len(), 36);
        assert!(v.most > 1, "calls were sent one at a time");
        assert!(v.most <= 3, "{} requests at once, concurrency is 3", v.most);
        assert!(
            !v.same_call_overlap,
            "two events of one call were in flight at once"
        );
        for (call, events) in per_call(&v.got) {
            assert_eq!(events, ["start", "answer", "end"], "{call} in order");
        }
        drop(v);
        d.shutdown();
        server.unblock();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_burst_goes_out_pipelined_on_one_connection_each_call_in_order() {
        // A server that reads pipelined requests the way HTTP/1.1 servers do (bytes after one
        // request are the next one's) and answers each in order; it counts its connections
        // and how many requests each read brought.
        use crate::core::http::plain::tests::{complete_request, server};
        use std::io::{Read, Write};
        #[derive(Default)]
        struct Seen {
            reads: usize,
            bodies: Vec<(String, String)>,
        }
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sn = seen.clone();
        let (base, connections) = server(move |_, mut s| {
            let (mut got, mut buf) = (Vec::new(), [0u8; 65536]);
            loop {
                let n = match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                sn.lock().unwrap().reads += 1;
                got.extend_from_slice(&buf[..n]);
                let mut answers = Vec::new();
                while let Some((len, body)) = complete_request(&got) {
                    let body = String::from_utf8_lossy(&got[body]).into_owned();
                    got.drain(..len);
                    sn.lock().unwrap().bodies.push((String::new(), body));
                    answers.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
                if s.write_all(&answers).is_err() {
                    return;
                }
            }
        });
        let url = format!("{base}/hook");
        let dir = temp_dir("pipeline");
        let d = Dispatcher::open(&dir);
        d.configure(vec![EndpointPolicy {
            concurrency: 1,
            pipeline: 16,
            ..policy("crm", &[50])
        }]);
        let mut burst = Vec::new();
        for e in ["start", "answer", "end"] {
            for i in 0..16 {
                burst.push(delivery("crm", &url, &format!("c{i}"), e));
            }
        }
        d.submit_many(burst);
        wait_until(Duration::from_secs(10), || {
            seen.lock().unwrap().bodies.len() >= 48
        });
        let v = seen.lock().unwrap();
        assert_eq!(v.bodies.len(), 48, "every delivery arrived once");
        for (call, events) in per_call(&v.bodies) {
            assert_eq!(events, ["start", "answer", "end"], "{call} in order");
        }
        assert_eq!(
            connections.load(Ordering::SeqCst),
            1,
            "one kept-alive connection"
        );
        assert!(
            v.reads <= 12,
            "48 requests came in {} reads: not pipelined",
            v.reads
        );
        eprintln!("48 requests of 16 calls: {} reads", v.reads);
        drop(v);
        d.shutdown();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_endpoint_that_drops_pipelined_requests_still_gets_every_one_and_status_says_so() {
        // An old-style server: one read per request; what else the read brought is lost.
        use crate::core::http::plain::tests::{complete_request, server};
        use std::io::{Read, Write};
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let (base, _) = server(move |_, mut s| {
            let mut buf = [0u8; 65536];
            while let Ok(n) = s.read(&mut buf) {
                let Some((_, body)) = complete_request(&buf[..n]) else {
                    return;
                };
                let body = String::from_utf8_lossy(&buf[body]).into_owned();
                g.lock().unwrap().push((String::new(), body));
                let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if s.write_all(ok).is_err() {
                    return;
                }
            }
        });
        let url = format!("{base}/hook");
        let dir = temp_dir("no-pipeline");
        let d = Dispatcher::open(&dir);
        d.configure(vec![EndpointPolicy {
            concurrency: 1,
            timeout: Duration::from_millis(500),
            ..policy("crm", &[50])
        }]);
        let burst = (0..6)
            .map(|i| delivery("crm", &url, &format!("c{i}"), "start"))
            .collect();
        d.submit_many(burst);
        wait_until(Duration::from_secs(10), || got.lock().unwrap().len() >= 6);
        let mut bodies: Vec<String> = got.lock().unwrap().iter().map(|(_, b)| b.clone()).collect();
        bodies.sort();
        assert_eq!(
            bodies,
            ["c0:start", "c1:start", "c2:start", "c3:start", "c4:start", "c5:start"],
            "every call's start arrived once"
        );
        let status = status_text(&d);
        assert!(status.contains("one request at a time"), "{status}");
        let row = d
            .status_rows()
            .into_iter()
            .find(|r| r.name == "crm")
            .unwrap();
        assert_eq!(
            (row.delivered, row.attempts, row.retries),
            (6, 6, 0),
            "the unanswered requests were sent again, not counted as failed attempts"
        );
        d.shutdown();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn shutdown_spools_and_the_next_open_delivers_in_order() {
        let dir = temp_dir("restart");
        let (port, url) = refused_endpoint();
        {
            let d = Dispatcher::open(&dir);
            d.configure(vec![policy("crm", &[60_000])]);
            for e in ["start", "answer", "end"] {
                d.submit(delivery("crm", &url, "c1", e));
            }
            std::thread::sleep(Duration::from_millis(300));
            d.shutdown();
        }
        let srv = Server::on_port(port, 0, 200); // the endpoint is back
        let d = Dispatcher::open(&dir);
        d.configure(vec![policy("crm", &[60_000])]);
        let bodies: Vec<String> = srv.wait(3).into_iter().map(|(_, b)| b).collect();
        assert_eq!(bodies, ["c1:start", "c1:answer", "c1:end"]);
        d.shutdown();
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// What a spool row written by an incompatible version, or damaged, looks like: the first
    /// row of `table` in the spool file of `dir` (the spool closed) replaced by `bytes`.
    /// Returns its sequence number.
    fn damage_first_row(dir: &Path, table: &str, bytes: &[u8]) -> u64 {
        let def = redb::TableDefinition::<(&str, u64), &[u8]>::new(table);
        let db = redb::Database::open(dir.join("spool.redb")).unwrap();
        let w = db.begin_write().unwrap();
        let first = {
            let mut t = w.open_table(def).unwrap();
            let (section, first) = {
                let row = redb::ReadableTable::first(&t).unwrap().unwrap();
                let (section, seq) = row.0.value();
                (section.to_string(), seq)
            };
            t.insert((section.as_str(), first), bytes).unwrap();
            first
        };
        w.commit().unwrap();
        first
    }

    /// Waits until `done` (checked every 20 ms), at most `limit`; the caller asserts after.
    fn wait_until(limit: Duration, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + limit;
        while !done() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn an_unreadable_spool_row_is_set_aside_once_and_the_rows_behind_it_go() {
        let dir = temp_dir("unreadable");
        let (port, url) = refused_endpoint();
        {
            let d = Dispatcher::open(&dir);
            d.configure(vec![policy("crm", &[60_000])]);
            d.submit(delivery("crm", &url, "c1", "end"));
            d.submit(delivery("crm", &url, "c2", "end"));
            std::thread::sleep(Duration::from_millis(300));
            d.shutdown();
        }
        // c1's row is not a delivery any more.
        let first = damage_first_row(&dir, "pending", b"{not a delivery");
        let srv = Server::on_port(port, 0, 200);
        let d = Dispatcher::open(&dir);
        d.configure(vec![policy("crm", &[60_000])]);
        let bodies: Vec<String> = srv.wait(1).into_iter().map(|(_, b)| b).collect();
        assert_eq!(
            bodies,
            ["c2:end"],
            "the row behind the bad one is delivered"
        );
        wait_until(Duration::from_secs(5), || {
            d.spool.unreadable_len().unwrap() > 0
        });
        assert_eq!(d.spool.unreadable_len().unwrap(), 1, "kept, not deleted");
        assert_eq!(d.spool.pending_len().unwrap(), 0);
        let shared = d.sections().get("crm").unwrap().shared.clone();
        assert_eq!(
            shared.stats.unreadable.load(Ordering::Relaxed),
            1,
            "counted once"
        );
        d.shutdown();
        drop((shared, d));
        let db = redb::Database::open(dir.join("spool.redb")).unwrap();
        let r = db.begin_read().unwrap();
        let aside = r
            .open_table(redb::TableDefinition::<(&str, u64), &[u8]>::new(
                "unreadable",
            ))
            .unwrap();
        let row = aside.get(("crm", first)).unwrap().unwrap();
        assert_eq!(row.value(), b"{not a delivery", "its bytes as they were");
        drop((aside, r, db));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn one_unreadable_dead_letter_does_not_hide_the_others() {
        let srv = Server::start(2, 404);
        let dir = temp_dir("dead-unreadable");
        {
            let d = Dispatcher::open(&dir);
            d.configure(vec![policy("crm", &[50])]);
            d.submit(delivery("crm", &srv.url, "c1", "end"));
            d.submit(delivery("crm", &srv.url, "c2", "end"));
            wait_until(Duration::from_secs(5), || {
                d.dead_letters(None).unwrap().len() >= 2
            });
            assert_eq!(d.dead_letters(None).unwrap().len(), 2);
            d.shutdown();
        }
        damage_first_row(&dir, "dead", b"{damaged");
        let d = Dispatcher::open(&dir);
        let left = d.dead_letters(Some("crm")).unwrap();
        assert_eq!(left.len(), 1, "the readable dead letter is still listed");
        d.shutdown();
        drop(d);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_4xx_is_dead_lettered_at_once_and_replay_resends_it() {
        let srv = Server::start(1, 404);
        let dir = temp_dir("dead");
        let d = Dispatcher::open(&dir);
        d.configure(vec![policy("crm", &[50, 50])]);
        d.submit(delivery("crm", &srv.url, "c1", "end"));
        std::thread::sleep(Duration::from_millis(300));
        assert!(srv.got.lock().unwrap().is_empty());
        assert!(errors_text(&d, None).contains("Dead letters (1)"));
        assert_eq!(d.replay(Some("crm")), 1);
        assert_eq!(srv.wait(1).len(), 1);
        assert_eq!(srv.fail_first.load(Ordering::SeqCst), 0);
        d.shutdown();
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A local endpoint whose answer depends on the request body: `rule(body)` gives the
    /// status and how long to hold the answer. Records each request's body and arrival.
    struct RuleServer {
        url: String,
        seen: Arc<Mutex<Vec<(String, std::time::Instant)>>>,
        ok: Arc<Mutex<Vec<(String, std::time::Instant)>>>,
        server: Arc<tiny_http::Server>,
    }

    impl RuleServer {
        fn start(threads: usize, rule: fn(&str) -> (u16, Duration)) -> RuleServer {
            let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
            let url = format!(
                "http://127.0.0.1:{}/hook",
                server.server_addr().to_ip().unwrap().port()
            );
            let seen = Arc::new(Mutex::new(Vec::new()));
            let ok = Arc::new(Mutex::new(Vec::new()));
            for _ in 0..threads {
                let (srv, seen, ok) = (server.clone(), seen.clone(), ok.clone());
                std::thread::spawn(move || {
                    for mut req in srv.incoming_requests() {
                        let mut body = String::new();
                        let _ = req.as_reader().read_to_string(&mut body);
                        let at = std::time::Instant::now();
                        seen.lock().unwrap().push((body.clone(), at));
                        let (code, hold) = rule(&body);
                        std::thread::sleep(hold);
                        if code == 200 {
                            ok.lock().unwrap().push((body, at));
                        }
                        let _ = req
                            .respond(tiny_http::Response::from_string("ok").with_status_code(code));
                    }
                });
            }
            RuleServer {
                url,
                seen,
                ok,
                server,
            }
        }

        /// Waits until `pred` holds for the bodies answered 200 (with arrival times).
        fn wait_ok(
            &self,
            what: &str,
            pred: impl Fn(&[(String, std::time::Instant)]) -> bool,
        ) -> Vec<(String, std::time::Instant)> {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let got = self.ok.lock().unwrap().clone();
                if pred(&got) {
                    return got;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "timed out waiting for {what}; got {} ok",
                    got.len()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }

        fn seen(&self, pred: impl Fn(&str) -> bool) -> usize {
            self.seen
                .lock()
                .unwrap()
                .iter()
                .filter(|(b, _)| pred(b))
                .count()
        }
    }

    impl Drop for RuleServer {
        fn drop(&mut self) {
            self.server.unblock();
        }
    }

    /// Runs `f` while another thread calls [`Dispatcher::tick`] every 40 ms, as the
    /// correlation thread does on its polls.
    fn ticking<T>(d: &Dispatcher, f: impl FnOnce() -> T) -> T {
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst); // also when `f` fails the test
            }
        }
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    d.tick();
                    std::thread::sleep(Duration::from_millis(40));
                }
            });
            let _done = Done(&done);
            f()
        })
    }

    #[test]
    fn three_hundred_failing_calls_do_not_hold_back_a_healthy_one() {
        // Every `bad…` call is answered 503 (retried in 30 s); `good` is answered at once.
        let srv = RuleServer::start(4, |body| {
            if body.starts_with("bad") {
                (503, Duration::ZERO)
            } else {
                (200, Duration::ZERO)
            }
        });
        let dir = temp_dir("poisoned");
        let d = Dispatcher::open(&dir);
        d.configure(vec![policy("crm", &[30_000])]);
        ticking(&d, || {
            for i in 0..300 {
                for e in ["start", "answer", "end"] {
                    d.submit(delivery("crm", &srv.url, &format!("bad{i}"), e));
                }
            }
            // All 900 are spooled, and more than a drain window's worth (256 rows) of failing
            // calls wait at the spool's head for their retry.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while srv.seen(|b| b.ends_with(":start")) < 86
                || d.status_rows()
                    .iter()
                    .find(|r| r.name == "crm")
                    .map(|r| r.retrying)
                    != Some(900)
            {
                assert!(std::time::Instant::now() < deadline, "{}", status_text(&d));
                std::thread::sleep(Duration::from_millis(10));
            }
            let sent = std::time::Instant::now();
            d.submit(delivery("crm", &srv.url, "good", "start"));
            d.submit(delivery("crm", &srv.url, "good", "end"));
            let got = srv.wait_ok("the healthy call", |g| {
                g.iter().filter(|(b, _)| b.starts_with("good")).count() == 2
            });
            let last = got.iter().map(|(_, at)| *at).max().unwrap();
            let took = last.saturating_duration_since(sent);
            eprintln!("healthy call behind 300 failing ones delivered in {took:?}");
            assert!(
                took < Duration::from_secs(1),
                "the healthy call took {took:?} behind 300 failing calls"
            );
            let bodies: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
            assert_eq!(bodies, ["good:start", "good:end"], "in order");
            assert_eq!(
                srv.seen(|b| b.starts_with("bad") && !b.ends_with(":start")),
                0,
                "a failing call's later events wait behind its first"
            );
        });
        d.shutdown();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_hanging_call_delays_only_itself() {
        // `hang…` is held 3 s (timeout 5 s) and then accepted; the others are answered at once.
        let srv = RuleServer::start(8, |body| {
            if body.starts_with("hang") {
                (200, Duration::from_secs(3))
            } else {
                (200, Duration::ZERO)
            }
        });
        let dir = temp_dir("hang");
        let d = Dispatcher::open(&dir);
        d.configure(vec![policy("crm", &[50])]);
        ticking(&d, || {
            // The hanging call and five others handed over together (one burst) ...
            let mut burst = vec![delivery("crm", &srv.url, "hang", "start")];
            for i in 0..5 {
                burst.push(delivery("crm", &srv.url, &format!("ok{i}"), "start"));
            }
            let sent = std::time::Instant::now();
            d.submit_many(burst);
            let got = srv.wait_ok("five healthy starts", |g| {
                g.iter().filter(|(b, _)| b.starts_with("ok")).count() == 5
            });
            let slowest = got
                .iter()
                .map(|(_, at)| at.saturating_duration_since(sent))
                .max()
                .unwrap();
            eprintln!("5 calls in the hanging call's burst delivered within {slowest:?}");
            assert!(
                slowest < Duration::from_millis(500),
                "calls in a burst with a hanging call took {slowest:?}"
            );
            // ... and calls that come later, while it still hangs.
            for i in 0..5 {
                let sent = std::time::Instant::now();
                d.submit(delivery("crm", &srv.url, &format!("late{i}"), "end"));
                let got = srv.wait_ok("a later call", |g| {
                    g.iter().any(|(b, _)| b == &format!("late{i}:end"))
                });
                let at = got
                    .iter()
                    .find(|(b, _)| b == &format!("late{i}:end"))
                    .unwrap()
                    .1;
                let took = at.saturating_duration_since(sent);
                assert!(
                    took < Duration::from_millis(500),
                    "late{i} took {took:?} while another call hung"
                );
            }
            assert_eq!(
                srv.ok.lock().unwrap().len(),
                10,
                "the hanging call is still held"
            );
            srv.wait_ok("the hanging call", |g| {
                g.iter().any(|(b, _)| b == "hang:start")
            });
        });
        d.shutdown();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_panicking_lane_restarts_and_its_delivery_still_arrives() {
        crate::core::instrument::fault::arm(
            crate::core::instrument::fault::Place::Worker,
            "PANIC-IN-LANE",
        );
        let srv = Server::start(0, 200);
        let dir = temp_dir("panic");
        let d = Dispatcher::open(&dir);
        d.configure(vec![policy("crm", &[50])]);
        let mut boom = delivery("crm", &srv.url, "c1", "start");
        boom.request.body = b"c1:start PANIC-IN-LANE".to_vec();
        d.submit(boom);
        d.submit(delivery("crm", &srv.url, "c1", "end"));
        d.submit(delivery("crm", &srv.url, "c2", "end"));
        let got = srv.wait(3);
        let c1: Vec<&str> = got
            .iter()
            .map(|(_, b)| b.as_str())
            .filter(|b| b.starts_with("c1"))
            .collect();
        assert_eq!(
            c1,
            ["c1:start PANIC-IN-LANE", "c1:end"],
            "nothing lost, in order"
        );
        assert!(got.iter().any(|(_, b)| b == "c2:end"));
        let status = status_text(&d);
        assert!(status.contains("worker panics: 1"), "{status}");
        d.shutdown();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_spool_that_cannot_be_opened_is_loud_and_deliveries_still_go_out() {
        // A regular file where the spool directory should be.
        let dir = temp_dir("unopenable");
        let file = dir.join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let srv = Server::start(2, 503); // the first two attempts fail: retried from memory
        let d = Dispatcher::open(&file.join("webhook"));
        d.configure(vec![policy("crm", &[50, 50, 50])]);
        let status = status_text(&d);
        assert!(status.contains("Spool: UNAVAILABLE"), "{status}");
        for e in ["start", "answer", "end"] {
            d.submit(delivery("crm", &srv.url, "c1", e));
        }
        let bodies: Vec<String> = srv.wait(3).into_iter().map(|(_, b)| b).collect();
        assert_eq!(bodies, ["c1:start", "c1:answer", "c1:end"]);
        assert!(status_text(&d).contains("UNAVAILABLE"));
        d.shutdown();
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A tmpfs of `kb` KiB mounted on a fresh directory (root only); `None` where mounting is
    /// not possible (and not CI).
    fn tiny_tmpfs(name: &str, kb: u64) -> Option<PathBuf> {
        let dir = temp_dir(name);
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kb}k"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "cannot mount a tmpfs (root needed)"
            );
            eprintln!("SKIP: cannot mount a tmpfs here");
            return None;
        }
        Some(dir)
    }

    fn unmount(dir: &Path) {
        let _ = std::process::Command::new("umount").arg(dir).status();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Fills `dir`'s file system, leaving less than the spool's reserve free.
    fn fill(dir: &Path) -> PathBuf {
        let filler = dir.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        use std::io::Write as _;
        while f.write_all(&chunk).is_ok() {}
        let _ = f.flush();
        filler
    }

    #[test]
    fn a_full_disk_is_loud_deliveries_wait_in_memory_and_reach_disk_when_it_frees() {
        let Some(mnt) = tiny_tmpfs("enospc", 8 * 1024) else {
            return;
        };
        let srv = Server::start(6, 503);
        let d = Dispatcher::open(&mnt);
        d.configure(vec![policy(
            "crm",
            &[100, 100, 100, 100, 100, 100, 100, 100],
        )]);
        let filler = fill(&mnt);
        for c in ["c1", "c2"] {
            for e in ["start", "answer", "end"] {
                d.submit(delivery("crm", &srv.url, c, e));
            }
        }
        // The failing attempts cannot be spooled on disk: the spool says so, loudly.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !status_text(&d).contains("NOT WRITABLE") {
            assert!(std::time::Instant::now() < deadline, "{}", status_text(&d));
            std::thread::sleep(Duration::from_millis(20));
        }
        // Still delivered, from memory, each call in order.
        let got = srv.wait(6);
        let calls = per_call(&got);
        for c in ["c1", "c2"] {
            assert_eq!(calls[c], ["start", "answer", "end"], "{}", status_text(&d));
        }
        // A dead letter now waits in memory; once the disk has room it goes there.
        srv.fail_first.store(1, Ordering::SeqCst);
        let mut gone = delivery("crm", &srv.url, "c3", "end");
        gone.request.headers.clear();
        let srv404 = Server::start(1, 404);
        gone.request.url = srv404.url.clone();
        d.submit(gone);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !errors_text(&d, None).contains("Dead letters (1)") {
            assert!(
                std::time::Instant::now() < deadline,
                "{}",
                errors_text(&d, None)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::remove_file(&filler).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            d.spool.maintain();
            let status = status_text(&d);
            if status.starts_with("Spool: ok") && !status.contains("in memory") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{status}");
            std::thread::sleep(Duration::from_millis(100));
        }
        d.shutdown();
        drop(d);
        // The dead letter is on disk: a new dispatcher on the same spool lists it.
        let d2 = Dispatcher::open(&mnt);
        assert!(errors_text(&d2, None).contains("Dead letters (1)"));
        d2.shutdown();
        drop(d2);
        unmount(&mnt);
    }

    #[test]
    fn a_corrupt_spool_is_set_aside() {
        let dir = temp_dir("corrupt");
        std::fs::write(
            dir.join("spool.redb"),
            b"this is not a redb file, just garbage bytes",
        )
        .unwrap();
        let d = Dispatcher::open(&dir);
        let aside = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("spool.redb.corrupt-")
            });
        assert!(aside, "the bad file was moved aside");
        d.shutdown();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
