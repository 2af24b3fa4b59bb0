//! The running engine, one file per concept: [`engine`] (start, services, stop), [`hook`] (the
//! call path's hand-off), [`apply`] (configuration load and reload), [`correlation`] (the
//! `webhook-calls` thread), [`state`] (what those share); test-only [`fault`] injection and
//! [`latency`] histograms. What operators read of it is formatted in [`crate::core::cli`].

pub mod apply;
pub mod correlation;
pub mod engine;
pub mod fault;
pub mod hook;
pub mod latency;
pub mod state;
