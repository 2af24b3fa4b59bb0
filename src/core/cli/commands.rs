//! The `webhook …` CLI: which words run which command. Each command's text is made by its own
//! file next door; this one only parses and dispatches.

use crate::core::calls::correlator::summary;
use crate::core::cli::test;
use crate::core::config::describe;
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
        ["show", "status"] => {
            let c = engine.counters();
            let lookups = engine.lookups();
            Ok(format!(
                "{}\nCalls in progress: {}   call events: {}   render failures: {}   call model errors: {}   correlation thread restarts: {}\n\
                 Hook cost (C callback + copy + enqueue): p50 {}  p99 {}  over {} events; dropped: {} (queue full), {} (correlation thread not running)\n\
                 Lookups that reached a CRM: {}  p50 {}  p99 {}\n",
                dispatcher.status_text(),
                c.calls_in_progress,
                c.call_events,
                c.render_failures,
                c.call_model_errors,
                c.thread_restarts,
                fmt_ns(c.hook_cost_p50_ns),
                fmt_ns(c.hook_cost_p99_ns),
                c.hook_events,
                c.hook_dropped_full,
                c.hook_dropped_disconnected,
                lookups.latency_us.count(),
                fmt_ns(lookups.latency_us.quantile(0.5).map(|us| us * 1000)),
                fmt_ns(lookups.latency_us.quantile(0.99).map(|us| us * 1000)),
            ))
        }
        ["show", "calls"] => Ok(match engine.calls_in_progress() {
            Ok(calls) => summary::table(&calls),
            Err(e) => format!("{e}\n"),
        }),
        ["show", "section", name] => {
            let config = engine.config();
            Ok(match config.sections.iter().find(|s| s.name == *name) {
                Some(s) => describe::section_text(s),
                None => format!("no section [{name}] loaded (see the log for errors)\n"),
            })
        }
        ["show", "errors"] => Ok(dispatcher.errors_text(None)),
        ["show", "errors", section] => Ok(dispatcher.errors_text(Some(section))),
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

fn fmt_ns(ns: Option<u64>) -> String {
    match ns {
        None => "-".into(),
        Some(ns) if ns < 10_000 => format!("{ns} ns"),
        Some(ns) => format!("{:.1} µs", ns as f64 / 1000.0),
    }
}
