//! The HTTP client every outgoing request uses (webhook delivery and contact lookup): one attempt with hard limits, a caching resolver, a coalescing transport; deliveries to plain `http://` URLs take a lean path of their own (plain, conn, answer).

pub mod answer;
pub mod client;
pub mod coalesce;
pub mod conn;
pub mod plain;
pub mod resolver;
