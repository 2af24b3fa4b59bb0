//! Delivery throughput (SPEC §8: ≥ 5,000 requests/s to a local keep-alive receiver on 2 cores):
//! N deliveries through the dispatcher to one endpoint, and spread over three, each a local
//! keep-alive HTTP server. Also the lookup latency: a cache miss to a local CRM, and a hit; and
//! the sender CPU of one request through the HTTP client against a bare socket (`RW_BENCH=client`).
//!
//! Also publishes per second into a local JetStream (`type = nats`), when nats-server is
//! installed.
//!
//! `cargo bench --bench delivery` (needs ASTERISK_INCLUDE_DIR like every build).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use res_webhook::core::config::raw::RawConfig;
use res_webhook::core::config::Config;
use res_webhook::core::delivery::nats::NatsTarget;
use res_webhook::core::delivery::spool::{Spool, Spooled};
use res_webhook::core::delivery::{Delivery, Dispatcher, EndpointPolicy};
use res_webhook::core::http::client;
use res_webhook::core::lookup::LookupService;
use res_webhook::core::model::attempt::Attempt;
use res_webhook::core::model::request::{HttpRequest, Method};

/// A lean keep-alive receiver (a thread per connection, `httparse` for the request head) that
/// counts requests, so the benchmark measures the sender rather than the receiver. Lookups get
/// a CRM answer.
fn receiver() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let c = c.clone();
            std::thread::spawn(move || serve(conn, &c));
        }
    });
    (url, count)
}

/// Answers every request on one connection until the client closes it.
fn serve(mut conn: TcpStream, count: &AtomicUsize) {
    let _ = conn.set_nodelay(true);
    const ANSWER: &str = r#"{"contact_name":"Ivan","responsible":"100"}"#;
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{ANSWER}",
        ANSWER.len()
    );
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0;
    loop {
        // One request: head, then Content-Length bytes of body.
        let (head_len, body_len) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&buf[..have]) {
                let len = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .unwrap_or(0usize);
                break (n, len);
            }
            match conn.read(&mut buf[have..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => have += n,
            }
        };
        while have < head_len + body_len {
            match conn.read(&mut buf[have..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => have += n,
            }
        }
        buf.copy_within(head_len + body_len..have, 0);
        have -= head_len + body_len;
        count.fetch_add(1, Ordering::Relaxed);
        if conn.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// The signing secret of the HTTP endpoints.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The body every benchmark delivery carries.
const BODY: &[u8] = br#"{"call_id":"1700000000.1","event":"end","caller":"79161234567","status":"ANSWER","duration":42}"#;

/// A section's policy: 5 s timeout, one retry, 4 lanes; HTTP unless `nats`.
fn policy(name: String, secret: Option<&str>, nats: Option<NatsTarget>) -> EndpointPolicy {
    EndpointPolicy {
        name,
        timeout: Duration::from_secs(5),
        retry: vec![Duration::from_secs(1)],
        secret: secret.map(String::from),
        tls_ca: None,
        concurrency: 4,
        rate_limit: None,
        nats,
    }
}

/// Polls `done` every `every` until it reaches `n` (or `limit` passes since `started`); what
/// it reached and the seconds since `started`.
fn wait_for(
    n: usize,
    started: Instant,
    (every, limit): (Duration, Duration),
    done: impl Fn() -> usize,
) -> (usize, f64) {
    while done() < n && started.elapsed() < limit {
        std::thread::sleep(every);
    }
    (done(), started.elapsed().as_secs_f64())
}

fn throughput(endpoints: usize, n: usize) {
    let dir = std::env::temp_dir().join(format!(
        "rw-bench-delivery-{}-{endpoints}",
        std::process::id()
    ));
    let d = Dispatcher::open(&dir);
    let recv: Vec<(String, Arc<AtomicUsize>)> = (0..endpoints).map(|_| receiver()).collect();
    d.configure(
        (0..endpoints)
            .map(|i| policy(format!("ep{i}"), Some(SECRET), None))
            .collect(),
    );
    let body = BODY.to_vec();
    let started = Instant::now();
    for i in 0..n {
        let ep = i % endpoints;
        d.submit(Delivery {
            id: Delivery::new_id(),
            section: format!("ep{ep}"),
            call_id: format!("1700000000.{i}"),
            event: "end".into(),
            request: HttpRequest {
                method: Method::Post,
                url: format!("{}/hook", recv[ep].0),
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: body.clone(),
            },
            created_ms: 0,
        });
    }
    let (done, secs) = wait_for(
        n,
        started,
        (Duration::from_millis(1), Duration::from_secs(120)),
        || recv.iter().map(|r| r.1.load(Ordering::Relaxed)).sum(),
    );
    println!(
        "delivery throughput, {endpoints} endpoint(s): {done} signed JSON requests in {secs:.2} s = {:.0} requests/s",
        done as f64 / secs
    );
    d.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

/// A spool backlog: `n` deliveries already in the spool (as after an outage, all due now),
/// spread over `endpoints` sections; the dispatcher starts and drains them to local receivers.
fn drain(endpoints: usize, n: usize) {
    let dir =
        std::env::temp_dir().join(format!("rw-bench-drain-{}-{endpoints}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let recv: Vec<(String, Arc<AtomicUsize>)> = (0..endpoints).map(|_| receiver()).collect();
    let body = BODY.to_vec();
    {
        let spool = Spool::open(&dir);
        let items: Vec<(u64, Spooled)> = (0..n)
            .map(|i| {
                let ep = i % endpoints;
                // Three events per call, like a call's start, answer and end.
                let call = i / (3 * endpoints);
                let d = Delivery {
                    id: Delivery::new_id(),
                    section: format!("ep{ep}"),
                    call_id: format!("1700000000.{call}"),
                    event: "end".into(),
                    request: HttpRequest {
                        method: Method::Post,
                        url: format!("{}/hook", recv[ep].0),
                        headers: vec![("Content-Type".into(), "application/json".into())],
                        body: body.clone(),
                    },
                    created_ms: 0,
                };
                let s = Spooled {
                    delivery: d,
                    attempts: 1,
                    next_at_ms: 0,
                    last_error: "connection refused".into(),
                    unreachable: true,
                };
                (i as u64 + 1, s)
            })
            .collect();
        for chunk in items.chunks(10_000) {
            spool.push(chunk).unwrap();
        }
    }
    let d = Dispatcher::open(&dir);
    let started = Instant::now();
    d.configure(
        (0..endpoints)
            .map(|i| policy(format!("ep{i}"), Some(SECRET), None))
            .collect(),
    );
    let (done, secs) = wait_for(
        n,
        started,
        (Duration::from_millis(1), Duration::from_secs(120)),
        || recv.iter().map(|r| r.1.load(Ordering::Relaxed)).sum(),
    );
    println!(
        "spool drain, {endpoints} endpoint(s): {done} spooled signed JSON requests in {secs:.2} s = {:.0} requests/s",
        done as f64 / secs
    );
    d.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

fn lookup_latency() {
    let (url, count) = receiver();
    let conf = format!("[crm]\ntype = lookup\nurl = {url}/crm\nformat = form\nparam = phone => ${{number}}\ncache = 300\n");
    let (config, errors) = Config::from_raw(&RawConfig::parse_text("bench.conf", &conf));
    assert!(errors.is_empty());
    let svc = LookupService::new(Arc::new(RwLock::new(Arc::new(config))));
    let mut miss = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        let (_, st) = svc.lookup("crm", &format!("7916{i:07}"), "contact_name");
        miss.push(t.elapsed());
        assert_eq!(st.as_str(), "FOUND");
    }
    let mut hit = Vec::new();
    for i in 0..2000 {
        let t = Instant::now();
        svc.lookup("crm", &format!("7916{:07}", i % 200), "responsible");
        hit.push(t.elapsed());
    }
    miss.sort();
    hit.sort();
    let q = |v: &[Duration], p: f64| v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    println!(
        "lookup latency: cache miss to a local CRM p50 {:.0} µs p99 {:.0} µs; cache hit p50 {:.1} µs p99 {:.1} µs ({} requests reached the CRM for {} lookups)",
        q(&miss, 0.5), q(&miss, 0.99), q(&hit, 0.5), q(&hit, 0.99), count.load(Ordering::Relaxed), miss.len() + hit.len()
    );
}

/// Publishes per second from one node's dispatcher (a `type = nats` section, `concurrency`
/// 4) into a local nats-server's JetStream, acked; skipped when nats-server is not installed.
fn nats_throughput(n: usize) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = std::env::temp_dir().join(format!("rw-bench-nats-{}", std::process::id()));
    let Ok(mut server) = std::process::Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        println!("nats throughput: skipped (no nats-server)");
        return;
    };
    let url = format!("nats://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let count = |rt: &tokio::runtime::Runtime| -> u64 {
        rt.block_on(async {
            let Ok(c) = async_nats::connect(url.as_str()).await else {
                return 0;
            };
            let js = async_nats::jetstream::new(c);
            let Ok(mut s) = js
                .get_or_create_stream(async_nats::jetstream::stream::Config {
                    name: "PBX".into(),
                    subjects: vec!["pbx.>".into()],
                    storage: async_nats::jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
            else {
                return 0;
            };
            s.info().await.map(|i| i.state.messages).unwrap_or(0)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    count(&rt); // creates the stream
    let dir = std::env::temp_dir().join(format!("rw-bench-nats-spool-{}", std::process::id()));
    let d = Dispatcher::open(&dir);
    d.configure(vec![policy(
        "fleet".into(),
        None,
        Some(NatsTarget {
            servers: vec![url.clone()],
            ..Default::default()
        }),
    )]);
    let body = BODY.to_vec();
    let started = Instant::now();
    for i in 0..n {
        d.submit(Delivery {
            id: Delivery::new_id(),
            section: "fleet".into(),
            call_id: format!("1700000000.{i}"),
            event: "end".into(),
            request: HttpRequest {
                method: Method::Post,
                url: "pbx.in.end".into(),
                headers: vec![],
                body: body.clone(),
            },
            created_ms: 0,
        });
    }
    let (done, secs) = wait_for(
        n,
        started,
        (Duration::from_millis(100), Duration::from_secs(300)),
        || count(&rt) as usize,
    );
    println!(
        "nats throughput, 1 section: {done} acked JetStream publishes in {secs:.2} s = {:.0} publishes/s",
        done as f64 / secs
    );
    d.shutdown();
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(store);
}

/// The CPU one request costs the sending thread: through the module's HTTP client (ureq, one
/// coalesced write, one probe per reuse) and, as the floor, the same bytes written and the
/// answer read on a bare keep-alive socket. With requests back to back (warm caches) and 50 ms
/// apart, as at 20 calls/s (everything cold again).
fn request_cost(n: usize) {
    fn thread_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
    let (url, _) = receiver();
    let body = vec![b'x'; 900];
    let req = HttpRequest {
        method: Method::Post,
        url: format!("{url}/crm"),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.clone(),
    };
    let agent = client::agent(Duration::from_secs(5), None, 1).unwrap();
    let addr = url.trim_start_matches("http://").to_string();
    let mut raw = TcpStream::connect(&addr).unwrap();
    raw.set_nodelay(true).unwrap();
    let mut bytes = format!(
        "POST /crm HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    for gap_ms in [0u64, 50] {
        let n = if gap_ms == 0 {
            n
        } else {
            (n / 50).clamp(20, 400)
        };
        let (mut ureq_cpu, mut raw_cpu) = (Duration::ZERO, Duration::ZERO);
        let mut answer = [0u8; 4096];
        for _ in 0..n {
            std::thread::sleep(Duration::from_millis(gap_ms));
            let t = thread_cpu();
            let o = client::send(&agent, &req, &[]);
            ureq_cpu += thread_cpu() - t;
            assert!(
                matches!(o.attempt, Attempt::Status { code: 200, .. }),
                "{o:?}"
            );
            std::thread::sleep(Duration::from_millis(gap_ms));
            let t = thread_cpu();
            raw.write_all(&bytes).unwrap();
            let got = raw.read(&mut answer).unwrap();
            raw_cpu += thread_cpu() - t;
            assert!(answer[..got].starts_with(b"HTTP/1.1 200"));
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
        println!(
            "request cost, {gap_ms} ms apart ({n} each): client {:.1} µs, bare socket {:.1} µs of sender CPU per request ({:.1}x)",
            per(ureq_cpu),
            per(raw_cpu),
            per(ureq_cpu) / per(raw_cpu)
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run small then.
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 50_000 } else { 500 };
    // RW_BENCH=drain (or throughput, lookup) runs only that part.
    let only = std::env::var("RW_BENCH").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only == part;
    if run("throughput") {
        throughput(1, n);
        throughput(3, n);
    }
    if run("drain") {
        drain(1, n);
        drain(3, n);
    }
    if run("lookup") {
        lookup_latency();
    }
    if run("nats") {
        nats_throughput(n.min(20_000));
    }
    if run("client") {
        request_cost(n.min(20_000));
    }
}
