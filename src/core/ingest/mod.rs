//! What a PBX adapter hands over: host events as owned copies, sent to the engine's queue or
//! kept in the adapter's own queue (a feed) until the correlation thread copies them.

pub mod feed;
pub mod host_event;
