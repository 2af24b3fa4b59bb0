//! The HTTP client every outgoing request uses (webhook delivery and contact lookup): one attempt with hard limits, a caching resolver, a coalescing transport.

pub mod client;
pub mod coalesce;
pub mod resolver;
