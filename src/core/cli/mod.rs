//! Everything operators read, formatted in one place: the `webhook …` CLI commands
//! ([`commands`] parses the words) and the Prometheus exposition ([`metrics`]). The engine and
//! the dispatcher hand over typed rows; the text is made here.

pub mod commands;
pub mod metrics;
pub mod test;
