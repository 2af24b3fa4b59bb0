//! The retry classifier: what one attempt's outcome means for the delivery (SPEC §6).

use std::time::Duration;

use crate::core::model::attempt::Attempt;

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Delivered,
    /// Try again later; the endpoint's `Retry-After` if it gave one.
    Retry {
        after: Option<Duration>,
    },
    /// Never going to work as is (4xx other than 408/429): dead-letter at once.
    Fail,
}

/// Connection errors, timeouts, 408, 429 and 5xx are retried; other 4xx fail at once;
/// 1xx/2xx/3xx count as delivered (redirects are not followed: a webhook is not a page).
pub fn classify(a: &Attempt) -> Verdict {
    match a {
        Attempt::Error(_) => Verdict::Retry { after: None },
        Attempt::Status { code, retry_after } => match code {
            408 | 429 => Verdict::Retry {
                after: *retry_after,
            },
            500..=599 => Verdict::Retry {
                after: *retry_after,
            },
            400..=499 => Verdict::Fail,
            _ => Verdict::Delivered,
        },
    }
}

/// The wait before retry number `attempt` (1-based) of `schedule`, ±10 % jitter so a fleet of
/// deliveries does not hammer a recovering endpoint in step; `None` when the schedule is over.
/// A `Retry-After` from the endpoint wins, capped at the schedule's longest step.
pub fn next_delay(
    schedule: &[Duration],
    attempt: usize,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let base = *schedule.get(attempt.checked_sub(1)?)?;
    if let Some(ra) = retry_after {
        let cap = schedule.iter().max().copied().unwrap_or(base);
        return Some(ra.min(cap.max(base)));
    }
    let jitter = 0.9 + fastrand::f64() * 0.2;
    Some(base.mul_f64(jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Attempt {
        Attempt::Status {
            code,
            retry_after: None,
        }
    }

    #[test]
    fn classification_follows_the_spec() {
        assert_eq!(classify(&status(200)), Verdict::Delivered);
        assert_eq!(classify(&status(204)), Verdict::Delivered);
        assert_eq!(classify(&status(302)), Verdict::Delivered);
        for c in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(classify(&status(c)), Verdict::Retry { .. }), "{c}");
        }
        for c in [400, 401, 403, 404, 410, 422] {
            assert_eq!(classify(&status(c)), Verdict::Fail, "{c}");
        }
        assert!(matches!(
            classify(&Attempt::Error("connection refused".into())),
            Verdict::Retry { .. }
        ));
    }

    #[test]
    fn schedule_with_jitter_and_retry_after() {
        let s = [Duration::from_secs(5), Duration::from_secs(30)];
        let d = next_delay(&s, 1, None).unwrap();
        assert!(
            d >= Duration::from_millis(4500) && d <= Duration::from_millis(5500),
            "{d:?}"
        );
        assert!(next_delay(&s, 3, None).is_none());
        assert!(next_delay(&s, 0, None).is_none());
        assert_eq!(
            next_delay(&s, 1, Some(Duration::from_secs(12))),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            next_delay(&s, 1, Some(Duration::from_secs(9999))),
            Some(Duration::from_secs(30))
        );
    }
}
