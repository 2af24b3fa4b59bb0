//! The `webhook …` CLI: which words run which command. Each command's text is made by its own
//! file next door; this one only parses and dispatches.

use crate::core::cli::{calls, errors, section, status, test};
use crate::core::model::call::EventKind;
use crate::core::runtime::engine::Engine;

/// A CLI command with the wrong words: the host shows the command's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageError;

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a webhook command")
    }
}

impl std::error::Error for UsageError {}

/// Runs a CLI command (the words after `webhook`); `Err` means a usage error.
pub fn run(engine: &Engine, args: &[String]) -> Result<String, UsageError> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some(dispatcher) = engine.dispatcher() else {
        return Ok("res_webhook: no configuration loaded yet; nothing to show\n".into());
    };
    match words.as_slice() {
        ["show", "status"] => Ok(status::of(engine, dispatcher)),
        ["show", "calls"] => Ok(match engine.calls_in_progress() {
            Ok(now) => calls::table(&now),
            Err(e) => format!("{e}\n"),
        }),
        ["show", "section", name] => {
            let config = engine.config();
            Ok(match config.sections.iter().find(|s| s.name == *name) {
                Some(s) => section::text(s),
                None => format!("no section [{name}] loaded (see the log for errors)\n"),
            })
        }
        ["show", "errors"] => Ok(errors::of(dispatcher, None)),
        ["show", "errors", section] => Ok(errors::of(dispatcher, Some(section))),
        ["test", section] => Ok(test::run(engine, dispatcher, section, EventKind::Start)),
        ["test", section, event] => match EventKind::parse(event) {
            Some(kind) => Ok(test::run(engine, dispatcher, section, kind)),
            None => Err(UsageError),
        },
        ["replay", "all"] => Ok(format!(
            "{} delivery(ies) re-queued\n",
            dispatcher.replay(None)
        )),
        ["replay", section] => Ok(format!(
            "{} delivery(ies) of [{section}] re-queued\n",
            dispatcher.replay(Some(section))
        )),
        _ => Err(UsageError),
    }
}
