//! The core's hand-off for an adapter without a feed of its own: a channel event copied into
//! owned values and `try_send`ed, with the engine's correlation thread consuming on the other
//! side. (Asterisk's adapter queues a reference to the Stasis message instead and copies on the
//! correlation thread; its hook cost is measured inside Asterisk, `webhook show status`.)
//!
//! `cargo bench --bench handoff` (needs ASTERISK_INCLUDE_DIR like every build).

use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use res_webhook::core::ingest::host_event::{ChannelChange, ChannelInfo, HostEvent};
use res_webhook::core::runtime::engine::{Engine, EngineSettings};
use res_webhook::core::runtime::hook::Hook;

/// A channel snapshot's strings copied into an owned event, then `try_send`.
fn send_snapshot(hook: &Hook, i: u64, change: ChannelChange) {
    let id = format!("1700000000.{i}");
    let info = ChannelInfo {
        linkedid: id.as_str().into(),
        uniqueid: id.into(),
        name: "PJSIP/caller-00000001".into(),
        caller_number: "79161234567".into(),
        caller_name: "Ivan Petrov".into(),
        dnid: "74951234567".into(),
        context: "from-external".into(),
        exten: "74951234567".into(),
        appl: "Dial".into(),
        created: Some(SystemTime::now()),
        ..Default::default()
    };
    hook.send(HostEvent::Channel {
        change,
        info,
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
