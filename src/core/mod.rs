//! The host-neutral core: everything here is plain Rust, unit-tested without a PBX.

pub mod call;
pub mod caller_history;
pub mod click_to_call;
pub mod config;
pub mod correlator;
pub mod delivery;
pub mod engine;
pub mod fault;
pub mod host_event;
pub mod latency;
pub mod lookup;
pub mod metrics;
pub mod packed_event;
pub mod payload;
pub mod request;
pub mod synthetic;
pub mod template;
pub mod value;
