//! Click-to-call: a CRM asks the PBX over HTTP to ring an extension and then dial a client.
//! Checks, in order: the path names a `type = originate` section (404), the request rate (429,
//! also for bad tokens, so guessing is slow), the token in constant time (401, logged with the
//! source address), `from` (400), `to` against `allowed_to` (403).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use subtle::ConstantTimeEq;

use super::config::Config;
use super::ingest::host_event::HostEvent;

/// An HTTP request as the host's web server handed it over.
#[derive(Debug, Clone)]
pub struct HttpCall {
    /// Path after `/webhook/`.
    pub path: String,
    pub method: String,
    /// Source address, for the log.
    pub remote: String,
    /// Query string and form body parameters, in order.
    pub params: Vec<(String, String)>,
}

/// The answer to send back.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// Why the host did not place a click-to-call call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceError {
    /// The module is not attached to a running host.
    NoHost,
    /// The host refused to originate, with its return code.
    Refused(i32),
}

impl std::fmt::Display for PlaceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlaceError::NoHost => f.write_str("no host"),
            PlaceError::Refused(rc) => write!(f, "the PBX refused the originate ({rc})"),
        }
    }
}

impl std::error::Error for PlaceError {}

/// A call the host must place: ring `from` in `context`; when it answers, dial `to` there.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub context: String,
    pub from: String,
    pub to: String,
    pub caller_id: String,
    /// Becomes the first channel's uniqueid, so the call's webhooks carry it as `call_id`.
    pub call_id: String,
    pub ring_timeout: Duration,
}

fn reply(status: u16, body: serde_json::Value) -> Reply {
    Reply {
        status,
        body: body.to_string(),
    }
}

fn error(status: u16, msg: &str) -> Reply {
    reply(status, serde_json::json!({"status": "error", "error": msg}))
}

/// Hands a host event to the call model; `false` when it could not be queued.
pub type Notify = Box<dyn Fn(HostEvent) -> bool + Send + Sync>;

/// The click-to-call service, shared by the web server's connection threads.
pub struct ClickToCall {
    config: Arc<RwLock<Arc<Config>>>,
    /// Tells the call model about a call placed here (the engine's hand-off, `Hook::send`).
    /// A function, not the engine's type: click-to-call depends on the host events only.
    notify: Notify,
    /// Per section: start of the current one-minute window and requests in it.
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl ClickToCall {
    pub fn new(config: Arc<RwLock<Arc<Config>>>, notify: Notify) -> ClickToCall {
        ClickToCall {
            config,
            notify,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn over_limit(&self, section: &str, per_minute: u32) -> bool {
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let entry = w.entry(section.to_string()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= Duration::from_secs(60) {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
        entry.1 > per_minute
    }

    /// Handles one request; `place` asks the host to originate.
    pub fn handle(
        &self,
        req: &HttpCall,
        place: &dyn Fn(&Order) -> Result<(), PlaceError>,
    ) -> Reply {
        let config = self
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some((name, o)) = config.originate_at(&req.path) else {
            return error(404, "no click-to-call endpoint here");
        };
        if self.over_limit(name, o.rate_limit) {
            log::warn!(
                "[{name}] click-to-call from {}: rate limit ({}/min) exceeded",
                req.remote,
                o.rate_limit
            );
            return error(429, "too many requests");
        }
        let param = |k: &str| {
            req.params
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.trim().to_string())
        };
        if o.xvb && param("cmd").as_deref() != Some("makeCall") {
            return error(400, "cmd must be makeCall");
        }
        let token = param("token").unwrap_or_default();
        let token_ok: bool = token.as_bytes().ct_eq(o.token.as_bytes()).into();
        if !token_ok {
            log::warn!(
                "[{name}] click-to-call from {}: bad token; refused",
                req.remote
            );
            return error(401, "bad token");
        }
        let (Some(from), Some(to)) = (param("from"), param("to")) else {
            return error(400, "from and to are required");
        };
        if !o.allowed_from.is_match(&from) {
            return error(400, "from is not an extension this endpoint may ring");
        }
        if !o.allowed_to.is_match(&to) {
            log::warn!(
                "[{name}] click-to-call from {}: destination {to:?} not allowed",
                req.remote
            );
            return error(403, "destination not allowed");
        }
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let order = Order {
            context: o.context.clone(),
            from: from.clone(),
            to: to.clone(),
            caller_id: o.caller_id.clone().unwrap_or_else(|| to.clone()),
            call_id: format!("c2c-{}.{:06}", stamp.as_secs(), fastrand::u32(..1_000_000)),
            ring_timeout: o.ring_timeout,
        };
        // Tell the correlator first: the call's channel events may arrive before we return.
        (self.notify)(HostEvent::Originated {
            linkedid: order.call_id.clone(),
            from: from.clone(),
            to: to.clone(),
            at: SystemTime::now(),
        });
        match place(&order) {
            Ok(()) => {
                log::info!(
                    "[{name}] click-to-call from {}: ringing {from}, then dialing {to} (call {})",
                    req.remote,
                    order.call_id
                );
                reply(
                    200,
                    serde_json::json!({"status": "ok", "call_id": order.call_id}),
                )
            }
            Err(e) => {
                log::error!("[{name}] click-to-call {from} → {to}: {e}");
                error(502, "the PBX could not place the call")
            }
        }
    }
}
