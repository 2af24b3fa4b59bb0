//! What the correlation thread spends per call, without Asterisk: the host events of an
//! answered inbound call (the bench.sh flow: caller, dial, agent answers, both bridged, both
//! hang up) through the call model, and each call event rendered for the realistic
//! configuration's two sections (`asterisk/bench.sh`: a signed 30-field JSON CRM with start,
//! answer and end, an end-only GET). Prints CPU and heap allocations per call. Warm caches:
//! inside Asterisk at 20 calls/s the same work costs about 3x more (README: Performance).
//!
//! `cargo bench --bench correlate` (needs ASTERISK_INCLUDE_DIR like every build).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use res_webhook::core::calls::correlator::Correlator;
use res_webhook::core::config::raw::RawConfig;
use res_webhook::core::config::{Config, SectionKind};
use res_webhook::core::ingest::host_event::{ChannelChange, ChannelInfo, HostEvent};

/// Counts every allocation (and reallocation) the measured code makes.
struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The realistic configuration of `asterisk/bench.sh` (webhook mode), the same file.
const CONF: &str = include_str!("../asterisk/bench-webhook.conf");

fn channel(change: ChannelChange, id: &str, uid: &str, name: &str, at: SystemTime) -> HostEvent {
    let up = !matches!(change, ChannelChange::New);
    HostEvent::Channel {
        change,
        info: ChannelInfo {
            linkedid: id.into(),
            uniqueid: uid.into(),
            name: name.into(),
            caller_number: "79161234567".into(),
            caller_name: "Ivan Petrov".into(),
            dnid: "74951234567".into(),
            context: "from-external".into(),
            exten: "74951234567".into(),
            appl: if up { "Dial" } else { "" }.into(),
            appl_data: if up { "PJSIP/100,30" } else { "" }.into(),
            bridge: if matches!(change, ChannelChange::Changed) {
                "5c1bb1d4-3c2e-4c39-a7d4-2b8a7c1e9f00".into()
            } else {
                Default::default()
            },
            hangup_cause: if matches!(change, ChannelChange::Dead) {
                16
            } else {
                0
            },
            created: Some(at),
            ..Default::default()
        },
        at,
    }
}

fn var(id: &str, name: &str, value: &str, at: SystemTime) -> HostEvent {
    HostEvent::VarSet {
        linkedid: id.into(),
        uniqueid: id.into(),
        name: name.into(),
        value: value.into(),
        at,
    }
}

fn dial(id: &str, peer: &str, status: &str, at: SystemTime) -> HostEvent {
    HostEvent::Dial {
        caller_uniqueid: Some(id.into()),
        peer_uniqueid: peer.into(),
        peer_linkedid: id.into(),
        peer_name: "PJSIP/100-00000002".into(),
        dialstring: "PJSIP/100".into(),
        status: status.into(),
        at,
    }
}

/// The 16 host events Asterisk's hook hands over for one answered call (as counted there).
fn call_events(i: u64) -> Vec<HostEvent> {
    let id = format!("1700000000.{}", 2 * i);
    let peer = format!("1700000000.{}", 2 * i + 1);
    let t = SystemTime::now();
    let later = |ms| t + Duration::from_millis(ms);
    let (a, b) = ("PJSIP/sipp-00000001", "PJSIP/100-00000002");
    use ChannelChange::*;
    vec![
        channel(New, &id, &id, a, t),
        var(&id, "CALL_KIND", "inbound", t),
        var(&id, "UTM_SOURCE", "google", t),
        var(&id, "UTM_CAMPAIGN", "spring", t),
        var(&id, "TAG1", "vip", t),
        dial(&id, &peer, "", later(1)),
        channel(New, &id, &peer, b, later(1)),
        channel(Up, &id, &peer, b, later(100)),
        dial(&id, &peer, "ANSWER", later(100)),
        channel(Up, &id, &id, a, later(101)),
        channel(Changed, &id, &id, a, later(102)),
        channel(Changed, &id, &peer, b, later(102)),
        var(&id, "DIALSTATUS", "ANSWER", later(1100)),
        channel(Changed, &id, &peer, b, later(1100)),
        channel(Dead, &id, &peer, b, later(1101)),
        channel(Dead, &id, &id, a, later(1102)),
    ]
}

fn main() {
    let (config, errors) = Config::from_raw(&RawConfig::parse_text(
        "webhook.conf",
        &CONF.replace("@RECV@", "9"),
    ));
    assert!(errors.is_empty(), "{errors:?}");
    let sections: Vec<_> = config
        .sections
        .iter()
        .filter_map(|s| match &s.kind {
            SectionKind::Webhook(w) => Some(w),
            _ => None,
        })
        .collect();
    let mut correlator = Correlator::new(Vec::new());
    let calls = 20_000u64;
    let (mut requests, mut call_events_out) = (0u64, 0u64);
    let mut render_allocs = [0u64; 2];
    let mut run = |events: Vec<HostEvent>| {
        for ev in events {
            for ce in correlator.handle(ev) {
                call_events_out += 1;
                for (n, w) in sections.iter().enumerate() {
                    if w.wants(ce.kind, ce.call.direction) && w.passes(&ce) {
                        let a = ALLOCATIONS.load(Ordering::Relaxed);
                        let request = w.render(&ce).expect("renders");
                        render_allocs[n] += ALLOCATIONS.load(Ordering::Relaxed) - a;
                        requests += 1;
                        std::hint::black_box(request);
                    }
                }
            }
        }
    };
    for i in 0..1000 {
        run(call_events(i));
    }
    let measured = calls - 1000;
    // The events are made inside the measured loop: an adapter copies them out of the host
    // the same way (one string per field), and the correlator drops them.
    let (allocs0, started) = (ALLOCATIONS.load(Ordering::Relaxed), Instant::now());
    for i in 1000..calls {
        run(call_events(i));
    }
    let took = started.elapsed();
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - allocs0;
    println!(
        "correlate + render, per call ({measured} calls, 16 host events, {:.1} call events, {:.1} requests each): {:.1} µs, {:.0} allocations",
        call_events_out as f64 / calls as f64,
        requests as f64 / calls as f64,
        took.as_secs_f64() * 1e6 / measured as f64,
        allocs as f64 / measured as f64,
    );
    println!(
        "  of the allocations, rendering: {} for the CRM's 3 requests, {} for the analytics GET",
        render_allocs[0] / calls,
        render_allocs[1] / calls
    );
}
