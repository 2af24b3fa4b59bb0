//! `type = webhook`: one endpoint that hears about calls.

use std::path::PathBuf;
use std::time::Duration;

use super::filter::{self, Filter};
use super::request_spec::{RenderError, RequestSpec};
use super::values;
use super::KeyError;
use crate::core::delivery::nats::NatsTarget;
use crate::core::delivery::rate_limit::RateLimit;
use crate::core::model::call::{Direction, EventKind};
use crate::core::model::request::HttpRequest;
use crate::core::model::value::FieldSource;

/// A webhook endpoint and what it wants to hear.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub request: RequestSpec,
    pub events: Vec<EventKind>,
    pub directions: Vec<Direction>,
    pub timeout: Duration,
    pub retry: Vec<Duration>,
    /// Standard Webhooks signing secret (`whsec_…` base64, or raw bytes).
    pub secret: Option<String>,
    /// PEM file of the CA(s) this endpoint's certificate must chain to (a private CA). It
    /// replaces the public roots for this section: they are no longer trusted here.
    pub tls_ca: Option<PathBuf>,
    /// How many calls' deliveries may be in flight at once (connections to the endpoint).
    pub concurrency: usize,
    /// `pipeline`: how many calls' requests may go out in one write on one connection
    /// (HTTP/1.1 pipelining, plain `http://` only); 1 sends one request at a time.
    pub pipeline: usize,
    /// `called` / `caller` / `ext` filters: all must match for an event to be sent.
    pub filters: Vec<Filter>,
    /// `rate_limit` (with `rate_burst`): the most requests per time sent to the endpoint.
    pub rate_limit: Option<RateLimit>,
    /// `type = nats`: where to publish (the request's `url` is then the subject).
    pub nats: Option<NatsTarget>,
}

/// Default `concurrency`: enough to keep a CRM 100 ms away at 40 events/s, gentle on it.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// Highest `concurrency` accepted.
pub const MAX_CONCURRENCY: usize = 64;

/// Default `pipeline`: a wake-up's worth of events at 100 calls/s goes out in about one write.
pub const DEFAULT_PIPELINE: usize = 16;

/// Highest `pipeline` accepted.
pub const MAX_PIPELINE: usize = 64;

impl Webhook {
    /// A webhook with `[general]`'s defaults: every event, both directions.
    pub fn new(request: RequestSpec, timeout: Duration, retry: Vec<Duration>) -> Webhook {
        Webhook {
            request,
            events: EventKind::ALL.to_vec(),
            directions: vec![Direction::In, Direction::Out],
            timeout,
            retry,
            secret: None,
            tls_ca: None,
            concurrency: DEFAULT_CONCURRENCY,
            pipeline: DEFAULT_PIPELINE,
            filters: Vec::new(),
            rate_limit: None,
            nats: None,
        }
    }

    /// Applies one key that is not a request key; [`KeyError::Unknown`] otherwise.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<(), KeyError> {
        let v = value.trim();
        match key {
            "events" => {
                self.events = values::list(v)
                    .iter()
                    .map(|e| {
                        EventKind::parse(e).ok_or_else(|| {
                            format!("unknown event `{e}` (start, answer, transfer, end)")
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
            "direction" => {
                self.directions = values::list(v)
                    .iter()
                    .map(|d| {
                        Direction::parse(d)
                            .ok_or_else(|| format!("unknown direction `{d}` (in, out, internal)"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "timeout" => self.timeout = values::duration(v, Duration::from_millis(1))?,
            "retry" => self.retry = values::durations(v)?,
            "secret" if v.is_empty() => return Err("empty secret".into()),
            "secret" => self.secret = Some(v.to_string()),
            "tls_ca" => self.tls_ca = Some(PathBuf::from(v)),
            "concurrency" => {
                self.concurrency = match v.parse::<usize>() {
                    Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => n,
                    _ => {
                        return Err(
                            format!("`{v}` is not a number from 1 to {MAX_CONCURRENCY}").into()
                        )
                    }
                }
            }
            "pipeline" => {
                self.pipeline = match v {
                    "no" | "off" => 1,
                    _ => match v.parse::<usize>() {
                        Ok(n) if (1..=MAX_PIPELINE).contains(&n) => n,
                        _ => {
                            return Err(format!(
                                "`{v}` is not a number from 1 to {MAX_PIPELINE} (or no)"
                            )
                            .into())
                        }
                    },
                }
            }
            "called" | "caller" | "ext" => filter::set(&mut self.filters, key, v)?,
            "rate_limit" => self.rate_limit = Some(RateLimit::parse(v)?),
            "rate_burst" => {
                let n = match v.parse::<u32>() {
                    Ok(n) if (1..=10_000).contains(&n) => n,
                    _ => return Err(format!("`{v}` is not a number from 1 to 10000").into()),
                };
                match &mut self.rate_limit {
                    Some(r) => r.burst = n,
                    None => return Err("rate_burst needs a rate_limit line before it".into()),
                }
            }
            _ => return Err(KeyError::Unknown),
        }
        Ok(())
    }

    /// Whether this endpoint wants this event of a call in this direction.
    pub fn wants(&self, kind: EventKind, dir: Direction) -> bool {
        self.events.contains(&kind) && self.directions.contains(&dir)
    }

    /// Whether the event passes the section's `called` / `caller` / `ext` filters.
    pub fn passes(&self, ev: &dyn FieldSource) -> bool {
        self.filters.iter().all(|f| f.accepts(ev))
    }

    /// The request for one event.
    pub fn render(&self, ev: &dyn FieldSource) -> Result<HttpRequest, RenderError> {
        self.request.render(ev)
    }
}
