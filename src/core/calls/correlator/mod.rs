//! Turns per-channel host events into per-call events (SPEC §2).
//!
//! A call starts as the channels sharing a linkedid, but Asterisk gives every channel in a
//! bridge the bridge's oldest linkedid: an attended transfer, a pickup or two calls bridged into
//! one move channels from one call into another. So the correlator follows channels, not their
//! first linkedid: a call ends when its last channel is gone *or has moved into another call*
//! (the moment CEL writes `LINKEDID_END`), and the parties talking with the caller are found
//! through bridges and Local channel pairs ([`topology`]), not from dial results alone.

mod outcome;
pub mod summary;
mod topology;

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt, HashSet};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use crate::core::ingest::host_event::{ChannelChange, ChannelInfo, HostEvent};
use crate::core::model::call::{CallEvent, CallRecord, Direction, EventKind, Target};
use outcome::{final_dial_status, Hangups};
use topology::{local_pair, Chan, Role, Topology};

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
    /// The caller's own channel: the call's first channel that is not a Local half (for
    /// click-to-call, the agent's phone).
    caller: Option<String>,
    caller_name: String,
    /// Channels in this call now.
    members: HashSet<String>,
    /// A call from an extension holds its `start` until its first dial says whether it goes
    /// out through a trunk (`out`) or to another extension (`internal`).
    start_pending: bool,
    answered: bool,
    /// The internal party talking with the caller now.
    current: Option<String>,
    /// Every channel that talked with the caller: uniqueid → name.
    parties: HashMap<String, String>,
    /// Whether the last party that hung up did so itself.
    last_party_hung_up: bool,
    /// Extensions ringing now: uniqueid → (index into `record.targets`, since).
    ringing: HashMap<String, (usize, SystemTime)>,
    /// Ring time per target, summed before truncating to seconds.
    ring_time: Vec<Duration>,
    /// Last final DIALSTATUS seen on any leg of the call.
    last_dialstatus: Option<String>,
    queue_since: Option<SystemTime>,
    queue_waited: Option<Duration>,
    caller_hangup_source: String,
    last_activity: SystemTime,
}

/// The call table. Single-threaded: owned by the engine's correlation thread.
pub struct Correlator {
    internal_contexts: Vec<String>,
    calls: HashMap<String, CallState>,
    topology: Topology,
    early_data: HashMap<String, (SystemTime, Vec<(String, String)>)>,
    /// Click-to-call orders not yet matched by their first channel: linkedid → (from, to).
    originated: HashMap<String, (SystemTime, String, String)>,
}

fn utc(t: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(t)
}

fn secs(d: Duration) -> i64 {
    // Whole seconds, truncated, as Asterisk's CDR counts billsec.
    d.as_secs() as i64
}

fn since(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or_default()
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

/// The number a dial string reaches: `trunk/79990001111`, `79990001111@trunk` and
/// `trunk/sip:79990001111@10.0.0.1` → `79990001111`.
fn dialed_number(dialstring: &str) -> String {
    let last = dialstring.rsplit('/').next().unwrap_or(dialstring);
    let user = last.split('@').next().unwrap_or(last);
    let user = ["sip:", "sips:", "tel:"]
        .iter()
        .find_map(|scheme| user.strip_prefix(scheme))
        .unwrap_or(user);
    user.to_string()
}

impl Correlator {
    /// `internal_contexts`: a call whose first channel starts in one of them is placed by an
    /// extension, and a channel created there is an internal party.
    pub fn new(internal_contexts: Vec<String>) -> Correlator {
        Correlator {
            internal_contexts,
            calls: HashMap::new(),
            topology: Topology::default(),
            early_data: HashMap::new(),
            originated: HashMap::new(),
        }
    }

    /// Changes which contexts count as internal, for channels that appear from now on.
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

    /// What `webhook show calls` lists: every call in progress, as of `now`.
    pub fn in_progress(&self, now: SystemTime) -> Vec<summary::CallSummary> {
        self.calls
            .values()
            .map(|c| summary::CallSummary {
                call_id: c.record.call_id.clone(),
                direction: c.record.direction,
                caller: c.record.caller.clone(),
                called: c.record.called.clone(),
                ext: c.record.ext.clone(),
                state: if c.answered {
                    "answered"
                } else if c.queue_since.is_some() {
                    "queued"
                } else {
                    "ringing"
                },
                age: since(c.record.time_start.into(), now),
            })
            .collect()
    }

    /// The call a channel belongs to now.
    fn call_of(&self, uniqueid: &str) -> Option<String> {
        self.topology.chans.get(uniqueid).map(|c| c.call.clone())
    }

    /// Feeds one host event; returns the call events it completes, in order.
    pub fn handle(&mut self, ev: HostEvent) -> Vec<CallEvent> {
        let mut out = Vec::new();
        match ev {
            HostEvent::Channel { change, info, at } => match change {
                ChannelChange::New => self.on_new(info, at, &mut out),
                ChannelChange::Up | ChannelChange::Changed => self.on_update(info, at, &mut out),
                ChannelChange::Dead => self.on_dead(info, at, &mut out),
            },
            HostEvent::Dial {
                caller_uniqueid,
                peer_uniqueid,
                peer_linkedid,
                dialstring,
                status,
                at,
                ..
            } => {
                let call_id = caller_uniqueid
                    .as_deref()
                    .and_then(|c| self.call_of(c))
                    .or_else(|| self.call_of(&peer_uniqueid))
                    .unwrap_or(peer_linkedid);
                self.on_dial(&call_id, &peer_uniqueid, &dialstring, &status, at, &mut out);
            }
            HostEvent::VarSet {
                linkedid,
                uniqueid,
                name,
                value,
                at,
            } => {
                let call_id = self.call_of(&uniqueid).unwrap_or(linkedid);
                if let Some(call) = self.calls.get_mut(&call_id) {
                    call.last_activity = at;
                    if name == RECORDING_VARIABLE {
                        call.record.recording = value.clone();
                    }
                    if name == DIALSTATUS_VARIABLE
                        && uniqueid == call.first_uniqueid
                        && !call.answered
                    {
                        if let Some(s) = final_dial_status(&value) {
                            call.last_dialstatus = Some(s.to_string());
                        }
                    }
                    if uniqueid == call.first_uniqueid {
                        call.record.vars.insert(name, value);
                    }
                }
            }
            HostEvent::Originated {
                linkedid,
                from,
                to,
                at,
            } => {
                self.originated.insert(linkedid, (at, from, to));
            }
            HostEvent::CallData {
                linkedid,
                name,
                value,
                at,
            } => match self.calls.get_mut(&linkedid) {
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
            },
        }
        out
    }

    fn role_of(&self, info: &ChannelInfo) -> Role {
        // Without `internal_contexts` every phone the PBX dials counts as an extension (a
        // call's first channel is its caller): agents are named, trunks cannot be told apart.
        let dialed_without_config =
            self.internal_contexts.is_empty() && self.calls.contains_key(info.linkedid.as_str());
        if let Some(pair) = local_pair(info.name.as_str()) {
            Role::Local { pair }
        } else if dialed_without_config
            || self
                .internal_contexts
                .iter()
                .any(|c| c == info.context.as_str())
        {
            Role::Internal {
                ext: extension_of_channel(info.name.as_str()),
            }
        } else {
            Role::External
        }
    }

    fn on_new(&mut self, info: ChannelInfo, at: SystemTime, out: &mut Vec<CallEvent>) {
        let role = self.role_of(&info);
        let is_local = matches!(role, Role::Local { .. });
        self.topology.add(
            info.uniqueid.as_str(),
            Chan {
                call: info.linkedid.to_string(),
                name: info.name.to_string(),
                role,
                bridge: info.bridge.to_string(),
                number: String::new(),
                bridged_at: (!info.bridge.is_empty()).then_some(at),
            },
        );
        if let Some(call) = self.calls.get_mut(info.linkedid.as_str()) {
            call.members.insert(info.uniqueid.to_string());
            call.last_activity = at;
            if call.caller.is_none() && !is_local {
                call.caller = Some(info.uniqueid.to_string());
                call.caller_name = info.name.to_string();
            }
            return;
        }
        let from_extension = self
            .internal_contexts
            .iter()
            .any(|c| c == info.context.as_str());
        let mut direction = if from_extension {
            Direction::Out
        } else {
            Direction::In
        };
        let mut called = if info.exten.is_empty() || info.exten == "s" {
            info.dnid.to_string()
        } else {
            info.exten.to_string()
        };
        let mut ext = match direction {
            Direction::Out if !info.caller_number.is_empty() => info.caller_number.to_string(),
            Direction::Out => extension_of_channel(info.name.as_str()),
            _ => String::new(),
        };
        let mut caller = info.caller_number.to_string();
        let mut originated = false;
        if let Some((_, from, to)) = self.originated.remove(info.linkedid.as_str()) {
            // Click-to-call: the agent's extension calls the client.
            direction = Direction::Out;
            ext = from.clone();
            caller = from;
            called = to;
            originated = true;
        }
        let mut data = BTreeMap::new();
        if let Some((_, early)) = self.early_data.remove(info.linkedid.as_str()) {
            data.extend(early);
        }
        let record = CallRecord {
            call_id: info.linkedid.to_string(),
            direction,
            caller,
            caller_name: info.caller_name.to_string(),
            called,
            ext,
            time_start: utc(info.created.unwrap_or(at)),
            context: info.context.to_string(),
            exten: info.exten.to_string(),
            channel: info.name.to_string(),
            uniqueid: info.uniqueid.to_string(),
            accountcode: info.accountcode.to_string(),
            data,
            ..Default::default()
        };
        let start_pending = from_extension && !originated;
        if !start_pending {
            out.push(CallEvent {
                kind: EventKind::Start,
                call: record.clone(),
            });
        }
        self.calls.insert(
            info.linkedid.to_string(),
            CallState {
                record,
                first_uniqueid: info.uniqueid.to_string(),
                caller: (!is_local).then(|| info.uniqueid.to_string()),
                caller_name: if is_local {
                    String::new()
                } else {
                    info.name.into()
                },
                members: [info.uniqueid.into()].into_iter().collect(),
                start_pending,
                answered: false,
                current: None,
                parties: HashMap::new(),
                last_party_hung_up: false,
                ringing: HashMap::new(),
                ring_time: Vec::new(),
                last_dialstatus: None,
                queue_since: None,
                queue_waited: None,
                caller_hangup_source: String::new(),
                last_activity: at,
            },
        );
    }

    fn on_update(&mut self, info: ChannelInfo, at: SystemTime, out: &mut Vec<CallEvent>) {
        let uid = info.uniqueid.as_str();
        let Some(old_call) = self.call_of(uid) else {
            return; // a channel that existed before the module was loaded
        };
        let moved = info.linkedid != old_call;
        if moved {
            self.move_channel(uid, &old_call, info.linkedid.as_str(), at, out);
        }
        let rebridged = self.topology.set_bridge(uid, info.bridge.as_str(), at);
        let call_id = info.linkedid.to_string();
        if let Some(call) = self.calls.get_mut(&call_id) {
            call.last_activity = at;
            if call.caller.as_deref() == Some(uid) {
                let in_queue = info.appl == "Queue";
                if in_queue && call.queue_since.is_none() {
                    call.record.queue = info.appl_data.split(',').next().unwrap_or("").to_string();
                    call.queue_since = Some(at);
                } else if !in_queue {
                    Self::leave_queue(call, at);
                }
            }
        }
        // Who talks with whom changes only with a bridge or a call: an answer or a queue change
        // alone needs no walk. A change can connect the caller of any call whose channels are
        // connected to this one.
        if !(moved || rebridged) {
            return;
        }
        let mut affected: Vec<String> = self
            .topology
            .component(uid)
            .into_iter()
            .filter_map(|u| self.call_of(u))
            .collect();
        affected.sort();
        affected.dedup();
        for id in affected {
            self.evaluate(&id, at, out);
        }
    }

    /// A channel's linkedid changed: it moved into another call. The call it left ends when
    /// that was its last channel (CEL's `LINKEDID_END`).
    fn move_channel(
        &mut self,
        uid: &str,
        from: &str,
        to: &str,
        at: SystemTime,
        out: &mut Vec<CallEvent>,
    ) {
        if let Some(chan) = self.topology.chans.get_mut(uid) {
            chan.call = to.to_string();
        }
        if let Some(call) = self.calls.get_mut(to) {
            call.members.insert(uid.to_string());
            call.last_activity = at;
        }
        let Some(call) = self.calls.get_mut(from) else {
            return;
        };
        call.members.remove(uid);
        call.last_activity = at;
        call.record.merged_into = to.to_string();
        if call.members.is_empty() {
            let call = self.calls.remove(from).expect("present above");
            Self::finish(call, at, out);
        }
    }

    /// Whom the caller talks with now: the first party is the call's `answer`; a different
    /// internal party later is a `transfer`.
    fn evaluate(&mut self, call_id: &str, at: SystemTime, out: &mut Vec<CallEvent>) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some(caller) = call.caller.clone() else {
            return;
        };
        let parties: Vec<&str> = self
            .topology
            .parties(&caller)
            .into_iter()
            .filter(|u| self.topology.chans[*u].call == call_id)
            .collect();
        if parties.is_empty() {
            return;
        }
        for &p in &parties {
            let chan = &self.topology.chans[p];
            call.parties.insert(p.to_string(), chan.name.clone());
            if let Some((i, since_t)) = call.ringing.remove(p) {
                call.ring_time[i] += since(since_t, at);
                call.record.targets[i].answered = true;
            }
        }
        let ext_of = |u: &str| match &self.topology.chans[u].role {
            Role::Internal { ext } => Some(ext.clone()),
            _ => None,
        };
        let internal: Option<String> = match &call.current {
            Some(c) if parties.contains(&c.as_str()) => Some(c.clone()),
            _ => parties
                .iter()
                .find(|u| ext_of(u).is_some())
                .map(|u| u.to_string()),
        };
        if !call.answered {
            if call.start_pending {
                call.record.direction = if internal.is_some() {
                    Direction::Internal
                } else {
                    Direction::Out
                };
                Self::send_start(call, out);
            }
            call.answered = true;
            call.record.time_answer = Some(utc(at));
            Self::leave_queue(call, at);
            if call.record.direction != Direction::Out {
                if let Some(i) = &internal {
                    call.record.ext = ext_of(i).unwrap_or_default();
                    call.current = Some(i.clone());
                } else if let Some(x) = parties.first() {
                    // Forwarded out through a trunk: `ext` stays the extension that was called.
                    call.record.forwarded_to = self.topology.chans[*x].number.clone();
                    if let Some(t) = call.record.targets.last() {
                        call.record.ext = t.ext.clone();
                    }
                }
            }
            if call.record.forwarded_to.is_empty() && !call.record.ext.is_empty() {
                call.record.answered_by = call.record.ext.clone();
                call.record.agents.push(call.record.ext.clone());
            }
            Self::refresh_targets(call, at);
            out.push(CallEvent {
                kind: EventKind::Answer,
                call: call.record.clone(),
            });
            return;
        }
        if call.record.direction == Direction::Out {
            return;
        }
        let Some(i) = internal else { return };
        if call.current.as_ref() == Some(&i) {
            return;
        }
        call.current = Some(i.clone());
        let ext = ext_of(&i).unwrap_or_default();
        if ext == call.record.ext {
            return;
        }
        call.record.transfers += 1;
        call.record.transferred_from = std::mem::replace(&mut call.record.ext, ext.clone());
        if call.record.agents.last() != Some(&ext) {
            call.record.agents.push(ext);
        }
        Self::refresh_targets(call, at);
        out.push(CallEvent {
            kind: EventKind::Transfer,
            call: call.record.clone(),
        });
    }

    /// `ring_seconds` as of `at`, counting extensions still ringing.
    fn refresh_targets(call: &mut CallState, at: SystemTime) {
        let mut total = call.ring_time.clone();
        for (i, since_t) in call.ringing.values() {
            total[*i] += since(*since_t, at);
        }
        for (t, d) in call.record.targets.iter_mut().zip(total) {
            t.ring_seconds = secs(d);
        }
    }

    fn send_start(call: &mut CallState, out: &mut Vec<CallEvent>) {
        call.start_pending = false;
        out.push(CallEvent {
            kind: EventKind::Start,
            call: call.record.clone(),
        });
    }

    fn leave_queue(call: &mut CallState, at: SystemTime) {
        if let Some(t) = call.queue_since.take() {
            let waited = call.queue_waited.unwrap_or_default() + since(t, at);
            call.queue_waited = Some(waited);
            call.record.queue_wait = Some(secs(waited));
        }
    }

    fn on_dial(
        &mut self,
        call_id: &str,
        peer: &str,
        dialstring: &str,
        status: &str,
        at: SystemTime,
        out: &mut Vec<CallEvent>,
    ) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.last_activity = at;
        let role = match self.topology.chans.get_mut(peer) {
            Some(chan) => {
                if chan.role == Role::External && chan.number.is_empty() {
                    chan.number = dialed_number(dialstring);
                }
                chan.role.clone()
            }
            None => Role::External,
        };
        if call.start_pending {
            // The first dial of a call from an extension tells where it goes.
            match &role {
                Role::Internal { .. } => call.record.direction = Direction::Internal,
                Role::External => call.record.direction = Direction::Out,
                Role::Local { .. } => {}
            }
            if !matches!(role, Role::Local { .. }) {
                Self::send_start(call, out);
            }
        }
        if status.is_empty() {
            if let Role::Internal { ext } = &role {
                if !call.ringing.contains_key(peer) && !call.parties.contains_key(peer) {
                    let i = match call.record.targets.iter().position(|t| &t.ext == ext) {
                        Some(i) => i,
                        None => {
                            call.record.targets.push(Target {
                                ext: ext.clone(),
                                ..Default::default()
                            });
                            call.ring_time.push(Duration::ZERO);
                            call.record.targets.len() - 1
                        }
                    };
                    call.ringing.insert(peer.to_string(), (i, at));
                }
            }
            return;
        }
        let Some(status) = final_dial_status(status) else {
            return; // progress
        };
        if let Some((i, since_t)) = call.ringing.remove(peer) {
            call.ring_time[i] += since(since_t, at);
            if status == "ANSWER" {
                call.record.targets[i].answered = true;
            }
        }
        if !call.answered {
            call.last_dialstatus = Some(status.to_string());
        }
    }

    fn on_dead(&mut self, info: ChannelInfo, at: SystemTime, out: &mut Vec<CallEvent>) {
        let uid = info.uniqueid.as_str();
        let Some(chan) = self.topology.remove(uid) else {
            return;
        };
        if chan.call != info.linkedid {
            self.move_channel(uid, &chan.call.clone(), info.linkedid.as_str(), at, out);
        }
        let call_id = info.linkedid.as_str();
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.last_activity = at;
        call.members.remove(uid);
        if let Some((i, since_t)) = call.ringing.remove(uid) {
            call.ring_time[i] += since(since_t, at);
        }
        let is_caller = call.caller.as_deref() == Some(uid);
        if is_caller || (call.caller.is_none() && uid == call.first_uniqueid) {
            call.record.hangup_cause = Some(info.hangup_cause);
            call.caller_hangup_source = info.hangup_source.to_string();
            if !info.caller_name.is_empty() {
                call.record.caller_name = info.caller_name.to_string();
            }
        } else if call.parties.contains_key(uid) && call.caller.is_some() {
            let caller_alive = call
                .caller
                .as_ref()
                .is_some_and(|c| self.topology.chans.contains_key(c));
            if caller_alive {
                call.last_party_hung_up = info.hangup_source == chan.name;
            }
        }
        if call.members.is_empty() {
            let call = self.calls.remove(call_id).expect("present above");
            Self::finish(call, at, out);
        }
    }

    /// The call's end event; the call is gone from the table, so its record moves into it.
    fn finish(mut call: CallState, at: SystemTime, out: &mut Vec<CallEvent>) {
        if call.start_pending {
            // Never dialed anything: it stayed inside the PBX.
            call.record.direction = Direction::Internal;
            Self::send_start(&mut call, out);
        }
        Self::refresh_targets(&mut call, at);
        Self::leave_queue(&mut call, at);
        let hangup_by = outcome::hangup_by(&Hangups {
            caller_name: &call.caller_name,
            caller_source: &call.caller_hangup_source,
            source_is_party: call
                .parties
                .values()
                .any(|n| *n == call.caller_hangup_source),
            last_party_hung_up: call.last_party_hung_up,
        });
        let status = outcome::status(call.answered, call.last_dialstatus.as_deref(), hangup_by);
        call.record.status = Some(status.to_string());
        call.record.hangup_by = Some(hangup_by);
        call.record.time_end = Some(utc(at));
        out.push(CallEvent {
            kind: EventKind::End,
            call: call.record,
        });
    }

    /// Ends calls that have seen no event for [`STALE_CALL_AGE`] (their hangup was lost) and
    /// forgets early call data nobody claimed. Call it now and then.
    pub fn expire(&mut self, now: SystemTime) -> Vec<CallEvent> {
        self.early_data
            .retain(|_, (t, _)| since(*t, now) < EARLY_DATA_TTL);
        self.originated
            .retain(|_, (t, _, _)| since(*t, now) < EARLY_DATA_TTL * 5);
        let stale: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| since(c.last_activity, now) >= STALE_CALL_AGE)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in stale {
            if let Some(call) = self.calls.remove(&id) {
                log::warn!("call {id}: no hangup seen for 24 h; sending its end event now");
                for u in &call.members {
                    self.topology.remove(u);
                }
                Self::finish(call, now, &mut out);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::value::{FieldSource, Value};

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
            peer_uniqueid: peer.uniqueid.to_string(),
            peer_linkedid: peer.linkedid.to_string(),
            peer_name: peer.name.to_string(),
            dialstring: "100".into(),
            status: status.into(),
            at: at(t),
        }
    }

    /// `info` entered `bridge` (empty: left its bridge) at `t`.
    fn bridge(info: &ChannelInfo, bridge: &str, t: f64) -> HostEvent {
        let mut info = info.clone();
        info.bridge = bridge.into();
        changed(info, t)
    }

    /// A snapshot of `info` that changed linkedid, bridge or application at `t`.
    fn changed(info: ChannelInfo, t: f64) -> HostEvent {
        HostEvent::Channel {
            change: ChannelChange::Changed,
            info,
            at: at(t),
        }
    }

    fn run(c: &mut Correlator, evs: Vec<HostEvent>) -> Vec<CallEvent> {
        evs.into_iter().flat_map(|e| c.handle(e)).collect()
    }

    /// (call, event) of each event, in order: which call each event belongs to.
    fn call_kinds(evs: &[CallEvent]) -> Vec<(String, &'static str)> {
        evs.iter()
            .map(|e| (e.call.call_id.clone(), e.kind.as_str()))
            .collect()
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
        chan("c.1", "c.2", "PJSIP/100-00000002", "from-internal", "s")
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
                bridge(&b, "br-1", 4.2),
                bridge(&a, "br-1", 4.2),
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
                bridge(&a, "br-1", 1.0),
                bridge(&b, "br-1", 1.0),
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
        let trunk = chan("o.1", "o.2", "PJSIP/trunk-00000002", "from-trunk", "s");
        let evs = run(
            &mut c,
            vec![
                new(&a, 0.0),
                new(&trunk, 0.1),
                dial(&trunk, "ANSWER", 2.0),
                bridge(&trunk, "br-o", 2.0),
                bridge(&a, "br-o", 2.0),
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
        let mut c = Correlator::new(vec!["from-internal".into()]);
        let a = caller();
        let b = agent();
        let b2 = chan("c.1", "c.3", "PJSIP/101-00000003", "from-internal", "s");
        let evs = run(
            &mut c,
            vec![
                new(&a, 0.0),
                new(&b, 0.1),
                new(&b2, 0.1),
                dial(&b, "", 0.1),
                dial(&b2, "", 0.1),
                dial(&b2, "ANSWER", 2.0),
                bridge(&b2, "br-1", 2.0),
                bridge(&a, "br-1", 2.0),
                dial(&b, "CANCEL", 2.0),
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
    fn click_to_call_answers_when_the_client_picks_up_even_on_the_same_endpoint() {
        let mut c = Correlator::new(vec!["from-internal".into()]);
        let l1 = chan(
            "k.1",
            "k.1",
            "Local/100@from-internal-0001;1",
            "from-internal",
            "",
        );
        let l2 = chan(
            "k.1",
            "k.2",
            "Local/100@from-internal-0001;2",
            "from-internal",
            "100",
        );
        let agent = chan("k.1", "k.3", "PJSIP/100-00000003", "from-internal", "s");
        // The client is reached through the same endpoint as the agent.
        let client = chan("k.1", "k.4", "PJSIP/100-00000004", "from-internal", "s");
        let evs = run(
            &mut c,
            vec![
                HostEvent::Originated {
                    linkedid: "k.1".into(),
                    from: "100".into(),
                    to: "84951112233".into(),
                    at: at(0.0),
                },
                new(&l1, 0.0),
                new(&l2, 0.0),
                new(&agent, 0.1),
                dial(&agent, "", 0.1),
                dial(&agent, "ANSWER", 2.0),
                bridge(&agent, "br-a", 2.0),
                bridge(&l2, "br-a", 2.0),
                new(&client, 2.1),
                dial(&client, "", 2.1),
                dial(&client, "ANSWER", 5.0),
                bridge(&client, "br-c", 5.0),
                bridge(&l1, "br-c", 5.0),
                dead(&l1, 6.0, 16, ""),
                dead(&l2, 6.0, 16, ""),
                dead(&client, 9.0, 16, "PJSIP/100-00000004"),
                dead(&agent, 9.0, 16, ""),
            ],
        );
        assert_eq!(kinds(&evs), ["start", "answer", "end"]);
        assert_eq!(
            field(&evs[1], "wait_duration"),
            Value::Int(5),
            "answered when the client picked up"
        );
        assert_eq!(field(&evs[0], "direction"), Value::Str("out".into()));
        assert_eq!(field(&evs[0], "ext"), Value::Str("100".into()));
        assert_eq!(field(&evs[0], "caller"), Value::Str("100".into()));
        assert_eq!(field(&evs[0], "called"), Value::Str("84951112233".into()));
        assert_eq!(field(&evs[2], "status"), Value::Str("ANSWER".into()));
        assert_eq!(field(&evs[2], "hangup_by"), Value::Str("agent".into()));
    }

    fn ext_chan(call: &str, uid: &str, ext: &str) -> ChannelInfo {
        let n: u32 = uid.bytes().map(u32::from).sum();
        chan(
            call,
            uid,
            &format!("PJSIP/{ext}-{n:08x}"),
            "from-internal",
            "s",
        )
    }

    fn strs(v: Value) -> Vec<String> {
        match v {
            Value::List(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::Str(s) => s,
                    Value::Record(f) => {
                        format!("{:?}", f.iter().map(|(_, v)| v).collect::<Vec<_>>())
                    }
                    other => format!("{other:?}"),
                })
                .collect(),
            other => panic!("not a list: {other:?}"),
        }
    }

    #[test]
    fn queue_answered_by_one_of_two_members_names_queue_wait_and_targets() {
        let mut c = Correlator::new(vec!["from-internal".into()]);
        let a = caller();
        let (m1, m2) = (ext_chan("c.1", "2", "100"), ext_chan("c.1", "3", "102"));
        let mut queued = a.clone();
        queued.appl = "Queue".into();
        queued.appl_data = "sales,t".into();
        let evs = run(
            &mut c,
            vec![
                new(&a, 0.0),
                changed(queued.clone(), 1.0),
                new(&m1, 1.0),
                new(&m2, 1.0),
                dial(&m1, "", 1.0),
                dial(&m2, "", 1.0),
                dial(&m1, "ANSWER", 4.0),
                dial(&m2, "CANCEL", 4.0),
                dead(&m2, 4.0, 26, ""),
                bridge(&m1, "q", 4.0),
                {
                    let mut i = queued.clone();
                    i.bridge = "q".into();
                    changed(i, 4.0)
                },
                dead(&a, 9.0, 16, "PJSIP/caller-00000001"),
                dead(&m1, 9.0, 16, ""),
            ],
        );
        assert_eq!(kinds(&evs), ["start", "answer", "end"]);
        let end = &evs[2];
        assert_eq!(field(&evs[1], "ext"), Value::Str("100".into()));
        assert_eq!(
            strs(field(&evs[1], "targets")),
            [
                "[Str(\"100\"), Int(3), Bool(true)]",
                "[Str(\"102\"), Int(3), Bool(false)]"
            ],
            "ring time as of the answer"
        );
        assert_eq!(field(end, "queue"), Value::Str("sales".into()));
        assert_eq!(field(end, "queue_wait"), Value::Int(3));
        assert_eq!(field(end, "answered_by"), Value::Str("100".into()));
        assert_eq!(strs(field(end, "agents")), ["100"]);
        assert_eq!(
            strs(field(end, "targets")),
            [
                "[Str(\"100\"), Int(3), Bool(true)]",
                "[Str(\"102\"), Int(3), Bool(false)]"
            ]
        );
        assert_eq!(field(end, "hangup_by"), Value::Str("caller".into()));
    }

    #[test]
    fn queue_timeout_then_hangup_is_noanswer_and_abandon_is_cancel() {
        for (source, status, by) in [
            ("dialplan/builtin", "NOANSWER", "pbx"),
            ("PJSIP/caller-00000001", "CANCEL", "caller"),
        ] {
            let mut c = Correlator::new(vec!["from-internal".into()]);
            let a = caller();
            let m = ext_chan("c.1", "2", "102");
            let mut queued = a.clone();
            queued.appl = "Queue".into();
            queued.appl_data = "support".into();
            let evs = run(
                &mut c,
                vec![
                    new(&a, 0.0),
                    changed(queued.clone(), 0.5),
                    new(&m, 0.5),
                    dial(&m, "", 0.5),
                    dial(&m, "CANCEL", 3.5),
                    dead(&m, 3.5, 16, ""),
                    dead(&a, 3.6, 16, source),
                ],
            );
            let end = evs.last().unwrap();
            assert_eq!(kinds(&evs), ["start", "end"]);
            assert_eq!(field(end, "status"), Value::Str(status.into()));
            assert_eq!(field(end, "hangup_by"), Value::Str(by.into()));
            assert_eq!(field(end, "queue_wait"), Value::Int(3));
            assert_eq!(field(end, "answered_by"), Value::Null);
        }
    }

    #[test]
    fn directed_pickup_moves_the_picker_into_the_callers_call() {
        let mut c = Correlator::new(vec!["from-internal".into()]);
        let a = caller();
        let ringing = ext_chan("c.1", "2", "102");
        // 201 dials the pickup code: a call of its own.
        let picker = ext_chan("p.1", "p.1", "201");
        let evs = run(
            &mut c,
            vec![
                new(&a, 0.0),
                new(&ringing, 0.1),
                dial(&ringing, "", 0.1),
                new(&picker, 2.0),
            ],
        );
        assert_eq!(
            kinds(&evs),
            ["start"],
            "the picker's start waits for a dial"
        );
        // The masquerade: the picker's channel answers the caller's Dial; the ringing channel dies.
        let mut moved = picker.clone();
        moved.linkedid = "c.1".into();
        moved.bridge = "b".into();
        let evs = run(
            &mut c,
            vec![
                dial(&picker, "ANSWER", 3.0),
                dead(&ringing, 3.0, 16, ""),
                changed(moved.clone(), 3.0),
                bridge(&a, "b", 3.0),
                dead(&a, 8.0, 16, "PJSIP/caller-00000001"),
                dead(&moved, 8.0, 16, ""),
            ],
        );
        let calls = call_kinds(&evs);
        assert_eq!(
            calls,
            [
                ("p.1".to_string(), "start"),
                ("p.1".to_string(), "end"),
                ("c.1".to_string(), "answer"),
                ("c.1".to_string(), "end"),
            ]
        );
        assert_eq!(field(&evs[1], "merged_into"), Value::Str("c.1".into()));
        assert_eq!(field(&evs[1], "direction"), Value::Str("internal".into()));
        assert_eq!(field(&evs[2], "ext"), Value::Str("201".into()));
        let end = &evs[3];
        assert_eq!(field(end, "status"), Value::Str("ANSWER".into()));
        assert_eq!(field(end, "ext"), Value::Str("201".into()));
        assert_eq!(
            strs(field(end, "targets")),
            ["[Str(\"102\"), Int(2), Bool(false)]"]
        );
        assert_eq!(c.active_calls(), 0);
    }

    #[test]
    fn two_calls_bridged_into_one_end_the_absorbed_call_and_transfer_the_caller() {
        let mut c = Correlator::new(vec!["from-internal".into()]);
        let a = caller();
        let a1 = ext_chan("c.1", "2", "100");
        // 100's consultation call to 102: a call of its own.
        let a2 = ext_chan("d.1", "d.1", "100");
        let b2 = ext_chan("d.1", "d.2", "102");
        let mut evs = run(
            &mut c,
            vec![
                new(&a, 0.0),
                new(&a1, 0.1),
                dial(&a1, "", 0.1),
                dial(&a1, "ANSWER", 1.0),
                bridge(&a1, "x1", 1.0),
                bridge(&a, "x1", 1.0),
                new(&a2, 5.0),
                new(&b2, 5.1),
                dial(&b2, "", 5.1),
                dial(&b2, "ANSWER", 6.0),
                bridge(&b2, "x2", 6.0),
                bridge(&a2, "x2", 6.0),
                // The transfer completes: 102 joins the caller's bridge and takes its linkedid;
                // 100's two channels hang up.
                bridge(&a1, "", 8.0),
                bridge(&a2, "", 8.0),
            ],
        );
        let mut moved = b2.clone();
        moved.linkedid = "c.1".into();
        moved.bridge = "x1".into();
        evs.extend(run(
            &mut c,
            vec![
                changed(moved.clone(), 8.0),
                dead(&a1, 8.1, 16, ""),
                dead(&a2, 8.1, 16, ""),
                dead(&a, 12.0, 16, "PJSIP/caller-00000001"),
                dead(&moved, 12.0, 16, ""),
            ],
        ));
        let calls = call_kinds(&evs);
        assert_eq!(
            calls,
            [
                ("c.1".to_string(), "start"),
                ("c.1".to_string(), "answer"),
                ("d.1".to_string(), "start"),
                ("d.1".to_string(), "answer"),
                ("c.1".to_string(), "transfer"),
                ("d.1".to_string(), "end"),
                ("c.1".to_string(), "end"),
            ]
        );
        let consult_end = &evs[5];
        assert_eq!(field(consult_end, "merged_into"), Value::Str("c.1".into()));
        assert_eq!(
            field(consult_end, "direction"),
            Value::Str("internal".into())
        );
        let end = &evs[6];
        assert_eq!(field(end, "ext"), Value::Str("102".into()));
        assert_eq!(field(end, "answered_by"), Value::Str("100".into()));
        assert_eq!(field(end, "transferred_from"), Value::Str("100".into()));
        assert_eq!(field(end, "transfers"), Value::Int(1));
        assert_eq!(strs(field(end, "agents")), ["100", "102"]);
        assert_eq!(field(end, "hangup_by"), Value::Str("caller".into()));
        assert_eq!(c.active_calls(), 0);
    }

    #[test]
    fn follow_me_through_a_trunk_keeps_the_extension_and_names_the_mobile() {
        let mut c = Correlator::new(vec!["from-internal".into()]);
        let a = caller();
        let ring = ext_chan("c.1", "2", "102");
        let trunk = chan("c.1", "3", "PJSIP/trunk-00000003", "from-trunk", "s");
        let mut d = dial(&trunk, "", 2.0);
        if let HostEvent::Dial { dialstring, .. } = &mut d {
            *dialstring = "trunk/79990001111".into();
        }
        let evs = run(
            &mut c,
            vec![
                new(&a, 0.0),
                new(&ring, 0.0),
                dial(&ring, "", 0.0),
                dial(&ring, "NOANSWER", 2.0),
                dead(&ring, 2.0, 16, ""),
                new(&trunk, 2.0),
                d,
                dial(&trunk, "ANSWER", 3.0),
                bridge(&trunk, "t", 3.0),
                bridge(&a, "t", 3.0),
                dead(&trunk, 7.0, 16, "PJSIP/trunk-00000003"),
                dead(&a, 7.0, 16, ""),
            ],
        );
        assert_eq!(kinds(&evs), ["start", "answer", "end"]);
        let end = &evs[2];
        assert_eq!(field(end, "ext"), Value::Str("102".into()));
        assert_eq!(field(end, "forwarded_to"), Value::Str("79990001111".into()));
        assert_eq!(
            field(end, "answered_by"),
            Value::Null,
            "102 never talked with the caller"
        );
        assert!(strs(field(end, "agents")).is_empty());
        assert_eq!(field(end, "status"), Value::Str("ANSWER".into()));
        assert_eq!(field(end, "hangup_by"), Value::Str("agent".into()));
        assert_eq!(
            strs(field(end, "targets")),
            ["[Str(\"102\"), Int(2), Bool(false)]"]
        );
    }

    /// `a` dials `b`, who answers after 1 s; `a` hangs up after 2 s of talk.
    fn answered_call(c: &mut Correlator, a: &ChannelInfo, b: &ChannelInfo) -> Vec<CallEvent> {
        run(
            c,
            vec![
                new(a, 0.0),
                new(b, 0.0),
                dial(b, "", 0.0),
                dial(b, "ANSWER", 1.0),
                bridge(b, "x", 1.0),
                bridge(a, "x", 1.0),
                dead(a, 3.0, 16, &a.name),
                dead(b, 3.0, 16, ""),
            ],
        )
    }

    #[test]
    fn an_extension_calling_an_extension_is_internal() {
        let mut c = Correlator::new(vec!["from-internal".into()]);
        let mut a = ext_chan("i.1", "i.1", "201");
        a.caller_number = "201".into();
        a.exten = "100".into();
        let b = ext_chan("i.1", "i.2", "100");
        let evs = answered_call(&mut c, &a, &b);
        assert_eq!(kinds(&evs), ["start", "answer", "end"]);
        assert_eq!(field(&evs[0], "direction"), Value::Str("internal".into()));
        assert_eq!(field(&evs[1], "ext"), Value::Str("100".into()));
        assert_eq!(field(&evs[2], "caller"), Value::Str("201".into()));
    }

    #[test]
    fn without_internal_contexts_every_dialed_phone_is_an_agent() {
        let mut c = Correlator::new(vec![]);
        let (a, b) = (
            caller(),
            chan("c.1", "c.2", "PJSIP/100-00000002", "from-anywhere", "s"),
        );
        let evs = answered_call(&mut c, &a, &b);
        assert_eq!(kinds(&evs), ["start", "answer", "end"]);
        assert_eq!(field(&evs[0], "direction"), Value::Str("in".into()));
        assert_eq!(field(&evs[1], "ext"), Value::Str("100".into()));
        assert_eq!(strs(field(&evs[2], "agents")), ["100"]);
        assert_eq!(field(&evs[2], "forwarded_to"), Value::Null);
    }

    #[test]
    fn numbers_from_dial_strings() {
        assert_eq!(dialed_number("trunk/79990001111"), "79990001111");
        assert_eq!(dialed_number("79990001111@trunk"), "79990001111");
        assert_eq!(
            dialed_number("trunk/sip:79990001111@10.0.0.1"),
            "79990001111"
        );
        assert_eq!(dialed_number("100"), "100");
        assert_eq!(dialed_number(""), "");
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
