//! Everything operators read, formatted in one place: the `webhook …` CLI ([`commands`]
//! parses the words; [`status`], [`errors`], [`section`], [`calls`], [`test`](mod@test) make each
//! command's text) and the Prometheus exposition ([`metrics`]). The engine and the dispatcher
//! hand over typed rows; the text is made here.

pub mod calls;
pub mod commands;
pub mod errors;
pub mod metrics;
pub mod section;
pub mod status;
pub mod test;
