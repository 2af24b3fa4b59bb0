//! `webhook test <section> [event]`: renders a made-up call's event with the section's
//! template and sends it now, outside the queue, showing what the endpoint answered.

use std::time::SystemTime;

use crate::core::delivery::retry;
use crate::core::delivery::{Dispatcher, SendNowError};
use crate::core::model::attempt::Attempt;
use crate::core::model::call::EventKind;
use crate::core::model::synthetic;
use crate::core::runtime::engine::Engine;

/// Sends one test event of `kind` to `section` and describes what happened.
pub fn run(engine: &Engine, dispatcher: &Dispatcher, section: &str, kind: EventKind) -> String {
    let config = engine.config();
    let Some(webhook) = config.webhook(section) else {
        return format!("no webhook section [{section}]\n");
    };
    let event = synthetic::call_event(kind, SystemTime::now());
    let request = match webhook.render(&event) {
        Ok(request) => request,
        Err(e) => {
            return format!(
                "[{section}] cannot render the {} event: {e}\n",
                kind.as_str()
            )
        }
    };
    let head = format!(
        "[{section}] {} {} {}\n",
        kind.as_str(),
        request.method.as_str(),
        request.url
    );
    let o = match dispatcher.send_now(section, &request) {
        Ok(o) => o,
        Err(SendNowError::NoSection) => return head + &format!("no webhook section [{section}]\n"),
        Err(e @ SendNowError::NoClient) => return head + &format!("{e}\n"),
    };
    let body = String::from_utf8_lossy(&request.body);
    let sent = if body.is_empty() {
        String::new()
    } else {
        format!("  body: {body}\n")
    };
    head + &match o.attempt {
        Attempt::Status { code, .. } => format!(
            "{sent}  answer: HTTP {code} in {} ms  {}\n  verdict: {:?}\n",
            o.latency.as_millis(),
            o.excerpt,
            retry::classify(&o.attempt)
        ),
        Attempt::Error(e) => {
            format!("{sent}  failed after {} ms: {e}\n", o.latency.as_millis())
        }
    }
}
