//! AMI for res_webhook: the `WebhookDeliveryFailed` / `WebhookDeadLetter` events existing AMI
//! tooling can alert on, and the text of the `WebhookStatus` action's list. Field syntax only;
//! the shim sends them.

use std::fmt::Write as _;

use crate::core::delivery::stats::Notice;
use crate::core::delivery::SectionStatus;

/// The event for one (throttled) failure notice: its name and its `Key: Value\r\n` lines.
pub fn notice_event(n: &Notice) -> (&'static str, String) {
    let r = &n.record;
    let name = if r.dead {
        "WebhookDeadLetter"
    } else {
        "WebhookDeliveryFailed"
    };
    let mut f = String::new();
    field(&mut f, "Section", &r.section);
    field(&mut f, "CallID", &r.call_id);
    field(&mut f, "CallEvent", &r.event);
    field(&mut f, "Attempt", &r.attempt.to_string());
    field(
        &mut f,
        "Status",
        &r.status
            .map(|c| c.to_string())
            .unwrap_or_else(|| "none".into()),
    );
    field(&mut f, "Reason", &r.error);
    field(&mut f, "Suppressed", &n.suppressed.to_string());
    (name, f)
}

/// One block per section for `WebhookStatus`, blocks separated by `\x1e`.
pub fn status_blocks(rows: &[SectionStatus]) -> String {
    let blocks: Vec<String> = rows
        .iter()
        .map(|r| {
            let mut f = String::new();
            field(&mut f, "Section", &r.name);
            for (k, v) in [
                ("Queued", r.queued as u64),
                ("InFlight", r.in_flight as u64),
                ("Delivered", r.delivered),
                ("Retrying", r.retrying as u64),
                ("Dead", r.dead as u64),
                ("Spooled", r.spooled as u64),
                ("Dropped", r.dropped),
            ] {
                field(&mut f, k, &v.to_string());
            }
            let last = r
                .last_error
                .as_ref()
                .map(|(t, e)| format!("{} {e}", t.to_rfc3339()))
                .unwrap_or_default();
            field(&mut f, "LastError", &last);
            f
        })
        .collect();
    blocks.join("\x1e")
}

/// One `Key: Value` line; a value can never start another line (or another block).
fn field(out: &mut String, key: &str, value: &str) {
    let clean: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let _ = write!(out, "{key}: {}\r\n", clean.trim());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::delivery::stats::ErrorRecord;

    #[test]
    fn a_dead_letter_event_names_everything_and_cannot_inject_lines() {
        let n = Notice {
            record: ErrorRecord {
                at: chrono::Utc::now(),
                section: "crm".into(),
                call_id: "1700000000.7".into(),
                event: "end".into(),
                error: "HTTP 404 not found\r\nEvent: Fake".into(),
                attempt: 1,
                status: Some(404),
                dead: true,
            },
            suppressed: 2,
        };
        let (name, fields) = notice_event(&n);
        assert_eq!(name, "WebhookDeadLetter");
        assert_eq!(
            fields,
            "Section: crm\r\nCallID: 1700000000.7\r\nCallEvent: end\r\nAttempt: 1\r\nStatus: 404\r\n\
             Reason: HTTP 404 not found  Event: Fake\r\nSuppressed: 2\r\n"
        );
    }
}
