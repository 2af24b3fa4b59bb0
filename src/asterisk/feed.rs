//! The call path: Stasis messages the hook took a reference on, queued as they are and copied
//! into owned [`HostEvent`]s on the correlation thread (see [`HostFeed`] for why).
//!
//! The hook ([`rw_on_message`]) runs on the thread that publishes the message, often under the
//! channel's lock: it takes over the shim's reference and pushes one pointer, nothing else.
//! `Set(WEBHOOK(name)=value)` goes through the same queue, so it stays in order with the
//! channel events of its call.
//!
//! Like `entry`, the `extern "C"` functions here are called only by the shim, which keeps the
//! header's pointer contract; hence the exemption from `not_unsafe_ptr_arg_deref`.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use compact_str::CompactString;
use crossbeam_queue::ArrayQueue;
use libc::{c_char, c_int, c_void};
use once_cell::sync::OnceCell;

use super::entry::{hook, owned, owned_as};
use super::ffi;
use super::guard::{guard, guard_hook};
use crate::core::ingest::feed::HostFeed;
use crate::core::ingest::host_event::{ChannelChange, ChannelInfo, HostEvent};
use crate::core::runtime::hook::{Refusal, HOOK_QUEUE_CAPACITY};

/// The shim's functions for reading and releasing a message, from `rw_host`.
struct MessageHost {
    read: unsafe extern "C" fn(*mut c_void, c_int, *mut ffi::rw_message) -> c_int,
    release: unsafe extern "C" fn(*mut c_void),
}

static MESSAGE_HOST: OnceCell<MessageHost> = OnceCell::new();
/// The queue, reachable from the hook without any lock. The hook touches as few places in
/// memory as it can: at a few calls per second each one is a cache and a TLB miss. An
/// `ArrayQueue` lives inside this static (only its slots are on the heap) and has no wakers
/// to check; with a `crossbeam-channel` in its place the hook's p99 at 20 calls/s was about
/// 1 µs higher (5.6–6.1 µs against 4.6–5.1, three interleaved rounds).
static QUEUE: OnceCell<ArrayQueue<Item>> = OnceCell::new();
/// Between load and unload: the hook queues only then. Its own flag next to the queue rather
/// than the core hook's `closed`, which lives on the heap (one more miss per hook); both are
/// closed together (`entry::stop_taking_events`).
static OPEN: AtomicBool = AtomicBool::new(false);

/// One reference on a Stasis message; dropping it gives the reference back.
struct Message {
    ptr: NonNull<c_void>,
    /// What the hook found changed (channel snapshots only).
    change: c_int,
}

// SAFETY: an ao2 reference may be released on any thread, and a published Stasis message and
// what it points to are immutable, so reading it on another thread is what every Stasis
// subscriber does.
unsafe impl Send for Message {}

impl Message {
    /// # Safety
    /// `ptr` is a Stasis message on which the caller holds one reference, handed over here.
    #[inline(always)]
    unsafe fn adopt(ptr: *mut c_void, change: c_int) -> Option<Message> {
        NonNull::new(ptr).map(|ptr| Message { ptr, change })
    }

    /// The event, copied out of the message; `None` for a message of another type.
    fn read(&self) -> Option<HostEvent> {
        let host = MESSAGE_HOST.get()?;
        // SAFETY: rw_message is plain data (integers and pointers); all-zero is a valid value.
        let mut out: ffi::rw_message = unsafe { std::mem::zeroed() };
        // SAFETY: self holds a reference on the message, so it is alive; `out` is writable.
        if unsafe { (host.read)(self.ptr.as_ptr(), self.change, &mut out) } != 0 {
            return None;
        }
        let at = time_from(out.sec, out.usec).unwrap_or_else(SystemTime::now);
        // SAFETY: every string the shim wrote into `out` is NUL-terminated and borrowed from
        // the message, which stays alive until self is dropped, after this copy.
        unsafe {
            match out.kind as u32 {
                ffi::rw_message_kind_RW_MESSAGE_CHANNEL => channel(&out.channel, at),
                ffi::rw_message_kind_RW_MESSAGE_DIAL => {
                    let d = &out.dial;
                    let caller = owned(d.caller_uniqueid);
                    Some(HostEvent::Dial {
                        caller_uniqueid: (!caller.is_empty()).then_some(caller),
                        peer_uniqueid: owned(d.peer_uniqueid),
                        peer_linkedid: owned(d.peer_linkedid),
                        peer_name: owned(d.peer_name),
                        dialstring: owned(d.dialstring),
                        status: owned(d.dialstatus),
                        at,
                    })
                }
                ffi::rw_message_kind_RW_MESSAGE_VARSET => {
                    let v = &out.varset;
                    Some(HostEvent::VarSet {
                        linkedid: owned(v.linkedid),
                        uniqueid: owned(v.uniqueid),
                        name: owned(v.name),
                        value: owned(v.value),
                        at,
                    })
                }
                _ => None,
            }
        }
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        if let Some(host) = MESSAGE_HOST.get() {
            // SAFETY: self holds one reference on the message, given back exactly once here.
            unsafe { (host.release)(self.ptr.as_ptr()) };
        }
    }
}

/// # Safety
/// The strings of `c` are NUL-terminated (or NULL) and valid during this call.
unsafe fn channel(c: &ffi::rw_channel, at: SystemTime) -> Option<HostEvent> {
    let change = match c.change as u32 {
        ffi::rw_channel_change_RW_CHANNEL_NEW => ChannelChange::New,
        ffi::rw_channel_change_RW_CHANNEL_UP => ChannelChange::Up,
        ffi::rw_channel_change_RW_CHANNEL_DEAD => ChannelChange::Dead,
        ffi::rw_channel_change_RW_CHANNEL_CHANGED => ChannelChange::Changed,
        _ => return None,
    };
    // SAFETY: as the caller promises.
    let info = unsafe {
        ChannelInfo {
            linkedid: owned_as::<CompactString>(c.linkedid),
            uniqueid: owned_as::<CompactString>(c.uniqueid),
            name: owned_as::<CompactString>(c.name),
            caller_number: owned_as::<CompactString>(c.caller_number),
            caller_name: owned_as::<CompactString>(c.caller_name),
            dnid: owned_as::<CompactString>(c.dnid),
            context: owned_as::<CompactString>(c.context),
            exten: owned_as::<CompactString>(c.exten),
            appl: owned_as::<CompactString>(c.appl),
            appl_data: owned_as::<CompactString>(c.appl_data),
            bridge: owned_as::<CompactString>(c.bridge_id),
            accountcode: owned_as::<CompactString>(c.accountcode),
            hangup_source: owned_as::<CompactString>(c.hangup_source),
            hangup_cause: c.hangup_cause,
            created: time_from(c.creation_sec, c.creation_usec),
        }
    };
    Some(HostEvent::Channel { change, info, at })
}

fn time_from(sec: i64, usec: i64) -> Option<SystemTime> {
    if sec <= 0 {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_secs(sec as u64) + Duration::from_micros(usec.max(0) as u64))
}

/// What waits in the queue.
enum Item {
    Message(Message),
    /// An event already owned (`Set(WEBHOOK(...))`).
    Owned(Box<HostEvent>),
}

/// The queue's reading side, the correlation thread's.
pub struct AsteriskFeed;

impl HostFeed for AsteriskFeed {
    fn next_event(&self) -> Option<HostEvent> {
        // A message that reads as nothing (not one of ours) is skipped, not the end.
        let queue = QUEUE.get()?;
        while let Some(item) = queue.pop() {
            let ev = match item {
                Item::Message(m) => m.read(),
                Item::Owned(ev) => Some(*ev),
            };
            if ev.is_some() {
                return ev;
            }
        }
        None
    }
}

/// Sets up the queue and the shim's message functions; at load, before the engine starts.
/// Returns the feed for the engine, `None` when the shim gave no message functions.
pub(super) fn install(host: &ffi::rw_host) -> Option<Arc<dyn HostFeed>> {
    let (Some(read), Some(release)) = (host.message_read, host.message_release) else {
        return None;
    };
    let _ = MESSAGE_HOST.set(MessageHost { read, release });
    QUEUE.get_or_init(|| ArrayQueue::new(HOOK_QUEUE_CAPACITY));
    OPEN.store(true, Ordering::SeqCst);
    Some(Arc::new(AsteriskFeed))
}

/// The hook queues nothing more (unload, exit); what it queued is still read.
pub(super) fn close() {
    OPEN.store(false, Ordering::SeqCst);
}

/// Queues one item; a refused one is dropped here (a message's reference is given back).
/// Inlined into the hook (see `guard_hook`).
#[inline(always)]
fn send(item: Item) -> bool {
    let Some(queue) = QUEUE.get().filter(|_| OPEN.load(Ordering::Relaxed)) else {
        return false;
    };
    match queue.push(item) {
        Ok(()) => true,
        Err(_) => hook().is_some_and(|h| h.refused(Refusal::Full)),
    }
}

#[no_mangle]
pub extern "C" fn rw_on_message(message: *mut c_void, change: c_int) -> c_int {
    // SAFETY: the shim hands over one reference it took on the message (header contract).
    let Some(message) = (unsafe { Message::adopt(message, change) }) else {
        return 0;
    };
    // A panic inside drops the message, which gives its reference back.
    guard_hook(0, || c_int::from(send(Item::Message(message))))
}

#[no_mangle]
pub extern "C" fn rw_on_call_data(
    linkedid: *const c_char,
    name: *const c_char,
    value: *const c_char,
) -> i32 {
    guard("rw_on_call_data", -1, || {
        // SAFETY: the three are NUL-terminated strings (or NULL) valid for this call.
        let (linkedid, name, value) = unsafe { (owned(linkedid), owned(name), owned(value)) };
        let ev = HostEvent::CallData {
            linkedid,
            name,
            value,
            at: SystemTime::now(),
        };
        if send(Item::Owned(Box::new(ev))) {
            0
        } else {
            -1
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::sync::atomic::AtomicUsize;

    /// A stand-in for a Stasis message: a variable set, or (`name` empty) a type the feed does
    /// not read.
    struct FakeMessage {
        name: CString,
        value: CString,
    }

    static RELEASED: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn fake_read(
        m: *mut c_void,
        _change: c_int,
        out: *mut ffi::rw_message,
    ) -> c_int {
        // SAFETY: the test passes FakeMessage pointers it still owns a reference to.
        let (m, out) = unsafe { (&*(m as *const FakeMessage), &mut *out) };
        if m.name.as_bytes().is_empty() {
            return -1;
        }
        out.kind = ffi::rw_message_kind_RW_MESSAGE_VARSET as c_int;
        out.sec = 1_700_000_000;
        out.varset.linkedid = c"call-1".as_ptr();
        out.varset.uniqueid = c"chan-1".as_ptr();
        out.varset.name = m.name.as_ptr();
        out.varset.value = m.value.as_ptr();
        0
    }

    unsafe extern "C" fn fake_release(m: *mut c_void) {
        // SAFETY: made by Box::into_raw in `message`, released once (what the test checks).
        drop(unsafe { Box::from_raw(m as *mut FakeMessage) });
        RELEASED.fetch_add(1, Ordering::SeqCst);
    }

    fn message(name: &str, value: &str) -> *mut c_void {
        Box::into_raw(Box::new(FakeMessage {
            name: CString::new(name).unwrap(),
            value: CString::new(value).unwrap(),
        })) as *mut c_void
    }

    fn varset(ev: Option<HostEvent>) -> (String, String) {
        match ev {
            Some(HostEvent::VarSet { name, value, .. }) => (name, value),
            other => panic!("not a variable set: {other:?}"),
        }
    }

    /// One test, because the feed is a process-wide static (as in Asterisk).
    #[test]
    fn every_message_is_read_in_order_and_released_once_and_a_refused_one_at_once() {
        let host = ffi::rw_host {
            log: None,
            cli_print: None,
            originate: None,
            ami_event: None,
            message_read: Some(fake_read),
            message_release: Some(fake_release),
        };
        let feed = install(&host).expect("a feed");
        assert!(feed.next_event().is_none());

        assert_eq!(rw_on_message(message("A", "1"), 0), 1);
        assert_eq!(rw_on_message(message("", ""), 0), 1); // a type the feed skips
        let (id, name, value) = (c"call-1", c"NAME", c"set by WEBHOOK()");
        assert_eq!(
            rw_on_call_data(id.as_ptr(), name.as_ptr(), value.as_ptr()),
            0
        );
        assert_eq!(rw_on_message(message("B", "2"), 0), 1);
        assert_eq!(
            RELEASED.load(Ordering::SeqCst),
            0,
            "nothing released while queued"
        );

        assert_eq!(varset(feed.next_event()), ("A".into(), "1".into()));
        assert_eq!(RELEASED.load(Ordering::SeqCst), 1, "released once copied");
        match feed.next_event() {
            Some(HostEvent::CallData { name, value, .. }) => {
                assert_eq!(
                    (name.as_str(), value.as_str()),
                    ("NAME", "set by WEBHOOK()")
                )
            }
            other => panic!("not the call data: {other:?}"),
        }
        assert_eq!(
            RELEASED.load(Ordering::SeqCst),
            2,
            "the skipped one released too"
        );
        let (at, (name, value)) = match feed.next_event() {
            Some(HostEvent::VarSet {
                at, name, value, ..
            }) => (at, (name, value)),
            other => panic!("not a variable set: {other:?}"),
        };
        assert_eq!((name.as_str(), value.as_str()), ("B", "2"));
        assert_eq!(
            at,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            "Asterisk's publish time"
        );
        assert!(feed.next_event().is_none());
        assert_eq!(RELEASED.load(Ordering::SeqCst), 3);

        close();
        assert_eq!(
            rw_on_message(message("C", "3"), 0),
            0,
            "refused once closed"
        );
        assert_eq!(RELEASED.load(Ordering::SeqCst), 4, "and released at once");
        assert!(feed.next_event().is_none());
        assert_eq!(rw_on_message(std::ptr::null_mut(), 0), 0);
    }
}
