//! The running engine, one file per concept: [`engine`] (start, services, stop), [`hook`] (the
//! call path's hand-off), [`apply`] (configuration load and reload), [`correlation`] (the
//! `webhook-calls` thread), [`state`] (what those share). What operators read of it is
//! formatted in `core::cli`.

pub mod apply;
pub mod correlation;
pub mod engine;
pub mod hook;
pub mod state;
