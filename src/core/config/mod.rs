//! The configuration model (`webhook.conf`).

pub mod raw;
