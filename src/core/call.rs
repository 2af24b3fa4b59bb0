//! The call model: one call is every channel sharing a linkedid; webhooks are per call.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::value::{FieldSource, Value};

/// The three moments of a call a CRM hears about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Start,
    Answer,
    End,
}

impl EventKind {
    pub const ALL: [EventKind; 3] = [EventKind::Start, EventKind::Answer, EventKind::End];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Answer => "answer",
            EventKind::End => "end",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "start" => Some(EventKind::Start),
            "answer" => Some(EventKind::Answer),
            "end" => Some(EventKind::End),
            _ => None,
        }
    }
}

/// `out` when the first channel started in an internal context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    #[default]
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        match s.trim().to_ascii_lowercase().as_str() {
            "in" => Some(Direction::In),
            "out" => Some(Direction::Out),
            _ => None,
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
    /// `Set(WEBHOOK(NAME)=…)` values; they win over channel variables of the same name.
    pub data: BTreeMap<String, String>,
    /// Channel variables of the first channel, as last set.
    pub vars: BTreeMap<String, String>,
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
            "event" => Value::Str(self.kind.as_str().into()),
            "direction" => Value::Str(c.direction.as_str().into()),
            "caller" => Value::non_empty(&c.caller),
            "caller_name" => Value::non_empty(&c.caller_name),
            "called" => Value::non_empty(&c.called),
            "ext" => Value::non_empty(&c.ext),
            "time_start" => Value::Time(c.time_start),
            "time_answer" => opt(c.time_answer, Value::Time),
            "time_end" => opt(c.time_end, Value::Time),
            "wait_duration" => opt(c.wait_duration(), Value::Int),
            "duration" => opt(c.duration(), Value::Int),
            "total_duration" => opt(c.total_duration(), Value::Int),
            "duration_min" => opt(c.duration(), |d| Value::Int((d + 30) / 60)),
            "client_number" => Value::non_empty(match c.direction {
                Direction::In => &c.caller,
                Direction::Out => &c.called,
            }),
            "status" => opt(c.status.clone(), Value::Str),
            "hangup_cause" => opt(c.hangup_cause, |n| Value::Int(n.into())),
            "recording" => Value::non_empty(&c.recording),
            "recording_url" => Value::non_empty(&c.recording_url),
            "is_new" => opt(c.is_new, Value::Bool),
            "is_duplicate" => opt(c.is_duplicate, Value::Bool),
            "context" => Value::non_empty(&c.context),
            "exten" => Value::non_empty(&c.exten),
            "channel" => Value::non_empty(&c.channel),
            "uniqueid" => Value::non_empty(&c.uniqueid),
            "accountcode" => Value::non_empty(&c.accountcode),
            other => {
                return c
                    .data
                    .get(other)
                    .or_else(|| c.vars.get(other))
                    .map(|s| Value::non_empty(s))
            }
        };
        Some(v)
    }
}
