//! Turns per-channel host events into per-call events: every channel sharing a linkedid is one
//! call; `start` when its first channel appears, `answer` once when a dialed leg answers,
//! `end` once when its last channel is gone (SPEC §2).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use super::call::{CallEvent, CallRecord, Direction, EventKind};
use super::host_event::{ChannelChange, ChannelInfo, HostEvent};

/// Channel variable MixMonitor sets to the file it records to.
pub const RECORDING_VARIABLE: &str = "MIXMONITOR_FILENAME";

/// Channel variable Dial sets; covers a Dial that failed before dialing anyone (a bad
/// endpoint name gives CHANUNAVAIL with no dial message).
pub const DIALSTATUS_VARIABLE: &str = "DIALSTATUS";

/// Call data that arrived before its call's first channel (the `WEBHOOK()` write comes straight
/// from the channel thread, channel events through Stasis) is kept this long.
const EARLY_DATA_TTL: Duration = Duration::from_secs(60);

/// A call with no event for this long is ended by [`Correlator::expire`] (lost hangup).
pub const STALE_CALL_AGE: Duration = Duration::from_secs(24 * 3600);

struct CallState {
    record: CallRecord,
    first_uniqueid: String,
    first_name: String,
    live: HashSet<String>,
    answered: bool,
    /// Last final DIALSTATUS seen on any leg of the call.
    last_dialstatus: Option<String>,
    /// Hangup source of the first channel: its own name when the caller hung up.
    first_hangup_source: String,
    /// Click-to-call: the agent's extension, whose pickup is not the call's `answer`.
    originated_from: Option<String>,
    last_activity: SystemTime,
}

/// The call table. Single-threaded: owned by the engine's correlation thread.
pub struct Correlator {
    internal_contexts: Vec<String>,
    calls: HashMap<String, CallState>,
    /// uniqueid → linkedid, for events that carry only a uniqueid.
    channels: HashMap<String, String>,
    early_data: HashMap<String, (SystemTime, Vec<(String, String)>)>,
    /// Click-to-call orders not yet matched by their first channel: linkedid → (from, to).
    originated: HashMap<String, (SystemTime, String, String)>,
}

fn utc(t: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(t)
}

/// The internal party's extension from a channel name: `PJSIP/100-0000000a` → `100`,
/// `Local/100@from-queue-00000001;1` → `100`.
pub fn extension_of_channel(name: &str) -> String {
    let after_tech = name.split_once('/').map_or(name, |(_, rest)| rest);
    let no_local_half = after_tech.split(';').next().unwrap_or(after_tech);
    let no_suffix = match no_local_half.rsplit_once('-') {
        Some((head, tail)) if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_hexdigit()) => {
            head
        }
        _ => no_local_half,
    };
    no_suffix.split('@').next().unwrap_or(no_suffix).to_string()
}

/// A final DIALSTATUS as one of the words SPEC §2 lists; `None` for progress reports
/// (`RINGING`, `PROCEEDING`, `PROGRESS`) and dial begin (empty).
fn final_status(s: &str) -> Option<&'static str> {
    Some(match s {
        "ANSWER" => "ANSWER",
        "BUSY" => "BUSY",
        "NOANSWER" => "NOANSWER",
        "CANCEL" => "CANCEL",
        "CONGESTION" => "CONGESTION",
        "CHANUNAVAIL" | "INVALIDARGS" | "DONTCALL" => "CHANUNAVAIL",
        "TORTURE" => "NOANSWER",
        _ => return None,
    })
}

impl Correlator {
    /// `internal_contexts`: a call whose first channel starts in one of them is `out`.
    pub fn new(internal_contexts: Vec<String>) -> Correlator {
        Correlator {
            internal_contexts,
            calls: HashMap::new(),
            channels: HashMap::new(),
            early_data: HashMap::new(),
            originated: HashMap::new(),
        }
    }

    /// Changes which contexts count as internal, for calls that start from now on.
    pub fn set_internal_contexts(&mut self, contexts: Vec<String>) {
        self.internal_contexts = contexts;
    }

    /// Records the caller-history flags of a call, for its later events.
    pub fn annotate(&mut self, call_id: &str, is_new: bool, is_duplicate: bool) {
        if let Some(call) = self.calls.get_mut(call_id) {
            call.record.is_new = Some(is_new);
            call.record.is_duplicate = Some(is_duplicate);
        }
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Feeds one host event; returns the call events it completes, in order.
    pub fn handle(&mut self, ev: HostEvent) -> Vec<CallEvent> {
        match ev {
            HostEvent::Channel { change, info, at } => match change {
                ChannelChange::New => self.on_new(info, at),
                ChannelChange::Up => {
                    self.touch(&info.linkedid, at);
                    Vec::new()
                }
                ChannelChange::Dead => self.on_dead(info, at),
            },
            HostEvent::Dial {
                peer_linkedid,
                peer_name,
                status,
                at,
                ..
            } => self.on_dial(&peer_linkedid, &peer_name, &status, at),
            HostEvent::VarSet {
                linkedid,
                uniqueid,
                name,
                value,
                at,
            } => {
                if let Some(call) = self.calls.get_mut(&linkedid) {
                    call.last_activity = at;
                    if name == RECORDING_VARIABLE {
                        call.record.recording = value.clone();
                    }
                    if name == DIALSTATUS_VARIABLE
                        && uniqueid == call.first_uniqueid
                        && !call.answered
                    {
                        if let Some(s) = final_status(&value) {
                            call.last_dialstatus = Some(s.to_string());
                        }
                    }
                    if uniqueid == call.first_uniqueid {
                        call.record.vars.insert(name, value);
                    }
                }
                Vec::new()
            }
            HostEvent::Originated {
                linkedid,
                from,
                to,
                at,
            } => {
                self.originated.insert(linkedid, (at, from, to));
                Vec::new()
            }
            HostEvent::CallData {
                linkedid,
                name,
                value,
                at,
            } => {
                match self.calls.get_mut(&linkedid) {
                    Some(call) => {
                        call.last_activity = at;
                        call.record.data.insert(name, value);
                    }
                    None => {
                        let entry = self
                            .early_data
                            .entry(linkedid)
                            .or_insert_with(|| (at, Vec::new()));
                        entry.1.push((name, value));
                    }
                }
                Vec::new()
            }
        }
    }

    fn touch(&mut self, linkedid: &str, at: SystemTime) {
        if let Some(call) = self.calls.get_mut(linkedid) {
            call.last_activity = at;
        }
    }

    fn on_new(&mut self, info: ChannelInfo, at: SystemTime) -> Vec<CallEvent> {
        self.channels
            .insert(info.uniqueid.clone(), info.linkedid.clone());
        if let Some(call) = self.calls.get_mut(&info.linkedid) {
            call.live.insert(info.uniqueid);
            call.last_activity = at;
            return Vec::new();
        }
        let mut direction = if self.internal_contexts.contains(&info.context) {
            Direction::Out
        } else {
            Direction::In
        };
        let mut called = if info.exten.is_empty() || info.exten == "s" {
            info.dnid.clone()
        } else {
            info.exten.clone()
        };
        let mut ext = match direction {
            Direction::Out if !info.caller_number.is_empty() => info.caller_number.clone(),
            Direction::Out => extension_of_channel(&info.name),
            Direction::In => String::new(),
        };
        let mut caller = info.caller_number.clone();
        let mut originated_from = None;
        if let Some((_, from, to)) = self.originated.remove(&info.linkedid) {
            // Click-to-call: the agent's extension calls the client.
            direction = Direction::Out;
            ext = from.clone();
            caller = from.clone();
            called = to;
            originated_from = Some(from);
        }
        let mut data = std::collections::BTreeMap::new();
        if let Some((_, early)) = self.early_data.remove(&info.linkedid) {
            data.extend(early);
        }
        let record = CallRecord {
            call_id: info.linkedid.clone(),
            direction,
            caller,
            caller_name: info.caller_name.clone(),
            called,
            ext,
            time_start: utc(info.created.unwrap_or(at)),
            context: info.context.clone(),
            exten: info.exten.clone(),
            channel: info.name.clone(),
            uniqueid: info.uniqueid.clone(),
            accountcode: info.accountcode.clone(),
            data,
            ..Default::default()
        };
        let event = CallEvent {
            kind: EventKind::Start,
            call: record.clone(),
        };
        self.calls.insert(
            info.linkedid.clone(),
            CallState {
                record,
                first_uniqueid: info.uniqueid.clone(),
                first_name: info.name.clone(),
                live: HashSet::from([info.uniqueid]),
                answered: false,
                last_dialstatus: None,
                first_hangup_source: String::new(),
                originated_from,
                last_activity: at,
            },
        );
        vec![event]
    }

    fn on_dial(
        &mut self,
        linkedid: &str,
        peer_name: &str,
        status: &str,
        at: SystemTime,
    ) -> Vec<CallEvent> {
        let Some(call) = self.calls.get_mut(linkedid) else {
            return Vec::new();
        };
        call.last_activity = at;
        let Some(status) = final_status(status) else {
            return Vec::new(); // dial begin or progress
        };
        if call.originated_from.as_deref() == Some(extension_of_channel(peer_name).as_str()) {
            return Vec::new(); // click-to-call: the agent picking up is not the client answering
        }
        call.last_dialstatus = Some(status.to_string());
        if status != "ANSWER" || call.answered {
            return Vec::new();
        }
        call.answered = true;
        call.record.time_answer = Some(utc(at));
        if call.record.direction == Direction::In {
            call.record.ext = extension_of_channel(peer_name);
        }
        vec![CallEvent {
            kind: EventKind::Answer,
            call: call.record.clone(),
        }]
    }

    fn on_dead(&mut self, info: ChannelInfo, at: SystemTime) -> Vec<CallEvent> {
        self.channels.remove(&info.uniqueid);
        let Some(call) = self.calls.get_mut(&info.linkedid) else {
            return Vec::new();
        };
        call.last_activity = at;
        call.live.remove(&info.uniqueid);
        if info.uniqueid == call.first_uniqueid {
            call.record.hangup_cause = Some(info.hangup_cause);
            call.first_hangup_source = info.hangup_source.clone();
            if !info.caller_name.is_empty() {
                call.record.caller_name = info.caller_name.clone();
            }
        }
        if !call.live.is_empty() {
            return Vec::new();
        }
        let mut call = self.calls.remove(&info.linkedid).expect("present above");
        vec![Self::finish(&mut call, at)]
    }

    fn finish(call: &mut CallState, at: SystemTime) -> CallEvent {
        let status = if call.answered {
            "ANSWER".to_string()
        } else if let Some(s) = &call.last_dialstatus {
            s.clone()
        } else if !call.first_hangup_source.is_empty()
            && call.first_hangup_source == call.first_name
        {
            "CANCEL".to_string() // never dialed anyone, and the caller hung up
        } else {
            "NOANSWER".to_string()
        };
        call.record.status = Some(status);
        call.record.time_end = Some(utc(at));
        CallEvent {
            kind: EventKind::End,
            call: call.record.clone(),
        }
    }

    /// Ends calls that have seen no event for [`STALE_CALL_AGE`] (their hangup was lost) and
    /// forgets early call data nobody claimed. Call it now and then.
    pub fn expire(&mut self, now: SystemTime) -> Vec<CallEvent> {
        self.early_data
            .retain(|_, (t, _)| now.duration_since(*t).unwrap_or_default() < EARLY_DATA_TTL);
        self.originated
            .retain(|_, (t, _, _)| now.duration_since(*t).unwrap_or_default() < EARLY_DATA_TTL * 5);
        let stale: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                now.duration_since(c.last_activity).unwrap_or_default() >= STALE_CALL_AGE
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in stale {
            if let Some(mut call) = self.calls.remove(&id) {
                log::warn!("call {id}: no hangup seen for 24 h; sending its end event now");
                for u in &call.live {
                    self.channels.remove(u);
                }
                out.push(Self::finish(&mut call, now));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::value::{FieldSource, Value};

    const T0: u64 = 1_700_000_000;

    fn at(secs: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0) + Duration::from_secs_f64(secs)
    }

    fn chan(linkedid: &str, uniqueid: &str, name: &str, context: &str, exten: &str) -> ChannelInfo {
        ChannelInfo {
            linkedid: linkedid.into(),
            uniqueid: uniqueid.into(),
            name: name.into(),
            caller_number: "79161234567".into(),
            caller_name: "Ivan".into(),
            context: context.into(),
            exten: exten.into(),
            ..Default::default()
        }
    }

    fn new(info: &ChannelInfo, t: f64) -> HostEvent {
        HostEvent::Channel {
            change: ChannelChange::New,
            info: info.clone(),
            at: at(t),
        }
    }

    fn dead(info: &ChannelInfo, t: f64, cause: i32, source: &str) -> HostEvent {
        let mut info = info.clone();
        info.hangup_cause = cause;
        info.hangup_source = source.into();
        HostEvent::Channel {
            change: ChannelChange::Dead,
            info,
            at: at(t),
        }
    }

    fn dial(peer: &ChannelInfo, status: &str, t: f64) -> HostEvent {
        HostEvent::Dial {
            caller_uniqueid: Some("c.1".into()),
            peer_uniqueid: peer.uniqueid.clone(),
            peer_linkedid: peer.linkedid.clone(),
            peer_name: peer.name.clone(),
            dialstring: "100".into(),
            status: status.into(),
            at: at(t),
        }
    }

    fn run(c: &mut Correlator, evs: Vec<HostEvent>) -> Vec<CallEvent> {
        evs.into_iter().flat_map(|e| c.handle(e)).collect()
    }

    fn kinds(evs: &[CallEvent]) -> Vec<&'static str> {
        evs.iter().map(|e| e.kind.as_str()).collect()
    }

    fn field(ev: &CallEvent, name: &str) -> Value {
        ev.field(name).unwrap()
    }

    fn caller() -> ChannelInfo {
        chan(
            "c.1",
            "c.1",
            "PJSIP/caller-00000001",
            "from-external",
            "74951234567",
        )
    }

    fn agent() -> ChannelInfo {
        chan("c.1", "c.2", "PJSIP/100-00000002", "from-external", "s")
    }

    #[test]
    fn answered_inbound_call_gives_start_answer_end() {
        let mut c = Correlator::new(vec!["from-internal".into()]);
        let (a, b) = (caller(), agent());
        let evs = run(
            &mut c,
            vec![
                new(&a, 0.0),
                new(&b, 0.1),
                dial(&b, "", 0.1),
                dial(&b, "RINGING", 0.2),
                dial(&b, "ANSWER", 4.2),
                dead(&b, 10.5, 16, "PJSIP/100-00000002"),
                dead(&a, 10.6, 16, ""),
            ],
        );
        assert_eq!(kinds(&evs), ["start", "answer", "end"]);
        assert!(evs.iter().all(|e| e.call.call_id == "c.1"));
        let (start, answer, end) = (&evs[0], &evs[1], &evs[2]);
        assert_eq!(field(start, "direction"), Value::Str("in".into()));
        assert_eq!(field(start, "called"), Value::Str("74951234567".into()));
        assert_eq!(field(start, "ext"), Value::Null);
        assert_eq!(field(answer, "ext"), Value::Str("100".into()));
        assert_eq!(field(end, "status"), Value::Str("ANSWER".into()));
        assert_eq!(field(end, "wait_duration"), Value::Int(4));
        assert_eq!(field(end, "duration"), Value::Int(6));
        assert_eq!(field(end, "total_duration"), Value::Int(10));
        assert_eq!(field(end, "hangup_cause"), Value::Int(16));
        assert_eq!(
            field(end, "channel"),
            Value::Str("PJSIP/caller-00000001".into())
        );
        assert_eq!(c.active_calls(), 0);
    }

    #[test]
    fn busy_gives_no_answer_and_busy_status() {
        let mut c = Correlator::new(vec![]);
        let (a, b) = (caller(), agent());
        let evs = run(
            &mut c,
            vec![
                new(&a, 0.0),
                new(&b, 0.1),
                dial(&b, "", 0.1),
                dial(&b, "RINGING", 0.2),
                dial(&b, "BUSY", 0.3),
                dead(&b, 0.3, 17, ""),
                dead(&a, 0.5, 17, "dialplan/builtin"),
            ],
        );
        assert_eq!(kinds(&evs), ["start", "end"]);
        assert_eq!(field(&evs[1], "status"), Value::Str("BUSY".into()));
        assert_eq!(field(&evs[1], "duration"), Value::Int(0));
        assert_eq!(field(&evs[1], "time_answer"), Value::Null);
    }

    #[test]
    fn end_waits_for_the_last_channel_in_any_order() {
        let mut c = Correlator::new(vec![]);
        let (a, b) = (caller(), agent());
        let evs = run(
            &mut c,
            vec![
                new(&a, 0.0),
                new(&b, 0.1),
                dial(&b, "ANSWER", 1.0),
                dead(&a, 5.0, 16, "PJSIP/caller-00000001"),
            ],
        );
        assert_eq!(kinds(&evs), ["start", "answer"]);
        let evs = run(&mut c, vec![dead(&b, 5.2, 16, "")]);
        assert_eq!(kinds(&evs), ["end"]);
        assert_eq!(field(&evs[0], "total_duration"), Value::Int(5));
    }

    #[test]
    fn caller_hanging_up_before_any_dial_is_cancel_and_dialplan_hangup_is_noanswer() {
        let mut c = Correlator::new(vec![]);
        let a = caller();
        let evs = run(
            &mut c,
            vec![new(&a, 0.0), dead(&a, 3.0, 16, "PJSIP/caller-00000001")],
        );
        assert_eq!(field(&evs[1], "status"), Value::Str("CANCEL".into()));
        assert_eq!(field(&evs[1], "wait_duration"), Value::Int(3));

        let mut c = Correlator::new(vec![]);
        let evs = run(
            &mut c,
            vec![new(&a, 0.0), dead(&a, 3.0, 16, "dialplan/builtin")],
        );
        assert_eq!(field(&evs[1], "status"), Value::Str("NOANSWER".into()));
    }

    #[test]
    fn ivr_answer_alone_is_not_an_answer_event() {
        let mut c = Correlator::new(vec![]);
        let a = caller();
        let up = HostEvent::Channel {
            change: ChannelChange::Up,
            info: a.clone(),
            at: at(0.2),
        };
        let evs = run(
            &mut c,
            vec![new(&a, 0.0), up, dead(&a, 8.0, 16, "PJSIP/caller-00000001")],
        );
        assert_eq!(kinds(&evs), ["start", "end"]);
        assert_eq!(field(&evs[1], "status"), Value::Str("CANCEL".into()));
    }

    #[test]
    fn outbound_call_from_internal_context() {
        let mut c = Correlator::new(vec!["from-internal".into()]);
        let mut a = chan(
            "o.1",
            "o.1",
            "PJSIP/internal-00000001",
            "from-internal",
            "84951112233",
        );
        a.caller_number = "101".into();
        let trunk = chan("o.1", "o.2", "PJSIP/102-00000002", "from-internal", "s");
        let evs = run(
            &mut c,
            vec![
                new(&a, 0.0),
                new(&trunk, 0.1),
                dial(&trunk, "ANSWER", 2.0),
                dead(&trunk, 5.0, 16, ""),
                dead(&a, 5.0, 16, ""),
            ],
        );
        assert_eq!(kinds(&evs), ["start", "answer", "end"]);
        for e in &evs {
            assert_eq!(field(e, "direction"), Value::Str("out".into()));
            assert_eq!(field(e, "ext"), Value::Str("101".into()));
            assert_eq!(field(e, "caller"), Value::Str("101".into()));
            assert_eq!(field(e, "called"), Value::Str("84951112233".into()));
        }
    }

    #[test]
    fn answer_fires_once_with_parallel_legs() {
        let mut c = Correlator::new(vec![]);
        let a = caller();
        let b = agent();
        let b2 = chan("c.1", "c.3", "PJSIP/101-00000003", "from-external", "s");
        let evs = run(
            &mut c,
            vec![
                new(&a, 0.0),
                new(&b, 0.1),
                new(&b2, 0.1),
                dial(&b2, "ANSWER", 2.0),
                dial(&b, "CANCEL", 2.0),
                dial(&b, "ANSWER", 2.1),
                dead(&b, 2.1, 16, ""),
                dead(&b2, 9.0, 16, ""),
                dead(&a, 9.0, 16, ""),
            ],
        );
        assert_eq!(kinds(&evs), ["start", "answer", "end"]);
        assert_eq!(field(&evs[1], "ext"), Value::Str("101".into()));
        assert_eq!(field(&evs[2], "status"), Value::Str("ANSWER".into()));
    }

    #[test]
    fn call_data_and_first_channel_variables_reach_end() {
        let mut c = Correlator::new(vec![]);
        let (a, b) = (caller(), agent());
        let data = |name: &str, value: &str, t: f64| HostEvent::CallData {
            linkedid: "c.1".into(),
            name: name.into(),
            value: value.into(),
            at: at(t),
        };
        let var = |uid: &str, name: &str, value: &str| HostEvent::VarSet {
            linkedid: "c.1".into(),
            uniqueid: uid.into(),
            name: name.into(),
            value: value.into(),
            at: at(1.0),
        };
        let evs = run(
            &mut c,
            vec![
                data("EARLY", "before-new", 0.0), // WEBHOOK() raced ahead of the channel event
                new(&a, 0.0),
                new(&b, 0.1),
                var("c.1", "MYVAR", "one"),
                var("c.2", "MYVAR", "peer-value-ignored"),
                var("c.1", "MYVAR", "two"),
                data("UTM_SOURCE", "google", 2.0),
                var(
                    "c.1",
                    RECORDING_VARIABLE,
                    "/var/spool/asterisk/monitor/x.wav",
                ),
                dead(&b, 3.0, 16, ""),
                dead(&a, 3.0, 16, ""),
            ],
        );
        let end = evs.last().unwrap();
        assert_eq!(end.kind, EventKind::End);
        assert_eq!(field(end, "UTM_SOURCE"), Value::Str("google".into()));
        assert_eq!(field(end, "MYVAR"), Value::Str("two".into()));
        assert_eq!(field(end, "EARLY"), Value::Str("before-new".into()));
        assert_eq!(
            field(end, "recording"),
            Value::Str("/var/spool/asterisk/monitor/x.wav".into())
        );
        assert_eq!(end.field("NOT_SET"), None);
    }

    #[test]
    fn events_for_unknown_calls_are_ignored_and_stale_calls_expire() {
        let mut c = Correlator::new(vec![]);
        let b = agent();
        assert!(run(&mut c, vec![dial(&b, "ANSWER", 0.0), dead(&b, 1.0, 16, "")]).is_empty());
        let a = caller();
        run(&mut c, vec![new(&a, 0.0)]);
        assert!(c.expire(at(3600.0)).is_empty());
        let evs = c.expire(at(0.0) + STALE_CALL_AGE);
        assert_eq!(kinds(&evs), ["end"]);
        assert_eq!(c.active_calls(), 0);
    }

    #[test]
    fn click_to_call_is_out_from_the_extension_to_the_client() {
        let mut c = Correlator::new(vec![]);
        let mut first = chan(
            "c2c-1.1",
            "c2c-1.1",
            "Local/100@from-internal-00000001;1",
            "from-internal",
            "",
        );
        first.caller_number = "84951112233".into();
        let evs = run(
            &mut c,
            vec![
                HostEvent::Originated {
                    linkedid: "c2c-1.1".into(),
                    from: "100".into(),
                    to: "84951112233".into(),
                    at: at(0.0),
                },
                new(&first, 0.0),
                dial(
                    &chan(
                        "c2c-1.1",
                        "c2c-1.3",
                        "PJSIP/100-00000003",
                        "from-internal",
                        "s",
                    ),
                    "ANSWER",
                    2.0,
                ),
                dial(
                    &chan(
                        "c2c-1.1",
                        "c2c-1.4",
                        "PJSIP/103-00000004",
                        "from-internal",
                        "s",
                    ),
                    "ANSWER",
                    5.0,
                ),
            ],
        );
        assert_eq!(kinds(&evs), ["start", "answer"]);
        assert_eq!(
            field(&evs[1], "wait_duration"),
            Value::Int(5),
            "answered when the client picked up"
        );
        assert_eq!(field(&evs[0], "direction"), Value::Str("out".into()));
        assert_eq!(field(&evs[0], "ext"), Value::Str("100".into()));
        assert_eq!(field(&evs[0], "caller"), Value::Str("100".into()));
        assert_eq!(field(&evs[0], "called"), Value::Str("84951112233".into()));
    }

    #[test]
    fn extension_from_channel_names() {
        assert_eq!(extension_of_channel("PJSIP/100-0000000a"), "100");
        assert_eq!(
            extension_of_channel("Local/100@from-queue-00000001;1"),
            "100"
        );
        assert_eq!(extension_of_channel("SIP/trunk-01"), "trunk");
        assert_eq!(extension_of_channel("PJSIP/sales-team"), "sales-team");
        assert_eq!(extension_of_channel(""), "");
    }
}
