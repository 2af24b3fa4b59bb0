//! A tiny webhook receiver for the demo: prints every request it gets (method, path, signature
//! headers, body — JSON pretty-printed) and answers 200.
//!
//! `cargo run --example webhook_receiver -- 127.0.0.1:8099`

use std::io::Read;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".into());
    let server = tiny_http::Server::http(&addr).unwrap_or_else(|e| {
        eprintln!("cannot listen on {addr}: {e}");
        std::process::exit(1);
    });
    eprintln!("webhook receiver listening on http://{addr}/");
    for mut req in server.incoming_requests() {
        let mut body = String::new();
        let _ = req.as_reader().take(1 << 20).read_to_string(&mut body);
        let mut out = format!("{} {}", req.method(), req.url());
        for h in req.headers() {
            let name = h.field.as_str().as_str().to_ascii_lowercase();
            if name.starts_with("webhook-") || name.starts_with("x-") || name == "content-type" {
                out.push_str(&format!("\n  {}: {}", h.field, h.value));
            }
        }
        if !body.is_empty() {
            let shown = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(body);
            out.push_str(&format!("\n{shown}"));
        }
        println!("{out}\n");
        let _ = req.respond(tiny_http::Response::from_string("ok"));
    }
}
