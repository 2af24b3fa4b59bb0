//! Parsers for the value shapes `webhook.conf` uses: durations, lists, numbers, booleans.

use std::time::Duration;

/// `5s`, `30s`, `2m`, `1h`, `1d`, `250ms`, or a bare number of `bare_unit`s (whole
/// milliseconds). A value too large to hold is refused, never wrapped.
pub fn duration(s: &str, bare_unit: Duration) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("not a duration: `{s}` (e.g. 500ms, 5s, 2m, 1h)"))?;
    let unit_ms: u128 = match unit.trim() {
        "" => bare_unit.as_millis(),
        "ms" => 1,
        "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("unknown time unit `{other}` in `{s}`")),
    };
    let ms = u64::try_from(n as u128 * unit_ms).map_err(|_| format!("too large: `{s}`"))?;
    Ok(Duration::from_millis(ms))
}

/// A duration the way `webhook.conf` writes it, in the largest unit that is exact.
pub fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A comma-separated list, trimmed, empty items dropped.
pub fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// A comma-separated list of durations (`retry = 5s, 30s, 2m`).
pub fn durations(s: &str) -> Result<Vec<Duration>, String> {
    list(s)
        .iter()
        .map(|d| duration(d, Duration::from_secs(1)))
        .collect()
}

/// A non-negative integer.
/// `yes` / `no` as Asterisk's configs write them (also `true`/`false`, `on`/`off`, `1`/`0`).
pub fn boolean(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err(format!("`{s}` is not yes or no")),
    }
}

pub fn number(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("not a number: `{}`", s.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_lists() {
        assert_eq!(
            durations("5s, 30s, 2m, 10m, 1h, 6h").unwrap(),
            [5, 30, 120, 600, 3600, 21600].map(Duration::from_secs)
        );
        assert_eq!(
            duration("1500", Duration::from_millis(1)).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            duration("250ms", Duration::from_secs(1)).unwrap(),
            Duration::from_millis(250)
        );
        assert!(duration("5 parsecs", Duration::from_secs(1)).is_err());
        assert!(duration("", Duration::from_secs(1)).is_err());
        assert_eq!(list(" a, ,b ,"), ["a", "b"]);
        // Found by tests/fuzz_parsers.rs: these wrapped around (44 s, 1 ms) instead of failing.
        assert!(duration("307445734561825861m", Duration::from_secs(1)).is_err());
        assert!(duration("18446744073709551615h", Duration::from_secs(1)).is_err());
        assert_eq!(
            duration("4294967297", Duration::from_millis(1)).unwrap(),
            Duration::from_millis(4_294_967_297)
        );
    }
}
