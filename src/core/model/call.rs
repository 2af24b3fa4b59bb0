//! The call model: a call is the channels that share a linkedid, followed across the linkedid
//! changes of transfers, pickups and bridged calls; webhooks are per call.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::core::model::value::{FieldSource, Value};

/// The moments of a call a CRM hears about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Start,
    Answer,
    /// The internal party talking with the caller changed (opt-in: not in [`EventKind::ALL`]).
    Transfer,
    End,
}

impl EventKind {
    /// The events a section gets unless it says `events = …`.
    pub const ALL: [EventKind; 3] = [EventKind::Start, EventKind::Answer, EventKind::End];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Answer => "answer",
            EventKind::Transfer => "transfer",
            EventKind::End => "end",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "start" => Some(EventKind::Start),
            "answer" => Some(EventKind::Answer),
            "transfer" => Some(EventKind::Transfer),
            "end" => Some(EventKind::End),
            _ => None,
        }
    }
}

/// `out` when the first channel started in an internal context, `internal` when such a call
/// reached another extension rather than an outside line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    #[default]
    In,
    Out,
    Internal,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Internal => "internal",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        match s.trim().to_ascii_lowercase().as_str() {
            "in" => Some(Direction::In),
            "out" => Some(Direction::Out),
            "internal" => Some(Direction::Internal),
            _ => None,
        }
    }
}

/// One extension that rang for a call (`targets`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Target {
    pub ext: String,
    /// Whole seconds it rang, summed over every time it rang for this call.
    pub ring_seconds: i64,
    /// It answered (talked with the caller) at least once.
    pub answered: bool,
}

/// Who ended the call (`hangup_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupBy {
    /// The side that placed the call (for `in`: the outside caller).
    Caller,
    /// The side that was called (an agent, or the outside party of an `out` call).
    Agent,
    /// Neither: the dialplan, a timeout, the PBX.
    Pbx,
}

impl HangupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            HangupBy::Caller => "caller",
            HangupBy::Agent => "agent",
            HangupBy::Pbx => "pbx",
        }
    }
}

/// What is known about a call at one of its events (SPEC §2).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallRecord {
    pub call_id: String,
    pub direction: Direction,
    pub caller: String,
    pub caller_name: String,
    pub called: String,
    pub ext: String,
    pub time_start: DateTime<Utc>,
    pub time_answer: Option<DateTime<Utc>>,
    pub time_end: Option<DateTime<Utc>>,
    /// DIALSTATUS word; set at `end`.
    pub status: Option<String>,
    /// Q.850 cause of the first channel; set at `end`.
    pub hangup_cause: Option<i32>,
    pub recording: String,
    /// `[general] recording_url` rendered for this call; filled by the engine.
    pub recording_url: String,
    pub is_new: Option<bool>,
    pub is_duplicate: Option<bool>,
    pub context: String,
    pub exten: String,
    pub channel: String,
    pub uniqueid: String,
    pub accountcode: String,
    /// The PBX that saw the call (Asterisk's `systemname`, else the host name): tells a
    /// fleet's nodes apart in one stream. Filled by the engine.
    pub node: String,
    /// `Set(WEBHOOK(NAME)=…)` values; they win over channel variables of the same name.
    pub data: BTreeMap<String, String>,
    /// Channel variables of the first channel, as last set.
    pub vars: BTreeMap<String, String>,
    /// The first internal party who talked with the caller.
    pub answered_by: String,
    /// Every internal party who talked with the caller, in order.
    pub agents: Vec<String>,
    /// Every extension that rang for this call, in the order they first rang.
    pub targets: Vec<Target>,
    pub transfers: u32,
    /// The internal party before the last transfer.
    pub transferred_from: String,
    /// The last queue the caller waited in.
    pub queue: String,
    /// Seconds the caller waited in queues (until answered, or until the call ended).
    pub queue_wait: Option<i64>,
    /// Set at `end`.
    pub hangup_by: Option<HangupBy>,
    /// This call's channels moved into that call (attended transfer, pickup, bridged calls).
    pub merged_into: String,
    /// The outside number that answered a call forwarded out through a trunk.
    pub forwarded_to: String,
}

impl CallRecord {
    fn secs_between(a: DateTime<Utc>, b: DateTime<Utc>) -> i64 {
        // Whole seconds, truncated, as Asterisk's CDR counts billsec.
        ((b - a).num_milliseconds().max(0)) / 1000
    }

    /// Seconds from start to answer; to end when never answered; to now-unknown → None.
    pub fn wait_duration(&self) -> Option<i64> {
        let until = self.time_answer.or(self.time_end)?;
        Some(Self::secs_between(self.time_start, until))
    }

    /// Talk seconds; 0 when ended unanswered; None before end.
    pub fn duration(&self) -> Option<i64> {
        let end = self.time_end?;
        Some(match self.time_answer {
            Some(answer) => Self::secs_between(answer, end),
            None => 0,
        })
    }

    pub fn total_duration(&self) -> Option<i64> {
        Some(Self::secs_between(self.time_start, self.time_end?))
    }
}

/// One webhook-worthy moment: which event, and the call as it stood then.
#[derive(Debug, Clone, PartialEq)]
pub struct CallEvent {
    pub kind: EventKind,
    pub call: CallRecord,
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    v.map(f).unwrap_or(Value::Null)
}

impl FieldSource for CallEvent {
    fn field(&self, name: &str) -> Option<Value> {
        let c = &self.call;
        let v = match name {
            "call_id" => Value::Str(c.call_id.clone()),
            "time_start" => Value::Time(c.time_start),
            "time_answer" => opt(c.time_answer, Value::Time),
            "time_end" => opt(c.time_end, Value::Time),
            "wait_duration" => opt(c.wait_duration(), Value::Int),
            "duration" => opt(c.duration(), Value::Int),
            "total_duration" => opt(c.total_duration(), Value::Int),
            "duration_min" => opt(c.duration(), |d| Value::Int((d + 30) / 60)),
            "status" => opt(c.status.clone(), Value::Str),
            "hangup_cause" => opt(c.hangup_cause, |n| Value::Int(n.into())),
            "is_new" => opt(c.is_new, Value::Bool),
            "is_duplicate" => opt(c.is_duplicate, Value::Bool),
            "agents" => Value::List(c.agents.iter().map(|a| Value::Str(a.clone())).collect()),
            "targets" => Value::List(
                c.targets
                    .iter()
                    .map(|t| {
                        Value::Record(vec![
                            ("ext", Value::Str(t.ext.clone())),
                            ("ring_seconds", Value::Int(t.ring_seconds)),
                            ("answered", Value::Bool(t.answered)),
                        ])
                    })
                    .collect(),
            ),
            "transfers" => Value::Int(c.transfers.into()),
            "queue_wait" => opt(c.queue_wait, Value::Int),
            "hangup_by" => opt(c.hangup_by, |h| Value::Str(h.as_str().into())),
            other => {
                // A text field; else a `WEBHOOK()` value, else a channel variable.
                let s = self.text(other);
                return s
                    .or_else(|| {
                        c.data
                            .get(other)
                            .or_else(|| c.vars.get(other))
                            .map(|s| s.as_str())
                    })
                    .map(Value::non_empty);
            }
        };
        Some(v)
    }

    /// The call's own text fields (not variables: those stay behind `field`).
    fn text(&self, name: &str) -> Option<&str> {
        let c = &self.call;
        Some(match name {
            "event" => self.kind.as_str(),
            "direction" => c.direction.as_str(),
            "caller" => &c.caller,
            "caller_name" => &c.caller_name,
            "called" => &c.called,
            "ext" => &c.ext,
            "client_number" => match c.direction {
                Direction::Out => &c.called,
                Direction::In | Direction::Internal => &c.caller,
            },
            "recording" => &c.recording,
            "recording_url" => &c.recording_url,
            "context" => &c.context,
            "exten" => &c.exten,
            "channel" => &c.channel,
            "uniqueid" => &c.uniqueid,
            "accountcode" => &c.accountcode,
            "node" => &c.node,
            "answered_by" => &c.answered_by,
            "transferred_from" => &c.transferred_from,
            "queue" => &c.queue,
            "merged_into" => &c.merged_into,
            "forwarded_to" => &c.forwarded_to,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::synthetic::call_event;
    use std::time::SystemTime;

    /// Every field name a template can use of a call (`webhook show fields` lists the same).
    const NAMES: [&str; 42] = [
        "call_id",
        "event",
        "direction",
        "caller",
        "caller_name",
        "called",
        "ext",
        "time_start",
        "time_answer",
        "time_end",
        "wait_duration",
        "duration",
        "total_duration",
        "duration_min",
        "client_number",
        "status",
        "hangup_cause",
        "recording",
        "recording_url",
        "is_new",
        "is_duplicate",
        "context",
        "exten",
        "channel",
        "uniqueid",
        "accountcode",
        "node",
        "answered_by",
        "agents",
        "targets",
        "transfers",
        "transferred_from",
        "queue",
        "queue_wait",
        "hangup_by",
        "merged_into",
        "forwarded_to",
        "UTM_SOURCE",
        "ORDER",
        "NOPE",
        "",
        "event ",
    ];

    #[test]
    fn text_fields_are_what_field_gives_and_variables_never_shadow_them() {
        let mut ev = call_event(EventKind::End, SystemTime::now());
        let mut empty = ev.clone();
        for name in NAMES {
            // A variable (and a WEBHOOK() value) named like every field, and two of their own.
            ev.call.vars.insert(name.into(), format!("var {name}"));
            empty.call.data.insert(name.into(), format!("data {name}"));
        }
        for text in [
            "caller",
            "caller_name",
            "called",
            "ext",
            "recording",
            "recording_url",
            "context",
            "exten",
            "channel",
            "uniqueid",
            "accountcode",
            "node",
            "answered_by",
            "transferred_from",
            "queue",
            "merged_into",
            "forwarded_to",
        ] {
            empty.call.vars.remove(text);
            set_text(&mut empty.call, text, "");
        }
        for ev in [&ev, &empty] {
            for name in NAMES {
                let field = ev.field(name);
                if let Some(s) = ev.text(name) {
                    assert_eq!(field, Some(Value::non_empty(s)), "{name}");
                }
                let var = |v: &Option<Value>| matches!(v, Some(Value::Str(s)) if s.starts_with("var ") || s.starts_with("data "));
                let own = !matches!(name, "UTM_SOURCE" | "ORDER" | "NOPE" | "" | "event ");
                assert_eq!(var(&field), !own, "{name}: {field:?}");
                assert!(
                    ev.text(name).is_none() || own,
                    "{name}: a variable is no text field"
                );
            }
        }
        assert_eq!(empty.field("caller"), Some(Value::Null), "empty is missing");
        assert_eq!(empty.text("caller"), Some(""));
        assert_eq!(ev.text("event"), Some("end"));
    }

    fn set_text(c: &mut CallRecord, name: &str, v: &str) {
        let slot = match name {
            "caller" => &mut c.caller,
            "caller_name" => &mut c.caller_name,
            "called" => &mut c.called,
            "ext" => &mut c.ext,
            "recording" => &mut c.recording,
            "recording_url" => &mut c.recording_url,
            "context" => &mut c.context,
            "exten" => &mut c.exten,
            "channel" => &mut c.channel,
            "uniqueid" => &mut c.uniqueid,
            "accountcode" => &mut c.accountcode,
            "node" => &mut c.node,
            "answered_by" => &mut c.answered_by,
            "transferred_from" => &mut c.transferred_from,
            "queue" => &mut c.queue,
            "merged_into" => &mut c.merged_into,
            _ => &mut c.forwarded_to,
        };
        *slot = v.into();
    }
}
