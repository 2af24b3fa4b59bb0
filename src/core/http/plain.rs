//! The plain-`http://` path: the request written by hand, the answer parsed with `httparse`
//! ([`super::answer`]), over connections kept alive here ([`super::conn`]).
//!
//! Through ureq a 900-byte webhook cost its worker 2.4× the CPU of writing the same bytes and
//! reading the answer on a bare socket, at 20 calls/s when every cache is cold
//! (`RW_BENCH=client cargo bench --bench delivery`): request and response types, the state
//! machine, timings and pool machinery. Driving ureq's own sans-IO half (`ureq-proto`) directly
//! still cost 1.6×; a hand-written head with `httparse` cost 1.1×. So this path does only what a
//! delivery needs: one write, a read, one probe when a connection is reused. Anything it does
//! not do the same as ureq ([`route`] says what) goes through ureq, and so does every
//! `https://` URL and every request through a proxy.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ureq::http::{HeaderName, Uri};
use ureq::unversioned::resolver::Resolver;
use ureq::unversioned::transport::NextTimeout;

use super::answer::{answer_alone, read_answer_after, Answer, AnswerError};
use super::client::USER_AGENT;
use super::conn::{Conn, ConnectError, SendError};
use super::resolver::CachingResolver;

use crate::core::model::request::{HttpRequest, Method};

/// An idle connection unused this long is closed rather than reused (ureq's default too):
/// servers close theirs after 5–75 s, and the probe cannot see a close still on its way.
pub const MAX_IDLE_AGE: Duration = Duration::from_secs(15);

/// Idle connections kept at most over all endpoints, when a section allows fewer per endpoint
/// (ureq's default too).
const MAX_IDLE_TOTAL: usize = 10;

/// Where a plain request goes, borrowed from its URL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target<'a> {
    /// `host[:port]` as written: the pool's key.
    authority: &'a str,
    /// The host as written (an IPv6 address in brackets).
    host: &'a str,
    port: u16,
    /// The request target: path and query, empty for `/`.
    path: &'a str,
}

/// Whether `req` (with `extra` headers) can go the plain way, and where: an `http://` URL of
/// a plain shape (no user info, no fragment, nothing ureq would encode or reject), header names
/// and values it can write as they are, and none of the headers that change how the message is
/// framed or that it writes itself (Host, Content-Length, Transfer-Encoding, Connection,
/// Expect, TE, Upgrade). `None`: ureq sends it.
pub fn route<'a>(req: &'a HttpRequest, extra: &[(String, String)]) -> Option<Target<'a>> {
    let target = Target::parse(&req.url)?;
    let reserved = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "expect",
        "te",
        "upgrade",
    ];
    // The name as ureq checks it (a token). The value visible ASCII or tab: `HeaderValue`
    // admits bytes above 0x7f too, which ureq then refuses in some headers (Authorization).
    let writable = req.headers.iter().chain(extra).all(|(k, v)| {
        HeaderName::from_bytes(k.as_bytes()).is_ok()
            && v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            && !reserved.iter().any(|r| k.eq_ignore_ascii_case(r))
    });
    writable.then_some(target)
}

impl<'a> Target<'a> {
    /// `host[:port]` as written: requests to the same one may share a connection.
    pub fn authority(&self) -> &'a str {
        self.authority
    }

    fn parse(url: &'a str) -> Option<Target<'a>> {
        let rest = url.strip_prefix("http://")?;
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        // RFC 3986 pchar, '/', '?' and '%': what ureq sends as it is.
        let plain_path = path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b));
        if !plain_path {
            return None;
        }
        let (host, port) = if authority.starts_with('[') {
            let end = authority.find(']')?;
            let (host, after) = authority.split_at(end + 1);
            host[1..end].parse::<std::net::Ipv6Addr>().ok()?;
            (host, after)
        } else {
            let end = authority.find(':').unwrap_or(authority.len());
            let (host, after) = authority.split_at(end);
            let name = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
            if !name {
                return None;
            }
            (host, after)
        };
        let port = match port.strip_prefix(':') {
            None if port.is_empty() => 80,
            Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u16>().ok().filter(|p| *p != 0)?
            }
            _ => return None,
        };
        Some(Target {
            authority,
            host,
            port,
            path,
        })
    }
}

/// The request as it goes out, head and body in one buffer (one write). Like ureq: the Host
/// header carries the port unless it is 80, User-Agent and `Accept: */*` unless the request
/// has its own, a Content-Length on every POST and PUT, none and no body on a GET; header names
/// in lower case.
pub fn request_bytes(t: &Target, req: &HttpRequest, extra: &[(String, String)]) -> Vec<u8> {
    let body: &[u8] = match req.method {
        Method::Get => &[],
        Method::Post | Method::Put => &req.body,
    };
    let headers = || req.headers.iter().chain(extra);
    let has = |name: &str| headers().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let size: usize = headers().map(|(k, v)| k.len() + v.len() + 4).sum();
    let mut out = Vec::with_capacity(160 + t.authority.len() + t.path.len() + size + body.len());
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    if !t.path.starts_with('/') {
        out.push(b'/');
    }
    out.extend_from_slice(t.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(t.host.as_bytes());
    if t.port != 80 {
        let _ = write!(out, ":{}", t.port);
    }
    out.extend_from_slice(b"\r\n");
    if !has("user-agent") {
        out.extend_from_slice(b"user-agent: ");
        out.extend_from_slice(USER_AGENT.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has("accept") {
        out.extend_from_slice(b"accept: */*\r\n");
    }
    if req.method != Method::Get {
        let _ = write!(out, "content-length: {}\r\n", body.len());
    }
    for (k, v) in headers() {
        out.extend(k.bytes().map(|b| b.to_ascii_lowercase()));
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Why a plain request got no answer.
#[derive(Debug)]
pub enum PlainError {
    /// The host name could not be resolved (in time).
    Resolve(ureq::Error),
    /// No connection could be made.
    Connect(ConnectError),
    /// The request could not be written (in time).
    Send(SendError),
    /// No (readable) answer came.
    Answer(AnswerError),
}

impl PlainError {
    /// The request never reached the endpoint: nothing there saw it.
    pub fn unreachable(&self) -> bool {
        matches!(self, PlainError::Resolve(_) | PlainError::Connect(_))
    }

    /// What a kept-alive connection the server had already closed looks like: nothing of the
    /// request went out, or the connection closed before any byte of an answer. Only then is
    /// the request tried again, once, on a new connection.
    fn stale(&self) -> bool {
        match self {
            PlainError::Send(e) => e.written == 0 && e.error.kind() != std::io::ErrorKind::TimedOut,
            PlainError::Answer(e) => matches!(e, AnswerError::NoAnswer),
            _ => false,
        }
    }
}

impl fmt::Display for PlainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlainError::Resolve(e) => write!(f, "resolve: {e}"),
            PlainError::Connect(e) => write!(f, "{e}"),
            PlainError::Send(e) if e.error.kind() == std::io::ErrorKind::TimedOut => {
                write!(f, "timeout: sending the request")
            }
            PlainError::Send(e) => write!(f, "sending the request: {}", e.error),
            PlainError::Answer(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PlainError {}

/// The plain path of one section: its limits, name cache and idle connections.
pub struct Plain {
    timeout: Duration,
    connect_timeout: Duration,
    /// Idle connections kept per endpoint (the section's `concurrency`).
    connections: usize,
    resolver: CachingResolver,
    /// What ureq's resolver reads (the address family: any).
    resolver_config: ureq::config::Config,
    idle: Mutex<HashMap<String, Vec<Conn>>>,
    /// Until an endpoint of the section fails at pipelining (stops answering in the middle of
    /// a pipelined exchange, or keeps no connection alive): then every request goes one at a
    /// time.
    pipelining: AtomicBool,
}

/// What a pipelined exchange ([`Plain::send_pipelined`]) got, one entry per request in order:
/// its answer (or why it got none) and when it came, counted from the start; `None` when the
/// exchange ended before its turn — nothing is known of it, so it is sent again.
pub type Piped = Vec<Option<(Result<Answer, PlainError>, Duration)>>;

impl fmt::Debug for Plain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plain")
            .field("timeout", &self.timeout)
            .field("connections", &self.connections)
            .finish()
    }
}

impl Plain {
    /// The whole request (name, connect, send, answer) within `timeout`, connecting within
    /// `connect_timeout`; up to `connections` idle connections kept per endpoint.
    pub fn new(timeout: Duration, connect_timeout: Duration, connections: usize) -> Plain {
        Plain {
            timeout,
            connect_timeout,
            connections,
            resolver: CachingResolver::default(),
            resolver_config: ureq::Agent::config_builder().build(),
            idle: Mutex::new(HashMap::new()),
            pipelining: AtomicBool::new(true),
        }
    }

    /// Whether requests may still be pipelined (no endpoint has failed at it).
    pub fn pipelines(&self) -> bool {
        self.pipelining.load(Ordering::Relaxed)
    }

    /// Sends several requests (from [`request_bytes`], all to `t`) in one write on one
    /// connection and reads their answers in order: HTTP/1.1 pipelining. Each answer may take
    /// the section's timeout, counted from `started` for the first and from the one before it
    /// for the others. The requests an answer that closes the connection leaves unanswered come
    /// back as `None` (RFC 9112 §9.3.2: a client retries those). An endpoint that stops
    /// answering in the middle without saying it closes — a server that reads one request per
    /// read and drops the rest — gets `None` for the rest too, and from then on this client
    /// sends one request at a time ([`Plain::pipelines`] turns false); so does one that closes
    /// a new connection after its first answer (no keep-alive). Returns whether that happened
    /// now.
    pub fn send_pipelined(
        &self,
        t: &Target,
        requests: &[Vec<u8>],
        started: Instant,
    ) -> (Piped, bool) {
        let mut got: Piped = requests.iter().map(|_| None).collect();
        let first = self.first_answer(t, &requests.concat(), started + self.timeout);
        let (mut conn, fresh, answer, mut held) = match first {
            Ok(first) => first,
            Err(e) => {
                got[0] = Some((Err(e), started.elapsed()));
                return (got, false);
            }
        };
        let mut keep = answer.reusable;
        got[0] = Some((Ok(answer), started.elapsed()));
        // A new connection closed after its first answer: the endpoint keeps no connection
        // alive, so every later request of a pipeline would be written for nothing.
        let mut broke = fresh && !keep && requests.len() > 1;
        let mut buf = std::mem::take(&mut conn.buf);
        for slot in got.iter_mut().skip(1) {
            if !keep {
                break;
            }
            conn.set_deadline(Instant::now() + self.timeout);
            match read_answer_after(&mut conn, &mut buf, held) {
                Ok((answer, rest)) => {
                    keep = answer.reusable;
                    held = rest;
                    *slot = Some((Ok(answer), started.elapsed()));
                }
                Err(_) => {
                    broke = true;
                    keep = false;
                }
            }
        }
        conn.buf = buf;
        if keep && held == 0 {
            self.put(t.authority, conn);
        }
        if broke {
            self.pipelining.store(false, Ordering::Relaxed);
        }
        (got, broke)
    }

    /// Sends `bytes` (from [`request_bytes`]) to `t` and reads the answer, on an idle
    /// connection if one is alive, else a new one; the section's timeout counts from `started`.
    pub fn send(&self, t: &Target, bytes: &[u8], started: Instant) -> Result<Answer, PlainError> {
        let (conn, _, answer, held) = self.first_answer(t, bytes, started + self.timeout)?;
        let answer = answer_alone(answer, held);
        if answer.reusable {
            self.put(t.authority, conn);
        }
        Ok(answer)
    }

    /// Writes `bytes` to `t` and reads the first answer after them, by `deadline`, on an idle
    /// connection if one is alive, else a new one. A kept-alive connection the server had
    /// already closed is replaced once and everything written again. Returns the connection,
    /// whether it is new, the answer, and how many bytes read after it wait at the start of the
    /// connection's buffer.
    fn first_answer(
        &self,
        t: &Target,
        bytes: &[u8],
        deadline: Instant,
    ) -> Result<(Conn, bool, Answer, usize), PlainError> {
        let (mut conn, mut fresh) = match self.take(t.authority) {
            Some(conn) => (conn, false),
            None => (self.connect(t, deadline)?, true),
        };
        loop {
            conn.set_deadline(deadline);
            match exchange(&mut conn, bytes) {
                Ok((answer, held)) => return Ok((conn, fresh, answer, held)),
                Err(e) if !fresh && e.stale() => {
                    conn = self.connect(t, deadline)?;
                    fresh = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn connect(&self, t: &Target, deadline: Instant) -> Result<Conn, PlainError> {
        let addrs = self.addrs(t, deadline)?;
        let connect_by = deadline.min(Instant::now() + self.connect_timeout);
        Conn::connect(&addrs, connect_by, self.timeout / 2).map_err(PlainError::Connect)
    }

    /// An IP address in the URL at once; a name through the cache (looked up within the
    /// time left).
    fn addrs(&self, t: &Target, deadline: Instant) -> Result<Vec<SocketAddr>, PlainError> {
        let bare = t
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(t.host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, t.port)]);
        }
        let uri: Uri = format!("http://{}/", t.authority)
            .parse()
            .map_err(|_| PlainError::Resolve(ureq::Error::BadUri(t.authority.to_string())))?;
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = NextTimeout {
            after: left.into(),
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        self.resolver
            .resolve(&uri, &self.resolver_config, timeout)
            .map(|a| a.to_vec())
            .map_err(PlainError::Resolve)
    }

    /// The endpoint's most recently used idle connection that is young enough and still
    /// open; the others on the way are closed.
    fn take(&self, key: &str) -> Option<Conn> {
        loop {
            let conn = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(key)?
                .pop()?;
            // Probed outside the lock: other lanes need not wait for a syscall.
            if conn.idle_since.elapsed() < MAX_IDLE_AGE && conn.is_alive() {
                return Some(conn);
            }
        }
    }

    /// Keeps `conn` for the endpoint's next request, unless the endpoint (or the section) has
    /// as many idle already.
    fn put(&self, key: &str, mut conn: Conn) {
        conn.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let total: usize = idle.values().map(Vec::len).sum();
        if total >= self.connections.max(MAX_IDLE_TOTAL) {
            return;
        }
        if idle.len() > MAX_IDLE_TOTAL {
            idle.retain(|_, v| !v.is_empty());
        }
        if let Some(conns) = idle.get_mut(key) {
            if conns.len() < self.connections {
                conns.push(conn);
            }
            return;
        }
        if self.connections > 0 {
            idle.insert(key.to_string(), vec![conn]);
        }
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle.lock().unwrap().values().map(Vec::len).sum()
    }
}

/// `bytes` written on `conn` and the first answer after them, with how many bytes read after
/// it are left at the start of `conn.buf`.
fn exchange(conn: &mut Conn, bytes: &[u8]) -> Result<(Answer, usize), PlainError> {
    conn.send(bytes).map_err(PlainError::Send)?;
    let mut buf = std::mem::take(&mut conn.buf);
    let answer = read_answer_after(conn, &mut buf, 0);
    conn.buf = buf;
    answer.map_err(PlainError::Answer)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    /// A local server handing each accepted connection, with its index, to `conn` on a thread
    /// of its own; its base URL and the count of connections accepted. For the test servers
    /// here and in `delivery`.
    pub(crate) fn server<F>(conn: F) -> (String, Arc<AtomicUsize>)
    where
        F: Fn(usize, TcpStream) + Send + Sync + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let conn = Arc::new(conn);
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let i = count.fetch_add(1, Ordering::SeqCst);
                let conn = conn.clone();
                std::thread::spawn(move || conn(i, s));
            }
        });
        (url, accepted)
    }

    /// The first complete request in `got` (head and Content-Length body): its length and
    /// where its body is; `None` while it is incomplete. For the test servers here and in
    /// `delivery`.
    pub(crate) fn complete_request(got: &[u8]) -> Option<(usize, std::ops::Range<usize>)> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(head) = req.parse(got).ok()? else {
            return None;
        };
        let len: usize = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map_or(0, |h| {
                std::str::from_utf8(h.value).unwrap().parse().unwrap()
            });
        (got.len() >= head + len).then_some((head + len, head..head + len))
    }

    /// Reads one request; `None` once the client closes. Whatever the last read brought
    /// after it is thrown away, as a server that does not pipeline does.
    fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if complete_request(&got).is_some() {
                return Some(got);
            }
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Answers every request on the connection with `answer`.
    fn answer_all(answer: &'static [u8]) -> impl Fn(usize, TcpStream) + Send + Sync {
        move |_, mut s| {
            while read_request(&mut s).is_some() {
                if s.write_all(answer).is_err() {
                    return;
                }
            }
        }
    }

    fn post(url: &str) -> HttpRequest {
        HttpRequest {
            method: Method::Post,
            url: format!("{url}/hook"),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: b"{}".to_vec(),
        }
    }

    fn send(p: &Plain, req: &HttpRequest) -> Result<Answer, PlainError> {
        let t = route(req, &[]).expect("a plain request");
        p.send(&t, &request_bytes(&t, req, &[]), Instant::now())
    }

    fn plain(timeout_ms: u64) -> Plain {
        let t = Duration::from_millis(timeout_ms);
        Plain::new(t, t, 2)
    }

    #[test]
    fn urls_that_go_the_plain_way_and_those_left_to_ureq() {
        fn t(url: &str) -> Option<(&str, &str, u16, &str)> {
            Target::parse(url).map(|t| (t.authority, t.host, t.port, t.path))
        }
        assert_eq!(
            t("http://10.0.0.1:8080/a?b=c"),
            Some(("10.0.0.1:8080", "10.0.0.1", 8080, "/a?b=c"))
        );
        assert_eq!(
            t("http://crm.example.com"),
            Some(("crm.example.com", "crm.example.com", 80, ""))
        );
        assert_eq!(
            t("http://[::1]:81?x=%20"),
            Some(("[::1]:81", "[::1]", 81, "?x=%20"))
        );
        for url in [
            "https://crm.example.com/",
            "HTTP://crm.example.com/",
            "http://user:pw@crm.example.com/",
            "http://crm.example.com/a#frag",
            "http://crm.example.com/a b",
            "http://crm.example.com/ü",
            "http://crm.example.com:/",
            "http://crm.example.com:0/",
            "http://crm.example.com:99999/",
            "http://[::1/",
            "http:///path",
        ] {
            assert_eq!(t(url), None, "{url}");
        }
        let mut req = post("http://127.0.0.1:9");
        req.headers
            .push(("Transfer-Encoding".into(), "chunked".into()));
        assert!(
            route(&req, &[]).is_none(),
            "framing headers go through ureq"
        );
        let mut req = post("http://127.0.0.1:9");
        req.headers
            .push(("X-Bad".into(), "a\r\nInjected: 1".into()));
        assert!(route(&req, &[]).is_none(), "a value ureq would refuse");
        for (k, v) in [
            ("X Bad", "1"),
            ("X(y)", "1"),
            ("X:y", "1"),
            ("", "1"),
            ("Über", "1"),
            ("X-Ok", "über"),
            ("X-Ok", "a\x7fb"),
            ("X-Ok", "a\0b"),
        ] {
            let mut req = post("http://127.0.0.1:9");
            req.headers.push((k.into(), v.into()));
            assert!(route(&req, &[]).is_none(), "{k:?}: {v:?}");
        }
        let mut req = post("http://127.0.0.1:9");
        req.headers.push((
            "X-a!#$%&'*+.^_`|~1".into(),
            "\tany \"visible\" ~ASCII".into(),
        ));
        assert!(
            route(&req, &[]).is_some(),
            "every tchar, tab and visible ASCII"
        );
    }

    #[test]
    fn the_request_is_written_like_ureq_writes_it() {
        let req = post("http://127.0.0.1:8080");
        let extra = [("webhook-id".to_string(), "msg_1".to_string())];
        let t = route(&req, &extra).unwrap();
        assert_eq!(
            String::from_utf8(request_bytes(&t, &req, &extra)).unwrap(),
            "POST /hook HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nuser-agent: res_webhook/0.1 (Asterisk)\r\n\
             accept: */*\r\ncontent-length: 2\r\ncontent-type: application/json\r\nwebhook-id: msg_1\r\n\r\n{}"
        );
        let get = HttpRequest {
            method: Method::Get,
            url: "http://crm?q=1".into(),
            headers: vec![("User-Agent".into(), "mine".into())],
            body: b"ignored".to_vec(),
        };
        let t = route(&get, &[]).unwrap();
        assert_eq!(
            String::from_utf8(request_bytes(&t, &get, &[])).unwrap(),
            "GET /?q=1 HTTP/1.1\r\nhost: crm\r\naccept: */*\r\nuser-agent: mine\r\n\r\n"
        );
    }

    #[test]
    fn keep_alive_connections_are_reused() {
        let (url, accepted) = server(answer_all(OK));
        let p = plain(5000);
        for _ in 0..3 {
            let a = send(&p, &post(&url)).unwrap();
            assert_eq!((a.status, &a.body[..]), (200, &b"ok"[..]));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(p.idle_count(), 1);
    }

    /// Reads requests off a connection the way a pipelining server does: bytes after one
    /// request are the next one's, not thrown away.
    struct Requests {
        s: TcpStream,
        got: Vec<u8>,
        /// How many reads brought bytes.
        reads: usize,
    }

    impl Requests {
        fn new(s: TcpStream) -> Requests {
            Requests {
                s,
                got: Vec::new(),
                reads: 0,
            }
        }

        /// The next request's body; `None` once the client closes.
        fn next(&mut self) -> Option<Vec<u8>> {
            let mut buf = [0u8; 4096];
            loop {
                if let Some((len, body)) = complete_request(&self.got) {
                    let body = self.got[body].to_vec();
                    self.got.drain(..len);
                    return Some(body);
                }
                match self.s.read(&mut buf) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => {
                        self.reads += 1;
                        self.got.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
    }

    fn numbered(url: &str, n: usize) -> Vec<HttpRequest> {
        (0..n)
            .map(|i| HttpRequest {
                body: format!("{i}").into_bytes(),
                ..post(url)
            })
            .collect()
    }

    fn pipelined(p: &Plain, reqs: &[HttpRequest]) -> (Vec<Option<Answer>>, bool) {
        let t = route(&reqs[0], &[]).expect("a plain request");
        let bytes: Vec<Vec<u8>> = reqs.iter().map(|r| request_bytes(&t, r, &[])).collect();
        let (got, broke) = p.send_pipelined(&t, &bytes, Instant::now());
        let answers = got
            .into_iter()
            .map(|r| r.map(|(a, _)| a.expect("an answer")))
            .collect();
        (answers, broke)
    }

    #[test]
    fn pipelined_requests_go_in_one_write_and_each_gets_its_own_answer() {
        // Each answer echoes its request's body; all of them written at once, so several
        // reach the client in one read.
        let reads = Arc::new(AtomicUsize::new(0));
        let r = reads.clone();
        let (url, accepted) = server(move |_, s| {
            let mut w = s.try_clone().unwrap();
            let mut rq = Requests::new(s);
            let mut out = Vec::new();
            while let Some(body) = rq.next() {
                let _ = write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                out.extend_from_slice(&body);
                if rq.got.is_empty() {
                    r.store(rq.reads, Ordering::SeqCst);
                    if w.write_all(&std::mem::take(&mut out)).is_err() {
                        return;
                    }
                }
            }
        });
        let p = plain(5000);
        for round in 0..2 {
            let (answers, broke) = pipelined(&p, &numbered(&url, 5));
            assert!(!broke);
            let bodies: Vec<String> = answers
                .into_iter()
                .map(|a| String::from_utf8(a.unwrap().body).unwrap())
                .collect();
            assert_eq!(bodies, ["0", "1", "2", "3", "4"], "round {round}");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one kept-alive connection"
        );
        assert_eq!(reads.load(Ordering::SeqCst), 2, "five requests per read");
        assert_eq!(p.idle_count(), 1);
        assert!(p.pipelines());
    }

    #[test]
    fn an_endpoint_that_writes_answers_in_pieces_with_nagle_on_is_not_held_up() {
        // Like tiny_http: the head and the body of each answer in two writes, and no
        // TCP_NODELAY, so a piece waits for the client's ACK of the one before it. A kept-alive
        // connection that sends soon after it receives goes into delayed-ACK mode, and such
        // an ACK comes 40 ms late; exchanges back to back on one connection are that case.
        let (url, _) = server(|_, s| {
            let mut w = s.try_clone().unwrap();
            let mut rq = Requests::new(s);
            while let Some(body) = rq.next() {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                if w.write_all(head.as_bytes()).is_err() || w.write_all(&body).is_err() {
                    return;
                }
            }
        });
        let p = plain(5000);
        let mut took: Vec<Duration> = [1, 3, 1, 3, 1, 3, 1, 3, 1, 3]
            .into_iter()
            .map(|n| {
                let started = Instant::now();
                let (answers, broke) = pipelined(&p, &numbered(&url, n));
                assert!(!broke && answers.iter().all(Option::is_some));
                started.elapsed()
            })
            .collect();
        took.sort();
        // A held-up exchange takes 40 ms or more; an unhindered one well under 1 ms on loopback
        // (the median, so that a busy machine's one slow exchange does not decide).
        assert!(
            took[took.len() / 2] < Duration::from_millis(20),
            "answers waited for a delayed ACK: {took:?}"
        );
    }

    #[test]
    fn requests_after_an_answer_that_closes_come_back_unanswered() {
        // The second answer says the connection closes (a server's keep-alive limit).
        let (url, accepted) = server(|_, s| {
            let mut w = s.try_clone().unwrap();
            let mut rq = Requests::new(s);
            for close in [false, true] {
                if rq.next().is_none() {
                    return;
                }
                let head = if close { "Connection: close\r\n" } else { "" };
                let _ = write!(w, "HTTP/1.1 200 OK\r\n{head}Content-Length: 2\r\n\r\nok");
            }
        });
        let p = plain(5000);
        let (answers, broke) = pipelined(&p, &numbered(&url, 4));
        assert!(!broke, "a close the server announced is no failure");
        let answered: Vec<bool> = answers.iter().map(Option::is_some).collect();
        assert_eq!(answered, [true, true, false, false]);
        assert!(p.pipelines());
        assert_eq!(p.idle_count(), 0);
        // The two left are sent again, on a new connection.
        let (answers, _) = pipelined(&p, &numbered(&url, 2));
        assert!(answers.iter().all(Option::is_some));
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_server_that_drops_pipelined_requests_turns_pipelining_off() {
        // Reads one request per read and throws the rest away, then waits for more.
        let (url, _) = server(answer_all(OK));
        let p = plain(300);
        let (answers, broke) = pipelined(&p, &numbered(&url, 3));
        assert!(broke);
        let answered: Vec<bool> = answers.iter().map(Option::is_some).collect();
        assert_eq!(answered, [true, false, false], "the rest is sent again");
        assert!(!p.pipelines(), "one request at a time from now on");
    }

    #[test]
    fn an_endpoint_without_keep_alive_turns_pipelining_off() {
        // Every connection: one request, an answer that closes it.
        let (url, _) = server(|_, mut s| {
            if read_request(&mut s).is_some() {
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                );
            }
        });
        let p = plain(2000);
        let (answers, broke) = pipelined(&p, &numbered(&url, 3));
        let answered: Vec<bool> = answers.iter().map(Option::is_some).collect();
        assert_eq!(answered, [true, false, false]);
        assert!(broke && !p.pipelines());
    }

    #[test]
    fn a_pipelined_exchange_on_a_dead_endpoint_fails_the_first_and_leaves_the_rest() {
        let (url, _) = server(|_, _| {});
        let p = plain(2000);
        let t_reqs = numbered(&url, 3);
        let t = route(&t_reqs[0], &[]).unwrap();
        let bytes: Vec<Vec<u8>> = t_reqs.iter().map(|r| request_bytes(&t, r, &[])).collect();
        let (got, broke) = p.send_pipelined(&t, &bytes, Instant::now());
        assert!(!broke);
        assert!(matches!(got[0], Some((Err(_), _))), "{:?}", got[0]);
        assert!(got[1].is_none() && got[2].is_none());
        assert!(
            p.pipelines(),
            "an endpoint that is down says nothing about pipelining"
        );
    }

    #[test]
    fn at_most_connections_idle_per_endpoint() {
        // Each answer waits, so the requests overlap and need a connection each.
        let (url, accepted) = server(|_, mut s| {
            while read_request(&mut s).is_some() {
                std::thread::sleep(Duration::from_millis(200));
                let _ = s.write_all(OK);
            }
        });
        let p = Arc::new(Plain::new(
            Duration::from_secs(5),
            Duration::from_secs(5),
            2,
        ));
        let lanes: Vec<_> = (0..3)
            .map(|_| {
                let (p, url) = (p.clone(), url.clone());
                std::thread::spawn(move || send(&p, &post(&url)).unwrap().status)
            })
            .collect();
        for l in lanes {
            assert_eq!(l.join().unwrap(), 200);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        assert_eq!(p.idle_count(), 2);
    }

    #[test]
    fn an_idle_connection_the_server_closed_is_not_used() {
        // Every connection carries one request, then the server closes it.
        let (url, accepted) = server(|_, mut s| {
            if read_request(&mut s).is_some() {
                let _ = s.write_all(OK);
            }
        });
        let p = plain(5000);
        for _ in 0..3 {
            assert_eq!(send(&p, &post(&url)).unwrap().status, 200);
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_request_on_a_connection_closed_under_it_goes_again_once_on_a_new_one() {
        // The first connection answers one request, then reads the next and closes without
        // answering (the server's idle close crossing our request); the next one answers all.
        let seen = Arc::new(AtomicUsize::new(0));
        let s2 = seen.clone();
        let (url, accepted) = server(move |i, mut s| {
            while read_request(&mut s).is_some() {
                let n = s2.fetch_add(1, Ordering::SeqCst);
                if i == 0 && n == 1 {
                    return;
                }
                let _ = s.write_all(OK);
            }
        });
        let p = plain(5000);
        assert_eq!(send(&p, &post(&url)).unwrap().status, 200);
        assert_eq!(send(&p, &post(&url)).unwrap().status, 200);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            3,
            "the second request went twice"
        );
    }

    #[test]
    fn a_new_connection_closed_without_an_answer_is_not_tried_again() {
        let (url, accepted) = server(|_, mut s| {
            let _ = read_request(&mut s);
        });
        let p = plain(5000);
        let e = send(&p, &post(&url)).unwrap_err();
        assert!(
            matches!(e, PlainError::Answer(AnswerError::NoAnswer)),
            "{e:?}"
        );
        assert!(!e.unreachable(), "the server saw the request");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_chunked_answer_in_pieces_is_read_and_the_connection_kept() {
        let (url, accepted) = server(|_, mut s| {
            while read_request(&mut s).is_some() {
                for piece in [
                    &b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nqueu"[..],
                    b"ed\r\n3;ext=1\r\n id\r\n0\r\n",
                    b"\r\n",
                ] {
                    let _ = s.write_all(piece);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        let p = plain(5000);
        for _ in 0..2 {
            let a = send(&p, &post(&url)).unwrap();
            assert_eq!((a.status, &a.body[..]), (202, &b"queued id"[..]));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_huge_head_is_an_error_and_a_huge_body_is_cut_without_waiting_for_it() {
        let (url, _) = server(|_, mut s| {
            if read_request(&mut s).is_some() {
                let head = format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n", "a".repeat(100_000));
                let _ = s.write_all(head.as_bytes());
                std::thread::sleep(Duration::from_secs(3));
            }
        });
        let p = plain(2000);
        let started = Instant::now();
        let e = send(&p, &post(&url)).unwrap_err();
        assert!(
            matches!(e, PlainError::Answer(AnswerError::HeadTooLarge)),
            "{e:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));

        let (url, accepted) = server(|_, mut s| {
            while read_request(&mut s).is_some() {
                let _ = s.write_all(b"HTTP/1.1 500 Oops\r\nContent-Length: 10000000\r\n\r\n");
                let _ = s.write_all(&vec![b'e'; 100_000]);
            }
        });
        let started = Instant::now();
        let a = send(&p, &post(&url)).unwrap();
        assert_eq!((a.status, a.body.len(), a.reusable), (500, 4096, false));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(send(&p, &post(&url)).unwrap().status, 500);
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "the cut connection is not reused"
        );
    }

    #[test]
    fn a_slow_answer_ends_at_the_timeout() {
        // No answer at all: an error at the timeout.
        let (url, _) = server(|_, mut s| {
            let _ = read_request(&mut s);
            std::thread::sleep(Duration::from_secs(5));
        });
        let p = plain(300);
        let started = Instant::now();
        let e = send(&p, &post(&url)).unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(e, PlainError::Answer(AnswerError::Timeout)),
            "{e:?}"
        );
        assert!(e.to_string().contains("timeout"), "{e}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(1300),
            "{took:?}"
        );

        // A head, then a body that trickles: the status, what came of the body, at the timeout.
        let (url, _) = server(|_, mut s| {
            let _ = read_request(&mut s);
            let _ = s.write_all(
                b"HTTP/1.1 503 Busy\r\nRetry-After: 9\r\nContent-Length: 100\r\n\r\nslow",
            );
            for _ in 0..50 {
                std::thread::sleep(Duration::from_millis(100));
                if s.write_all(b".").is_err() {
                    return;
                }
            }
        });
        let started = Instant::now();
        let a = send(&p, &post(&url)).unwrap();
        let took = started.elapsed();
        assert_eq!(
            (a.status, a.retry_after.as_deref(), a.reusable),
            (503, Some("9"), false)
        );
        assert!(a.body.starts_with(b"slow"));
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(1300),
            "{took:?}"
        );
    }

    #[test]
    fn a_malformed_answer_is_an_error() {
        let (url, _) = server(answer_all(b"I am not HTTP\r\n\r\n"));
        let e = send(&plain(2000), &post(&url)).unwrap_err();
        assert!(
            matches!(e, PlainError::Answer(AnswerError::Malformed(_))),
            "{e:?}"
        );
        assert!(!e.unreachable());
    }

    #[test]
    fn refused_and_unknown_names_are_unreachable() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = send(&plain(2000), &post(&format!("http://127.0.0.1:{port}"))).unwrap_err();
        assert!(
            matches!(e, PlainError::Connect(ConnectError::Failed { .. })),
            "{e:?}"
        );
        assert!(e.unreachable() && e.to_string().contains("refused"), "{e}");
        let e = send(&plain(2000), &post("http://no-such-host.invalid")).unwrap_err();
        assert!(matches!(e, PlainError::Resolve(_)), "{e:?}");
        assert!(e.unreachable());
    }

    #[test]
    fn a_connect_that_hangs_ends_at_the_connect_timeout_and_is_unreachable() {
        use rustix::net::{AddressFamily, SocketType};
        // A listener with a backlog of 0 that never accepts: once its queue is full, the
        // kernel drops further SYNs and a connect hangs.
        let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        rustix::net::bind(&fd, &SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        rustix::net::listen(&fd, 0).unwrap();
        let l = TcpListener::from(fd);
        let addr = l.local_addr().unwrap();
        let fillers: Vec<_> = (0..4)
            .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok())
            .collect();
        let p = Plain::new(Duration::from_secs(5), Duration::from_millis(300), 1);
        let started = Instant::now();
        let e = send(&p, &post(&format!("http://{addr}"))).unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(e, PlainError::Connect(ConnectError::Timeout)),
            "{e:?}"
        );
        assert!(e.unreachable());
        assert!(took < Duration::from_secs(2), "{took:?}");
        drop((fillers, l));
    }
}
