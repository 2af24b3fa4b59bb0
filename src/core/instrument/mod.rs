//! What every stage uses to measure and probe itself, so none of them depends on the runtime
//! for it: lock-free [`latency`] histograms and the test-only [`fault`] switch.

pub mod fault;
pub mod latency;
