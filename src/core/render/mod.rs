//! Templates (`${…}`, hashes, dates) and payload formats (query, form, json, jsonrpc, raw): a call event becomes a request.

pub mod layout;
pub mod payload;
pub mod template;
