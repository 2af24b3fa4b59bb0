//! The panic guard. Since Rust 1.81 a panic unwinding out of `extern "C"` aborts the process —
//! Asterisk and every call on it — so every entry point runs its body through [`guard`].

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `body`; if it panics, logs the panic as an Asterisk error and returns `fallback`.
pub fn guard<T>(entry: &'static str, fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(payload) => {
            let what = crate::core::instrument::panic::message(&*payload);
            log::error!("internal error in {entry}: {what} (contained; Asterisk continues)");
            fallback
        }
    }
}

/// Panics caught on the call path, where logging is not allowed (Asterisk's publishing thread):
/// counted here and shown by `webhook show status`.
pub static HOOK_PANICS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// [`guard`] for the call-path hooks: a panic is counted, not logged. Inlined: the hook's code
/// spread over functions far apart in the module cost a cold miss each (README, Performance).
#[inline(always)]
pub fn guard_hook<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(_) => {
            HOOK_PANICS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            fallback
        }
    }
}

#[cfg(test)]
mod tests {
    use super::guard;

    #[test]
    fn a_panic_becomes_the_fallback_value() {
        let r = guard("test_entry", -1, || -> i32 { panic!("boom") });
        assert_eq!(r, -1);
        let s = guard("test_entry", 0, || 7);
        assert_eq!(s, 7);
        let v: Vec<u8> = vec![];
        let r = guard("test_entry", 99, || v[3] as i32);
        assert_eq!(r, 99);
    }
}
