//! The `webhook-calls` thread: host events in, deliveries out. It owns the [`Correlator`]
//! (channels become calls), annotates new and repeat callers, renders each call event for the
//! sections that want it and hands the requests to the [`Dispatcher`] in bursts. Supervised:
//! a panic is logged, counted and the loop starts over with its queue and calls intact.
//!
//! [`Dispatcher`]: crate::core::delivery::Dispatcher

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, TryRecvError};

use super::hook::{HookShared, Queued};
use super::state::Runtime;
use crate::core::calls::correlator::Correlator;
use crate::core::config::{Config, SectionKind};
use crate::core::delivery::Delivery;
use crate::core::ingest::feed::HostFeed;
use crate::core::ingest::host_event::HostEvent;
use crate::core::instrument::fault;
use crate::core::instrument::panic::{self, caught};
use crate::core::model::call::{CallEvent, EventKind};

/// Most deliveries held back before they are handed over even though events keep coming.
const OUTBOX_MAX: usize = 256;

/// What the correlation thread keeps across a restart of its loop.
struct Correlation {
    correlator: Correlator,
    /// Deliveries rendered since the queue was last empty: handed to the workers together, so
    /// each section's worker wakes once per burst of events rather than once per delivery.
    outbox: Vec<Delivery>,
    generation: u64,
    config: Arc<Config>,
    history_on: bool,
    dropped_reported: u64,
    last_chores: Instant,
    last_sweep: Instant,
    /// When the thread last woke: it sleeps until one `batch_window` after that, so the time
    /// spent on a burst is not added to the next event's wait.
    woke: Instant,
}

/// The `webhook-calls` thread: host events in, deliveries out. Supervised: a panic outside
/// the call model (which has its own guard, one event) is logged and counted, and the loop
/// starts over with the same queue and the same call table, so calls in progress keep their
/// events.
pub(super) fn correlate(
    rx: Receiver<Queued>,
    feed: Option<Arc<dyn HostFeed>>,
    stop: Receiver<()>,
    rt: Arc<Runtime>,
    shared: Arc<HookShared>,
) {
    let config = rt.config();
    let mut st = Correlation {
        correlator: Correlator::new(config.general.internal_contexts.clone()),
        outbox: Vec::new(),
        generation: rt.generation.load(Ordering::SeqCst),
        history_on: config.uses_caller_history(),
        config,
        dropped_reported: 0,
        last_chores: Instant::now(),
        last_sweep: Instant::now(),
        woke: Instant::now(),
    };
    loop {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            correlate_loop(&rx, feed.as_deref(), &stop, &rt, &shared, &mut st)
        }));
        match run {
            Ok(()) => break,
            Err(p) => {
                let n = rt.thread_panics.fetch_add(1, Ordering::Relaxed) + 1;
                log::error!(
                    "correlation thread panicked ({}); restarted with its queue and calls intact ({n} so far, webhook show status)",
                    panic::message(&*p)
                );
                // A bug that panics at once again must not spin.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    flush(&rt, &mut st.outbox);
    if let Some(h) = rt.history.get() {
        h.flush();
    }
    let unfinished = st.correlator.active_calls();
    if unfinished > 0 {
        log::warn!(
            "stopping with {unfinished} call(s) in progress: their remaining events are not sent"
        );
    }
}

/// The correlation loop; returns when stopped.
fn correlate_loop(
    rx: &Receiver<Queued>,
    feed: Option<&dyn HostFeed>,
    stop: &Receiver<()>,
    rt: &Runtime,
    shared: &HookShared,
    st: &mut Correlation,
) {
    // The consumer polls instead of blocking in `recv`: with no receiver parked on the queue,
    // the hook never has to wake a thread (a futex call, and on 2 cores often a preemption of
    // the Stasis thread mid-hook). It wakes once per `batch_window` when the queue is empty, which
    // bounds every event's delay and sets how often the module wakes; the timed chores (drop
    // reports, the lanes' stall check) come as often, also while events keep coming.
    loop {
        // Config may have changed since the last turn: use the one in force now.
        let g = rt.generation.load(Ordering::SeqCst);
        if g != st.generation {
            st.generation = g;
            st.config = rt.config();
            st.history_on = st.config.uses_caller_history();
            st.correlator
                .set_internal_contexts(st.config.general.internal_contexts.clone());
        }
        let window = st.config.general.batch_window;
        if st.last_chores.elapsed() >= window {
            st.last_chores = Instant::now();
            chores(rt, shared, st);
        }
        if let Ok(reply) = rt.calls_view.1.try_recv() {
            let _ = reply.try_send(st.correlator.in_progress(SystemTime::now()));
        }
        // The engine's queue first: what is sent there (a click-to-call's origin, an adapter
        // without a feed) describes calls whose channels come after it.
        let next = match rx.try_recv() {
            Ok(ev) => Some(*ev),
            Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) => feed.and_then(HostFeed::next_event),
        };
        let ev = match next {
            Some(ev) => ev,
            None => {
                if stop.try_recv().is_ok() {
                    return;
                }
                flush(rt, &mut st.outbox);
                // A burst that took longer than the window is followed by no sleep at all;
                // `woke` is reset either way, so an empty queue never spins.
                std::thread::sleep(window.saturating_sub(st.woke.elapsed()));
                st.woke = Instant::now();
                continue;
            }
        };
        let config = st.config.clone();
        if config.general.trace_calls {
            log::info!("trace: host event {ev:?}");
        }
        let events = handle_guarded(&mut st.correlator, ev, rt);
        rt.active_calls
            .store(st.correlator.active_calls(), Ordering::Relaxed);
        for mut ev in events {
            if ev.kind == EventKind::Start && st.history_on {
                if let Some(h) = rt.history.get() {
                    let (is_new, is_dup) = h.observe(
                        &ev.call.caller,
                        ev.call.time_start,
                        config.general.repeat_window_days,
                    );
                    st.correlator.annotate(&ev.call.call_id, is_new, is_dup);
                    ev.call.is_new = Some(is_new);
                    ev.call.is_duplicate = Some(is_dup);
                }
            }
            if config.general.trace_calls {
                log::info!(
                    "trace: call {} {}: {:?}",
                    ev.call.call_id,
                    ev.kind.as_str(),
                    ev.call
                );
            }
            dispatch(rt, &config, ev, &mut st.outbox);
        }
        if st.outbox.len() >= OUTBOX_MAX {
            flush(rt, &mut st.outbox);
        }
    }
}

/// The correlation thread's timed chores, also while events keep coming: report the hook's
/// drops, let the delivery workers notice a stalled lane, sweep calls that never ended.
fn chores(rt: &Runtime, shared: &HookShared, st: &mut Correlation) {
    shared.report_drops(&mut st.dropped_reported);
    if let Some(d) = rt.dispatcher.get() {
        d.tick();
    }
    if st.last_sweep.elapsed() >= rt.sweep_every {
        st.last_sweep = Instant::now();
        rt.sweeps.fetch_add(1, Ordering::Relaxed);
        let config = st.config.clone();
        for ev in st.correlator.expire(SystemTime::now()) {
            dispatch(rt, &config, ev, &mut st.outbox);
        }
    }
}

/// Hands the rendered deliveries to their workers; writes the burst's caller history.
fn flush(rt: &Runtime, outbox: &mut Vec<Delivery>) {
    if let Some(dispatcher) = rt.dispatcher.get() {
        dispatcher.submit_many(std::mem::take(outbox));
    }
    if let Some(h) = rt.history.get() {
        h.flush_burst();
    }
}

/// Renders one call event for every interested section and adds the requests to `outbox`.
fn dispatch(rt: &Runtime, config: &Config, mut ev: CallEvent, outbox: &mut Vec<Delivery>) {
    rt.call_events.fetch_add(1, Ordering::Relaxed);
    ev.call.node.clone_from(&rt.node);
    fault::point(fault::Place::Calls, "calls", ev.call.caller.as_bytes());
    if let Some(t) = &config.general.recording_url {
        if !ev.call.recording.is_empty() {
            ev.call.recording_url = t.render_text(&ev, &config.general.format_context());
        }
    }
    if rt.dispatcher.get().is_none() {
        return;
    }
    for section in &config.sections {
        let SectionKind::Webhook(w) = &section.kind else {
            continue;
        };
        if !section.enabled || !w.wants(ev.kind, ev.call.direction) || !w.passes(&ev) {
            continue;
        }
        match w.render(&ev) {
            Ok(request) => outbox.push(Delivery {
                id: Delivery::new_id(),
                section: section.name.clone(),
                call_id: ev.call.call_id.clone(),
                event: ev.kind.as_str().to_string(),
                request,
                created_ms: chrono::Utc::now().timestamp_millis(),
            }),
            Err(e) => {
                rt.render_failures.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "[{}] call {} {}: cannot render the request: {e}",
                    section.name,
                    ev.call.call_id,
                    ev.kind.as_str()
                );
            }
        }
    }
}

/// Feeds one host event to the correlator. A panic (a bug) loses that one event, is logged and
/// counted, and the thread goes on with the next: every other call keeps its events.
fn handle_guarded(correlator: &mut Correlator, ev: HostEvent, rt: &Runtime) -> Vec<CallEvent> {
    match caught(|| correlator.handle(ev)) {
        Ok(events) => events,
        Err(why) => {
            rt.correlator_panics.fetch_add(1, Ordering::Relaxed);
            log::error!(
                "call model bug ({why}): one channel event skipped (trace_calls = yes shows them)"
            );
            Vec::new()
        }
    }
}
