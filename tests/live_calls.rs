//! Live: res_webhook loaded into the real Asterisk 22, real SIP calls from SIPp, webhooks
//! received on a local HTTP server. Each test asserts the exact events and fields a CRM gets.

mod common;

use std::time::Duration;

use common::{events_of, Json, Receiver, Sandbox, ALL_FIELDS_CONF};

const WAIT: Duration = Duration::from_secs(15);

fn kinds(evs: &[Json]) -> Vec<String> {
    evs.iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

/// Waits for the `end` of the one call from `caller` and returns that call's events.
fn one_call(rx: &Receiver, caller: &str) -> Vec<Json> {
    rx.wait_for(&format!("end of the call from {caller}"), WAIT, |got| {
        got.iter().any(|r| {
            let j = r.json();
            j["caller"] == caller && j["event"] == "end"
        })
    });
    // Give a misplaced duplicate the chance to show up before counting.
    std::thread::sleep(Duration::from_millis(300));
    let got = rx.received();
    let id = got
        .iter()
        .map(|r| r.json())
        .find(|j| j["caller"] == caller)
        .unwrap()["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    events_of(&got, &id)
}

fn int(j: &Json, k: &str) -> i64 {
    j[k].as_i64()
        .unwrap_or_else(|| panic!("{k} is not an integer in {j}"))
}

#[test]
fn answered_inbound_call_gives_start_answer_end_once_each() {
    let rx = Receiver::start();
    let Some(pbx) = Sandbox::start("answered", ALL_FIELDS_CONF, &rx.url()) else {
        return;
    };
    assert!(pbx
        .cli("module show like res_webhook")
        .contains("res_webhook.so"));
    // Extension 100 rings 1 s, then the caller talks 3 s.
    assert!(pbx.call("79161230001", "74951234567", 3000));
    let evs = one_call(&rx, "79161230001");
    assert_eq!(kinds(&evs), ["start", "answer", "end"]);
    let (start, answer, end) = (&evs[0], &evs[1], &evs[2]);
    assert_eq!(start["direction"], "in");
    assert_eq!(start["called"], "74951234567");
    assert_eq!(start["ext"], Json::Null);
    assert_eq!(start["context"], "from-external");
    assert!(start["channel"]
        .as_str()
        .unwrap()
        .starts_with("PJSIP/anonymous-"));
    assert_eq!(start["uniqueid"], start["call_id"]);
    assert_eq!(answer["ext"], "100");
    assert!(answer["time_answer"].is_string());
    assert_eq!(end["status"], "ANSWER");
    assert_eq!(end["ext"], "100");
    assert_eq!(end["hangup_cause"], 16);
    let (wait, talk, total) = (
        int(end, "wait_duration"),
        int(end, "duration"),
        int(end, "total_duration"),
    );
    assert!((0..=2).contains(&wait), "wait_duration {wait} (rang ~1 s)");
    assert!((2..=4).contains(&talk), "duration {talk} (talked ~3 s)");
    assert!(
        total >= wait + talk && total <= wait + talk + 1,
        "total {total}"
    );
}

#[test]
fn busy_extension_gives_busy_and_no_answer() {
    let rx = Receiver::start();
    let Some(pbx) = Sandbox::start("busy", ALL_FIELDS_CONF, &rx.url()) else {
        return;
    };
    pbx.call("79161230002", "74951234568", 1000);
    let evs = one_call(&rx, "79161230002");
    assert_eq!(kinds(&evs), ["start", "end"]);
    assert_eq!(evs[1]["status"], "BUSY");
    assert_eq!(evs[1]["duration"], 0);
    assert_eq!(evs[1]["hangup_cause"], 17);
}

#[test]
fn nobody_answering_within_the_dial_timeout_gives_noanswer() {
    let rx = Receiver::start();
    let Some(pbx) = Sandbox::start("noanswer", ALL_FIELDS_CONF, &rx.url()) else {
        return;
    };
    pbx.call("79161230003", "74951234569", 1000);
    let evs = one_call(&rx, "79161230003");
    assert_eq!(kinds(&evs), ["start", "end"]);
    assert_eq!(evs[1]["status"], "NOANSWER");
    let wait = int(&evs[1], "wait_duration");
    assert!(
        (1..=4).contains(&wait),
        "wait {wait}: Dial gives up after 2 s"
    );
}

#[test]
fn caller_hanging_up_while_it_rings_gives_cancel() {
    let rx = Receiver::start();
    let Some(pbx) = Sandbox::start("cancel", ALL_FIELDS_CONF, &rx.url()) else {
        return;
    };
    assert!(pbx.call_and_cancel("79161230004", "74951234570", 1500));
    let evs = one_call(&rx, "79161230004");
    assert_eq!(kinds(&evs), ["start", "end"]);
    assert_eq!(evs[1]["status"], "CANCEL");
}

#[test]
fn ivr_answer_alone_is_no_answer_event_and_hangup_is_cancel() {
    let rx = Receiver::start();
    let Some(pbx) = Sandbox::start("ivr", ALL_FIELDS_CONF, &rx.url()) else {
        return;
    };
    assert!(pbx.call("79161230005", "74951234571", 1500));
    let evs = one_call(&rx, "79161230005");
    assert_eq!(kinds(&evs), ["start", "end"]);
    assert_eq!(evs[1]["status"], "CANCEL");
    assert_eq!(evs[1]["ext"], Json::Null);
    assert_eq!(evs[1]["duration"], 0);
}

#[test]
fn call_from_an_internal_context_is_outbound() {
    let rx = Receiver::start();
    let Some(pbx) = Sandbox::start("outbound", ALL_FIELDS_CONF, &rx.url()) else {
        return;
    };
    assert!(pbx.call("201", "84951112233", 1500));
    let evs = one_call(&rx, "201");
    assert_eq!(kinds(&evs), ["start", "answer", "end"]);
    for e in &evs {
        assert_eq!(e["direction"], "out");
        assert_eq!(e["ext"], "201");
        assert_eq!(e["caller"], "201");
        assert_eq!(e["caller_name"], "Manager");
        assert_eq!(e["called"], "84951112233");
        assert_eq!(e["context"], "from-internal");
    }
    assert_eq!(evs[2]["status"], "ANSWER");
}

#[test]
fn call_data_and_channel_variables_set_during_the_call_reach_end() {
    let rx = Receiver::start();
    let Some(pbx) = Sandbox::start("calldata", ALL_FIELDS_CONF, &rx.url()) else {
        return;
    };
    // The dialplan answers, sets WEBHOOK(UTM_SOURCE)=google and CRM_NOTE, then dials 100.
    assert!(pbx.call("79161230006", "74951234572", 2000));
    let evs = one_call(&rx, "79161230006");
    assert_eq!(kinds(&evs), ["start", "answer", "end"]);
    assert_eq!(evs[0]["UTM_SOURCE"], Json::Null, "not set yet at start");
    let end = &evs[2];
    assert_eq!(end["UTM_SOURCE"], "google");
    assert_eq!(end["CRM_NOTE"], "vip client");
}

#[test]
fn module_reload_while_calls_are_in_progress_loses_no_event() {
    let rx = Receiver::start();
    let Some(pbx) = Sandbox::start("reload", ALL_FIELDS_CONF, &rx.url()) else {
        return;
    };
    let callers: Vec<String> = (0..4).map(|i| format!("7916124000{i}")).collect();
    std::thread::scope(|s| {
        for c in &callers {
            let pbx = &pbx;
            s.spawn(move || assert!(pbx.call(c, "74951234567", 4000)));
        }
        std::thread::sleep(Duration::from_millis(2000));
        // Mid-call: a new config (one more field) and a reload.
        pbx.write_webhook_conf(
            &format!("{ALL_FIELDS_CONF}param = reloaded => yes\n"),
            &rx.url(),
        );
        let out = pbx.cli("module reload res_webhook.so");
        assert!(!out.contains("rror"), "{out}");
    });
    for c in &callers {
        let evs = one_call(&rx, c);
        assert_eq!(kinds(&evs), ["start", "answer", "end"], "call from {c}");
        assert_eq!(
            evs[2]["reloaded"], "yes",
            "end is rendered with the reloaded config"
        );
    }
    let log = pbx.log();
    assert!(
        log.contains("webhook.conf: 1 section(s) loaded"),
        "reload logged"
    );
    // Unload is refused cleanly, never a crash.
    let out = pbx.cli("module unload res_webhook.so");
    assert!(
        out.contains("Unable to unload") || out.contains("in use") || out.contains("use count"),
        "{out}"
    );
    assert!(pbx.cli("module show like res_webhook").contains("Running"));
}
