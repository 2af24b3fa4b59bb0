//! Live delivery guarantees (SPEC §6) against the sandboxed Asterisk: an endpoint that is down
//! across kill -9, a clean restart and a reload still gets every event of every call, in order;
//! a hanging endpoint never delays another; signatures verify with an independent HMAC; the CLI
//! shows, tests and replays; caller history survives restarts.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Json, Receiver, Sandbox};
use hmac::{Hmac, Mac};

fn kinds_by_call(got: &[common::Received]) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for r in got {
        let j = r.json();
        m.entry(j["call_id"].as_str().unwrap().to_string())
            .or_default()
            .push(j["event"].as_str().unwrap().to_string());
    }
    m
}

/// Column `col` (0 = the name) of section `name`'s row in `webhook show status`.
fn section_column(status: &str, name: &str, col: usize) -> Option<u32> {
    status
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))?
        .split_whitespace()
        .nth(col)?
        .parse()
        .ok()
}

#[test]
fn endpoint_down_across_kill9_restart_and_reload_gets_everything_in_order() {
    let rx = Receiver::start();
    rx.set_status(503); // down: every attempt fails (and is not recorded)
    let conf = "
[general]
retry = 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s
[crm]
type = webhook
url = @RECEIVER@/hook
param = call_id => ${call_id}
param = event => ${event}
param = caller => ${caller}
";
    let Some(pbx) = Sandbox::start("outage", conf, &rx.url()) else {
        return;
    };
    for i in 0..3 {
        assert!(pbx.call(&format!("7916130000{i}"), "74951234567", 500));
    }
    // The last call's `end` reaches the spool a moment after SIPp returns: wait for all 9.
    let status = pbx.wait_cli(
        "webhook show status",
        "9 events spooled",
        Duration::from_secs(10),
        |s| section_column(s, "crm", 6).is_some_and(|n| n >= 9),
    );
    assert_eq!(
        section_column(&status, "crm", 3),
        Some(0),
        "nothing delivered yet: {status}"
    );
    assert!(pbx.cli("webhook show errors crm").contains("HTTP 503"));

    pbx.kill9_and_start(); // a crash: the spool must be intact
    assert!(pbx.call("79161300003", "74951234568", 500)); // busy: start, end
    pbx.restart(); // a clean restart
    assert!(pbx.call("79161300004", "74951234567", 500));
    let out = pbx.cli("module reload res_webhook.so");
    assert!(!out.contains("rror"), "{out}");
    let log = pbx.log();
    assert!(
        log.contains("waiting from before"),
        "the spool was found after the crash"
    );
    assert!(
        log.lines().any(
            |l| l.contains("WARNING[") && l.contains("HTTP 503; attempt 1 failed, retrying in")
        ),
        "a retry is logged as a WARNING"
    );

    rx.set_status(200); // the endpoint recovers
    let got = rx.wait_for("every event of 5 calls", Duration::from_secs(30), |g| {
        let m = kinds_by_call(g);
        m.len() == 5
            && m.values()
                .all(|k| k.last().map(String::as_str) == Some("end"))
    });
    let by_call = kinds_by_call(&got);
    for (call, kinds) in &by_call {
        let mut dedup = kinds.clone();
        dedup.dedup(); // at-least-once: a re-send may repeat, but never reorder
        assert!(
            dedup == ["start", "answer", "end"] || dedup == ["start", "end"],
            "call {call}: {kinds:?}"
        );
    }
    // Same webhook-id on a re-send: an id never names two different events.
    let mut ids: HashMap<String, (String, String)> = HashMap::new();
    for r in &got {
        let j = r.json();
        let key = (j["call_id"].to_string(), j["event"].to_string());
        let id = r
            .header("webhook-id")
            .expect("webhook-id on every delivery")
            .to_string();
        assert_eq!(ids.entry(id).or_insert(key.clone()), &key);
    }
}

#[test]
fn a_hanging_endpoint_never_delays_another_and_signatures_verify() {
    let slow = Receiver::start();
    slow.set_delay(Duration::from_secs(8)); // accepts, then holds the connection
    let fast = Receiver::start();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let conf = format!(
        "
[slow]
type = webhook
url = {}/slow
timeout = 6000
param = call_id => ${{call_id}}
param = event => ${{event}}

[fast]
type = webhook
url = @RECEIVER@/fast
secret = {secret}
param = call_id => ${{call_id}}
param = event => ${{event}}
param = caller => ${{caller}}
",
        slow.url()
    );
    let Some(pbx) = Sandbox::start("isolation", &conf, &fast.url()) else {
        return;
    };
    let mut ended = Vec::new();
    for i in 0..3 {
        assert!(pbx.call(&format!("7916131000{i}"), "74951234568", 500));
        ended.push((format!("7916131000{i}"), Instant::now()));
    }
    let got = fast.wait_for(
        "3 ends at the fast endpoint",
        Duration::from_secs(10),
        |g| g.iter().filter(|r| r.json()["event"] == "end").count() == 3,
    );
    for (caller, done) in &ended {
        let end = got
            .iter()
            .find(|r| r.json()["caller"] == caller.as_str() && r.json()["event"] == "end")
            .unwrap();
        assert!(
            end.at <= *done + Duration::from_secs(1),
            "end for {caller} arrived {:?} after the call",
            end.at - *done
        );
    }
    // Standard Webhooks, checked with the hmac crate directly (not the module's signer).
    let key = base64::engine::general_purpose::STANDARD
        .decode(&secret["whsec_".len()..])
        .unwrap();
    for r in &got {
        let (id, ts, sig) = (
            r.header("webhook-id").unwrap(),
            r.header("webhook-timestamp").unwrap(),
            r.header("webhook-signature").unwrap(),
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{ts}.{}", r.body).as_bytes());
        let expect = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(sig, format!("v1,{expect}"));
        let age = chrono::Utc::now().timestamp() - ts.parse::<i64>().unwrap();
        assert!((0..60).contains(&age), "timestamp is the attempt's");
    }
}

#[test]
fn cli_shows_tests_and_replays() {
    let rx = Receiver::start();
    rx.set_status(404); // the CRM rejects: 4xx fails at once, dead-lettered
    let conf = "
[crm]
type = webhook
url = @RECEIVER@/hook
param = call_id => ${call_id}
param = event => ${event}
";
    let Some(pbx) = Sandbox::start("cli", conf, &rx.url()) else {
        return;
    };
    assert!(pbx.call("79161320000", "74951234568", 500));
    let errors = pbx.wait_cli(
        "webhook show errors",
        "two dead letters",
        Duration::from_secs(10),
        |e| e.contains("Dead letters (2)"),
    );
    assert!(
        errors.contains("[crm]") && errors.contains("HTTP 404"),
        "{errors}"
    );
    let status = pbx.cli("webhook show status");
    assert!(status.contains("Hook cost"), "{status}");
    assert_eq!(
        section_column(&status, "crm", 5),
        Some(2),
        "two dead letters: {status}"
    );
    // Rust's log lines reach Asterisk's logger at the right level.
    let log = pbx.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR[") && l.contains("not retried (4xx), dead-lettered")),
        "a dead letter is logged as an ERROR"
    );

    rx.set_status(200);
    let out = pbx.cli("webhook replay crm");
    assert!(out.contains("2 delivery(ies)"), "{out}");
    let got = rx.wait_for("the two replayed events", Duration::from_secs(10), |g| {
        g.len() >= 2
    });
    let kinds: Vec<Json> = got.iter().map(|r| r.json()["event"].clone()).collect();
    assert_eq!(kinds, ["start", "end"]);

    let out = pbx.cli("webhook test crm end");
    assert!(out.contains("HTTP 200"), "{out}");
    assert!(
        rx.wait_for("the test event", Duration::from_secs(5), |g| g.len() >= 3)[2]
            .body
            .contains("test-")
    );
    let out = pbx.cli("webhook test nosuch");
    assert!(out.contains("no webhook section [nosuch]"), "{out}");
    assert!(pbx.cli("webhook show errors crm").contains("HTTP 404"));
}

#[test]
fn caller_history_is_new_then_duplicate_across_a_restart() {
    let rx = Receiver::start();
    let conf = "
[crm]
type = webhook
url = @RECEIVER@/hook
events = start
param = caller => ${caller}
param = is_new => ${is_new}
param = is_duplicate => ${is_duplicate}
";
    let Some(pbx) = Sandbox::start("history", conf, &rx.url()) else {
        return;
    };
    assert!(pbx.call("79161330000", "74951234568", 300));
    rx.wait_for("first start", Duration::from_secs(10), |g| g.len() == 1);
    pbx.restart();
    assert!(pbx.call("79161330000", "74951234568", 300));
    assert!(pbx.call("79161330001", "74951234568", 300));
    let got = rx.wait_for("three starts", Duration::from_secs(10), |g| g.len() == 3);
    let flags: Vec<(Json, Json)> = got
        .iter()
        .map(|r| (r.json()["is_new"].clone(), r.json()["is_duplicate"].clone()))
        .collect();
    assert_eq!(
        flags,
        [
            (Json::Bool(true), Json::Bool(false)),
            (Json::Bool(false), Json::Bool(true)),
            (Json::Bool(true), Json::Bool(false))
        ]
    );
}

/// `core stop now` (and SIGTERM) unload no module: webhooks still in memory, not yet failed,
/// must reach the spool at exit and arrive after the restart.
#[test]
fn core_stop_now_spools_what_is_still_in_memory() {
    let rx = Receiver::start();
    rx.set_delay(Duration::from_millis(1500)); // slow, not failing: deliveries wait in memory
    let conf = "
[crm]
type = webhook
url = @RECEIVER@/hook
concurrency = 1
param = call_id => ${call_id}
param = event => ${event}
param = caller => ${caller}
";
    let Some(pbx) = Sandbox::start("stop-now", conf, &rx.url()) else {
        return;
    };
    let calls: Vec<_> = (0..4)
        .map(|i| pbx.spawn_call(&format!("7916140000{i}"), "74951234567", 300))
        .collect();
    for mut c in calls {
        assert!(c.wait().unwrap().success());
    }
    pbx.wait_cli(
        "webhook show status",
        "deliveries of 4 calls waiting in memory before the stop",
        Duration::from_secs(10),
        |s| section_column(s, "crm", 1).is_some_and(|n| n >= 4),
    );
    pbx.restart(); // core stop now, then start again
    assert!(
        pbx.log()
            .contains("stopped at exit: undelivered webhooks spooled"),
        "the atexit hook ran"
    );
    rx.set_delay(Duration::ZERO);
    let got = rx.wait_for("every event of 4 calls", Duration::from_secs(30), |g| {
        let m = kinds_by_call(g);
        m.len() == 4
            && m.values()
                .all(|k| k.last().map(String::as_str) == Some("end"))
    });
    for (call, kinds) in kinds_by_call(&got) {
        let mut dedup = kinds.clone();
        dedup.dedup();
        assert_eq!(dedup, ["start", "answer", "end"], "call {call}: {kinds:?}");
    }
}
