//! The Rust side of the call-path hand-off (SPEC §8: median ≤ 2 µs, p99 ≤ 10 µs for the whole
//! hook): copying a channel snapshot into owned values and `try_send`ing it to the engine,
//! with the engine's correlation thread consuming on the other side, as in Asterisk.
//!
//! `cargo bench --bench handoff` (needs ASTERISK_INCLUDE_DIR like every build).

use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use res_webhook::core::engine::{Engine, EngineSettings};
use res_webhook::core::host_event::{ChannelChange, ChannelInfo, HostEvent};

fn snapshot(i: u64, change: ChannelChange) -> HostEvent {
    // The same 12 string copies rw_on_channel makes from the C snapshot.
    let id = format!("1700000000.{i}");
    HostEvent::Channel {
        change,
        info: ChannelInfo {
            linkedid: id.clone(),
            uniqueid: id,
            name: "PJSIP/caller-00000001".to_string(),
            caller_number: "79161234567".to_string(),
            caller_name: "Ivan Petrov".to_string(),
            dnid: "74951234567".to_string(),
            context: "from-external".to_string(),
            exten: "74951234567".to_string(),
            appl: "Dial".to_string(),
            accountcode: String::new(),
            hangup_cause: 0,
            hangup_source: String::new(),
            created: Some(SystemTime::now()),
        },
        at: SystemTime::now(),
    }
}

fn handoff(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("rw-bench-{}", std::process::id()));
    let engine = Engine::start(EngineSettings { spool_default: dir }).expect("engine");
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
            hook.send(snapshot(i.div_ceil(2), change));
        })
    });
    engine.shutdown();
}

criterion_group!(benches, handoff);
criterion_main!(benches);
