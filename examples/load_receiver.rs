//! The load benchmark's receiver: counts webhooks and measures how long after hangup each
//! `end` arrived. Every request carries `t` = hangup time in unix milliseconds (query string or
//! JSON body). Runs for `--seconds N`, then prints one JSON line of statistics.
//!
//! `cargo run --release --example load_receiver -- 127.0.0.1:8099 --seconds 60`

use std::io::Read;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

fn t_of(url: &str, body: &str) -> Option<f64> {
    let from_query = url.split_once('?').and_then(|(_, q)| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "t")
            .and_then(|(_, v)| v.parse().ok())
    });
    from_query.or_else(|| {
        let j: serde_json::Value = serde_json::from_str(body).ok()?;
        j["t"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .or(j["t"].as_f64())
    })
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
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut delays: Vec<f64> = Vec::new();
    let mut count = 0u64;
    let mut calls = std::collections::HashSet::new();
    let mut last_report = Instant::now();
    while Instant::now() < deadline {
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
        if let Some(t) = t_of(req.url(), &body) {
            delays.push(now_ms() - t);
        }
        if let Some((_, q)) = req.url().split_once('?') {
            if let Some((_, id)) = form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "id") {
                calls.insert(id.into_owned());
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
        "{{\"requests\":{count},\"distinct_calls\":{},\"end_delay_ms_p50\":{:.1},\"end_delay_ms_p99\":{:.1}}}",
        calls.len(),
        q(0.5),
        q(0.99)
    );
}
