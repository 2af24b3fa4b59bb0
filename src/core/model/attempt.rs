//! What one delivery attempt came to: the words the HTTP client and the NATS sink answer in,
//! and the retry classifier ([`crate::core::delivery::retry`]) reads.

use std::time::Duration;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// The endpoint answered with this status (and maybe a `Retry-After`).
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// No usable answer: connection refused, DNS, TLS, timeout, reset.
    Error(String),
}
