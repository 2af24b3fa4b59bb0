//! The Asterisk adapter: the only code that knows it runs inside Asterisk, and the only `unsafe`.
//!
//! - [`ffi`]: raw bindings generated from `include/res_webhook.h`;
//! - [`guard`]: the one panic guard every `extern "C"` entry goes through;
//! - [`host_log`]: the `log` facade, forwarded to Asterisk's logger;
//! - [`entry`]: the `extern "C"` functions the C shim calls;
//! - [`feed`]: the call path — Stasis messages queued by reference, read on the correlation thread.

pub mod ami;
pub mod entry;
pub mod feed;
pub mod ffi;
pub mod guard;
pub mod host_log;
