//! A made-up call for `webhook test`: every field filled, so an administrator sees what a real
//! event of each kind will look like at the endpoint.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use crate::core::model::call::{CallEvent, CallRecord, Direction, EventKind};

/// A 30-second inbound call answered by extension 100 after 5 seconds, as of `kind`.
pub fn call_event(kind: EventKind, now: SystemTime) -> CallEvent {
    let start = now - Duration::from_secs(35);
    let answer = start + Duration::from_secs(5);
    let stamp = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut call = CallRecord {
        call_id: format!("test-{stamp}.0"),
        direction: Direction::In,
        caller: "79990000000".into(),
        caller_name: "Webhook Test".into(),
        called: "74950000000".into(),
        time_start: DateTime::<Utc>::from(start),
        is_new: Some(false),
        is_duplicate: Some(false),
        context: "from-external".into(),
        exten: "74950000000".into(),
        channel: "PJSIP/test-00000000".into(),
        uniqueid: format!("test-{stamp}.0"),
        data: BTreeMap::from([("WEBHOOK_TEST".to_string(), "1".to_string())]),
        ..Default::default()
    };
    if kind != EventKind::Start {
        call.time_answer = Some(DateTime::<Utc>::from(answer));
        call.ext = "100".into();
    }
    if kind == EventKind::End {
        call.time_end = Some(DateTime::<Utc>::from(now));
        call.status = Some("ANSWER".into());
        call.hangup_cause = Some(16);
    }
    CallEvent { kind, call }
}
