//! What a PBX adapter hands over: host events as owned copies, and their packed form on the call path.

pub mod host_event;
pub mod packed_event;
