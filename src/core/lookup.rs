//! Contact lookup for the dialplan (`WEBHOOK_LOOKUP`): one request per number within the
//! section's cache time, a hard deadline, a size cap, strict or lenient JSON, and values made
//! safe for the dialplan before they reach it.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::config::{Config, Lookup};
use super::http::client;

/// Largest CRM answer read; a bigger one is an error, and the rest is never read.
pub const MAX_ANSWER: u64 = 64 * 1024;
/// How long a "not found" is remembered (found contacts: the section's `cache`).
pub const MISS_CACHE: Duration = Duration::from_secs(10);

/// Keep-alive connections kept open to one CRM: lookups come from many channels at once.
const LOOKUP_CONNECTIONS: usize = 8;

/// Most numbers remembered, over all lookup sections.
pub const CACHE_ENTRIES: usize = 10_000;
/// Most bytes of remembered answers (keys and values), over all lookup sections.
pub const CACHE_BYTES: usize = 16 << 20;

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

type Key = (String, String);

struct Cached {
    /// Until when it is reused: the section's `cache` (a found contact) or [`MISS_CACHE`].
    expires: Instant,
    /// `None`: the CRM said it does not know the number.
    fields: Option<HashMap<String, String>>,
    id: u64,
    bytes: usize,
}

/// The answers remembered, per (section, number), each until its own section's time runs out;
/// bounded by entries and bytes, the oldest going first. Every operation is O(1) amortised, so
/// the one mutex around it is held only for moments.
pub struct AnswerCache {
    map: HashMap<Key, Cached>,
    /// Insertion order, for eviction; an entry whose id no longer matches the map's is stale.
    order: VecDeque<(Key, u64)>,
    next_id: u64,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl AnswerCache {
    pub fn new(max_entries: usize, max_bytes: usize) -> AnswerCache {
        AnswerCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            next_id: 0,
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The remembered answer, while it is fresh (`Some(None)`: remembered as not found).
    pub fn get(&mut self, key: &Key, now: Instant) -> Option<Option<HashMap<String, String>>> {
        let c = self.map.get(key)?;
        if c.expires > now {
            return Some(c.fields.clone());
        }
        self.remove(key);
        None
    }

    /// Remembers an answer for `ttl`.
    pub fn insert(
        &mut self,
        key: Key,
        fields: Option<HashMap<String, String>>,
        ttl: Duration,
        now: Instant,
    ) {
        if ttl.is_zero() {
            return;
        }
        self.remove(&key);
        let bytes = key.0.len()
            + key.1.len()
            + fields
                .as_ref()
                .map(|f| f.iter().map(|(k, v)| k.len() + v.len() + 16).sum())
                .unwrap_or(0)
            + 64;
        self.next_id += 1;
        let id = self.next_id;
        self.order.push_back((key.clone(), id));
        self.bytes += bytes;
        self.map.insert(
            key,
            Cached {
                expires: now + ttl,
                fields,
                id,
                bytes,
            },
        );
        while self.map.len() > self.max_entries || self.bytes > self.max_bytes {
            let Some((old, old_id)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|c| c.id == old_id) {
                self.remove(&old);
            }
        }
        // Entries replaced or expired leave stale ids behind: keep the order list bounded.
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(k, id)| map.get(k).is_some_and(|c| c.id == *id));
        }
    }

    fn remove(&mut self, key: &Key) {
        if let Some(c) = self.map.remove(key) {
            self.bytes -= c.bytes;
        }
    }
}

/// The lookup service; shared by every channel thread that calls `WEBHOOK_LOOKUP`.
pub struct LookupService {
    config: Arc<RwLock<Arc<Config>>>,
    cache: Mutex<AnswerCache>,
    /// One HTTP agent per lookup section (keep-alive connections, DNS cache, TLS set up once),
    /// built when the configuration is applied, not on a channel thread.
    agents: Mutex<HashMap<String, (Duration, ureq::Agent)>>,
    /// Latency of requests that reached the CRM, µs (for the CLI and benchmarks).
    pub latency_us: super::instrument::latency::Histogram,
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

/// A CRM answer that is neither JSON nor its lenient form; says why strict JSON failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotJson(pub String);

impl std::fmt::Display for NotJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not JSON: {}", self.0)
    }
}

impl std::error::Error for NotJson {}

/// Parses a CRM answer: strict JSON, else the lenient form (`{ contact_name: 'Вася' }`).
/// Returns the top-level fields as text (nested objects flattened with dots), or `None`
/// when the answer is empty / not an object / an empty object.
pub fn parse_answer(body: &[u8]) -> Result<Option<HashMap<String, String>>, NotJson> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim().trim_start_matches('\u{feff}');
    if text.is_empty() {
        return Ok(None);
    }
    let value: Json = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(strict) => json5::from_str(text).map_err(|_| NotJson(strict.to_string()))?,
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
            cache: Mutex::new(AnswerCache::new(CACHE_ENTRIES, CACHE_BYTES)),
            agents: Mutex::new(HashMap::new()),
            latency_us: Default::default(),
            answered: Default::default(),
        }
    }

    /// Builds the agents of the configuration's lookup sections (a changed timeout gets a new
    /// one) and forgets those of removed sections. Called when a configuration is applied.
    pub fn configure(&self, config: &Config) {
        let wanted: Vec<(String, Duration)> = config
            .sections
            .iter()
            .filter_map(|s| match &s.kind {
                super::config::SectionKind::Lookup(l) => Some((s.name.clone(), l.timeout)),
                _ => None,
            })
            .collect();
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents.retain(|name, (timeout, _)| wanted.contains(&(name.clone(), *timeout)));
        for (name, timeout) in wanted {
            if agents.contains_key(&name) {
                continue;
            }
            match client::agent(timeout, None, LOOKUP_CONNECTIONS) {
                Ok(a) => {
                    agents.insert(name, (timeout, a));
                }
                Err(e) => log::error!("[{name}] lookup: {e}"),
            }
        }
    }

    /// The section's agent (built here only if the configuration was not applied through
    /// [`LookupService::configure`]).
    fn agent(&self, section: &str, timeout: Duration) -> Result<ureq::Agent, String> {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, a)) = agents.get(section) {
            if *t == timeout {
                return Ok(a.clone());
            }
        }
        let a = client::agent(timeout, None, LOOKUP_CONNECTIONS)?;
        agents.insert(section.to_string(), (timeout, a.clone()));
        Ok(a)
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
        if let Some(fields) = self.cached(&key) {
            return pick(fields.as_ref(), field);
        }
        match self.ask(section, l, number) {
            Ok(fields) => {
                let answer = pick(fields.as_ref(), field);
                let ttl = if fields.is_some() {
                    l.cache
                } else {
                    MISS_CACHE.min(l.cache)
                };
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
                    key,
                    fields,
                    ttl,
                    Instant::now(),
                );
                answer
            }
            Err(status) => (String::new(), status),
        }
    }

    fn cached(&self, key: &Key) -> Option<Option<HashMap<String, String>>> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key, Instant::now())
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
        let agent = self.agent(section, l.timeout).map_err(|e| {
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

    fn service(conf: &str) -> LookupService {
        use crate::core::config::raw::RawConfig;
        let (c, errors) = Config::from_raw(&RawConfig::parse_text("webhook.conf", conf));
        assert!(errors.is_empty(), "{errors:?}");
        let svc = LookupService::new(Arc::new(RwLock::new(Arc::new(c.clone()))));
        svc.configure(&c);
        svc
    }

    #[test]
    fn lookups_share_one_keep_alive_connection() {
        // A CRM that answers every number and notes the client port of each request.
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (srv, p) = (server.clone(), peers.clone());
        std::thread::spawn(move || {
            for mut req in srv.incoming_requests() {
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                p.lock().unwrap().push(req.remote_addr().map(|a| a.port()));
                let _ = req.respond(tiny_http::Response::from_string(
                    r#"{"contact_name":"Ivan"}"#,
                ));
            }
        });
        let svc = service(&format!(
            "[crm]\ntype = lookup\nurl = http://127.0.0.1:{port}/crm\nformat = form\nparam = phone => ${{number}}\n"
        ));
        for i in 0..5 {
            let (v, st) = svc.lookup("crm", &format!("7916000000{i}"), "");
            assert_eq!((v.as_str(), st), ("Ivan", LookupStatus::Found));
        }
        let peers = peers.lock().unwrap().clone();
        assert_eq!(peers.len(), 5, "one request per number");
        let ports: std::collections::HashSet<_> = peers.iter().collect();
        assert_eq!(
            ports.len(),
            1,
            "5 lookups opened {} connections: {peers:?}",
            ports.len()
        );
        server.unblock();
    }

    fn fields(v: &str) -> Option<HashMap<String, String>> {
        Some(HashMap::from([("contact_name".to_string(), v.to_string())]))
    }

    #[test]
    fn the_cache_keeps_each_sections_time_and_stays_bounded() {
        let t0 = Instant::now();
        let mut c = AnswerCache::new(100, 1 << 20);
        let key = |s: &str, n: usize| (s.to_string(), n.to_string());
        // Two sections, two times: `fast` remembers 1 s, `slow` 300 s.
        c.insert(key("fast", 1), fields("a"), Duration::from_secs(1), t0);
        c.insert(key("slow", 1), fields("b"), Duration::from_secs(300), t0);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(c.get(&key("fast", 1), later), None, "fast's answer expired");
        assert_eq!(c.get(&key("slow", 1), later), Some(fields("b")));
        // Past the bound, the oldest go first; the newest stay.
        for n in 0..1000 {
            c.insert(
                key("slow", n + 10),
                fields("x"),
                Duration::from_secs(300),
                t0,
            );
            assert!(c.len() <= 100);
        }
        assert_eq!(c.len(), 100);
        assert_eq!(c.get(&key("slow", 1009), later), Some(fields("x")));
        assert_eq!(c.get(&key("slow", 10), later), None, "evicted");
        assert!(c.order.len() <= 2 * c.len() + 64);
        // A byte bound too: big answers push the others out.
        let mut c = AnswerCache::new(1000, 10_000);
        for n in 0..100 {
            c.insert(
                key("s", n),
                fields(&"z".repeat(1000)),
                Duration::from_secs(60),
                t0,
            );
            assert!(c.bytes() <= 10_000, "{} bytes", c.bytes());
        }
        assert!(c.len() < 10);
    }

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
