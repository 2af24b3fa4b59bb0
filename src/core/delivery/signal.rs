//! A wake-up for a lane that sleeps in the kernel at once.
//!
//! A crossbeam channel's `recv_timeout` spins, then calls `sched_yield` up to four times before
//! it parks. A delivery worker waits like that after every burst, and on two busy cores each of
//! those yields was an involuntary context switch: about 1.6 per request (strace of the CRM
//! worker at 20 calls/s). Here a waiter goes straight to a futex, and a post makes a syscall
//! only when somebody waits.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Tokens a poster gives and a waiter takes, at most `cap` kept.
pub struct Signal {
    state: Mutex<State>,
    cv: Condvar,
    cap: usize,
}

#[derive(Default)]
struct State {
    tokens: usize,
    waiters: usize,
}

impl Signal {
    /// `cap = 1` is a wake-up that is kept while the waiter is busy; more counts helpers.
    pub fn new(cap: usize) -> Signal {
        Signal {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            cap: cap.max(1),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives a token; false when `cap` tokens already wait to be taken.
    pub fn post(&self) -> bool {
        let mut st = self.state();
        if st.tokens >= self.cap {
            return false;
        }
        st.tokens += 1;
        let wake = st.waiters > 0;
        drop(st);
        if wake {
            self.cv.notify_one();
        }
        true
    }

    /// Takes a token, waiting at most `timeout` for one; false if none came.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut st = self.state();
        loop {
            if st.tokens > 0 {
                st.tokens -= 1;
                return true;
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return false,
                },
                None => Duration::from_secs(3600),
            };
            st.waiters += 1;
            st = self
                .cv
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            st.waiters -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_post_given_while_nobody_waits_is_kept_up_to_the_cap() {
        let s = Signal::new(1);
        assert!(s.post());
        assert!(!s.post(), "a second wake-up adds nothing");
        assert!(s.wait(Duration::ZERO));
        assert!(!s.wait(Duration::from_millis(10)), "one token, taken once");
        let helpers = Signal::new(3);
        assert_eq!((0..5).filter(|_| helpers.post()).count(), 3);
    }

    #[test]
    fn a_waiter_wakes_when_a_token_comes_and_gives_up_at_its_timeout() {
        let s = Arc::new(Signal::new(1));
        let t = {
            let s = s.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                (s.wait(Duration::from_secs(10)), started.elapsed())
            })
        };
        while s.state().waiters == 0 {
            std::thread::yield_now();
        }
        assert!(s.post());
        let (woken, took) = t.join().unwrap();
        assert!(woken && took < Duration::from_secs(5), "{took:?}");
        let started = Instant::now();
        assert!(!s.wait(Duration::from_millis(50)));
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
