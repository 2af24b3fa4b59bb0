//! Prometheus metrics, in the text exposition format. The host serves them (Asterisk: through
//! `res_prometheus`, at its `/metrics`); this file only writes the text.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::core::delivery::SectionStatus;
use crate::core::instrument::latency::Histogram;
use crate::core::lookup::LookupStatus;
use crate::core::runtime::engine::Engine;

/// Histogram bounds, seconds, for delivery and lookup latency.
const BOUNDS_S: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram (µs) read at scrape time, in [`BOUNDS_S`]'s buckets.
pub struct Buckets {
    cumulative: Vec<u64>,
    count: u64,
    sum_us: u64,
}

impl Buckets {
    pub fn of(h: &Histogram) -> Buckets {
        let bounds_us: Vec<u64> = BOUNDS_S.iter().map(|s| (s * 1e6) as u64).collect();
        Buckets {
            cumulative: h.cumulative(&bounds_us),
            count: h.count(),
            sum_us: h.sum(),
        }
    }
}

/// Everything the metrics show, read at scrape time.
pub struct Snapshot {
    pub sections: Vec<SectionStatus>,
    /// Each section's delivery latency, by name.
    pub section_latency: Vec<(String, Buckets)>,
    pub lookup_latency: Buckets,
    /// Lookups answered, in [`LookupStatus::ALL`]'s order.
    pub lookups: [u64; 4],
    pub hook_events: u64,
    pub hook_dropped: u64,
    pub calls_in_progress: usize,
    pub call_events: u64,
}

/// The exposition text of everything the engine counts, read now.
pub fn text(engine: &Engine) -> String {
    let counters = engine.counters();
    let lookups = engine.lookups();
    render(&Snapshot {
        sections: engine.status_rows(),
        section_latency: engine
            .dispatcher()
            .map(|d| d.latencies(Buckets::of))
            .unwrap_or_default(),
        lookup_latency: Buckets::of(&lookups.latency_us),
        lookups: std::array::from_fn(|i| lookups.answered[i].load(Ordering::Relaxed)),
        hook_events: counters.hook_events,
        hook_dropped: counters.hook_dropped_full,
        calls_in_progress: counters.calls_in_progress,
        call_events: counters.call_events,
    })
}

/// The exposition text.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let per_section = |out: &mut String,
                       name: &str,
                       kind: &str,
                       help: &str,
                       f: &dyn Fn(&SectionStatus) -> String| {
        header(out, name, kind, help);
        for r in &s.sections {
            let _ = writeln!(out, "{name}{{section=\"{}\"}} {}", label(&r.name), f(r));
        }
    };
    header(
        &mut out,
        "asterisk_webhook_deliveries_total",
        "counter",
        "Webhook delivery attempts by result: delivered, failed (each failed attempt), retried, dead (dead-lettered), dropped.",
    );
    for r in &s.sections {
        let failed = r.attempts.saturating_sub(r.delivered);
        for (result, n) in [
            ("delivered", r.delivered),
            ("failed", failed),
            ("retried", r.retries),
            ("dead", r.dead_total),
            ("dropped", r.dropped),
        ] {
            let _ = writeln!(
                out,
                "asterisk_webhook_deliveries_total{{section=\"{}\",result=\"{result}\"}} {n}",
                label(&r.name)
            );
        }
    }
    per_section(
        &mut out,
        "asterisk_webhook_queue_depth",
        "gauge",
        "Deliveries waiting in the section's memory queue.",
        &|r| r.queued.to_string(),
    );
    per_section(
        &mut out,
        "asterisk_webhook_in_flight",
        "gauge",
        "Requests being sent now.",
        &|r| r.in_flight.to_string(),
    );
    per_section(
        &mut out,
        "asterisk_webhook_spool_depth",
        "gauge",
        "Deliveries in the durable spool (waiting for a retry, or behind one).",
        &|r| r.spooled.to_string(),
    );
    per_section(
        &mut out,
        "asterisk_webhook_dead_letters",
        "gauge",
        "Dead letters kept for `webhook replay`.",
        &|r| r.dead.to_string(),
    );
    header(
        &mut out,
        "asterisk_webhook_delivery_seconds",
        "histogram",
        "HTTP round trip of delivered requests.",
    );
    for (name, h) in &s.section_latency {
        histogram(
            &mut out,
            "asterisk_webhook_delivery_seconds",
            &format!("section=\"{}\"", label(name)),
            h,
        );
    }
    header(
        &mut out,
        "asterisk_webhook_lookups_total",
        "counter",
        "WEBHOOK_LOOKUP answers by status.",
    );
    for (status, n) in LookupStatus::ALL.iter().zip(s.lookups) {
        let _ = writeln!(
            out,
            "asterisk_webhook_lookups_total{{status=\"{}\"}} {n}",
            status.as_str()
        );
    }
    header(
        &mut out,
        "asterisk_webhook_lookup_seconds",
        "histogram",
        "Time of lookups that reached the CRM.",
    );
    histogram(
        &mut out,
        "asterisk_webhook_lookup_seconds",
        "",
        &s.lookup_latency,
    );
    for (name, kind, help, v) in [
        (
            "asterisk_webhook_hook_events_total",
            "counter",
            "Channel events the call-path hook handed over.",
            s.hook_events.to_string(),
        ),
        (
            "asterisk_webhook_hook_dropped_total",
            "counter",
            "Channel events dropped because the hook's queue was full.",
            s.hook_dropped.to_string(),
        ),
        (
            "asterisk_webhook_call_events_total",
            "counter",
            "Call events (start, answer, transfer, end) produced.",
            s.call_events.to_string(),
        ),
        (
            "asterisk_webhook_calls_in_progress",
            "gauge",
            "Calls the call model is following now.",
            s.calls_in_progress.to_string(),
        ),
    ] {
        header(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A histogram, in seconds.
fn histogram(out: &mut String, name: &str, labels: &str, h: &Buckets) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, n) in BOUNDS_S.iter().zip(&h.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
    }
    let count = h.count;
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{braces} {count}");
}

/// A label value, escaped as the format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_type_and_samples() {
        let lat = Histogram::default();
        lat.record(2_000); // 2 ms
        lat.record(300_000);
        let lookup = Histogram::default();
        let text = render(&Snapshot {
            sections: vec![SectionStatus {
                name: "crm \"main\"".into(),
                queued: 2,
                in_flight: 1,
                delivered: 10,
                attempts: 13,
                retries: 2,
                dead_total: 1,
                dropped: 0,
                panics: 0,
                retrying: 0,
                dead: 1,
                spooled: 3,
                latency_ms_p50: None,
                latency_ms_p99: None,
                last_error: None,
                pipelining_off: false,
            }],
            section_latency: vec![("crm \"main\"".into(), Buckets::of(&lat))],
            lookup_latency: Buckets::of(&lookup),
            lookups: [4, 1, 0, 2],
            hook_events: 99,
            hook_dropped: 0,
            calls_in_progress: 3,
            call_events: 30,
        });
        for want in [
            "# TYPE asterisk_webhook_deliveries_total counter",
            r#"asterisk_webhook_deliveries_total{section="crm \"main\"",result="failed"} 3"#,
            r#"asterisk_webhook_spool_depth{section="crm \"main\""} 3"#,
            r#"asterisk_webhook_delivery_seconds_bucket{section="crm \"main\"",le="0.005"} 1"#,
            r#"asterisk_webhook_delivery_seconds_bucket{section="crm \"main\"",le="+Inf"} 2"#,
            r#"asterisk_webhook_delivery_seconds_count{section="crm \"main\""} 2"#,
            r#"asterisk_webhook_lookups_total{status="ERROR"} 2"#,
            "asterisk_webhook_lookup_seconds_count 0",
            "asterisk_webhook_calls_in_progress 3",
        ] {
            assert!(text.contains(want), "missing {want}:\n{text}");
        }
    }
}
