//! The panic guard. Since Rust 1.81 a panic unwinding out of `extern "C"` aborts the process —
//! Asterisk and every call on it — so every entry point runs its body through [`guard`].

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `body`; if it panics, logs the panic as an Asterisk error and returns `fallback`.
pub fn guard<T>(entry: &'static str, fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            log::error!("internal error in {entry}: {what} (contained; Asterisk continues)");
            fallback
        }
    }
}
