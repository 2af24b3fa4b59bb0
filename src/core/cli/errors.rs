//! `webhook show errors [section]`: the latest failed attempts, then the dead letters waiting
//! for `webhook replay`.

use std::fmt::Write as _;

use crate::core::delivery::spool::Spooled;
use crate::core::delivery::stats::ErrorRecord;
use crate::core::delivery::Dispatcher;

/// The text for `section` (or all), read from the dispatcher now.
pub fn of(dispatcher: &Dispatcher, section: Option<&str>) -> String {
    let dead = dispatcher.dead_letters(section).ok();
    text(section, &dispatcher.recent_errors(section), dead.as_deref())
}

/// The text: `recent` oldest first (the newest 50 are shown, newest first), `dead` as kept in
/// the spool (`None` when the spool could not be read).
pub fn text(section: Option<&str>, recent: &[ErrorRecord], dead: Option<&[Spooled]>) -> String {
    let mut out = String::new();
    if recent.is_empty() {
        out.push_str("No failed attempts");
        if let Some(s) = section {
            let _ = write!(out, " for [{s}]");
        }
        out.push_str(" since start.\n");
    }
    for r in recent.iter().rev().take(50) {
        let _ = writeln!(
            out,
            "{}  [{}]  call {}  {}  attempt {}  {}",
            r.at.format("%Y-%m-%d %H:%M:%S"),
            r.section,
            r.call_id,
            r.event,
            r.attempt,
            r.error
        );
    }
    if let Some(dead) = dead {
        if !dead.is_empty() {
            let _ = writeln!(
                out,
                "\nDead letters ({}), re-send with `webhook replay <section|all>`:",
                dead.len()
            );
            for d in dead.iter().rev().take(50) {
                let _ = writeln!(
                    out,
                    "  [{}]  call {}  {}  {} attempt(s)  {}",
                    d.delivery.section,
                    d.delivery.call_id,
                    d.delivery.event,
                    d.attempts,
                    d.last_error
                );
            }
        }
    }
    out
}
