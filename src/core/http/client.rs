//! One HTTP attempt with hard limits: connect and overall timeouts from the section, TLS
//! verified (optionally against the section's own CA), at most 4 KiB of the answer read.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
use ureq::unversioned::transport::{Connector, DefaultConnector};
use ureq::Agent;

use super::coalesce::CoalescingConnector;
use super::resolver::CachingResolver;

use crate::core::model::attempt::Attempt;
use crate::core::model::request::{HttpRequest, Method};

/// How much of an endpoint's answer is kept (for the error log); the rest is never read.
pub const BODY_EXCERPT: u64 = 4096;

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
        .timeout_connect(Some(timeout.min(Duration::from_secs(5))))
        .max_idle_connections_per_host(connections)
        .max_idle_connections(connections.max(10))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent("res_webhook/0.1 (Asterisk)")
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

/// Sends `req` once, with `extra` headers (signing) added.
pub fn send(agent: &Agent, req: &HttpRequest, extra: &[(String, String)]) -> Outcome {
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
                excerpt: String::from_utf8_lossy(&buf)
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect(),
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
