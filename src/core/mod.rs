//! The host-neutral core: everything here is plain Rust, unit-tested without a PBX.

pub mod call;
pub mod config;
pub mod engine;
pub mod correlator;
pub mod host_event;
pub mod latency;
pub mod request;
pub mod value;
