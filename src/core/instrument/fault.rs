//! Test-only fault injection: a switch that makes a chosen thread panic at a chosen point, so
//! the tests can prove a panic is contained, logged, counted and survived.
//!
//! Off unless armed: by the environment variable `RES_WEBHOOK_TEST_PANIC=<place>:<marker>[,…]`
//! (read once; the live tests set it on the Asterisk they start), or by [`arm`] from a unit
//! test. When armed, [`point`] panics the first time it sees `marker` in its text for a given
//! key (a delivery id, a call id), so the retried work then goes through. Nothing in production
//! sets either.

use std::collections::HashSet;
use std::sync::Mutex;

use once_cell::sync::Lazy;

/// Where a panic can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A delivery lane, after it took a delivery and before the attempt (outside the
    /// attempt's own guard): the lane's supervisor must restart it.
    Worker,
    /// The correlation thread, while it renders a call event.
    Calls,
}

impl Place {
    fn parse(s: &str) -> Option<Place> {
        match s {
            "worker" => Some(Place::Worker),
            "calls" => Some(Place::Calls),
            _ => None,
        }
    }
}

struct Switch {
    armed: Vec<(Place, String)>,
    fired: HashSet<(String, String)>,
}

static SWITCH: Lazy<Mutex<Switch>> = Lazy::new(|| {
    let armed = std::env::var("RES_WEBHOOK_TEST_PANIC")
        .unwrap_or_default()
        .split(',')
        .filter_map(|v| {
            let (place, marker) = v.trim().split_once(':')?;
            Some((Place::parse(place)?, marker.to_string()))
        })
        .filter(|(_, m)| !m.is_empty())
        .collect();
    Mutex::new(Switch {
        armed,
        fired: HashSet::new(),
    })
});

static ANY: Lazy<bool> = Lazy::new(|| {
    !SWITCH
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .armed
        .is_empty()
});

static ARMED_LATER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Arms the switch from a test: `point(place, _, text)` panics once per key when `text`
/// contains `marker`.
pub fn arm(place: Place, marker: &str) {
    SWITCH
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .armed
        .push((place, marker.to_string()));
    ARMED_LATER.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Panics here if the switch is armed for `place` and `text` contains its marker, once per
/// `key`. Costs one load when the switch is off.
pub fn point(place: Place, key: &str, text: &[u8]) {
    if !*ANY && !ARMED_LATER.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let hit = {
        let mut sw = SWITCH.lock().unwrap_or_else(|p| p.into_inner());
        let marker = sw
            .armed
            .iter()
            .find(|(p, m)| *p == place && text.windows(m.len().max(1)).any(|w| w == m.as_bytes()))
            .map(|(_, m)| m.clone());
        marker.is_some_and(|m| sw.fired.insert((m, key.to_string())))
    };
    if hit {
        panic!("injected test panic ({place:?})");
    }
}
