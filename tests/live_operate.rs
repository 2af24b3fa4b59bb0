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
