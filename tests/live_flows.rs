//! Live: the office call flows of SPEC §2 "Real office call flows" against the real Asterisk 22,
//! each asserting exactly what a CRM receives: the events per call and the agent fields.
//!
//! Every test starts its own Asterisk (tests/asterisk-etc: one DID per flow in
//! extensions.conf), drives the flow with SIPp phones and, where a person would press keys or
//! a desk phone would transfer, with AMI. Each test first waits until Asterisk itself is done
//! (no channel left, CEL's `LINKEDID_END` for every linkedid) and until every call CEL ended has
//! its `end`, then saves what Asterisk recorded to `target/flow-traces/<flow>.txt` (CEL, CDR,
//! the webhooks), then asserts.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{CelEvent, Json, Received, Receiver, Sandbox};

const WAIT: Duration = Duration::from_secs(20);

/// Every field of a call, every new one too; `agents` and `targets` are bare so that they keep
/// their JSON array type. A second section with the default `direction` (in, out) shows which
/// calls a CRM that did not ask for internal calls gets.
const FLOW_CONF: &str = "
[general]
internal_contexts = from-internal

[hook]
type = webhook
url = @RECEIVER@/hook
format = json
events = start, answer, end, transfer
direction = in, out, internal
param = call_id => ${call_id}
param = event => ${event}
param = direction => ${direction}
param = caller => ${caller}
param = called => ${called}
param = ext => ${ext}
param = status => ${status}
param = hangup_by => ${hangup_by}
param = time_start => ${time_start}
param = time_answer => ${time_answer}
param = time_end => ${time_end}
param = wait_duration => ${wait_duration}
param = duration => ${duration}
param = total_duration => ${total_duration}
param = answered_by => ${answered_by}
param = agents => ${agents}
param = targets => ${targets}
param = transfers => ${transfers}
param = transferred_from => ${transferred_from}
param = queue => ${queue}
param = queue_wait => ${queue_wait}
param = merged_into => ${merged_into}
param = forwarded_to => ${forwarded_to}
param = channel => ${channel}
param = context => ${context}

[inout]
type = webhook
url = @RECEIVER@/inout
format = json
param = call_id => ${call_id}
param = event => ${event}
param = direction => ${direction}

[click]
type = originate
path = click
token = flow-token-1
context = from-internal
";

/// Starts Asterisk for one flow (instance `flow-<name>`), with res_webhook's debug on.
fn start(name: &str, rx: &Receiver) -> Option<Sandbox> {
    let pbx = Sandbox::start(&format!("flow-{name}"), FLOW_CONF, &rx.url())?;
    pbx.cli("core set debug 5 res_webhook");
    Some(pbx)
}

/// What one flow left behind, once Asterisk and the module are done with it.
struct Flow {
    got: Vec<Received>,
    cel: Vec<CelEvent>,
}

impl Flow {
    /// Waits until Asterisk has no channel, CEL has ended every linkedid it saw, and the
    /// receiver has an `end` for each (or `WAIT` passes: then the assertions say what is
    /// missing); saves the trace.
    fn settle(pbx: &Sandbox, rx: &Receiver, name: &str) -> Flow {
        let (cel, ended) = pbx.wait_cel_all_ended(WAIT);
        let deadline = Instant::now() + WAIT;
        let got = loop {
            let got = rx.received();
            let all_ended = ended
                .iter()
                .all(|id| hook(&got, id).iter().any(|e| e["event"] == "end"));
            if all_ended || Instant::now() > deadline {
                break got;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        pbx.save_flow_trace(name, &got);
        Flow { got, cel }
    }

    /// The call (linkedid) whose first channel CEL saw with this caller number.
    fn call_of(&self, caller: &str) -> String {
        self.cel
            .iter()
            .find(|e| e.eventtype == "CHAN_START" && e.cid_num == caller)
            .unwrap_or_else(|| panic!("CEL saw no channel of caller {caller}"))
            .linkedid
            .clone()
    }

    /// The call (linkedid) whose first channel dialed `exten` from `context`.
    fn call_dialing(&self, context: &str, exten: &str) -> String {
        self.cel
            .iter()
            .find(|e| e.eventtype == "CHAN_START" && e.context == context && e.exten == exten)
            .unwrap_or_else(|| panic!("CEL saw no call to {exten}@{context}"))
            .linkedid
            .clone()
    }

    /// The `/hook` events of a call, in arrival order.
    fn events(&self, call_id: &str) -> Vec<Json> {
        hook(&self.got, call_id)
    }

    /// Every call id the `/hook` endpoint heard of.
    fn call_ids(&self) -> BTreeSet<String> {
        self.got
            .iter()
            .filter(|r| r.url.starts_with("/hook"))
            .map(|r| r.json()["call_id"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// When CEL wrote `LINKEDID_END` for a call (epoch seconds).
    fn linkedid_end(&self, call_id: &str) -> f64 {
        self.cel
            .iter()
            .find(|e| e.eventtype == "LINKEDID_END" && e.linkedid == call_id)
            .unwrap_or_else(|| panic!("CEL never ended {call_id}"))
            .time
    }

    /// When the receiver got a call's event (epoch seconds).
    fn arrival(&self, call_id: &str, event: &str) -> f64 {
        self.got
            .iter()
            .find(|r| {
                r.url.starts_with("/hook") && {
                    let j = r.json();
                    j["call_id"] == call_id && j["event"] == event
                }
            })
            .unwrap_or_else(|| panic!("no {event} for {call_id}"))
            .epoch()
    }
}

fn hook(got: &[Received], call_id: &str) -> Vec<Json> {
    got.iter()
        .filter(|r| r.url.starts_with("/hook"))
        .map(|r| r.json())
        .filter(|j| j["call_id"] == call_id)
        .collect()
}

fn kinds(evs: &[Json]) -> Vec<String> {
    evs.iter()
        .map(|e| e["event"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn last<'a>(evs: &'a [Json], kind: &str) -> &'a Json {
    evs.iter()
        .rev()
        .find(|e| e["event"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {evs:#?}"))
}

fn strs(v: &Json) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap_or("?").to_string())
        .collect()
}

/// One entry of `targets`.
#[derive(Debug, Clone)]
struct Target {
    ext: String,
    ring_seconds: f64,
    answered: bool,
}

fn targets(end: &Json) -> Vec<Target> {
    end["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("targets is not a JSON array: {end}"))
        .iter()
        .map(|t| Target {
            ext: t["ext"]
                .as_str()
                .unwrap_or_else(|| panic!("target without ext: {t}"))
                .to_string(),
            ring_seconds: t["ring_seconds"]
                .as_f64()
                .unwrap_or_else(|| panic!("ring_seconds is not a number: {t}")),
            answered: t["answered"]
                .as_bool()
                .unwrap_or_else(|| panic!("answered is not a bool: {t}")),
        })
        .collect()
}

/// The target for `ext`, asserting it rang `lo..=hi` seconds and whether it answered.
fn assert_target(end: &Json, ext: &str, lo: f64, hi: f64, answered: bool) {
    let all = targets(end);
    let t = all
        .iter()
        .find(|t| t.ext == ext)
        .unwrap_or_else(|| panic!("{ext} is not among the targets {all:?}"));
    assert!(
        (lo..=hi).contains(&t.ring_seconds),
        "{ext} rang {} s, expected {lo}..={hi}: {all:?}",
        t.ring_seconds
    );
    assert_eq!(t.answered, answered, "{ext} answered? {all:?}");
}

fn int(j: &Json, k: &str) -> i64 {
    j[k].as_i64()
        .unwrap_or_else(|| panic!("{k} is not an integer in {j}"))
}

fn assert_in(v: i64, lo: i64, hi: i64, what: &str) {
    assert!((lo..=hi).contains(&v), "{what} = {v}, expected {lo}..={hi}");
}

/// The end of a call that a person answered and the caller hung up, with one agent.
/// One transfer from agent `from` to agent `to`, as a CRM sees it: `start`, `answer` (from),
/// `transfer` (to), `end` naming both; returns the `end`.
fn assert_transferred<'a>(evs: &'a [Json], from: &str, to: &str) -> &'a Json {
    assert_eq!(
        kinds(evs),
        ["start", "answer", "transfer", "end"],
        "{evs:#?}"
    );
    assert_eq!(evs[1]["ext"], from);
    assert_eq!(evs[2]["ext"], to);
    assert_eq!(evs[2]["transferred_from"], from);
    let end = &evs[3];
    assert_eq!(end["status"], "ANSWER");
    assert_eq!(end["ext"], to, "the last agent the caller talked to");
    assert_eq!(end["answered_by"], from);
    assert_eq!(strs(&end["agents"]), [from, to]);
    assert_eq!(end["transfers"], 1);
    assert_eq!(end["transferred_from"], from);
    assert_eq!(end["hangup_by"], "caller");
    end
}

fn assert_answered_by_one(evs: &[Json], ext: &str) {
    assert_eq!(kinds(evs), ["start", "answer", "end"], "{evs:#?}");
    let (start, answer, end) = (&evs[0], &evs[1], &evs[2]);
    assert_eq!(start["direction"], "in");
    assert_eq!(start["ext"], Json::Null, "nobody answered yet at start");
    assert_eq!(answer["ext"], ext);
    assert_eq!(end["status"], "ANSWER");
    assert_eq!(end["ext"], ext);
    assert_eq!(end["answered_by"], ext);
    assert_eq!(strs(&end["agents"]), [ext]);
    assert_eq!(end["transfers"], 0);
    assert_eq!(end["transferred_from"], Json::Null);
    assert_eq!(end["merged_into"], Json::Null);
    assert_eq!(end["hangup_by"], "caller");
}

// ---- queues ----

#[test]
fn queue_answered_by_one_of_two_members() {
    let rx = Receiver::start();
    let Some(pbx) = start("queue-answered", &rx) else {
        return;
    };
    // sales rings 100 (answers after 1 s) and 102 (rings) at once; the caller talks 2 s.
    assert!(pbx.call("79160000601", "74951234601", 2000));
    let flow = Flow::settle(&pbx, &rx, "queue-answered");
    let evs = flow.events(&flow.call_of("79160000601"));
    assert_answered_by_one(&evs, "100");
    let end = &evs[2];
    assert_eq!(end["queue"], "sales");
    assert_in(int(end, "queue_wait"), 0, 2, "queue_wait");
    assert_eq!(targets(end).len(), 2, "{end}");
    assert_target(end, "100", 0.0, 2.5, true);
    assert_target(end, "102", 0.0, 2.5, false);
    assert_eq!(flow.call_ids().len(), 1, "one call: {:?}", flow.call_ids());
}

#[test]
fn queue_timing_out_is_noanswer_by_the_pbx() {
    let rx = Receiver::start();
    let Some(pbx) = start("queue-timeout", &rx) else {
        return;
    };
    // support rings only 102; Queue() gives up after 3 s and the dialplan hangs up.
    assert!(pbx.call("79160000602", "74951234602", 1000));
    let flow = Flow::settle(&pbx, &rx, "queue-timeout");
    let evs = flow.events(&flow.call_of("79160000602"));
    assert_eq!(kinds(&evs), ["start", "end"], "{evs:#?}");
    let end = &evs[1];
    assert_eq!(
        end["status"], "NOANSWER",
        "the caller did not hang up: {end}"
    );
    assert_eq!(end["hangup_by"], "pbx");
    assert_eq!(end["queue"], "support");
    assert_in(int(end, "queue_wait"), 2, 4, "queue_wait");
    assert_eq!(end["ext"], Json::Null);
    assert_eq!(end["answered_by"], Json::Null);
    assert_eq!(strs(&end["agents"]), Vec::<String>::new());
    assert_eq!(targets(end).len(), 1, "{end}");
    assert_target(end, "102", 2.0, 4.0, false);
    assert_eq!(end["duration"], 0);
}

#[test]
fn queue_abandoned_by_the_caller_is_cancel() {
    let rx = Receiver::start();
    let Some(pbx) = start("queue-abandoned", &rx) else {
        return;
    };
    // support rings only 102; the caller hangs up after 2 s in the queue.
    assert!(pbx.call_and_cancel("79160000603", "74951234603", 2000));
    let flow = Flow::settle(&pbx, &rx, "queue-abandoned");
    let evs = flow.events(&flow.call_of("79160000603"));
    assert_eq!(kinds(&evs), ["start", "end"], "{evs:#?}");
    let end = &evs[1];
    assert_eq!(end["status"], "CANCEL");
    assert_eq!(end["hangup_by"], "caller");
    assert_eq!(end["queue"], "support");
    assert_in(int(end, "queue_wait"), 1, 3, "queue_wait");
    assert_eq!(end["ext"], Json::Null);
    assert_target(end, "102", 1.0, 3.0, false);
}

// ---- ring group, hunting, Local channels ----

#[test]
fn ring_group_one_busy_one_answers() {
    let rx = Receiver::start();
    let Some(pbx) = start("ring-group", &rx) else {
        return;
    };
    // Dial(PJSIP/101&PJSIP/100): 101 is busy at once, 100 answers after 1 s.
    assert!(pbx.call("79160000604", "74951234604", 1500));
    let flow = Flow::settle(&pbx, &rx, "ring-group");
    let evs = flow.events(&flow.call_of("79160000604"));
    assert_answered_by_one(&evs, "100");
    let end = &evs[2];
    assert_eq!(targets(end).len(), 2, "{end}");
    assert_target(end, "101", 0.0, 1.0, false);
    assert_target(end, "100", 0.0, 2.5, true);
    assert_eq!(end["queue"], Json::Null);
}

#[test]
fn hunting_rings_one_extension_then_the_next() {
    let rx = Receiver::start();
    let Some(pbx) = start("hunting", &rx) else {
        return;
    };
    // Dial(PJSIP/102,2), then Dial(PJSIP/100): 100 answers after 1 s.
    assert!(pbx.call("79160000605", "74951234605", 1500));
    let flow = Flow::settle(&pbx, &rx, "hunting");
    let evs = flow.events(&flow.call_of("79160000605"));
    assert_answered_by_one(&evs, "100");
    let end = &evs[2];
    let t = targets(end);
    assert_eq!(
        t.iter().map(|t| t.ext.as_str()).collect::<Vec<_>>(),
        ["102", "100"],
        "in the order they rang: {t:?}"
    );
    assert_target(end, "102", 1.0, 3.0, false);
    assert_target(end, "100", 0.0, 2.5, true);
    assert_in(int(end, "wait_duration"), 2, 4, "wait_duration");
}

fn local_chain(name: &str, did: &str, caller: &str, optimized: bool) {
    let rx = Receiver::start();
    let Some(pbx) = start(name, &rx) else {
        return;
    };
    // Dial(Local/100@ext-local[/n]); ext-local dials PJSIP/100. The caller sends RTP, so that
    // Asterisk optimizes the Local pair away (unless /n).
    let ok = pbx
        .sipp_command("uac_rtp.xml", caller, did, 2000)
        .status()
        .unwrap()
        .success();
    assert!(ok, "the caller's SIPp failed");
    let flow = Flow::settle(&pbx, &rx, name);
    let optimize = flow.cel.iter().any(|e| e.eventtype == "LOCAL_OPTIMIZE");
    assert_eq!(
        optimize, optimized,
        "Asterisk optimized the Local pair away?"
    );
    let evs = flow.events(&flow.call_of(caller));
    assert_answered_by_one(&evs, "100");
    let end = &evs[2];
    assert_eq!(targets(end).len(), 1, "only the extension rang: {end}");
    assert_target(end, "100", 0.0, 2.5, true);
}

#[test]
fn local_channel_chain_is_followed_to_the_extension() {
    local_chain("local-chain", "74951234606", "79160000606", true);
}

#[test]
fn local_channel_chain_without_optimization_is_followed_to_the_extension() {
    local_chain("local-chain-n", "74951234607", "79160000607", false);
}

// ---- transfers ----

#[test]
fn blind_transfer_by_refer_names_both_agents() {
    let rx = Receiver::start();
    let Some(pbx) = start("blind-refer", &rx) else {
        return;
    };
    // 104 answers after 1 s, talks 1.5 s, sends REFER to 100; 100 answers after 1 s.
    assert!(pbx.call("79160000608", "74951234608", 6000));
    let flow = Flow::settle(&pbx, &rx, "blind-refer");
    assert!(
        flow.cel.iter().any(|e| e.eventtype == "BLINDTRANSFER"),
        "Asterisk saw no blind transfer"
    );
    let id = flow.call_of("79160000608");
    let evs = flow.events(&id);
    let end = assert_transferred(&evs, "104", "100");
    assert_target(end, "104", 0.0, 2.5, true);
    assert_target(end, "100", 0.0, 2.5, true);
    assert_eq!(flow.call_ids().len(), 1, "one call: {:?}", flow.call_ids());
}

#[test]
fn attended_transfer_by_feature_code_names_the_new_agent() {
    let rx = Receiver::start();
    let Some(pbx) = start("attended-feature", &rx) else {
        return;
    };
    let mut caller = pbx.spawn_call("79160000609", "74951234609", 7000);
    // Dial(PJSIP/100,20,tT): once 100 talks with the caller, it presses *2 103 (AMI Atxfer
    // queues those digits on its channel), 103 answers the consultation, 100 hangs up: the
    // transfer completes and the caller talks with 103.
    let agent = pbx.wait_channel("100 talking with the caller", WAIT, |c, all| {
        c.name.starts_with("PJSIP/100-")
            && c.up()
            && c.bridged_with(all)
                .iter()
                .any(|p| p.name.starts_with("PJSIP/anonymous-"))
    });
    let mut ami = pbx.ami();
    ami.ok(&[
        ("Action", "Atxfer"),
        ("Channel", &agent.name),
        ("Exten", "103"),
        ("Context", "from-internal"),
    ]);
    pbx.wait_channel("103 answering the consultation", WAIT, |c, all| {
        c.name.starts_with("PJSIP/103-") && c.up() && !c.bridged_with(all).is_empty()
    });
    ami.ok(&[("Action", "Hangup"), ("Channel", &agent.name)]);
    caller.wait().unwrap();
    let flow = Flow::settle(&pbx, &rx, "attended-feature");
    assert!(
        flow.cel.iter().any(|e| e.eventtype == "ATTENDEDTRANSFER"),
        "Asterisk saw no attended transfer"
    );
    let id = flow.call_of("79160000609");
    let evs = flow.events(&id);
    let end = assert_transferred(&evs, "100", "103");
    assert_target(end, "100", 0.0, 2.5, true);
    assert_target(end, "103", 0.0, 2.5, true);
    assert_eq!(flow.call_ids().len(), 1, "one call: {:?}", flow.call_ids());
}

#[test]
fn attended_transfer_from_a_desk_phone_merges_the_consultation_call() {
    let rx = Receiver::start();
    let Some(pbx) = start("attended-deskphone", &rx) else {
        return;
    };
    let mut caller = pbx.spawn_call("79160000610", "74951234610", 6000);
    let caller_chan = pbx.wait_channel("the caller talking with 100", WAIT, |c, all| {
        c.name.starts_with("PJSIP/anonymous-")
            && c.up()
            && c.bridged_with(all)
                .iter()
                .any(|p| p.name.starts_with("PJSIP/100-"))
    });
    // 100's phone places the consultation call to 103 (a second call, its own linkedid)...
    let mut consult = pbx.spawn_sipp("uac_until_bye.xml", "100", "103", 0);
    let target = pbx.wait_channel("103 answering 100's consultation", WAIT, |c, all| {
        c.name.starts_with("PJSIP/103-")
            && c.up()
            && c.bridged_with(all)
                .iter()
                .any(|p| p.name.starts_with("PJSIP/100-"))
    });
    // ...and completes the transfer: the caller and 103 are bridged (what REFER with Replaces
    // does), 100's two legs are hung up, the consultation call's linkedid ends.
    pbx.ami().ok(&[
        ("Action", "Bridge"),
        ("Channel1", &caller_chan.name),
        ("Channel2", &target.name),
        ("Tone", "no"),
    ]);
    consult.wait().unwrap();
    caller.wait().unwrap();
    let flow = Flow::settle(&pbx, &rx, "attended-deskphone");
    let a = flow.call_of("79160000610");
    let b = flow.call_dialing("from-internal", "103");
    assert_ne!(a, b);
    let evs = flow.events(&a);
    let end = assert_transferred(&evs, "100", "103");
    assert_eq!(end["merged_into"], Json::Null);

    // The consultation call: one start, at most one answer, one end, merged into the caller's
    // call, at the moment CEL ended it (not when the caller hung up).
    let consult_evs = flow.events(&b);
    let k = kinds(&consult_evs);
    assert_eq!(
        k.first().map(String::as_str),
        Some("start"),
        "{consult_evs:#?}"
    );
    assert_eq!(k.iter().filter(|e| *e == "start").count(), 1, "{k:?}");
    assert!(k.iter().filter(|e| *e == "answer").count() <= 1, "{k:?}");
    assert_eq!(k.iter().filter(|e| *e == "end").count(), 1, "{k:?}");
    assert_eq!(k.last().map(String::as_str), Some("end"), "{k:?}");
    let consult_end = last(&consult_evs, "end");
    assert_eq!(consult_end["merged_into"], a.as_str());
    assert_eq!(consult_end["direction"], "internal");
    let late = flow.arrival(&b, "end") - flow.linkedid_end(&b);
    assert!(
        (-0.2..=1.0).contains(&late),
        "the consultation's end came {late:.3} s after CEL's LINKEDID_END"
    );
    assert!(flow.arrival(&b, "end") < flow.arrival(&a, "end"));
    assert_eq!(flow.call_ids().len(), 2, "{:?}", flow.call_ids());
}

// ---- pickup, follow-me, click-to-call, internal ----

#[test]
fn directed_pickup_gives_the_caller_the_picker_and_merges_the_pickers_call() {
    let rx = Receiver::start();
    let Some(pbx) = start("pickup", &rx) else {
        return;
    };
    // The caller dials 105, who rings; 201 dials *8105 (PickupChan(PJSIP/105)), talks 2 s and
    // hangs up.
    let mut caller = pbx.spawn_call("79160000611", "74951234611", 8000);
    pbx.wait_channel("105 ringing", WAIT, |c, _| {
        c.name.starts_with("PJSIP/105-") && c.state == "Ringing"
    });
    assert!(pbx.call("201", "*8105", 2000));
    let _ = caller.wait();
    let flow = Flow::settle(&pbx, &rx, "pickup");
    assert!(
        flow.cel.iter().any(|e| e.eventtype == "PICKUP"),
        "Asterisk saw no pickup"
    );
    let a = flow.call_of("79160000611");
    let p = flow.call_dialing("from-internal", "*8105");
    assert_ne!(a, p);
    let evs = flow.events(&a);
    assert_eq!(kinds(&evs), ["start", "answer", "end"], "{evs:#?}");
    assert_eq!(evs[1]["ext"], "201", "who picked up answered");
    let end = &evs[2];
    assert_eq!(end["status"], "ANSWER");
    assert_eq!(end["ext"], "201");
    assert_eq!(end["answered_by"], "201");
    assert_eq!(strs(&end["agents"]), ["201"]);
    assert_eq!(end["transfers"], 0);
    assert_eq!(end["hangup_by"], "agent");
    assert_target(end, "105", 0.0, 2.0, false);

    let picker = flow.events(&p);
    let k = kinds(&picker);
    assert_eq!(k.iter().filter(|e| *e == "start").count(), 1, "{k:?}");
    assert!(k.iter().filter(|e| *e == "answer").count() <= 1, "{k:?}");
    assert_eq!(k.iter().filter(|e| *e == "end").count(), 1, "{k:?}");
    assert_eq!(k.last().map(String::as_str), Some("end"), "{k:?}");
    assert_eq!(last(&picker, "end")["merged_into"], a.as_str());
    let late = flow.arrival(&p, "end") - flow.linkedid_end(&p);
    assert!(
        (-0.2..=1.0).contains(&late),
        "the picker's end came {late:.3} s after CEL's LINKEDID_END"
    );
}

#[test]
fn follow_me_through_the_trunk_keeps_the_extension_and_names_the_mobile() {
    let rx = Receiver::start();
    let Some(pbx) = start("follow-me", &rx) else {
        return;
    };
    // 102 rings 2 s, then the PBX dials the mobile 79990001111 through the trunk (answers
    // after 1 s); the caller talks 2 s.
    assert!(pbx.call("79160000612", "74951234612", 2000));
    let flow = Flow::settle(&pbx, &rx, "follow-me");
    let evs = flow.events(&flow.call_of("79160000612"));
    assert_eq!(kinds(&evs), ["start", "answer", "end"], "{evs:#?}");
    let end = &evs[2];
    assert_eq!(end["status"], "ANSWER");
    assert_eq!(end["ext"], "102", "the extension that was called");
    assert_eq!(end["forwarded_to"], "79990001111");
    assert_eq!(end["hangup_by"], "caller");
    let t = targets(end);
    assert!(
        t.iter().all(|t| t.ext.len() == 3),
        "a trunk is never a target: {t:?}"
    );
    assert_target(end, "102", 1.0, 3.0, false);
    let agents = strs(&end["agents"]);
    assert!(
        !agents.iter().any(|a| a == "trunk" || a == "79990001111"),
        "a trunk is never an agent: {agents:?}"
    );
}

#[test]
fn click_to_call_answers_when_the_client_picks_up() {
    let rx = Receiver::start();
    let Some(pbx) = start("click-to-call", &rx) else {
        return;
    };
    // The PBX rings 100 (answers after 1 s), then dials the client through the trunk (answers
    // after 1 s); Dial's S(3) hangs up 3 s later.
    let url = format!(
        "http://127.0.0.1:{}/webhook/click?token=flow-token-1&from=100&to=84951112233",
        pbx.ports.http
    );
    let body = ureq::get(&url)
        .call()
        .expect("click-to-call request")
        .body_mut()
        .read_to_string()
        .unwrap();
    let reply: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["status"], "ok", "{body}");
    let id = reply["call_id"].as_str().unwrap().to_string();
    let flow = Flow::settle(&pbx, &rx, "click-to-call");
    let evs = flow.events(&id);
    assert_eq!(kinds(&evs), ["start", "answer", "end"], "{evs:#?}");
    for e in &evs {
        assert_eq!(e["direction"], "out");
        assert_eq!(e["ext"], "100");
        assert_eq!(e["called"], "84951112233");
    }
    let end = &evs[2];
    assert_eq!(end["status"], "ANSWER");
    assert_eq!(end["hangup_by"], "pbx");
    let client_answered = flow
        .cel
        .iter()
        .find(|e| e.eventtype == "ANSWER" && e.channel.starts_with("PJSIP/trunk-"))
        .expect("CEL saw the client answer")
        .time;
    assert!(
        flow.arrival(&id, "answer") >= client_answered,
        "answer came before the client picked up"
    );
}

#[test]
fn call_between_extensions_is_internal_and_left_out_by_default() {
    let rx = Receiver::start();
    let Some(pbx) = start("internal", &rx) else {
        return;
    };
    // 201 dials extension 100 (answers after 1 s) and talks 1.5 s.
    assert!(pbx.call("201", "100", 1500));
    let flow = Flow::settle(&pbx, &rx, "internal");
    let id = flow.call_of("201");
    let evs = flow.events(&id);
    assert_eq!(kinds(&evs), ["start", "answer", "end"], "{evs:#?}");
    for e in &evs {
        assert_eq!(e["direction"], "internal");
        assert_eq!(e["caller"], "201");
    }
    assert_eq!(evs[2]["status"], "ANSWER");
    assert_eq!(evs[2]["ext"], "100");
    assert!(
        !flow
            .got
            .iter()
            .any(|r| r.url.starts_with("/inout") && r.json()["call_id"] == id.as_str()),
        "a section with the default direction (in, out) got the internal call"
    );
}

// ---- presets on queue calls ----

/// The provider presets read the same facts: XVB's ANSWERED names the queue member who picked
/// up, MANGO's callStatus / waitDuration and Roistat's status tell answered, timed out and
/// abandoned queue calls apart.
#[test]
fn presets_name_the_queue_member_and_the_queue_outcome() {
    let conf = format!(
        "{FLOW_CONF}
[p-xvb]
type = webhook
preset = xvb
url = @RECEIVER@/xvb
access_code = 10019

[p-mango]
type = webhook
preset = mango
url = @RECEIVER@/mango

[p-roistat]
type = webhook
preset = roistat
url = @RECEIVER@/roistat
"
    );
    let rx = Receiver::start();
    let Some(pbx) = Sandbox::start("flow-presets", &conf, &rx.url()) else {
        return;
    };
    let (answered, timed_out, abandoned) = ("79160000621", "79160000622", "79160000623");
    assert!(pbx.call(answered, "74951234601", 1000));
    assert!(pbx.call(timed_out, "74951234602", 1000));
    assert!(pbx.call_and_cancel(abandoned, "74951234603", 1500));
    // Each endpoint has its own queue: wait for all three ends at each, not only at /hook.
    for (path, ends) in [
        ("/xvb", "event=COMPLETED"),
        ("/mango", "callStatus="),
        ("/roistat", "\"status\""),
    ] {
        rx.wait_for(&format!("three ends at {path}"), WAIT, |got| {
            got.iter()
                .filter(|r| {
                    r.url.starts_with(path) && (r.url.contains(ends) || r.body.contains(ends))
                })
                .count()
                >= 3
        });
    }
    let flow = Flow::settle(&pbx, &rx, "presets");
    let on = |prefix: &str| -> Vec<Vec<(String, String)>> {
        flow.got
            .iter()
            .filter(|r| r.url.starts_with(prefix))
            .map(|r| {
                if r.method == "GET" {
                    r.query()
                } else {
                    Received::pairs(&r.body)
                }
            })
            .collect()
    };
    let get = |pairs: &[(String, String)], k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };

    // XVB: ANSWERED carries the member who picked up; COMPLETED the outcome in XVB's words.
    let xvb = on("/xvb");
    let of = |phone: &str, event: &str| {
        xvb.iter()
            .find(|p| get(p, "phone") == phone && get(p, "event") == event)
            .cloned()
            .unwrap_or_else(|| panic!("XVB got no {event} for {phone}: {xvb:?}"))
    };
    assert_eq!(get(&of(answered, "ANSWERED"), "ext"), "100");
    assert_eq!(get(&of(answered, "COMPLETED"), "status"), "Success");
    assert_eq!(get(&of(answered, "COMPLETED"), "ext"), "100");
    assert_eq!(get(&of(timed_out, "COMPLETED"), "status"), "NoAnswer");
    assert_eq!(get(&of(abandoned, "COMPLETED"), "status"), "Cancel");
    assert!(
        !xvb.iter()
            .any(|p| get(p, "event") == "ANSWERED" && get(p, "phone") != answered),
        "only the answered queue call has ANSWERED: {xvb:?}"
    );

    // MANGO: 11xx only for the answered call; waitDuration is the wait until the member answered.
    let mango = on("/mango");
    let end_of = |caller: &str| {
        mango
            .iter()
            .find(|p| get(p, "callerNumber") == caller && !get(p, "callStatus").is_empty())
            .cloned()
            .unwrap_or_else(|| panic!("MANGO got no end for {caller}: {mango:?}"))
    };
    assert_eq!(get(&end_of(answered), "callStatus"), "1100");
    let wait: i64 = get(&end_of(answered), "waitDuration").parse().unwrap();
    assert_in(wait, 0, 3, "MANGO waitDuration of the answered queue call");
    assert_eq!(get(&end_of(timed_out), "callStatus"), "2100");
    assert_eq!(get(&end_of(abandoned), "callStatus"), "2300");

    // Roistat: the end's status in Asterisk's DIALSTATUS words.
    let roistat: Vec<Json> = flow
        .got
        .iter()
        .filter(|r| r.url.starts_with("/roistat"))
        .map(|r| r.json())
        .collect();
    let status_of = |caller: &str| {
        roistat
            .iter()
            .find(|j| j["caller"] == caller && !j["status"].is_null())
            .unwrap_or_else(|| panic!("Roistat got no end for {caller}: {roistat:?}"))["status"]
            .clone()
    };
    assert_eq!(status_of(answered), "ANSWER");
    assert_eq!(status_of(timed_out), "NOANSWER");
    assert_eq!(status_of(abandoned), "CANCEL");
}
