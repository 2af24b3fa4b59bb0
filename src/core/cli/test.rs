//! `webhook test <section> [event]`: renders a made-up call's event with the section's
//! template and sends it now, outside the queue, showing what the endpoint answered.

use std::time::SystemTime;

use crate::core::delivery::Dispatcher;
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
    match webhook.render(&event) {
        Ok(request) => {
            let head = format!(
                "[{section}] {} {} {}\n",
                kind.as_str(),
                request.method.as_str(),
                request.url
            );
            head + &dispatcher.send_now(section, request)
        }
        Err(e) => format!(
            "[{section}] cannot render the {} event: {e}\n",
            kind.as_str()
        ),
    }
}
