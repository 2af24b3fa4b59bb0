//! What operators read besides the CLI text: the Prometheus exposition.

pub mod metrics;
