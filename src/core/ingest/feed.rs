//! Events an adapter keeps in its own queue until the correlation thread reads them.
//!
//! Copying a channel event's dozen strings on the thread that publishes it was most of what
//! the hook cost: at a few calls per second that thread's caches are cold, and the strings sit
//! in host structures built long before. A host whose event records are immutable and
//! reference-counted (Asterisk's Stasis messages) lets the hook keep a reference instead (one
//! atomic increment and one `try_send`) and the correlation thread do the copying.

use crate::core::ingest::host_event::HostEvent;

/// An adapter's queue of events not copied yet, read by the correlation thread only.
pub trait HostFeed: Send + Sync {
    /// The oldest waiting event, copied into owned values; `None` when nothing waits.
    fn next_event(&self) -> Option<HostEvent>;
}
