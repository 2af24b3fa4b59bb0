//! Contact lookup for the dialplan (`WEBHOOK_LOOKUP`): one request per number within the
//! section's cache time, a hard deadline, a size cap, strict or lenient JSON, and values made
//! safe for the dialplan before they reach it.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::config::{Config, Lookup};
use super::delivery::client;

/// Largest CRM answer read; a bigger one is an error, and the rest is never read.
pub const MAX_ANSWER: u64 = 64 * 1024;
/// How long a "not found" is remembered (found contacts: the section's `cache`).
pub const MISS_CACHE: Duration = Duration::from_secs(10);

/// Keep-alive connections kept open to one CRM: lookups come from many channels at once.
const LOOKUP_CONNECTIONS: usize = 8;

/// What `WEBHOOK_LOOKUP_STATUS` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupStatus {
    Found,
    NotFound,
    Timeout,
    Error,
}

impl LookupStatus {
    pub const ALL: [LookupStatus; 4] = [
        LookupStatus::Found,
        LookupStatus::NotFound,
        LookupStatus::Timeout,
        LookupStatus::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LookupStatus::Found => "FOUND",
            LookupStatus::NotFound => "NOTFOUND",
            LookupStatus::Timeout => "TIMEOUT",
            LookupStatus::Error => "ERROR",
        }
    }
}

struct Cached {
    at: Instant,
    /// `None`: the CRM said it does not know the number.
    fields: Option<HashMap<String, String>>,
}

/// The lookup service; shared by every channel thread that calls `WEBHOOK_LOOKUP`.
pub struct LookupService {
    config: Arc<RwLock<Arc<Config>>>,
    cache: Mutex<HashMap<(String, String), Cached>>,
    /// Latency of requests that reached the CRM, µs (for the CLI and benchmarks).
    pub latency_us: super::latency::Histogram,
    /// Lookups answered, by status (in [`LookupStatus::ALL`]'s order), for metrics.
    pub answered: [std::sync::atomic::AtomicU64; 4],
}

/// Makes a CRM value safe for the dialplan: control characters go, and every character that
/// could change a dialplan expression or a Dial string (`, & | ; ( ) [ ] { } $ \ " '` `` ` ``
/// `/ @ < >`) becomes a space, so `100&PJSIP/666` can only ever name a non-existent endpoint.
pub fn sanitize(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| {
            if ",&|;()[]{}$\\\"'`/@<>".contains(c) {
                ' '
            } else {
                c
            }
        })
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses a CRM answer: strict JSON, else the lenient form (`{ contact_name: 'Вася' }`).
/// Returns the top-level fields as text (nested objects flattened with dots), or `None`
/// when the answer is empty / not an object / an empty object.
pub fn parse_answer(body: &[u8]) -> Result<Option<HashMap<String, String>>, String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim().trim_start_matches('\u{feff}');
    if text.is_empty() {
        return Ok(None);
    }
    let value: Json = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(strict) => json5::from_str(text).map_err(|_| format!("not JSON: {strict}"))?,
    };
    let Json::Object(obj) = value else {
        return Ok(None);
    };
    let mut out = HashMap::new();
    flatten("", &Json::Object(obj), &mut out);
    Ok((!out.is_empty()).then_some(out))
}

fn flatten(prefix: &str, v: &Json, out: &mut HashMap<String, String>) {
    match v {
        Json::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Json::Null => {}
        Json::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

impl LookupService {
    pub fn new(config: Arc<RwLock<Arc<Config>>>) -> LookupService {
        LookupService {
            config,
            cache: Mutex::new(HashMap::new()),
            latency_us: Default::default(),
            answered: Default::default(),
        }
    }

    /// Answers `WEBHOOK_LOOKUP(section,number,field)`: the sanitized value and the status.
    /// Never takes longer than the section's `timeout` (plus scheduling).
    pub fn lookup(&self, section: &str, number: &str, field: &str) -> (String, LookupStatus) {
        let answer = self.answer(section, number, field);
        let i = LookupStatus::ALL
            .iter()
            .position(|s| *s == answer.1)
            .unwrap_or(3);
        self.answered[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        answer
    }

    fn answer(&self, section: &str, number: &str, field: &str) -> (String, LookupStatus) {
        let config = self
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if config.disabled(section) {
            return (String::new(), LookupStatus::NotFound); // `enabled = no`: as if unknown
        }
        let Some(l) = config.lookup(section) else {
            log::warn!("WEBHOOK_LOOKUP: no type = lookup section [{section}] in webhook.conf");
            return (String::new(), LookupStatus::Error);
        };
        let field = if field.trim().is_empty() {
            l.default_field.as_str()
        } else {
            field.trim()
        };
        let key = (section.to_string(), number.to_string());
        if let Some(fields) = self.cached(&key, l) {
            return pick(fields.as_ref(), field);
        }
        match self.ask(section, l, number) {
            Ok(fields) => {
                let answer = pick(fields.as_ref(), field);
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
                    key,
                    Cached {
                        at: Instant::now(),
                        fields,
                    },
                );
                answer
            }
            Err(status) => (String::new(), status),
        }
    }

    fn cached(
        &self,
        key: &(String, String),
        l: &Lookup,
    ) -> Option<Option<HashMap<String, String>>> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            cache.retain(|_, c| c.at.elapsed() < l.cache.max(MISS_CACHE));
        }
        let c = cache.get(key)?;
        let ttl = if c.fields.is_some() {
            l.cache
        } else {
            MISS_CACHE.min(l.cache)
        };
        (c.at.elapsed() < ttl).then(|| c.fields.clone())
    }

    fn ask(
        &self,
        section: &str,
        l: &Lookup,
        number: &str,
    ) -> Result<Option<HashMap<String, String>>, LookupStatus> {
        let req = l.render(number).map_err(|e| {
            log::error!("[{section}] lookup {number}: cannot render the request: {e}");
            LookupStatus::Error
        })?;
        let agent = client::agent(l.timeout, None, LOOKUP_CONNECTIONS).map_err(|e| {
            log::error!("[{section}] lookup: {e}");
            LookupStatus::Error
        })?;
        let started = Instant::now();
        let result = client::call(&agent, &req, &[]);
        let timed_out = |e: &dyn std::fmt::Display| {
            log::warn!(
                "[{section}] lookup {number}: no answer within {} ms ({e})",
                l.timeout.as_millis()
            );
            LookupStatus::Timeout
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Timeout(t)) => return Err(timed_out(&t)),
            Err(e) => {
                log::warn!("[{section}] lookup {number}: {e}");
                return Err(LookupStatus::Error);
            }
        };
        let code = resp.status().as_u16();
        let mut body = Vec::new();
        let read = resp
            .body_mut()
            .as_reader()
            .take(MAX_ANSWER + 1)
            .read_to_end(&mut body);
        if let Err(e) = read {
            if started.elapsed() >= l.timeout {
                return Err(timed_out(&e));
            }
            log::warn!("[{section}] lookup {number}: reading the answer failed: {e}");
            return Err(LookupStatus::Error);
        }
        self.latency_us.record(started.elapsed().as_micros() as u64);
        if code == 404 {
            return Ok(None);
        }
        if !(200..300).contains(&code) {
            log::warn!("[{section}] lookup {number}: HTTP {code}");
            return Err(LookupStatus::Error);
        }
        if body.len() as u64 > MAX_ANSWER {
            log::warn!(
                "[{section}] lookup {number}: answer larger than {MAX_ANSWER} bytes; ignored"
            );
            return Err(LookupStatus::Error);
        }
        parse_answer(&body).map_err(|e| {
            log::warn!("[{section}] lookup {number}: {e}");
            LookupStatus::Error
        })
    }
}

fn pick(fields: Option<&HashMap<String, String>>, field: &str) -> (String, LookupStatus) {
    match fields.and_then(|f| f.get(field)).map(|v| sanitize(v)) {
        Some(v) if !v.is_empty() => (v, LookupStatus::Found),
        _ => (String::new(), LookupStatus::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_cannot_change_a_dial_string() {
        assert_eq!(sanitize("100&PJSIP/666"), "100 PJSIP 666");
        assert_eq!(sanitize("100,,,U(evil)"), "100 U evil");
        assert_eq!(sanitize("${SHELL(rm -rf /)}"), "SHELL rm -rf");
        assert_eq!(sanitize("$[1+1]|x;y"), "1+1 x y");
        assert_eq!(sanitize("Вася\r\n\tПупкин\u{7}"), "ВасяПупкин");
        assert_eq!(sanitize("Вася/Рога и копыта"), "Вася Рога и копыта");
        for evil in [
            "100&PJSIP/666",
            "100,,,U(evil)",
            "${X}",
            "$[1]",
            "a|b",
            "x)y",
            "sip:1@h",
        ] {
            let s = sanitize(evil);
            assert!(
                !s.contains([',', '&', '|', '$', '(', ')', '/', '@']),
                "{evil} → {s}"
            );
        }
    }

    #[test]
    fn strict_and_lenient_answers() {
        let strict = parse_answer(
            br#"{"contact_name":"Ivan","responsible":"100","id":7,"crm":{"owner":"anna"}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(strict["contact_name"], "Ivan");
        assert_eq!(strict["id"], "7");
        assert_eq!(strict["crm.owner"], "anna");
        let lenient =
            parse_answer("{ contact_name: 'Вася/Рога и копыта', responsible: '100' }".as_bytes())
                .unwrap()
                .unwrap();
        assert_eq!(lenient["contact_name"], "Вася/Рога и копыта");
        assert_eq!(lenient["responsible"], "100");
        assert_eq!(parse_answer(b"{}").unwrap(), None);
        assert_eq!(parse_answer(b"").unwrap(), None);
        assert_eq!(parse_answer(b"[1,2]").unwrap(), None);
        assert!(parse_answer(b"{not json at all").is_err());
    }
}
