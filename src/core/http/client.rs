//! One HTTP attempt with hard limits: connect and overall timeouts from the section, TLS
//! verified (optionally against the section's own CA), at most 4 KiB of the answer read.
//! Plain `http://` requests take the lean path ([`super::plain`]); `https://`, proxied and
//! unusual ones go through ureq.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
use ureq::unversioned::transport::{Connector, DefaultConnector};
use ureq::Agent;

use super::answer::Answer;
use super::coalesce::CoalescingConnector;
use super::plain::{self, Plain, PlainError};
use super::resolver::CachingResolver;

use crate::core::model::attempt::Attempt;
use crate::core::model::request::{HttpRequest, Method};

/// How much of an endpoint's answer is kept (for the error log); the rest is never read.
pub const BODY_EXCERPT: u64 = 4096;

/// The User-Agent of every request.
pub const USER_AGENT: &str = "res_webhook/0.1 (Asterisk)";

/// The connect timeout: the section's, at most 5 s.
fn connect_timeout(timeout: Duration) -> Duration {
    timeout.min(Duration::from_secs(5))
}

/// What one attempt returned, for the classifier and the error log.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub attempt: Attempt,
    pub latency: Duration,
    pub excerpt: String,
    /// The request never reached the endpoint (refused, no route, name or connect failure):
    /// nothing there saw it, so trying again as soon as the endpoint is back is harmless.
    pub unreachable: bool,
}

/// Whether an error means the request never got to the endpoint.
fn unreachable(e: &ureq::Error) -> bool {
    use std::io::ErrorKind;
    use ureq::Timeout;
    match e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(t) => matches!(t, Timeout::Connect | Timeout::Resolve),
        ureq::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::AddrNotAvailable
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
        ),
        _ => false,
    }
}

/// Builds the HTTP agent of one section. Keep-alive connections (up to `connections` to the
/// endpoint) are reused between attempts.
pub fn agent(
    timeout: Duration,
    tls_ca: Option<&Path>,
    connections: usize,
) -> Result<Agent, String> {
    let mut tls = TlsConfig::builder();
    if let Some(path) = tls_ca {
        let pem = std::fs::read(path).map_err(|e| format!("tls_ca {}: {e}", path.display()))?;
        let certs: Vec<_> = parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(format!(
                "tls_ca {}: no PEM certificate in it",
                path.display()
            ));
        }
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    let config = Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(connect_timeout(timeout)))
        .max_idle_connections_per_host(connections)
        .max_idle_connections(connections.max(10))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(USER_AGENT)
        .tls_config(tls.build())
        .build();
    Ok(Agent::with_parts(
        config,
        DefaultConnector::default().chain(CoalescingConnector),
        CachingResolver::default(),
    ))
}

/// Performs `req` once with `extra` headers added; the raw answer, for callers that read it
/// their own way (delivery keeps an excerpt, lookup parses it).
pub fn call(
    agent: &Agent,
    req: &HttpRequest,
    extra: &[(String, String)],
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let headers = req.headers.iter().chain(extra.iter());
    match req.method {
        Method::Get => {
            let mut b = agent.get(&req.url);
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.call()
        }
        Method::Post | Method::Put => {
            let mut b = if req.method == Method::Post {
                agent.post(&req.url)
            } else {
                agent.put(&req.url)
            };
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.send(&req.body[..])
        }
    }
}

/// A section's client for deliveries: ureq's agent and the plain path, each with its own
/// idle connections. Clones share them.
#[derive(Debug, Clone)]
pub struct Client {
    agent: Agent,
    plain: Arc<Plain>,
}

impl Client {
    /// The client of a section (see [`agent`]).
    pub fn new(
        timeout: Duration,
        tls_ca: Option<&Path>,
        connections: usize,
    ) -> Result<Client, String> {
        Ok(Client {
            agent: agent(timeout, tls_ca, connections)?,
            plain: Arc::new(Plain::new(timeout, connect_timeout(timeout), connections)),
        })
    }

    /// Whether its plain `http://` requests may still be pipelined ([`send_all`]).
    pub fn pipelines(&self) -> bool {
        self.plain.pipelines()
    }

    /// Whether ureq would send a request to `url` through a proxy (one set in the environment
    /// when the agent was made, and `url` not in its NO_PROXY list).
    fn proxied(&self, url: &str) -> bool {
        let Some(proxy) = self.agent.config().proxy() else {
            return false;
        };
        url.parse::<ureq::http::Uri>()
            .map_or(true, |uri| !proxy.is_no_proxy(&uri))
    }
}

/// Sends `req` once, with `extra` headers (signing) added: a plain `http://` request the lean
/// way unless a proxy applies, anything else through ureq.
pub fn send(client: &Client, req: &HttpRequest, extra: &[(String, String)]) -> Outcome {
    let started = Instant::now();
    match plain::route(req, extra) {
        Some(target) if !client.proxied(&req.url) => {
            let bytes = plain::request_bytes(&target, req, extra);
            plain_outcome(
                client.plain.send(&target, &bytes, started),
                started.elapsed(),
            )
        }
        _ => send_with_ureq(&client.agent, req, extra),
    }
}

/// Sends several requests (each with its `extra` headers), in order. Plain `http://` requests
/// to one endpoint go out pipelined — one write, the answers read in order
/// ([`Plain::send_pipelined`]) — while the client still pipelines; anything else one after the
/// other. Per request, its outcome, or `None` when it was not answered and should simply be
/// sent again (the connection closed before its turn). The flag: the endpoint just failed at
/// pipelining, and the client sends one at a time from now on.
pub fn send_all(
    client: &Client,
    requests: &[(&HttpRequest, Vec<(String, String)>)],
) -> (Vec<Option<Outcome>>, bool) {
    let one_by_one = || {
        requests
            .iter()
            .map(|(req, extra)| Some(send(client, req, extra)))
            .collect()
    };
    if requests.len() < 2 || !client.plain.pipelines() {
        return (one_by_one(), false);
    }
    let targets: Option<Vec<_>> = requests
        .iter()
        .map(|(req, extra)| plain::route(req, extra).filter(|_| !client.proxied(&req.url)))
        .collect();
    let Some(targets) = targets else {
        return (one_by_one(), false);
    };
    if targets
        .iter()
        .any(|t| t.authority() != targets[0].authority())
    {
        return (one_by_one(), false);
    }
    let started = Instant::now();
    let bytes: Vec<Vec<u8>> = targets
        .iter()
        .zip(requests)
        .map(|(t, (req, extra))| plain::request_bytes(t, req, extra))
        .collect();
    let (piped, broke) = client.plain.send_pipelined(&targets[0], &bytes, started);
    let outcomes = piped
        .into_iter()
        .map(|r| r.map(|(result, latency)| plain_outcome(result, latency)))
        .collect();
    (outcomes, broke)
}

/// What the plain path got, as an outcome.
fn plain_outcome(result: Result<Answer, PlainError>, latency: Duration) -> Outcome {
    match result {
        Ok(answer) => Outcome {
            attempt: Attempt::Status {
                code: answer.status,
                retry_after: answer.retry_after.as_deref().and_then(parse_retry_after),
            },
            latency,
            excerpt: excerpt(&answer.body),
            unreachable: false,
        },
        Err(e) => Outcome {
            unreachable: e.unreachable(),
            attempt: Attempt::Error(e.to_string()),
            latency,
            excerpt: String::new(),
        },
    }
}

/// The start of an answer's body for the error log: text, no control characters, 200 at most.
fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

/// Sends `req` once through ureq (every `https://` request, and what the plain path leaves).
pub fn send_with_ureq(agent: &Agent, req: &HttpRequest, extra: &[(String, String)]) -> Outcome {
    let started = Instant::now();
    let result = call(agent, req, extra);
    match result {
        Ok(mut resp) => {
            let code = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let mut buf = Vec::new();
            let _ = resp
                .body_mut()
                .as_reader()
                .take(BODY_EXCERPT)
                .read_to_end(&mut buf);
            Outcome {
                attempt: Attempt::Status { code, retry_after },
                latency: started.elapsed(),
                excerpt: excerpt(&buf),
                unreachable: false,
            }
        }
        Err(e) => Outcome {
            unreachable: unreachable(&e),
            attempt: Attempt::Error(e.to_string()),
            latency: started.elapsed(),
            excerpt: String::new(),
        },
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (when.timestamp() - chrono::Utc::now().timestamp()).max(0) as u64;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::request::Method;
    use std::io::Write;
    use std::net::TcpListener;

    /// A server answering one request per connection with `answer`; what it received comes
    /// back on the channel.
    fn one_shot(answer: &'static [u8]) -> (String, std::sync::mpsc::Receiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(answer);
                let _ = tx.send(String::from_utf8_lossy(&got).into_owned());
            }
        });
        (url, rx)
    }

    fn get(url: String) -> HttpRequest {
        HttpRequest {
            method: Method::Get,
            url,
            headers: vec![],
            body: vec![],
        }
    }

    #[test]
    fn a_plain_answer_keeps_its_status_retry_after_and_excerpt_and_redirects_are_not_followed() {
        let (url, got) = one_shot(
            b"HTTP/1.1 301 Moved\r\nLocation: /elsewhere\r\nRetry-After: 7\r\nContent-Length: 9\r\n\r\ngo\x07 there",
        );
        let client = Client::new(Duration::from_secs(5), None, 1).unwrap();
        let o = send(&client, &get(format!("{url}/hook")), &[]);
        assert!(
            matches!(o.attempt, Attempt::Status { code: 301, retry_after: Some(d) } if d == Duration::from_secs(7)),
            "{o:?}"
        );
        assert_eq!(o.excerpt, "go there");
        assert!(got.recv().unwrap().starts_with("GET /hook HTTP/1.1\r\n"));
        assert!(
            got.recv_timeout(Duration::from_millis(200)).is_err(),
            "no redirect followed"
        );
    }

    #[test]
    fn refused_is_unreachable_and_says_so() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::new(Duration::from_secs(5), None, 1).unwrap();
        let o = send(&client, &get(format!("http://127.0.0.1:{port}/")), &[]);
        assert!(o.unreachable, "{o:?}");
        assert!(
            matches!(o.attempt, Attempt::Error(ref e) if e.contains("refused")),
            "{o:?}"
        );
    }

    #[test]
    fn through_a_proxy_requests_go_through_ureq() {
        let (proxy, got) = one_shot(b"HTTP/1.1 204 No Content\r\n\r\n");
        let config = Agent::config_builder()
            .proxy(Some(ureq::Proxy::new(&proxy).unwrap()))
            .http_status_as_error(false)
            .build();
        let client = Client {
            agent: Agent::new_with_config(config),
            plain: Arc::new(Plain::new(
                Duration::from_secs(5),
                Duration::from_secs(5),
                1,
            )),
        };
        assert!(client.proxied("http://crm.invalid/hook"));
        // ureq tunnels through the proxy; this one refuses, which is enough to see it asked.
        send(&client, &get("http://crm.invalid/hook".into()), &[]);
        let head = got.recv().unwrap();
        assert!(
            head.starts_with("CONNECT crm.invalid:80 HTTP/1.1"),
            "{head}"
        );
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
