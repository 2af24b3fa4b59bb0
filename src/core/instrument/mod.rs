//! What every stage uses to measure and probe itself, so none of them depends on the runtime
//! for it: lock-free [`latency`] histograms, the test-only [`fault`] switch, and what a caught
//! [`panic`] said.

pub mod fault;
pub mod latency;
pub mod panic;
