//! The running engine: the call path's hand-off, the correlation thread, configuration apply and the CLI; test-only fault injection; latency histograms.

pub mod engine;
pub mod fault;
pub mod latency;
