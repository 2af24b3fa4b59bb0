//! Correlates channel events into calls (filled in next).
