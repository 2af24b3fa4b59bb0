//! The host-neutral core: everything here is plain Rust, unit-tested without a PBX. It is
//! grouped by the stage a call's data goes through:
//!
//! - [`ingest`]: what a PBX adapter hands over (host events, or a feed of its own);
//! - [`calls`]: channels become calls (the correlator) and callers are remembered;
//! - [`model`]: the call record, the values templates read, an HTTP request;
//! - [`config`]: `webhook.conf`, checked line by line;
//! - [`render`]: templates and payload formats turn a call event into a request;
//! - [`http`]: the HTTP client every outgoing request uses (delivery and lookup);
//! - [`delivery`]: per-section queues, lanes, retries, the spool, signing;
//! - [`lookup`], [`click_to_call`]: the two-way CRM integration;
//! - [`runtime`]: the engine, the call path's hook, config apply, the correlation thread;
//! - [`instrument`]: latency histograms and the test-only fault switch, used by every stage;
//! - [`cli`]: every text operators read (the `webhook …` commands, Prometheus metrics).

pub mod calls;
pub mod cli;
pub mod click_to_call;
pub mod config;
pub mod delivery;
pub mod http;
pub mod ingest;
pub mod instrument;
pub mod lookup;
pub mod model;
pub mod render;
pub mod runtime;
