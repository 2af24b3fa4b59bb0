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
    use crate::core::config::BUILTIN_FIELDS;
    use crate::core::model::synthetic::call_event;
    use std::time::SystemTime;

    #[test]
    fn text_fields_are_what_field_gives_and_variables_never_shadow_them() {
        let own = || {
            BUILTIN_FIELDS
                .iter()
                .copied()
                .filter(|n| *n != "number")
                .chain(["duration_min", "client_number"])
        };
        let others = ["number", "UTM_SOURCE", "NOPE", "", "event "];
        let mut full = call_event(EventKind::End, SystemTime::now());
        for name in own().chain(others) {
            // A variable and a WEBHOOK() value named like every field, and some of their own.
            full.call.vars.insert(name.into(), format!("var {name}"));
            full.call.data.insert(name.into(), format!("data {name}"));
        }
        // Every text field empty: missing, and still not taken from a variable.
        let empty = CallEvent {
            kind: EventKind::End,
            call: CallRecord {
                vars: full.call.vars.clone(),
                data: full.call.data.clone(),
                ..CallRecord::default()
            },
        };
        let from_variable =
            |v: &Option<Value>| matches!(v, Some(Value::Str(s)) if s.starts_with("data "));
        for ev in [&full, &empty] {
            for name in own() {
                let field = ev.field(name);
                if let Some(s) = ev.text(name) {
                    assert_eq!(field, Some(Value::non_empty(s)), "{name}");
                }
                assert!(!from_variable(&field), "{name}: {field:?}");
            }
            for name in others {
                assert!(from_variable(&ev.field(name)), "{name}");
                assert_eq!(ev.text(name), None, "{name}: a variable is no text field");
            }
        }
        assert_eq!(full.text("caller"), Some(full.call.caller.as_str()));
        assert_eq!(empty.field("caller"), Some(Value::Null), "empty is missing");
        assert_eq!(empty.text("caller"), Some(""));
        assert_eq!(full.text("event"), Some("end"));
    }
}
