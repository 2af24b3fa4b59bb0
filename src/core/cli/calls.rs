//! `webhook show calls`: the calls in progress, oldest first.

use std::fmt::Write as _;

use crate::core::calls::correlator::summary::CallSummary;

/// The table the CLI prints, oldest call first.
pub fn table(calls: &[CallSummary]) -> String {
    let mut calls: Vec<&CallSummary> = calls.iter().collect();
    calls.sort_by(|a, b| b.age.cmp(&a.age).then(a.call_id.cmp(&b.call_id)));
    let mut out = format!(
        "{:<24} {:<9} {:<16} {:<16} {:<8} {:<9} {:>8}\n",
        "Call", "Direction", "Caller", "Called", "Ext", "State", "Age"
    );
    for c in &calls {
        let secs = c.age.as_secs();
        let _ = writeln!(
            out,
            "{:<24} {:<9} {:<16} {:<16} {:<8} {:<9} {:>8}",
            c.call_id,
            c.direction.as_str(),
            or_dash(&c.caller),
            or_dash(&c.called),
            or_dash(&c.ext),
            c.state,
            format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
        );
    }
    let _ = writeln!(out, "{} call(s) in progress", calls.len());
    out
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::call::Direction;
    use std::time::Duration;

    #[test]
    fn oldest_first_with_ages_as_clock_time() {
        let call = |id: &str, age: u64, state| CallSummary {
            call_id: id.into(),
            direction: Direction::In,
            caller: "79161234567".into(),
            called: "74951234567".into(),
            ext: String::new(),
            state,
            age: Duration::from_secs(age),
        };
        let t = table(&[
            call("1700000000.2", 5, "ringing"),
            call("1700000000.1", 3725, "answered"),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("Call"));
        assert!(
            lines[1].starts_with("1700000000.1")
                && lines[1].contains("answered")
                && lines[1].ends_with("1:02:05")
        );
        assert!(
            lines[2].contains(" - ") && lines[2].ends_with("0:00:05"),
            "{}",
            lines[2]
        );
        assert_eq!(lines[3], "2 call(s) in progress");
    }
}
