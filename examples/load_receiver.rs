//! The load benchmark's receiver: counts webhooks and measures how long after hangup each
//! `end` arrived. An `end` (a request whose `event` is `end`, or that names no event) carries
//! `id` = the call and `t` = hangup time in unix milliseconds (query string or JSON body).
//! Runs for `--seconds N` (or until `--idle-exit S` seconds pass without a request, once
//! requests came), then prints one JSON line of statistics.
//!
//! `cargo run --release --example load_receiver -- 127.0.0.1:8099 --seconds 60 --idle-exit 3`

use std::io::Read;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// What the benchmark needs of one request: the event (`None` when the request names none:
/// then it counts as an `end`), the call id, and `t` = hangup time in unix ms. Query string
/// first, then a JSON body.
fn fields(url: &str, body: &str) -> (Option<String>, Option<String>, Option<f64>) {
    let mut event = None;
    let mut id = None;
    let mut t = None;
    if let Some((_, q)) = url.split_once('?') {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            match &*k {
                "event" => event = Some(v.into_owned()),
                "id" => id = Some(v.into_owned()),
                "t" => t = v.parse().ok(),
                _ => {}
            }
        }
    }
    if event.is_none() || id.is_none() || t.is_none() {
        if let Ok(j) = serde_json::from_str::<serde_json::Value>(body) {
            let s = |k: &str| match &j[k] {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            event = event.or_else(|| s("event"));
            id = id.or_else(|| s("id"));
            t = t.or_else(|| s("t").and_then(|v| v.parse().ok()));
        }
    }
    (event, id, t)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:8099".into());
    let seconds: u64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let server = tiny_http::Server::http(&addr).expect("listen");
    // --idle-exit S: stop early once requests came and then none for S seconds.
    let idle_exit: Option<Duration> = args
        .iter()
        .position(|a| a == "--idle-exit")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs_f64);
    let mut last_request: Option<Instant> = None;
    // Arrival of the first and the last request (unix ms): a drain's rate is count over the span.
    let mut first_ms: Option<f64> = None;
    let mut last_ms = 0.0;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut delays: Vec<f64> = Vec::new();
    let mut count = 0u64;
    let mut calls = std::collections::HashSet::new();
    let mut last_report = Instant::now();
    while Instant::now() < deadline {
        if let (Some(idle), Some(last)) = (idle_exit, last_request) {
            if last.elapsed() >= idle {
                break;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            eprintln!("progress requests={count} calls={}", calls.len());
            last_report = Instant::now();
        }
        let Ok(Some(mut req)) = server.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let mut body = String::new();
        let _ = req.as_reader().take(1 << 16).read_to_string(&mut body);
        count += 1;
        last_request = Some(Instant::now());
        let at = now_ms();
        first_ms.get_or_insert(at);
        last_ms = at;
        let (event, id, t) = fields(req.url(), &body);
        if event.as_deref().is_none_or(|e| e == "end") {
            if let Some(t) = t {
                delays.push(now_ms() - t);
            }
            if let Some(id) = id {
                calls.insert(id);
            }
        }
        let _ = req.respond(tiny_http::Response::from_string("ok"));
    }
    delays.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| {
        if delays.is_empty() {
            -1.0
        } else {
            delays[((delays.len() as f64 - 1.0) * p).round() as usize]
        }
    };
    println!(
        "{{\"requests\":{count},\"distinct_calls\":{},\"end_delay_ms_p50\":{:.1},\"end_delay_ms_p99\":{:.1},\"first_ms\":{:.0},\"last_ms\":{:.0}}}",
        calls.len(),
        q(0.5),
        q(0.99),
        first_ms.unwrap_or(0.0),
        last_ms
    );
}
