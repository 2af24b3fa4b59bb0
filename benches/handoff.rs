//! The Rust side of the call-path hand-off (SPEC §8: median ≤ 2 µs, p99 ≤ 10 µs for the whole
//! hook): packing a channel snapshot's strings into a pooled buffer and `try_send`ing it,
//! with the engine's correlation thread consuming on the other side, as in Asterisk.
//!
//! `cargo bench --bench handoff` (needs ASTERISK_INCLUDE_DIR like every build).

use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use res_webhook::core::ingest::host_event::ChannelChange;
use res_webhook::core::ingest::packed_event::{PackedEvent, PackedKind};
use res_webhook::core::runtime::engine::{Engine, EngineSettings};
use res_webhook::core::runtime::hook::Hook;

/// What rw_on_channel does with the C snapshot: its 11 strings packed into a pooled buffer,
/// then `try_send`.
fn send_snapshot(hook: &Hook, i: u64, change: ChannelChange) {
    let id = format!("1700000000.{i}");
    let mut strings = hook.strings();
    for field in [
        id.as_str(),
        id.as_str(),
        "PJSIP/caller-00000001",
        "79161234567",
        "Ivan Petrov",
        "74951234567",
        "from-external",
        "74951234567",
        "Dial",
        "",
        "",
    ] {
        strings.push(field.as_bytes());
    }
    hook.send_packed(PackedEvent {
        kind: PackedKind::Channel {
            change,
            hangup_cause: 0,
            created: Some(SystemTime::now()),
        },
        strings,
        at: SystemTime::now(),
    });
}

fn handoff(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("rw-bench-{}", std::process::id()));
    let mut settings = EngineSettings::new(dir);
    settings.node = "bench".into();
    let engine = Engine::start(settings).expect("engine");
    let hook = engine.hook();
    let mut i = 0u64;
    c.bench_function("copy + try_send one channel snapshot", |b| {
        b.iter(|| {
            i += 1;
            // New then Dead of the same channel, so the correlator's call table stays small.
            let change = if i % 2 == 1 {
                ChannelChange::New
            } else {
                ChannelChange::Dead
            };
            send_snapshot(&hook, i.div_ceil(2), change);
        })
    });
    engine.shutdown();
}

criterion_group!(benches, handoff);
criterion_main!(benches);
