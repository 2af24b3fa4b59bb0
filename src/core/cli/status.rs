//! `webhook show status`: the spool's health, one row per webhook section, then the engine's
//! own counters (calls, the call-path hook's cost and drops, lookups).

use std::fmt::Write as _;

use crate::core::delivery::spool::Health;
use crate::core::delivery::{Dispatcher, SectionStatus, SpoolState};
use crate::core::lookup::LookupService;
use crate::core::runtime::engine::{Engine, EngineCounters};

/// The text, read from the engine and its dispatcher now.
pub fn of(engine: &Engine, dispatcher: &Dispatcher) -> String {
    let spool = dispatcher.spool_state();
    text(
        &spool,
        &dispatcher.status_rows(),
        &engine.counters(),
        &engine.lookups(),
    )
}

/// The whole text of `webhook show status`.
pub fn text(
    spool: &SpoolState,
    sections: &[SectionStatus],
    counters: &EngineCounters,
    lookups: &LookupService,
) -> String {
    let c = counters;
    format!(
        "{}\nCalls in progress: {}   call events: {}   render failures: {}   call model errors: {}   correlation thread restarts: {}\n\
         Hook cost (on the publishing thread, filter to enqueue): p50 {}  p99 {}  over {} events; dropped: {} (queue full), {} (correlation thread not running)\n\
         Lookups that reached a CRM: {}  p50 {}  p99 {}\n",
        delivery_text(spool, sections),
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
    )
}

/// The delivery part: the spool's line, then the sections' table.
pub fn delivery_text(spool: &SpoolState, sections: &[SectionStatus]) -> String {
    let mut out = spool_line(spool);
    let _ = writeln!(
        out,
        "{:<20} {:>7} {:>6} {:>9} {:>8} {:>6} {:>7} {:>9} {:>9}  Last error",
        "Section", "Queued", "InFl", "Delivered", "Retrying", "Dead", "Spooled", "p50 ms", "p99 ms",
    );
    for r in sections {
        let ms = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
        let last = r
            .last_error
            .as_ref()
            .map(|(t, e)| format!("{} {e}", t.format("%H:%M:%S")))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<20} {:>7} {:>6} {:>9} {:>8} {:>6} {:>7} {:>9} {:>9}  {}",
            r.name,
            r.queued,
            r.in_flight,
            r.delivered,
            r.retrying,
            r.dead,
            r.spooled,
            ms(r.latency_ms_p50),
            ms(r.latency_ms_p99),
            last
        );
        if r.dropped > 0 {
            let _ = writeln!(
                out,
                "{:<20} DROPPED {} (no room in spool or memory)",
                "", r.dropped
            );
        }
        if r.panics > 0 {
            let _ = writeln!(
                out,
                "{:<20} worker panics: {} (contained, restarted; see the log)",
                "", r.panics
            );
        }
        if r.pipelining_off {
            let _ = writeln!(
                out,
                "{:<20} one request at a time: the endpoint did not answer pipelined requests (until a reload; pipeline = 1 makes it so)",
                ""
            );
        }
    }
    out
}

/// The spool's state in one line, loud when it is not writable.
fn spool_line(s: &SpoolState) -> String {
    let dir = s.dir.display();
    let memory = s.in_memory;
    let mut out = match &s.health {
        Health::Ok if memory == 0 => format!("Spool: ok ({dir})"),
        Health::Ok => format!("Spool: ok ({dir}), {memory} waiting in memory"),
        Health::Unavailable { since, error } => format!(
            "Spool: UNAVAILABLE since {} ({error}): {memory} delivery(ies) kept in memory only, still sent",
            since.format("%Y-%m-%d %H:%M:%S")
        ),
        Health::Failing { since, error } => format!(
            "Spool: NOT WRITABLE since {} ({error}): {memory} delivery(ies) kept in memory, still sent",
            since.format("%Y-%m-%d %H:%M:%S")
        ),
    };
    if s.dropped > 0 {
        let _ = write!(out, "; DROPPED {} (memory full too)", s.dropped);
    }
    if s.unreadable > 0 {
        let _ = write!(
            out,
            "; {} unreadable row(s) set aside, not sent (table 'unreadable'; see the log)",
            s.unreadable
        );
    }
    out.push('\n');
    out
}

/// A duration in ns, as ns below 10 µs, else in µs; `-` when nothing was measured.
fn fmt_ns(ns: Option<u64>) -> String {
    match ns {
        None => "-".into(),
        Some(ns) if ns < 10_000 => format!("{ns} ns"),
        Some(ns) => format!("{:.1} µs", ns as f64 / 1000.0),
    }
}
