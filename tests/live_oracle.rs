//! Live oracle: Asterisk's own CEL and CDR judge res_webhook's calls.
//!
//! A concurrent mix of the office call flows (two of each, overlapping: queues, ring group,
//! hunting, Local chains, REFER, attended transfers by feature code and from a desk phone,
//! pickup, follow-me, IVR, busy) runs against the real Asterisk 22 with cel_custom and
//! cdr_custom writing CSV files. Then, for every linkedid CEL saw:
//! - our `end` arrived exactly once, within 1 s of CEL's `LINKEDID_END` (the receiver's arrival
//!   time and CEL's event time are both this machine's wall clock);
//! - `total_duration` matches CEL: `LINKEDID_END` minus the linkedid's first `CHAN_START`, within
//!   1.5 s (`total_duration` is whole seconds);
//! - answered or not matches the CDR. Which CDR: a linkedid has one CDR per pair of channels
//!   that were bridged or dialed (the caller's CDR per Dial/Queue attempt, a member's or a Local
//!   half's own CDR, the consultation's…), all carrying the linkedid. The call was answered
//!   (`status = ANSWER`) exactly when one of them is `ANSWERED` *with a `dstchannel`*: a dialed
//!   or bridged party answered. A CDR without `dstchannel` is the PBX answering by itself (an
//!   IVR's `Answer()`: `ANSWERED` in CDR, not an answer for a CRM). A linkedid without any CDR
//!   (the picker's own call in a pickup: Asterisk moves its CDR into the picked-up call) is not
//!   judged on this point;
//! - and we sent no `end` for a call id CEL did not end.
//!
//! On failure it prints a table of every call.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Cdr, CelEvent, Json, Receiver, Sandbox};

const WAIT: Duration = Duration::from_secs(30);

const CONF: &str = "
[general]
internal_contexts = from-internal

[oracle]
type = webhook
url = @RECEIVER@/oracle
format = json
events = start, answer, end
direction = in, out, internal
param = call_id => ${call_id}
param = event => ${event}
param = status => ${status}
param = total_duration => ${total_duration}
param = ext => ${ext}
param = merged_into => ${merged_into}
";

/// One desk-phone consultation is set up at a time, so that its new channels are recognizable.
static DESK: Mutex<()> = Mutex::new(());
/// One pickup at a time, so that each picks up its own caller.
static PICKUP: Mutex<()> = Mutex::new(());

fn talking_caller<'a>(
    caller: &'a str,
    agent: &'a str,
) -> impl Fn(&common::Channel, &[common::Channel]) -> bool + 'a {
    move |c, all| {
        c.name.starts_with("PJSIP/anonymous-")
            && c.callerid == caller
            && c.up()
            && c.bridged_with(all)
                .iter()
                .any(|p| p.name.starts_with(agent) && p.up())
    }
}

/// Runs one flow as `caller`; returns when its phones are done.
fn run_flow(pbx: &Sandbox, flow: &str, caller: &str) {
    match flow {
        "answered" => drop(pbx.call(caller, "74951234567", 2000)),
        "busy" => drop(pbx.call(caller, "74951234568", 500)),
        "ivr" => drop(pbx.call(caller, "74951234571", 1500)),
        "queue-answered" => drop(pbx.call(caller, "74951234601", 2000)),
        "queue-timeout" => drop(pbx.call(caller, "74951234602", 500)),
        "queue-abandoned" => drop(pbx.call_and_cancel(caller, "74951234603", 1500)),
        "ring-group" => drop(pbx.call(caller, "74951234604", 1500)),
        "hunting" => drop(pbx.call(caller, "74951234605", 1500)),
        "local-chain" => drop(
            pbx.sipp_command("uac_rtp.xml", caller, "74951234606", 2000)
                .status(),
        ),
        "local-chain-n" => drop(pbx.call(caller, "74951234607", 2000)),
        "blind-refer" => drop(pbx.call(caller, "74951234608", 5000)),
        "follow-me" => drop(pbx.call(caller, "74951234612", 1500)),
        "attended-feature" => {
            let mut phone = pbx.spawn_call(caller, "74951234609", 6000);
            let c = pbx.wait_channel(
                &format!("{caller} talking with 100"),
                WAIT,
                talking_caller(caller, "PJSIP/100-"),
            );
            let all = pbx.channels();
            let agent = c
                .bridged_with(&all)
                .into_iter()
                .find(|p| p.name.starts_with("PJSIP/100-"))
                .map(|p| p.name.clone());
            if let Some(agent) = agent {
                let mut ami = pbx.ami();
                ami.ok(&[
                    ("Action", "Atxfer"),
                    ("Channel", &agent),
                    ("Exten", "103"),
                    ("Context", "from-internal"),
                ]);
                // 100 is bridged with Local/103@from-internal-N;1, whose ;2 talks with 103.
                pbx.wait_channel(&format!("{agent}'s consultation"), WAIT, |c, all| {
                    c.name == agent
                        && c.bridged_with(all).iter().any(|l| {
                            l.name.starts_with("Local/103@from-internal-")
                                && l.name.ends_with(";1")
                                && {
                                    let two = l.name.replace(";1", ";2");
                                    all.iter().any(|x| {
                                        x.name == two
                                            && x.bridged_with(all)
                                                .iter()
                                                .any(|t| t.name.starts_with("PJSIP/103-") && t.up())
                                    })
                                }
                        })
                });
                ami.ok(&[("Action", "Hangup"), ("Channel", &agent)]);
            }
            let _ = phone.wait();
        }
        "attended-deskphone" => {
            let mut phone = pbx.spawn_call(caller, "74951234610", 6000);
            let c = pbx.wait_channel(
                &format!("{caller} talking with 100"),
                WAIT,
                talking_caller(caller, "PJSIP/100-"),
            );
            let guard = DESK.lock().unwrap_or_else(|p| p.into_inner());
            let before: HashSet<String> = pbx.channels().into_iter().map(|c| c.name).collect();
            let mut consult = pbx.spawn_sipp("uac_until_bye.xml", "100", "103", 0);
            let target = pbx.wait_channel("103 answering a consultation", WAIT, |t, all| {
                t.name.starts_with("PJSIP/103-")
                    && !before.contains(&t.name)
                    && t.up()
                    && t.bridged_with(all)
                        .iter()
                        .any(|p| p.name.starts_with("PJSIP/100-") && !before.contains(&p.name))
            });
            pbx.ami().ok(&[
                ("Action", "Bridge"),
                ("Channel1", &c.name),
                ("Channel2", &target.name),
                ("Tone", "no"),
            ]);
            drop(guard);
            let _ = consult.wait();
            let _ = phone.wait();
        }
        "pickup" => {
            // One pickup at a time: *8105 picks up whichever 105 rings.
            let guard = PICKUP.lock().unwrap_or_else(|p| p.into_inner());
            let mut phone = pbx.spawn_call(caller, "74951234611", 4000);
            pbx.wait_channel("105 ringing", WAIT, |c, _| {
                c.name.starts_with("PJSIP/105-") && c.state == "Ringing"
            });
            pbx.call("201", "*8105", 1500);
            drop(guard);
            let _ = phone.wait();
        }
        other => panic!("no flow {other}"),
    }
}

const FLOWS: &[&str] = &[
    "answered",
    "busy",
    "ivr",
    "queue-answered",
    "queue-timeout",
    "queue-abandoned",
    "ring-group",
    "hunting",
    "local-chain",
    "local-chain-n",
    "blind-refer",
    "attended-feature",
    "attended-deskphone",
    "pickup",
    "follow-me",
];

/// What the oracle knows of one linkedid.
#[derive(Debug, Default)]
struct Row {
    flow: String,
    cel_start: Option<f64>,
    cel_end: Option<f64>,
    ends: Vec<(f64, Json)>,
    cdr_answered: Option<bool>,
    problems: Vec<String>,
}

#[test]
fn every_call_matches_asterisks_cel_and_cdr() {
    let rx = Receiver::start();
    let Some(pbx) = Sandbox::start("oracle", CONF, &rx.url()) else {
        return;
    };
    let mut callers: BTreeMap<String, &str> = BTreeMap::new();
    std::thread::scope(|s| {
        for round in 0..2 {
            for (i, flow) in FLOWS.iter().enumerate() {
                let caller = format!("7916170{round}{i:02}0");
                callers.insert(caller.clone(), flow);
                let pbx = &pbx;
                s.spawn(move || run_flow(pbx, flow, &caller));
                // Staggered starts: a few calls a second, many overlapping.
                std::thread::sleep(Duration::from_millis(150));
            }
        }
    });

    // Asterisk is done: no channel, and CEL ended every linkedid it saw.
    let (cel, ended) = pbx.wait_cel_all_ended(WAIT);
    // Our side is done: an end for every linkedid CEL ended (or WAIT passed: the table says).
    let deadline = Instant::now() + WAIT;
    let got = loop {
        let got = rx.received();
        let have: BTreeSet<String> = got
            .iter()
            .map(|r| r.json())
            .filter(|j| j["event"] == "end")
            .filter_map(|j| j["call_id"].as_str().map(String::from))
            .collect();
        if ended.is_subset(&have) || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let cdr = pbx.cdr();
    pbx.save_flow_trace("oracle-mix", &got);

    let mut rows = judge(&cel, &cdr, &got, &callers);
    let failed: Vec<&Row> = rows.values().filter(|r| !r.problems.is_empty()).collect();
    if !failed.is_empty() {
        panic!(
            "{} of {} calls disagree with CEL/CDR:\n{}",
            failed.len(),
            rows.len(),
            table(&mut rows)
        );
    }
    eprintln!("{}", table(&mut rows));
}

fn judge(
    cel: &[CelEvent],
    cdr: &[Cdr],
    got: &[common::Received],
    callers: &BTreeMap<String, &str>,
) -> BTreeMap<String, Row> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for e in cel {
        let row = rows.entry(e.linkedid.clone()).or_default();
        if e.eventtype == "CHAN_START" && row.cel_start.is_none() {
            row.cel_start = Some(e.time);
            row.flow = match callers.get(&e.cid_num) {
                Some(f) => f.to_string(),
                None => format!("{} -> {}", e.cid_num, e.exten),
            };
        }
        if e.eventtype == "LINKEDID_END" {
            row.cel_end = Some(e.time);
        }
    }
    for c in cdr {
        if let Some(row) = rows.get_mut(&c.linkedid) {
            let answered = c.disposition == "ANSWERED" && !c.dstchannel.is_empty();
            row.cdr_answered = Some(row.cdr_answered.unwrap_or(false) || answered);
        }
    }
    for r in got {
        let j = r.json();
        if j["event"] != "end" {
            continue;
        }
        let id = j["call_id"].as_str().unwrap_or("").to_string();
        match rows.get_mut(&id) {
            Some(row) => row.ends.push((r.epoch(), j)),
            None => {
                let row = rows.entry(id).or_default();
                row.flow = "(unknown to CEL)".into();
                row.ends.push((r.epoch(), j));
            }
        }
    }
    for row in rows.values_mut() {
        let Some(cel_end) = row.cel_end else {
            row.problems
                .push("an end for a call CEL did not end".into());
            continue;
        };
        if row.ends.len() != 1 {
            row.problems.push(format!(
                "{} end event(s), expected exactly 1",
                row.ends.len()
            ));
        }
        let Some((at, end)) = row.ends.first() else {
            continue;
        };
        let late = at - cel_end;
        if late.abs() > 1.0 {
            row.problems
                .push(format!("end arrived {late:+.3} s from CEL's LINKEDID_END"));
        }
        let cel_total = cel_end - row.cel_start.unwrap_or(cel_end);
        match end["total_duration"].as_f64() {
            Some(t) if (t - cel_total).abs() <= 1.5 => {}
            other => row.problems.push(format!(
                "total_duration {other:?}, CEL says {cel_total:.2} s"
            )),
        }
        if let Some(answered) = row.cdr_answered {
            if (end["status"] == "ANSWER") != answered {
                row.problems.push(format!(
                    "status {} but CDR says {}",
                    end["status"],
                    if answered { "answered" } else { "not answered" }
                ));
            }
        }
    }
    rows
}

fn table(rows: &mut BTreeMap<String, Row>) -> String {
    let mut out = format!(
        "{:<16} {:<20} {:>7} {:>5} {:>8} {:>6} {:<9} {:<8} {:<16} problems\n",
        "call_id", "flow", "cel_dur", "ends", "late_s", "total", "status", "cdr", "merged_into"
    );
    for (id, r) in rows.iter() {
        let dur = match (r.cel_start, r.cel_end) {
            (Some(s), Some(e)) => format!("{:.2}", e - s),
            _ => "-".into(),
        };
        let (late, total, status, merged) = match r.ends.first() {
            Some((at, j)) => (
                r.cel_end
                    .map(|e| format!("{:+.3}", at - e))
                    .unwrap_or("-".into()),
                j["total_duration"].to_string(),
                j["status"].as_str().unwrap_or("-").to_string(),
                j["merged_into"].as_str().unwrap_or("").to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into(), String::new()),
        };
        let cdr = match r.cdr_answered {
            Some(true) => "answered",
            Some(false) => "no",
            None => "-",
        };
        let _ = writeln!(
            out,
            "{:<16} {:<20} {:>7} {:>5} {:>8} {:>6} {:<9} {:<8} {:<16} {}",
            id,
            r.flow,
            dur,
            r.ends.len(),
            late,
            total,
            status,
            cdr,
            merged,
            r.problems.join("; ")
        );
    }
    out
}
