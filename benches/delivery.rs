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

/// A section's policy: 5 s timeout, one retry, 4 lanes, `pipeline` as webhook.conf's default
/// (`RW_BENCH_PIPELINE=1`: one request per write); HTTP unless `nats`.
fn policy(name: String, secret: Option<&str>, nats: Option<NatsTarget>) -> EndpointPolicy {
    EndpointPolicy {
        name,
        timeout: Duration::from_secs(5),
        retry: vec![Duration::from_secs(1)],
        secret: secret.map(String::from),
        tls_ca: None,
        concurrency: 4,
        pipeline: std::env::var("RW_BENCH_PIPELINE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(res_webhook::core::config::webhook::DEFAULT_PIPELINE),
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

/// The User-Agent every variant sends (the client's own).
const USER_AGENT: &str = "res_webhook/0.1 (Asterisk)";

/// One POST through ureq-proto's sans-IO client over a kept-alive socket: the request written
/// into one buffer and sent in one write, the answer read until its body ends (at most 4 KiB
/// kept). The status.
fn proto_post(
    conn: &mut TcpStream,
    url: &str,
    body: &[u8],
    out: &mut [u8],
    input: &mut [u8],
) -> u16 {
    use ureq_proto::client::{Call, RecvBodyResult, RecvResponseResult, SendRequestResult};
    let request = ureq_proto::http::Request::post(url)
        .header("content-type", "application/json")
        .header("user-agent", USER_AGENT)
        .header("content-length", body.len())
        .body(())
        .unwrap();
    let mut call = Call::new(request).unwrap().proceed();
    let mut n = 0;
    while !call.can_proceed() {
        n += call.write(&mut out[n..]).unwrap();
    }
    let Ok(Some(SendRequestResult::SendBody(mut call))) = call.proceed() else {
        panic!("no body state")
    };
    let mut sent = 0;
    while !call.can_proceed() {
        let (used, o) = call.write(&body[sent..], &mut out[n..]).unwrap();
        sent += used;
        n += o;
    }
    conn.write_all(&out[..n]).unwrap();
    let mut call = call.proceed().unwrap();
    let mut have = 0;
    let (status, mut used) = loop {
        let got = conn.read(&mut input[have..]).unwrap();
        assert!(got > 0, "closed");
        have += got;
        if let (u, Some(resp)) = call.try_response(&input[..have], false).unwrap() {
            break (resp.status().as_u16(), u);
        }
    };
    let mut call = match call.proceed().unwrap() {
        RecvResponseResult::RecvBody(c) => c,
        RecvResponseResult::Cleanup(_) => return status,
        RecvResponseResult::Redirect(_) => panic!("redirect"),
    };
    let mut excerpt = [0u8; 4096];
    let mut kept = 0;
    loop {
        let (i, o) = call.read(&input[used..have], &mut excerpt[kept..]).unwrap();
        used += i;
        kept += o;
        if call.can_proceed() {
            break;
        }
        input.copy_within(used..have, 0);
        have -= used;
        used = 0;
        let got = conn.read(&mut input[have..]).unwrap();
        assert!(got > 0, "closed");
        have += got;
    }
    match call.proceed() {
        Some(RecvBodyResult::Cleanup(c)) => assert!(!c.must_close_connection()),
        _ => panic!("no cleanup"),
    }
    status
}

/// The same POST with the head written by hand and the answer parsed with `httparse`
/// (Content-Length bodies only: this is a measuring stick, not a client).
fn httparse_post(
    conn: &mut TcpStream,
    (host, path): (&str, &str),
    body: &[u8],
    out: &mut Vec<u8>,
    input: &mut [u8],
) -> u16 {
    out.clear();
    write!(
        out,
        "POST {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: {USER_AGENT}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    out.extend_from_slice(body);
    conn.write_all(out).unwrap();
    let mut have = 0;
    let (status, head, len) = loop {
        let got = conn.read(&mut input[have..]).unwrap();
        assert!(got > 0, "closed");
        have += got;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = resp.parse(&input[..have]).unwrap() {
            let len: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap();
            break (resp.code.unwrap(), head, len);
        }
    };
    while have < head + len {
        let got = conn.read(&mut input[have..]).unwrap();
        assert!(got > 0, "closed");
        have += got;
    }
    status
}

/// The CPU one request costs the sending thread: through the module's HTTP client (for this
/// `http://` URL its plain path); through ureq as `https://` URLs still go (one coalesced
/// write, one probe per reuse); through ureq-proto's sans-IO client over a kept-alive socket;
/// with the head written by hand and the answer parsed by `httparse`; and, as the floor, the
/// same bytes written and the answer read on a bare keep-alive socket. With requests back to
/// back (warm caches) and 50 ms apart, as at 20 calls/s (everything cold again).
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
    let client = client::Client::new(Duration::from_secs(5), None, 1).unwrap();
    let agent = client::agent(Duration::from_secs(5), None, 1).unwrap();
    let addr = url.trim_start_matches("http://").to_string();
    let connect = || {
        let s = TcpStream::connect(&addr).unwrap();
        s.set_nodelay(true).unwrap();
        s
    };
    let (mut raw, mut proto, mut hand) = (connect(), connect(), connect());
    let mut bytes = format!(
        "POST /crm HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    let only = std::env::var("RW_GAPS").unwrap_or_else(|_| "0,50".into());
    for gap_ms in only.split(',').filter_map(|g| g.trim().parse::<u64>().ok()) {
        let n = if gap_ms == 0 {
            n
        } else {
            (n / 50).clamp(20, 400)
        };
        let mut cpu = [Duration::ZERO; 5];
        let mut answer = [0u8; 4096];
        let mut out = vec![0u8; 16 * 1024];
        let mut input = vec![0u8; 16 * 1024];
        let mut head = Vec::with_capacity(2048);
        for _ in 0..n {
            std::thread::sleep(Duration::from_millis(gap_ms));
            let t = thread_cpu();
            let o = client::send(&client, &req, &[]);
            cpu[0] += thread_cpu() - t;
            assert!(
                matches!(o.attempt, Attempt::Status { code: 200, .. }),
                "{o:?}"
            );
            std::thread::sleep(Duration::from_millis(gap_ms));
            let t = thread_cpu();
            let o = client::send_with_ureq(&agent, &req, &[]);
            cpu[4] += thread_cpu() - t;
            assert!(
                matches!(o.attempt, Attempt::Status { code: 200, .. }),
                "{o:?}"
            );
            std::thread::sleep(Duration::from_millis(gap_ms));
            let t = thread_cpu();
            let code = proto_post(&mut proto, &req.url, &body, &mut out, &mut input);
            cpu[1] += thread_cpu() - t;
            assert_eq!(code, 200);
            std::thread::sleep(Duration::from_millis(gap_ms));
            let t = thread_cpu();
            let code = httparse_post(&mut hand, (&addr, "/crm"), &body, &mut head, &mut input);
            cpu[2] += thread_cpu() - t;
            assert_eq!(code, 200);
            std::thread::sleep(Duration::from_millis(gap_ms));
            let t = thread_cpu();
            raw.write_all(&bytes).unwrap();
            let got = raw.read(&mut answer).unwrap();
            cpu[3] += thread_cpu() - t;
            assert!(answer[..got].starts_with(b"HTTP/1.1 200"));
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
        let bare = per(cpu[3]);
        println!(
            "request cost, {gap_ms} ms apart ({n} each), sender CPU per request: client {:.1} µs ({:.1}x), ureq {:.1} µs ({:.1}x), proto {:.1} µs ({:.1}x), httparse {:.1} µs ({:.1}x), bare socket {bare:.1} µs",
            per(cpu[0]),
            per(cpu[0]) / bare,
            per(cpu[4]),
            per(cpu[4]) / bare,
            per(cpu[1]),
            per(cpu[1]) / bare,
            per(cpu[2]),
            per(cpu[2]) / bare,
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
