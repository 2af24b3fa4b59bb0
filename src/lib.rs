//! res_webhook: an Asterisk module that turns every call into `start` / `answer` / `end`
//! webhooks, asks a CRM who is calling, and lets a CRM place calls.
//!
//! Two halves, so the PBX is replaceable:
//! - [`core`] knows calls, configuration, payloads and delivery, and nothing of Asterisk;
//! - [`asterisk`] is the adapter: the only place with `unsafe`, FFI and host types.

pub mod asterisk;
pub mod core;
