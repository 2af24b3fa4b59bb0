//! A fleet (issue 16): two sandboxed Asterisk nodes publish their calls into one NATS
//! JetStream stream through `type = nats` sections — every event of every call once, in
//! order per call, tagged with its node — also across a NATS outage, a node killed with -9
//! and restarted, and a bad credential.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::nats::{Auth, NatsServer, StreamMessage};
use common::{Receiver, Sandbox};

fn conf(nats_url: &str, extra: &str) -> String {
    format!(
        "
[general]
retry = 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s

[fleet]
type = nats
url = {nats_url}
subject = pbx.${{direction}}.${{event}}
timeout = 2000
param = call_id => ${{call_id}}
param = event => ${{event}}
param = node => ${{node}}
param = caller => ${{caller}}
{extra}"
    )
}

/// Events per call, in stream order; panics on a repeated webhook-id or (call, event).
fn by_call(msgs: &[StreamMessage]) -> BTreeMap<String, Vec<(String, String, String)>> {
    let mut ids = HashSet::new();
    let mut seen = HashSet::new();
    let mut m: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for msg in msgs {
        assert!(ids.insert(msg.msg_id.clone()), "duplicate message {msg:?}");
        let j = &msg.json;
        let call = j["call_id"].as_str().unwrap().to_string();
        let event = j["event"].as_str().unwrap().to_string();
        assert!(
            seen.insert((call.clone(), event.clone())),
            "event twice: {msg:?}"
        );
        assert_eq!(msg.subject, format!("pbx.in.{event}"));
        m.entry(call).or_default().push((
            event,
            j["node"].as_str().unwrap_or("").to_string(),
            j["caller"].as_str().unwrap_or("").to_string(),
        ));
    }
    m
}

fn assert_complete(calls: &BTreeMap<String, Vec<(String, String, String)>>, n: usize) {
    assert_eq!(calls.len(), n, "{calls:#?}");
    for (call, events) in calls {
        let kinds: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(kinds, ["start", "answer", "end"], "call {call}");
    }
}

#[test]
fn two_nodes_publish_every_event_once_in_order_into_one_stream() {
    if !common::live_prerequisites() {
        return;
    }
    let nats = NatsServer::start("fleet", Auth::None);
    let rx = Receiver::start();
    let Some(nodes) =
        Sandbox::start_fleet(&["node-a", "node-b"], &conf(&nats.url(), ""), &rx.url())
    else {
        return;
    };
    // Three calls on each node at once; the caller number says which node took it.
    let calls: Vec<_> = nodes
        .iter()
        .enumerate()
        .flat_map(|(n, pbx)| {
            (0..3).map(move |i| pbx.spawn_call(&format!("791612700{n}{i}"), "74951234567", 500))
        })
        .collect();
    for mut c in calls {
        assert!(c.wait().unwrap().success());
    }
    let msgs = nats.wait_messages(18, Duration::from_secs(30));
    let calls = by_call(&msgs);
    assert_complete(&calls, 6);
    for events in calls.values() {
        let (_, node, caller) = &events[0];
        let expected = if caller.starts_with("7916127000") {
            "node-a"
        } else {
            "node-b"
        };
        assert!(events.iter().all(|e| e.1 == expected), "{events:?}");
        assert_eq!(node, expected);
    }
    assert!(rx.received().is_empty(), "nothing went over HTTP");
    let status = nodes[0].cli("webhook show status");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("fleet") && l.contains(" 9 ")),
        "{status}"
    );
}

#[test]
fn a_nats_outage_and_a_node_killed_mid_spool_lose_nothing_and_duplicate_nothing() {
    if !common::live_prerequisites() {
        return;
    }
    let mut nats = NatsServer::start("outage", Auth::None);
    let rx = Receiver::start();
    // Paced at 2/s (burst 2), so the spool is still draining when the node is killed.
    let paced = conf(&nats.url(), "rate_limit = 2/s\n");
    let Some(pbx) = Sandbox::start("fleet-outage", &paced, &rx.url()) else {
        return;
    };
    assert!(pbx.call("79161271000", "74951234567", 300));
    nats.wait_messages(3, Duration::from_secs(20));
    nats.kill(); // the server dies mid-load
    for i in 1..4 {
        assert!(pbx.call(&format!("7916127100{i}"), "74951234567", 300));
    }
    pbx.wait_cli(
        "webhook show errors fleet",
        "a failed publish",
        Duration::from_secs(20),
        |t| t.contains("JetStream") || t.contains("NATS"),
    );
    nats.restart();
    // While the spool drains, the node is killed with -9 and started again: whatever it had
    // published but not yet marked delivered it publishes again, and the server drops it.
    let before_kill = nats.wait_messages(5, Duration::from_secs(30)).len();
    pbx.kill9_and_start();
    assert!(
        before_kill < 12,
        "killed while its spool was still draining ({before_kill} of 12)"
    );
    assert!(pbx.call("79161271004", "74951234567", 300));
    let msgs = nats.wait_messages(15, Duration::from_secs(40));
    std::thread::sleep(Duration::from_secs(2)); // a late duplicate would show up now
    let msgs = if nats.messages().len() > msgs.len() {
        nats.messages()
    } else {
        msgs
    };
    let calls = by_call(&msgs);
    assert_complete(&calls, 5);
}

#[test]
fn a_bad_credential_is_a_clear_error_and_loses_nothing_once_fixed() {
    if !common::live_prerequisites() {
        return;
    }
    let nats = NatsServer::start("auth", Auth::User("pbx".into(), "right-password".into()));
    let rx = Receiver::start();
    let bad = conf(&nats.url(), "user = pbx\npassword = wrong-password\n");
    let Some(pbx) = Sandbox::start("fleet-auth", &bad, &rx.url()) else {
        return;
    };
    assert!(pbx.call("79161272000", "74951234567", 300));
    let errors = pbx.wait_cli(
        "webhook show errors fleet",
        "the authorization error",
        Duration::from_secs(20),
        |t| t.to_lowercase().contains("authorization"),
    );
    assert!(errors.contains("cannot connect to NATS"), "{errors}");
    assert!(nats.messages().is_empty());
    pbx.write_webhook_conf(
        &conf(&nats.url(), "user = pbx\npassword = right-password\n"),
        &rx.url(),
    );
    let out = pbx.cli("module reload res_webhook.so");
    assert!(!out.contains("rror"), "{out}");
    let msgs = nats.wait_messages(3, Duration::from_secs(30));
    assert_complete(&by_call(&msgs), 1);
}

#[test]
fn a_re_sent_delivery_is_dropped_by_the_servers_duplicate_window() {
    if !common::live_prerequisites() {
        return;
    }
    use res_webhook::core::delivery::nats::{NatsSink, NatsTarget};
    use res_webhook::core::model::attempt::Attempt;
    let nats = NatsServer::start("dedup", Auth::None);
    let sink = NatsSink::start(
        "dedup",
        NatsTarget {
            servers: vec![nats.url()],
            ..Default::default()
        },
    )
    .unwrap();
    let body = br#"{"call_id":"1700000000.1","event":"end"}"#;
    let send = || {
        sink.publish(
            "pbx.in.end",
            &[],
            body,
            "msg_same-id",
            Duration::from_secs(5),
        )
    };
    let first = send();
    assert!(
        matches!(first.attempt, Attempt::Status { code: 200, .. }),
        "{first:?}"
    );
    assert!(!first.excerpt.contains("duplicate"), "{}", first.excerpt);
    // The same delivery again (a retry whose ack was lost, a crash before the spool knew).
    let again = send();
    assert!(matches!(again.attempt, Attempt::Status { code: 200, .. }));
    assert!(again.excerpt.contains("duplicate"), "{}", again.excerpt);
    let other = sink.publish(
        "pbx.in.end",
        &[],
        body,
        "msg_other-id",
        Duration::from_secs(5),
    );
    assert!(!other.excerpt.contains("duplicate"));
    let msgs = nats.messages();
    let ids: Vec<&str> = msgs.iter().map(|m| m.msg_id.as_str()).collect();
    assert_eq!(
        ids,
        ["msg_same-id", "msg_other-id"],
        "the re-send is not in the stream"
    );
}

#[test]
fn a_token_protected_server_takes_the_sections_token() {
    if !common::live_prerequisites() {
        return;
    }
    let nats = NatsServer::start("token", Auth::Token("s3cret-nats-token".into()));
    let rx = Receiver::start();
    let conf = conf(&nats.url(), "token = s3cret-nats-token\n");
    let Some(pbx) = Sandbox::start("fleet-token", &conf, &rx.url()) else {
        return;
    };
    assert!(pbx.call("79161273000", "74951234567", 300));
    let msgs = nats.wait_messages(3, Duration::from_secs(30));
    assert_complete(&by_call(&msgs), 1);
    let section = pbx.cli("webhook show section fleet");
    assert!(
        section.contains("type         = webhook") || section.contains("[fleet]"),
        "{section}"
    );
    assert!(
        !section.contains("s3cret-nats-token"),
        "the token is not shown: {section}"
    );
}
