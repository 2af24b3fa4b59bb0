//! Live-test harness: the real Asterisk 22 in the Debian sid sandbox (`asterisk/sandbox.sh`),
//! real SIP calls placed with SIPp, and a local HTTP receiver for the webhooks.
//!
//! Tests in one binary run one at a time (a global lock): one Asterisk at a time.
#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub use serde_json::Value as Json;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
static MODULE: OnceLock<PathBuf> = OnceLock::new();

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sandbox_sh() -> PathBuf {
    repo().join("asterisk/sandbox.sh")
}

/// Whether live tests can run here; in CI (`CI=true`) missing prerequisites are a failure.
pub fn live_prerequisites() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let sipp = Command::new("sh")
        .args(["-c", "command -v sipp"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if root && sipp {
        return true;
    }
    let why =
        format!("live tests need root and sipp (root: {root}, sipp: {sipp}); run ./tests/run.sh");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}");
    }
    eprintln!("SKIP: {why}");
    false
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the module once per test binary (or uses `RES_WEBHOOK_SO`).
fn module() -> &'static Path {
    MODULE.get_or_init(|| {
        if let Ok(p) = std::env::var("RES_WEBHOOK_SO") {
            return PathBuf::from(p);
        }
        run(Command::new(sandbox_sh()).arg("ensure"));
        let include = run(Command::new(sandbox_sh()).arg("include-dir"))
            .trim()
            .to_string();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(Command::new(cargo)
            .args(["build", "--release", "--lib"])
            .current_dir(repo())
            .env("ASTERISK_INCLUDE_DIR", include));
        repo().join("target/release/libres_webhook.so")
    })
}

/// Ports one Asterisk instance listens on and calls into.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub sip: u16,
    pub http: u16,
    pub uas_answer: u16,
    pub uas_busy: u16,
    pub uas_ring: u16,
    pub rtp: u16,
}

/// A running sandboxed Asterisk with res_webhook loaded, and SIPp extensions 100–103.
pub struct Sandbox {
    pub dir: PathBuf,
    pub ports: Ports,
    uas: Vec<Child>,
    _lock: MutexGuard<'static, ()>,
}

impl Sandbox {
    /// Starts Asterisk with `webhook_conf` (where `@RECEIVER@` becomes `receiver_url`).
    /// `None` when live tests cannot run here (and we are not in CI).
    pub fn start(name: &str, webhook_conf: &str, receiver_url: &str) -> Option<Sandbox> {
        if !live_prerequisites() {
            return None;
        }
        let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let module = module().to_path_buf();
        run(Command::new(sandbox_sh())
            .arg("install-module")
            .arg(&module));
        let dir = repo().join("target/live").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        let ports = Ports {
            sip: free_udp_port(),
            http: free_tcp_port(),
            uas_answer: free_udp_port(),
            uas_busy: free_udp_port(),
            uas_ring: free_udp_port(),
            rtp: 20000 + (std::process::id() % 200) as u16 * 100,
        };
        let mut sandbox = Sandbox {
            dir,
            ports,
            uas: Vec::new(),
            _lock: lock,
        };
        for entry in std::fs::read_dir(repo().join("tests/asterisk-etc")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(
                sandbox.dir.join("etc").join(path.file_name().unwrap()),
                sandbox.substitute(&text, receiver_url),
            )
            .unwrap();
        }
        sandbox.write_webhook_conf(webhook_conf, receiver_url);
        sandbox.start_uas();
        sandbox.boot();
        Some(sandbox)
    }

    fn substitute(&self, text: &str, receiver_url: &str) -> String {
        let p = self.ports;
        text.replace("@SIP_PORT@", &p.sip.to_string())
            .replace("@HTTP_PORT@", &p.http.to_string())
            .replace("@UAS_ANSWER_PORT@", &p.uas_answer.to_string())
            .replace("@UAS_BUSY_PORT@", &p.uas_busy.to_string())
            .replace("@UAS_RING_PORT@", &p.uas_ring.to_string())
            .replace("@RTP_START@", &p.rtp.to_string())
            .replace("@RTP_END@", &(p.rtp + 98).to_string())
            .replace("@RECEIVER@", receiver_url)
    }

    /// Replaces `/etc/asterisk/webhook.conf` (takes effect at the next reload or start).
    pub fn write_webhook_conf(&self, text: &str, receiver_url: &str) {
        std::fs::write(
            self.dir.join("etc/webhook.conf"),
            self.substitute(text, receiver_url),
        )
        .unwrap();
    }

    fn start_uas(&mut self) {
        let sipp_dir = repo().join("tests/sipp");
        for (scenario, port, extra) in [
            ("uas_answer.xml", self.ports.uas_answer, vec!["-d", "1000"]),
            ("uas_busy.xml", self.ports.uas_busy, vec![]),
            ("uas_ring.xml", self.ports.uas_ring, vec![]),
        ] {
            let child = Command::new("sipp")
                .arg("-sf")
                .arg(sipp_dir.join(scenario))
                .args([
                    "-i",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-aa",
                    "-nostdin",
                    "-nd",
                ])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sipp");
            self.uas.push(child);
        }
    }

    fn boot(&self) {
        run(Command::new(sandbox_sh()).arg("start").arg(&self.dir));
    }

    /// One Asterisk CLI command.
    pub fn cli(&self, cmd: &str) -> String {
        run(Command::new(sandbox_sh())
            .arg("cli")
            .arg(&self.dir)
            .arg(cmd))
    }

    /// Asterisk's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/messages")).unwrap_or_default()
    }

    /// Graceful stop and start again (same instance, same spool).
    pub fn restart(&self) {
        self.stop();
        self.boot();
    }

    /// Graceful `core stop now`; fails the test if Asterisk (unloading res_webhook, which joins
    /// its threads) did not exit by itself within the script's 15 s.
    pub fn stop(&self) {
        let out = Command::new(sandbox_sh())
            .arg("stop")
            .arg(&self.dir)
            .output()
            .expect("sandbox.sh");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("killing it"),
            "Asterisk did not stop cleanly: {stderr}"
        );
    }

    /// `kill -9` Asterisk, then start it again.
    pub fn kill9_and_start(&self) {
        run(Command::new(sandbox_sh()).arg("kill9").arg(&self.dir));
        self.boot();
    }

    /// Places one call as `caller` to `did`; the caller talks `talk_ms` once answered.
    /// Returns SIPp's success.
    pub fn call(&self, caller: &str, did: &str, talk_ms: u64) -> bool {
        self.sipp_uac("uac.xml", caller, did, talk_ms)
    }

    /// Places one call that the caller cancels after ringing `ring_ms`.
    pub fn call_and_cancel(&self, caller: &str, did: &str, ring_ms: u64) -> bool {
        self.sipp_uac("uac_cancel.xml", caller, did, ring_ms)
    }

    fn sipp_uac(&self, scenario: &str, caller: &str, did: &str, ms: u64) -> bool {
        let port = free_udp_port();
        let status = Command::new("timeout")
            .arg("60")
            .arg("sipp")
            .arg("-sf")
            .arg(repo().join("tests/sipp").join(scenario))
            .args(["-key", "caller", caller, "-s", did])
            .arg(format!("127.0.0.1:{}", self.ports.sip))
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                "1",
                "-d",
                &ms.to_string(),
                "-aa",
                "-nostdin",
                "-nd",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("sipp");
        status.success()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Command::new(sandbox_sh())
            .arg("stop")
            .arg(&self.dir)
            .status();
        for c in &mut self.uas {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Json {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Query-string (or form body) parameters.
    pub fn pairs(text: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(text.as_bytes())
            .into_owned()
            .collect()
    }

    pub fn query(&self) -> Vec<(String, String)> {
        Self::pairs(self.url.split_once('?').map(|(_, q)| q).unwrap_or(""))
    }
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    pub status: u16,
    pub delay: Duration,
}

/// A local webhook endpoint that records every request.
pub struct Receiver {
    pub port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        Self::on_port(0)
    }

    /// Listens on a given port (0: any), e.g. to come back on the same port after an outage.
    pub fn on_port(port: u16) -> Receiver {
        let server = Arc::new(tiny_http::Server::http(("127.0.0.1", port)).expect("receiver"));
        let port = server.server_addr().to_ip().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(Behaviour {
            status: 200,
            delay: Duration::ZERO,
        }));
        let (s, g, b) = (server.clone(), got.clone(), behaviour.clone());
        let thread = std::thread::spawn(move || {
            for mut req in s.incoming_requests() {
                let mut body = String::new();
                let _ = req.as_reader().take(1 << 20).read_to_string(&mut body);
                let r = Received {
                    method: req.method().to_string(),
                    url: req.url().to_string(),
                    headers: req
                        .headers()
                        .iter()
                        .map(|h| (h.field.to_string(), h.value.to_string()))
                        .collect(),
                    body,
                    at: Instant::now(),
                };
                let now = *b.lock().unwrap();
                std::thread::sleep(now.delay);
                if (200..300).contains(&now.status) {
                    g.lock().unwrap().push(r);
                }
                let _ = req
                    .respond(tiny_http::Response::from_string("ok").with_status_code(now.status));
            }
        });
        Receiver {
            port,
            got,
            behaviour,
            server,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers with this status from now on (non-2xx requests are not recorded).
    pub fn set_status(&self, status: u16) {
        self.behaviour.lock().unwrap().status = status;
    }

    /// Holds every answer this long from now on (a slow or hanging endpoint).
    pub fn set_delay(&self, delay: Duration) {
        self.behaviour.lock().unwrap().delay = delay;
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for what was received, or panics after `timeout`.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if pred(&got) {
                return got;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; received {} request(s):\n{}",
                    got.len(),
                    got.iter()
                        .map(|r| format!("{} {} {}", r.method, r.url, r.body))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// JSON webhooks for a call, in arrival order.
pub fn events_of(got: &[Received], call_id: &str) -> Vec<Json> {
    got.iter()
        .map(|r| r.json())
        .filter(|j| j["call_id"] == call_id)
        .collect()
}

/// The `webhook.conf` most live tests use: one JSON endpoint with every field.
pub const ALL_FIELDS_CONF: &str = "
[general]
internal_contexts = from-internal

[all]
type = webhook
url = @RECEIVER@/hook
format = json
param = call_id => ${call_id}
param = event => ${event}
param = direction => ${direction}
param = caller => ${caller}
param = caller_name => ${caller_name}
param = called => ${called}
param = ext => ${ext}
param = time_start => ${time_start}
param = time_answer => ${time_answer}
param = time_end => ${time_end}
param = wait_duration => ${wait_duration}
param = duration => ${duration}
param = total_duration => ${total_duration}
param = status => ${status}
param = hangup_cause => ${hangup_cause}
param = context => ${context}
param = exten => ${exten}
param = channel => ${channel}
param = uniqueid => ${uniqueid}
param = is_new => ${is_new}
param = UTM_SOURCE => ${UTM_SOURCE}
param = CRM_NOTE => ${CRM_NOTE}
";
