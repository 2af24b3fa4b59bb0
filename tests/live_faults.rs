//! Live fault tests (SPEC §6, "delivery keeps its promises under faults") against the
//! sandboxed Asterisk 22 and real SIP calls: one hanging call among healthy ones, `webhook
//! test` against a hanging CRM while the dialplan does lookups, a spool directory that cannot
//! be used, a spool on a disk that fills up, panics injected into a delivery lane and the
//! correlation thread, and `kill -9` in the middle of a spool drain. Each asserts that nothing
//! is lost and that the healthy path is unaffected.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Receiver, Sandbox};

const CONF: &str = "
[general]
retry = 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s
@GENERAL@
[crm]
type = webhook
url = @RECEIVER@/hook
timeout = 4000
@CRM@
param = call_id => ${call_id}
param = event => ${event}
param = caller => ${caller}
";

fn conf(general: &str, crm: &str) -> String {
    CONF.replace("@GENERAL@", general).replace("@CRM@", crm)
}

/// Each caller's events in arrival order.
fn kinds_by_caller(got: &[common::Received]) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for r in got {
        let j = r.json();
        m.entry(j["caller"].as_str().unwrap_or("").to_string())
            .or_default()
            .push(j["event"].as_str().unwrap().to_string());
    }
    m
}

/// Waits until every caller in `callers` got its `end`; returns what arrived.
fn wait_ends(rx: &Receiver, callers: &[String], timeout: Duration) -> Vec<common::Received> {
    rx.wait_for(
        &format!("the end of {} call(s)", callers.len()),
        timeout,
        |g| {
            let m = kinds_by_caller(g);
            callers
                .iter()
                .all(|c| m.get(c).is_some_and(|k| k.iter().any(|e| e == "end")))
        },
    )
}

/// Asserts a call's events all arrived, first in order. After a crash a re-send may repeat
/// what was delivered but not yet recorded as such (at-least-once); each repeat comes in
/// order too, and never before what it follows.
fn assert_in_order(got: &[common::Received], caller: &str, want: &[&str]) {
    let kinds = kinds_by_caller(got).remove(caller).unwrap_or_default();
    let mut first: Vec<&str> = Vec::new();
    for k in &kinds {
        if !first.contains(&k.as_str()) {
            first.push(k);
        }
    }
    assert_eq!(first, want, "events of {caller}: {kinds:?}");
    for (i, k) in kinds.iter().enumerate() {
        let pos = want.iter().position(|w| w == k).unwrap();
        // Whatever comes before an event in `want` arrived before it.
        for earlier in &want[..pos] {
            assert!(
                kinds[..i].iter().any(|x| x == earlier),
                "events of {caller}: {k} before {earlier}: {kinds:?}"
            );
        }
    }
}

/// The ERROR lines of Asterisk's log that contain `needle`.
fn error_lines(pbx: &Sandbox, needle: &str) -> Vec<String> {
    pbx.log()
        .lines()
        .filter(|l| l.contains("ERROR[") && l.contains(needle))
        .map(String::from)
        .collect()
}

#[test]
fn a_hanging_call_delays_only_its_own_events() {
    let rx = Receiver::start();
    // Every request of the first call is held 10 s (the section's timeout is 4 s).
    rx.set_hang("79161500000", Duration::from_secs(10));
    let Some(pbx) = Sandbox::start("fault-hang", &conf("", "concurrency = 4"), &rx.url()) else {
        return;
    };
    let mut hanging = pbx.spawn_call("79161500000", "74951234567", 3000);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rx.arrived().iter().any(|r| r.body.contains("79161500000")) {
        assert!(
            Instant::now() < deadline,
            "the hanging call's start never came"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // While it hangs, healthy calls come and go: each one's `end` arrives as fast as usual.
    let mut worst = Duration::ZERO;
    for i in 1..=3 {
        let caller = format!("7916150000{i}");
        assert!(pbx.call(&caller, "74951234567", 300));
        let ended = Instant::now();
        let got = wait_ends(&rx, std::slice::from_ref(&caller), Duration::from_secs(15));
        let end = got
            .iter()
            .find(|r| r.json()["caller"] == caller.as_str() && r.json()["event"] == "end")
            .unwrap();
        let took = end.at.saturating_duration_since(ended);
        worst = worst.max(took);
        assert!(
            took < Duration::from_secs(1),
            "{caller}'s end came {took:?} after the call, behind a hanging call"
        );
        assert_in_order(&got, &caller, &["start", "answer", "end"]);
    }
    eprintln!("healthy calls' end, behind a hanging call: at most {worst:?} after hangup");
    assert!(hanging.wait().unwrap().success());
    // The hanging call is retried and, once the endpoint answers it, arrives whole, in order.
    rx.clear_hang();
    let got = wait_ends(&rx, &["79161500000".to_string()], Duration::from_secs(40));
    assert_in_order(&got, "79161500000", &["start", "answer", "end"]);
}

/// A CRM for `WEBHOOK_LOOKUP` that knows every number.
fn friendly_crm() -> (u16, Arc<tiny_http::Server>) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    let s = server.clone();
    std::thread::spawn(move || {
        for mut req in s.incoming_requests() {
            let mut body = String::new();
            let _ = req.as_reader().read_to_string(&mut body);
            let answer = r#"{"contact_name":"Иван Петров","responsible":"100"}"#;
            let _ = req.respond(
                tiny_http::Response::from_string(answer).with_header(
                    "Content-Type: application/json"
                        .parse::<tiny_http::Header>()
                        .unwrap(),
                ),
            );
        }
    });
    (port, server)
}

#[test]
fn webhook_test_against_a_hanging_crm_does_not_hold_up_dialplan_lookups() {
    let rx = Receiver::start();
    let hanging = Receiver::start();
    hanging.set_delay(Duration::from_secs(10));
    let (crm_port, _crm) = friendly_crm();
    let conf = format!(
        "
[calls]
type = webhook
url = @RECEIVER@/calls
param = call_id => ${{call_id}}
param = event => ${{event}}
param = caller => ${{caller}}
param = T0 => ${{T0}}
param = T1 => ${{T1}}
param = LOOKUP_STATUS => ${{LOOKUP_STATUS}}

[hanging]
type = webhook
url = {}/hang
events = transfer
timeout = 8000
param = call_id => ${{call_id}}

[crm]
type = lookup
url = http://127.0.0.1:{crm_port}/crm-api
format = form
param = cmd => contact
param = phone => ${{number}}
timeout = 1000
",
        hanging.url()
    );
    let Some(pbx) = Sandbox::start("fault-cli-lookup", &conf, &rx.url()) else {
        return;
    };
    // `webhook test` waits up to 8 s for the hanging endpoint ...
    let started = Instant::now();
    let cli = pbx.spawn_cli("webhook test hanging end");
    let deadline = Instant::now() + Duration::from_secs(10);
    while hanging.arrived().is_empty() {
        assert!(Instant::now() < deadline, "webhook test sent nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    // ... and meanwhile a call's dialplan asks the CRM twice (name, then the agent).
    assert!(pbx.call("79990000001", "74951234580", 500));
    let got = wait_ends(&rx, &["79990000001".to_string()], Duration::from_secs(20));
    let end = got
        .iter()
        .map(|r| r.json())
        .find(|j| j["event"] == "end")
        .unwrap();
    let t = |k: &str| end[k].as_str().unwrap().parse::<f64>().unwrap();
    let waited = t("T1") - t("T0");
    eprintln!(
        "lookup during a hanging `webhook test`: the dialplan waited {waited:.3} s (timeout 1 s), {:?} into the test",
        started.elapsed()
    );
    assert_eq!(end["LOOKUP_STATUS"], "FOUND");
    assert!(
        waited <= 1.1,
        "the dialplan waited {waited:.3} s for its lookup while `webhook test` hung"
    );
    let out = cli.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("failed after"), "webhook test: {out}");
}

#[test]
fn a_spool_directory_that_cannot_be_used_is_loud_and_webhooks_still_arrive() {
    let rx = Receiver::start();
    rx.set_status(503); // the first attempts fail: retried from memory
                        // A path under a regular file: no directory can be made there.
    let conf = conf("spool_dir = /etc/asterisk/webhook.conf/spool", "");
    let Some(pbx) = Sandbox::start("fault-nospool", &conf, &rx.url()) else {
        return;
    };
    let status = pbx.cli("webhook show status");
    assert!(status.contains("Spool: UNAVAILABLE"), "{status}");
    let callers: Vec<String> = (0..2).map(|i| format!("7916151000{i}")).collect();
    for c in &callers {
        assert!(pbx.call(c, "74951234567", 300));
    }
    pbx.wait_cli(
        "webhook show status",
        "failed attempts",
        Duration::from_secs(10),
        |s| s.contains("HTTP 503"),
    );
    rx.set_status(200);
    let got = wait_ends(&rx, &callers, Duration::from_secs(30));
    for c in &callers {
        assert_in_order(&got, c, &["start", "answer", "end"]);
    }
    let lines = error_lines(&pbx, "deliveries are kept in memory");
    assert_eq!(lines.len(), 1, "one ERROR line for the state: {lines:#?}");
    assert!(pbx.cli("webhook show status").contains("UNAVAILABLE"));
}

/// Fills the file system under `dir` to the last byte.
fn fill(dir: &Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let byte = [0u8; 1];
    while f.write_all(&byte).is_ok() {}
}

#[test]
fn a_full_disk_is_loud_and_webhooks_still_arrive() {
    let rx = Receiver::start();
    let conf = conf("spool_dir = /var/spool/asterisk/tiny", "");
    let mut tiny = None;
    let pbx = Sandbox::start_env("fault-enospc", &conf, &rx.url(), &[], |dir| {
        let mnt = dir.join("spool/tiny");
        std::fs::create_dir_all(&mnt).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
            .arg(&mnt)
            .status()
            .unwrap();
        assert!(ok.success(), "mount a 16 MiB tmpfs");
        tiny = Some(mnt);
    });
    let Some(pbx) = pbx else { return };
    let tiny = tiny.unwrap();
    let _unmount = Unmount(tiny.clone());
    assert!(
        tiny.join("spool.redb").exists(),
        "the spool was opened on the tmpfs"
    );
    fill(&tiny);
    rx.set_status(503);
    let callers: Vec<String> = (0..2).map(|i| format!("7916152000{i}")).collect();
    for c in &callers {
        assert!(pbx.call(c, "74951234567", 300));
    }
    let status = pbx.wait_cli(
        "webhook show status",
        "the spool reported not writable",
        Duration::from_secs(10),
        |s| s.contains("Spool: NOT WRITABLE") && s.contains("no space left"),
    );
    eprintln!("{status}");
    rx.set_status(200);
    let got = wait_ends(&rx, &callers, Duration::from_secs(30));
    for c in &callers {
        assert_in_order(&got, c, &["start", "answer", "end"]);
    }
    let lines = error_lines(&pbx, "write failed");
    assert_eq!(lines.len(), 1, "one ERROR line for the state: {lines:#?}");
    // The disk has room again: the spool says so, once.
    std::fs::remove_file(tiny.join("filler")).unwrap();
    pbx.wait_cli(
        "webhook show status",
        "the spool writable again",
        Duration::from_secs(15),
        |s| s.contains("Spool: ok"),
    );
    assert!(pbx.log().contains("writable again"));
}

/// Unmounts the test's tmpfs when the test ends, also when it fails (lazily: Asterisk may
/// still hold files there for a moment).
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn panics_in_a_delivery_lane_and_the_correlation_thread_are_contained_and_counted() {
    let rx = Receiver::start();
    // Test-only switch: every delivery of the first caller panics its lane once; the first
    // event of the second caller panics the correlation thread once.
    let env = [(
        "RES_WEBHOOK_TEST_PANIC",
        "worker:79161530000,calls:79161530001",
    )];
    let pbx = Sandbox::start_env("fault-panic", &conf("", ""), &rx.url(), &env, |_| {});
    let Some(pbx) = pbx else { return };
    let callers: Vec<String> = (0..3).map(|i| format!("7916153000{i}")).collect();
    for c in &callers {
        assert!(pbx.call(c, "74951234567", 300));
    }
    let got = wait_ends(&rx, &callers, Duration::from_secs(20));
    // Lane panics lose nothing: the delivery goes back to its call's queue.
    assert_in_order(&got, &callers[0], &["start", "answer", "end"]);
    // The correlation thread's panic costs the one event it was rendering; the call goes on.
    assert_in_order(&got, &callers[1], &["answer", "end"]);
    assert_in_order(&got, &callers[2], &["start", "answer", "end"]);
    let status = pbx.cli("webhook show status");
    assert!(status.contains("worker panics: 3"), "{status}");
    assert!(
        status.contains("correlation thread restarts: 1"),
        "{status}"
    );
    assert_eq!(
        error_lines(&pbx, "delivery lane panicked").len()
            + error_lines(&pbx, "delivery worker panicked").len(),
        3
    );
    assert_eq!(error_lines(&pbx, "correlation thread panicked").len(), 1);
}

#[test]
fn kill9_in_the_middle_of_a_spool_drain_loses_nothing() {
    let rx = Receiver::start();
    rx.set_status(503);
    let Some(pbx) = Sandbox::start("fault-drain-kill9", &conf("", "concurrency = 1"), &rx.url())
    else {
        return;
    };
    let callers: Vec<String> = (0..8).map(|i| format!("7916154000{i}")).collect();
    for c in &callers {
        assert!(pbx.call(c, "74951234567", 300));
    }
    pbx.wait_cli(
        "webhook show status",
        "24 deliveries spooled",
        Duration::from_secs(15),
        |s| {
            s.lines()
                .find(|l| l.split_whitespace().next() == Some("crm"))
                .and_then(|l| l.split_whitespace().nth(6))
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n >= 24)
        },
    );
    // The endpoint recovers, slowly: the drain is under way ...
    rx.set_delay(Duration::from_millis(250));
    rx.set_status(200);
    rx.wait_for("a third of the drain", Duration::from_secs(20), |g| {
        g.len() >= 8
    });
    // ... when Asterisk is killed.
    pbx.kill9_and_start();
    rx.set_delay(Duration::ZERO);
    let got = wait_ends(&rx, &callers, Duration::from_secs(40));
    for c in &callers {
        assert_in_order(&got, c, &["start", "answer", "end"]);
    }
}
