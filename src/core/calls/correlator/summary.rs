//! The calls in progress as the call model sees them now (`webhook show calls` prints them).

use std::time::Duration;

use crate::core::model::call::Direction;

/// One call in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSummary {
    pub call_id: String,
    pub direction: Direction,
    pub caller: String,
    pub called: String,
    pub ext: String,
    /// `ringing`, `queued` or `answered`.
    pub state: &'static str,
    pub age: Duration,
}
