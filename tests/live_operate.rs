//! Operating the module like an Asterisk administrator (SPEC §5, issue 15): per-section
//! switches and call filters (one CRM per phone number), `webhook show calls` and
//! `webhook show section`, against the sandboxed Asterisk with real SIPp calls.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Received, Receiver, Sandbox};

const CONF: &str = "
[sales]
type = webhook
url = @RECEIVER@/sales
called = 74951234567
param = caller => ${caller}
param = event => ${event}

[support]
type = webhook
url = @RECEIVER@/support
called = 74951234568|74951234604
param = caller => ${caller}
param = event => ${event}

[agent100]
type = webhook
url = @RECEIVER@/agent100
events = end
ext = 100
param = caller => ${caller}
param = event => ${event}
param = lookup_status => ${LOOKUP_STATUS}

[off]
type = webhook
url = @RECEIVER@/off
enabled = no
param = caller => ${caller}

[crm]
type = lookup
url = @RECEIVER@/lookup
enabled = no
";

/// The path a request was sent to.
fn path(r: &Received) -> &str {
    r.url.split('?').next().unwrap_or("")
}

/// Callers each endpoint heard about, with their events in order.
fn heard(got: &[Received]) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut m: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for r in got {
        let j = r.json();
        m.entry(path(r).to_string())
            .or_default()
            .entry(j["caller"].as_str().unwrap_or("").to_string())
            .or_default()
            .push(j["event"].as_str().unwrap_or("").to_string());
    }
    m
}

#[test]
fn filters_route_each_number_to_its_crm_and_switched_off_sections_stay_silent() {
    let rx = Receiver::start();
    let Some(pbx) = Sandbox::start("operate", CONF, &rx.url()) else {
        return;
    };
    assert!(pbx.call("79161260001", "74951234567", 500)); // 100 answers
    assert!(pbx.call("79161260002", "74951234568", 500)); // 101 is busy
    assert!(pbx.call("79161260003", "74951234604", 500)); // ring group: 100 answers
    assert!(pbx.call("79161260004", "74951234580", 500)); // lookup (switched off), then 100
    let got = rx.wait_for("every call's webhooks", Duration::from_secs(20), |g| {
        let h = heard(g);
        let ends = |p: &str| {
            h.get(p).map_or(0, |m| {
                m.values()
                    .filter(|e| e.last().map(String::as_str) == Some("end"))
                    .count()
            })
        };
        ends("/sales") == 1 && ends("/support") == 2 && ends("/agent100") == 3
    });
    let h = heard(&got);
    let callers = |p: &str| -> Vec<&str> {
        h.get(p)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    };
    assert_eq!(callers("/sales"), ["79161260001"], "{h:#?}");
    assert_eq!(h["/sales"]["79161260001"], ["start", "answer", "end"]);
    assert_eq!(
        callers("/support"),
        ["79161260002", "79161260003"],
        "{h:#?}"
    );
    assert_eq!(h["/support"]["79161260002"], ["start", "end"]);
    // ext = 100: the ends of the calls 100 took (the busy call's ext is 101).
    assert_eq!(
        callers("/agent100"),
        ["79161260001", "79161260003", "79161260004"],
        "{h:#?}"
    );
    assert!(h["/agent100"].values().all(|e| e == &["end"]));
    // Switched off: the webhook section sends nothing, the lookup asks nobody and says NOTFOUND.
    assert!(!h.contains_key("/off"), "{h:#?}");
    assert!(!h.contains_key("/lookup"), "{h:#?}");
    let d = got
        .iter()
        .find(|r| path(r) == "/agent100" && r.json()["caller"] == "79161260004")
        .unwrap();
    assert_eq!(d.json()["lookup_status"], "NOTFOUND");

    let off = pbx.cli("webhook show section off");
    assert!(off.contains("enabled      = no"), "{off}");
    let support = pbx.cli("webhook show section support");
    for want in [
        "[support]",
        "type         = webhook",
        "called       = 74951234568|74951234604",
        "param        = caller => ${caller}",
        "events       = start, answer, end",
    ] {
        assert!(support.contains(want), "missing `{want}`:\n{support}");
    }
    assert!(pbx
        .cli("webhook show section nosuch")
        .contains("no section [nosuch]"));
}

#[test]
fn show_calls_lists_a_call_while_it_lasts() {
    let rx = Receiver::start();
    let Some(pbx) = Sandbox::start("show-calls", CONF, &rx.url()) else {
        return;
    };
    let mut call = pbx.spawn_call("79161261000", "74951234567", 4000);
    let shown = pbx.wait_cli(
        "webhook show calls",
        "the call, answered",
        Duration::from_secs(10),
        |t| {
            t.lines()
                .any(|l| l.contains("79161261000") && l.contains("answered"))
        },
    );
    let line = shown.lines().find(|l| l.contains("79161261000")).unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &cols[1..6],
        ["in", "79161261000", "74951234567", "100", "answered"],
        "{shown}"
    );
    assert!(shown.contains("1 call(s) in progress"), "{shown}");
    assert!(call.wait().unwrap().success());
    pbx.wait_cli(
        "webhook show calls",
        "no call left",
        Duration::from_secs(10),
        |t| t.contains("0 call(s) in progress"),
    );
}

/// Runs one of tests/clients' Python clients with Debian's python3 (where `sandbox.sh deps`
/// installs their libraries); its JSON lines.
fn client(script: &str, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new("/usr/bin/python3");
    c.arg(common::repo().join("tests/clients").join(script))
        .args(args);
    c
}

fn json_lines(out: &[u8]) -> Vec<common::Json> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn ami_tooling_hears_failures_and_dead_letters_and_prometheus_scrapes_the_counters() {
    let good = Receiver::start();
    let down = Receiver::start();
    down.set_status(503);
    let gone = Receiver::start();
    gone.set_status(404);
    let conf = format!(
        "
[good]
type = webhook
url = @RECEIVER@/good
param = event => ${{event}}

[down]
type = webhook
url = {}/down
retry = 30s
param = event => ${{event}}

[gone]
type = webhook
url = {}/gone
events = end
param = event => ${{event}}
",
        down.url(),
        gone.url()
    );
    let Some(pbx) = Sandbox::start("ami-metrics", &conf, &good.url()) else {
        return;
    };
    // An AMI client (panoramisk) listening before the call.
    let mut watcher = client(
        "ami_watch.py",
        &[
            &pbx.ports.ami.to_string(),
            "30",
            "WebhookDeliveryFailed",
            "WebhookDeadLetter",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .expect("/usr/bin/python3 (sandbox.sh deps installs python3-panoramisk)");
    let mut stdout = std::io::BufReader::new(watcher.stdout.take().unwrap());
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut ready).unwrap();
    assert!(
        ready.contains("Ready"),
        "the AMI client did not log in: {ready}"
    );

    assert!(pbx.call("79161262000", "74951234567", 500));
    good.wait_for("start, answer, end", Duration::from_secs(20), |g| {
        g.len() >= 3
    });
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut rest).unwrap();
    assert!(watcher.wait().unwrap().success());
    let events = json_lines(&rest);
    let failed = events
        .iter()
        .find(|e| e["Event"] == "WebhookDeliveryFailed")
        .unwrap_or_else(|| panic!("no WebhookDeliveryFailed: {events:#?}"));
    assert_eq!(failed["Section"], "down");
    assert_eq!(failed["Status"], "503");
    assert_eq!(
        failed["CallEvent"], "start",
        "the first failure is the start"
    );
    let dead = events
        .iter()
        .find(|e| e["Event"] == "WebhookDeadLetter")
        .unwrap_or_else(|| panic!("no WebhookDeadLetter: {events:#?}"));
    assert_eq!(dead["Section"], "gone");
    assert_eq!(dead["Status"], "404");
    assert_eq!(dead["CallEvent"], "end");
    assert_eq!(dead["CallID"], failed["CallID"], "both name the call");

    // The WebhookStatus action, through the same client library.
    let out = client("ami_watch.py", &[&pbx.ports.ami.to_string(), "status"])
        .output()
        .unwrap();
    let rows = json_lines(&out.stdout);
    let row = |s: &str| {
        rows.iter()
            .find(|r| r["Event"] == "WebhookSection" && r["Section"] == s)
            .unwrap_or_else(|| panic!("no WebhookSection {s}: {rows:#?}"))
            .clone()
    };
    assert_eq!(row("good")["Delivered"], "3");
    assert_eq!(row("gone")["Dead"], "1");
    assert!(row("down")["LastError"]
        .as_str()
        .unwrap()
        .contains("HTTP 503"));
    assert!(
        rows.iter().any(|r| r["Event"] == "WebhookStatusComplete"),
        "{rows:#?}"
    );

    // /metrics on Asterisk's HTTP server, parsed by Prometheus' own parser.
    let url = format!("http://127.0.0.1:{}/metrics", pbx.ports.http);
    let out = client("metrics_scrape.py", &[&url]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples = json_lines(&out.stdout);
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
            .unwrap_or_else(|| panic!("no {name} {labels:?}"))["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(
        value(
            "asterisk_webhook_deliveries_total",
            &[("section", "good"), ("result", "delivered")]
        ),
        3.0
    );
    assert_eq!(
        value(
            "asterisk_webhook_deliveries_total",
            &[("section", "gone"), ("result", "dead")]
        ),
        1.0
    );
    assert!(value("asterisk_webhook_spool_depth", &[("section", "down")]) >= 1.0);
    assert_eq!(
        value(
            "asterisk_webhook_delivery_seconds_count",
            &[("section", "good")]
        ),
        3.0
    );
    assert_eq!(value("asterisk_webhook_calls_in_progress", &[]), 0.0);
    assert!(value("asterisk_webhook_hook_events_total", &[]) > 0.0);
    assert!(
        samples
            .iter()
            .any(|s| s["name"].as_str().unwrap().starts_with("asterisk_core_")),
        "served by res_prometheus, beside Asterisk's own metrics"
    );
    // Every series the shipped Grafana dashboard queries exists.
    let dashboard =
        std::fs::read_to_string(common::repo().join("asterisk/grafana-dashboard.json")).unwrap();
    let re = regex::Regex::new(r"asterisk_webhook_[a-z_]+").unwrap();
    for m in re.find_iter(&dashboard) {
        assert!(
            samples.iter().any(|s| s["name"] == m.as_str()),
            "the dashboard queries {} which /metrics does not have",
            m.as_str()
        );
    }
}

#[test]
fn a_rate_limited_crm_gets_every_event_in_order_no_faster_than_its_limit() {
    let rx = Receiver::start();
    let conf = "
[bitrix]
type = webhook
url = @RECEIVER@/rest
rate_limit = 2/s
param = call_id => ${call_id}
param = event => ${event}
";
    let Some(pbx) = Sandbox::start("rate-limit", conf, &rx.url()) else {
        return;
    };
    let section = pbx.cli("webhook show section bitrix");
    assert!(
        section.contains("rate_limit   = 2.000/s") && section.contains("rate_burst   = 2"),
        "{section}"
    );
    // Three calls at once: 9 events, where the endpoint takes 2 at once then 2 a second.
    let calls: Vec<_> = (0..3)
        .map(|i| pbx.spawn_call(&format!("7916126300{i}"), "74951234567", 300))
        .collect();
    for mut c in calls {
        assert!(c.wait().unwrap().success());
    }
    let got = rx.wait_for("9 events", Duration::from_secs(30), |g| g.len() >= 9);
    assert_eq!(got.len(), 9);
    let span = got[8].at - got[0].at;
    assert!(
        span >= Duration::from_millis(3150),
        "9 requests at 2/s (burst 2) take at least 3.5 s; took {span:?}"
    );
    let mut by_call: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &got {
        let j = r.json();
        by_call
            .entry(j["call_id"].as_str().unwrap().into())
            .or_default()
            .push(j["event"].as_str().unwrap().into());
    }
    assert_eq!(by_call.len(), 3);
    assert!(
        by_call.values().all(|e| e == &["start", "answer", "end"]),
        "{by_call:?}"
    );
}
