//! Channels become calls: the correlator (call table, topology, outcomes, the `webhook show calls` summary) and the caller history behind `is_new` / `is_duplicate`.

pub mod caller_history;
pub mod correlator;
