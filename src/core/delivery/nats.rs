//! `type = nats`: deliveries published to NATS JetStream instead of POSTed.
//!
//! The official client (`async-nats`) runs on one small runtime thread per section
//! (`webhook-nats-<section>`); the section's delivery worker hands it a publish and waits for
//! the stream's acknowledgement, exactly as it waits for an HTTP answer, so queueing, per-call
//! order, retries, the spool and dead letters are the same code. Every message carries
//! `Nats-Msg-Id` = the delivery's `webhook-id`, which stays the same on every re-send (after a
//! retry, a reload, a crash and the spool): the server's duplicate window drops the repeats,
//! so each event is in the stream once. A publish counts as delivered only on the ack.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use crate::core::http::client::Outcome;
use crate::core::model::attempt::Attempt;

/// How a section reaches its NATS servers (`url`, credentials, TLS).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NatsTarget {
    /// `nats://host:4222` (or `tls://`), several for a cluster.
    pub servers: Vec<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// A `.creds` file (JWT + NKey seed).
    pub creds: Option<PathBuf>,
    /// PEM file of the CA the servers' certificates chain to (implies TLS).
    pub tls_ca: Option<PathBuf>,
    /// `tls = yes`: require TLS.
    pub tls: bool,
}

impl NatsTarget {
    /// Applies one connection key of a `type = nats` section; `None` for other keys.
    pub fn apply(&mut self, key: &str, v: &str) -> Option<Result<(), String>> {
        let v = v.trim();
        Some(match key {
            "url" => {
                let servers: Vec<String> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                match servers
                    .iter()
                    .find(|s| !["nats://", "tls://"].iter().any(|p| s.starts_with(p)))
                {
                    Some(bad) => Err(format!("`{bad}` is not a nats:// or tls:// URL")),
                    None if servers.is_empty() => Err("no server".into()),
                    None => {
                        self.servers = servers;
                        Ok(())
                    }
                }
            }
            "user" => set(&mut self.user, v),
            "password" => set(&mut self.password, v),
            "token" => set(&mut self.token, v),
            "creds" => {
                self.creds = Some(PathBuf::from(v));
                Ok(())
            }
            "tls_ca" => {
                self.tls_ca = Some(PathBuf::from(v));
                Ok(())
            }
            "tls" => match v.to_ascii_lowercase().as_str() {
                "yes" | "true" | "on" | "1" => {
                    self.tls = true;
                    Ok(())
                }
                "no" | "false" | "off" | "0" => {
                    self.tls = false;
                    Ok(())
                }
                _ => Err(format!("`{v}` is not yes or no")),
            },
            _ => return None,
        })
    }

    /// A complete target, or why not.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.servers.is_empty() {
            return Err(("url", "type = nats needs url = nats://host:4222".into()));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(("user", "user and password go together".into()));
        }
        Ok(())
    }
}

fn set(slot: &mut Option<String>, v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("empty value".into());
    }
    *slot = Some(v.to_string());
    Ok(())
}

/// One publish, handed to the runtime thread.
struct Job {
    subject: String,
    headers: Vec<(String, String)>,
    payload: Vec<u8>,
    msg_id: String,
    timeout: Duration,
    reply: crossbeam_channel::Sender<Outcome>,
}

/// A section's NATS connection: its runtime thread and the way to it.
pub struct NatsSink {
    tx: tokio::sync::mpsc::Sender<Job>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Why a section's NATS publisher did not start.
#[derive(Debug)]
pub enum NatsStartError {
    /// Its async runtime could not be built.
    Runtime(std::io::Error),
    /// Its thread could not be spawned.
    Thread(std::io::Error),
}

impl std::fmt::Display for NatsStartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsStartError::Runtime(e) => write!(f, "cannot start the NATS runtime: {e}"),
            NatsStartError::Thread(e) => write!(f, "cannot start the NATS thread: {e}"),
        }
    }
}

impl std::error::Error for NatsStartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NatsStartError::Runtime(e) | NatsStartError::Thread(e) => Some(e),
        }
    }
}

impl NatsSink {
    /// Starts the runtime thread; it connects at the first publish (and again whenever the
    /// connection cannot be made), so a server that is down at load is not an error.
    pub fn start(section: &str, target: NatsTarget) -> Result<NatsSink, NatsStartError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Job>(256);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(NatsStartError::Runtime)?;
        let name = section.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("webhook-nats-{section}"))
            .spawn(move || rt.block_on(serve(name, target, rx)))
            .map_err(NatsStartError::Thread)?;
        Ok(NatsSink {
            tx,
            thread: Some(thread),
        })
    }

    /// Publishes one delivery and waits for the stream's ack (at most `timeout`). Called on
    /// a delivery worker's thread.
    pub fn publish(
        &self,
        subject: &str,
        headers: &[(String, String)],
        payload: &[u8],
        msg_id: &str,
        timeout: Duration,
    ) -> Outcome {
        let started = Instant::now();
        let (reply, answer) = bounded(1);
        let job = Job {
            subject: subject.to_string(),
            headers: headers.to_vec(),
            payload: payload.to_vec(),
            msg_id: msg_id.to_string(),
            timeout,
            reply,
        };
        let failed = |why: String, unreachable: bool| Outcome {
            attempt: Attempt::Error(why),
            latency: started.elapsed(),
            excerpt: String::new(),
            unreachable,
        };
        if self.tx.blocking_send(job).is_err() {
            return failed("the NATS thread has stopped".into(), false);
        }
        // The runtime answers within `timeout` (plus a connect); never wait much longer.
        match answer.recv_timeout(timeout + Duration::from_secs(6)) {
            Ok(o) => o,
            Err(_) => failed(format!("no answer from NATS within {timeout:?}"), true),
        }
    }
}

impl Drop for NatsSink {
    fn drop(&mut self) {
        // Closing the channel ends `serve`; the thread is then joined.
        let (closed, _) = tokio::sync::mpsc::channel(1);
        drop(std::mem::replace(&mut self.tx, closed));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Connection = (async_nats::Client, async_nats::jetstream::Context);

/// The runtime thread: one task per publish, one connection shared by them.
async fn serve(section: String, target: NatsTarget, mut rx: tokio::sync::mpsc::Receiver<Job>) {
    let conn: Arc<tokio::sync::Mutex<Option<Connection>>> = Arc::default();
    let target = Arc::new(target);
    while let Some(job) = rx.recv().await {
        let (conn, target, section) = (conn.clone(), target.clone(), section.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = match connection(&conn, &target, &section).await {
                Ok(js) => publish(&js, &job).await,
                Err((why, unreachable)) => Err((why, unreachable)),
            };
            let outcome = match outcome {
                Ok(excerpt) => Outcome {
                    attempt: Attempt::Status {
                        code: 200,
                        retry_after: None,
                    },
                    latency: started.elapsed(),
                    excerpt,
                    unreachable: false,
                },
                Err((why, unreachable)) => Outcome {
                    attempt: Attempt::Error(why),
                    latency: started.elapsed(),
                    excerpt: String::new(),
                    unreachable,
                },
            };
            let _ = job.reply.send(outcome);
        });
    }
}

/// The JetStream context, connecting first when there is no connection yet.
async fn connection(
    conn: &tokio::sync::Mutex<Option<Connection>>,
    target: &NatsTarget,
    section: &str,
) -> Result<async_nats::jetstream::Context, (String, bool)> {
    let mut slot = conn.lock().await;
    if let Some((_, js)) = slot.as_ref() {
        return Ok(js.clone());
    }
    let mut opts = match (&target.creds, &target.token, &target.user, &target.password) {
        (Some(creds), _, _, _) => async_nats::ConnectOptions::with_credentials_file(creds)
            .await
            .map_err(|e| (format!("creds {}: {e}", creds.display()), false))?,
        (None, Some(token), _, _) => async_nats::ConnectOptions::with_token(token.clone()),
        (None, None, Some(u), Some(p)) => {
            async_nats::ConnectOptions::with_user_and_password(u.clone(), p.clone())
        }
        _ => async_nats::ConnectOptions::new(),
    };
    opts = opts
        .name(format!("res_webhook [{section}]"))
        .connection_timeout(Duration::from_secs(5));
    if let Some(ca) = &target.tls_ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    } else if target.tls {
        opts = opts.require_tls(true);
    }
    let servers: Vec<async_nats::ServerAddr> = target
        .servers
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let client = opts.connect(servers).await.map_err(|e| {
        use async_nats::ConnectErrorKind as K;
        let unreachable = matches!(e.kind(), K::Io | K::TimedOut | K::Dns);
        (format!("cannot connect to NATS: {e}"), unreachable)
    })?;
    let js = async_nats::jetstream::new(client.clone());
    log::info!(
        "[{section}] connected to NATS {}",
        target.servers.join(", ")
    );
    *slot = Some((client, js.clone()));
    Ok(js)
}

/// One publish and its ack; the ack as text (stream, sequence, duplicate).
async fn publish(js: &async_nats::jetstream::Context, job: &Job) -> Result<String, (String, bool)> {
    let mut headers = async_nats::HeaderMap::new();
    for (k, v) in &job.headers {
        if valid_header_name(k) {
            headers.insert(k.as_str(), v.as_str());
        }
    }
    headers.insert("Nats-Msg-Id", job.msg_id.as_str());
    let send = async {
        let ack = js
            .publish_with_headers(
                job.subject.clone(),
                headers,
                bytes::Bytes::from(job.payload.clone()),
            )
            .await
            .map_err(|e| format!("NATS publish: {e}"))?
            .await
            .map_err(|e| format!("no JetStream ack: {e}"))?;
        Ok::<String, String>(format!(
            "stream {} seq {}{}",
            ack.stream,
            ack.sequence,
            if ack.duplicate {
                " (duplicate, dropped)"
            } else {
                ""
            }
        ))
    };
    match tokio::time::timeout(job.timeout, send).await {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(why)) => Err((why, false)),
        Err(_) => Err((format!("no JetStream ack within {:?}", job.timeout), true)),
    }
}

/// What NATS accepts as a header name: printable ASCII without `:`.
fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_keys_are_checked() {
        let mut t = NatsTarget::default();
        assert!(t
            .apply("url", "nats://a:4222, nats://b:4222")
            .unwrap()
            .is_ok());
        assert_eq!(t.servers, ["nats://a:4222", "nats://b:4222"]);
        assert!(t
            .apply("url", "http://a")
            .unwrap()
            .unwrap_err()
            .contains("nats://"));
        assert!(t.apply("user", "pbx").unwrap().is_ok());
        assert_eq!(
            t.validate().unwrap_err().0,
            "user",
            "a user needs a password"
        );
        assert!(t.apply("password", "s3cret").unwrap().is_ok());
        assert!(t.validate().is_ok());
        assert!(t.apply("subject", "x").is_none(), "not a connection key");
        assert!(NatsTarget::default().validate().is_err(), "url is required");
    }

    #[test]
    fn an_unreachable_server_is_a_retryable_error_not_a_hang() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sink = NatsSink::start(
            "t",
            NatsTarget {
                servers: vec![format!("nats://127.0.0.1:{port}")],
                ..Default::default()
            },
        )
        .unwrap();
        let o = sink.publish("pbx.in.end", &[], b"{}", "msg_1", Duration::from_secs(2));
        assert!(
            matches!(o.attempt, Attempt::Error(ref e) if e.contains("connect")),
            "{:?}",
            o.attempt
        );
        assert!(o.unreachable);
        drop(sink); // joins the runtime thread
    }
}
