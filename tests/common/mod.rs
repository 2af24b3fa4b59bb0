//! Live-test harness: the real Asterisk 22 in the Debian sid sandbox (`asterisk/sandbox.sh`),
//! real SIP calls placed with SIPp, and a local HTTP receiver for the webhooks.
//!
//! Tests in one binary run one at a time (a global lock): one Asterisk at a time.
#![allow(dead_code)]

pub mod nats;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

pub fn run(cmd: &mut Command) -> String {
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

/// The sandbox's root folder (a Debian sid with Asterisk 22; `chroot` into it).
pub fn sandbox_root() -> PathBuf {
    PathBuf::from(
        run(Command::new(sandbox_sh()).arg("root"))
            .trim()
            .to_string(),
    )
}

/// This build's module: built once per test binary (or `RES_WEBHOOK_SO`).
pub fn module() -> &'static Path {
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
        target_dir().join("release/libres_webhook.so")
    })
}

/// Cargo's target directory (`CARGO_TARGET_DIR` when set).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => repo().join(d),
        None => repo().join("target"),
    }
}

/// Copies this build's module into the sandbox (what most live tests run).
fn install_this_build(_root: &Path) {
    run(Command::new(sandbox_sh())
        .arg("install-module")
        .arg(module()));
}

/// Ports one Asterisk instance listens on and calls into.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub sip: u16,
    pub http: u16,
    pub uas_answer: u16,
    pub uas_busy: u16,
    pub uas_ring: u16,
    /// Extension 104: answers, then transfers the caller to 100 with a REFER.
    pub uas_refer: u16,
    /// AMI (manager.conf), user `rwtest`.
    pub ami: u16,
    pub rtp: u16,
}

/// A running sandboxed Asterisk with res_webhook loaded, and SIPp extensions 100–103.
pub struct Sandbox {
    pub dir: PathBuf,
    pub ports: Ports,
    uas: Vec<Child>,
    /// Environment Asterisk is started with (e.g. the module's test-only fault switch).
    env: Vec<(String, String)>,
    /// Held by one sandbox at a time (the first node of a fleet).
    _lock: Option<MutexGuard<'static, ()>>,
}

impl Sandbox {
    /// Starts Asterisk with `webhook_conf` (where `@RECEIVER@` becomes `receiver_url`).
    /// `None` when live tests cannot run here (and we are not in CI).
    pub fn start(name: &str, webhook_conf: &str, receiver_url: &str) -> Option<Sandbox> {
        Self::start_full(
            name,
            webhook_conf,
            receiver_url,
            install_this_build,
            &[],
            |_| {},
        )
    }

    /// Like [`Sandbox::start`], but `install(root)` puts the module into the sandbox root
    /// (e.g. a package install) instead of copying this build's.
    pub fn start_with(
        name: &str,
        webhook_conf: &str,
        receiver_url: &str,
        install: impl FnOnce(&Path),
    ) -> Option<Sandbox> {
        Self::start_full(name, webhook_conf, receiver_url, install, &[], |_| {})
    }

    /// [`Sandbox::start`] with environment variables for Asterisk, and `prepare(dir)` run on
    /// the instance folder before Asterisk starts (e.g. to mount something under `spool/`).
    pub fn start_env(
        name: &str,
        webhook_conf: &str,
        receiver_url: &str,
        env: &[(&str, &str)],
        prepare: impl FnOnce(&Path),
    ) -> Option<Sandbox> {
        Self::start_full(
            name,
            webhook_conf,
            receiver_url,
            install_this_build,
            env,
            prepare,
        )
    }

    fn start_full(
        name: &str,
        webhook_conf: &str,
        receiver_url: &str,
        install: impl FnOnce(&Path),
        env: &[(&str, &str)],
        prepare: impl FnOnce(&Path),
    ) -> Option<Sandbox> {
        if !live_prerequisites() {
            return None;
        }
        let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        install(&sandbox_root());
        Some(Sandbox::boot_instance(
            name,
            webhook_conf,
            receiver_url,
            Some(lock),
            None,
            0,
            env,
            prepare,
        ))
    }

    /// Several Asterisk nodes at once, one per name, each with `systemname` = its name (the
    /// `node` field) and its own ports, folders and spool; this build's module in all.
    pub fn start_fleet(
        names: &[&str],
        webhook_conf: &str,
        receiver_url: &str,
    ) -> Option<Vec<Sandbox>> {
        if !live_prerequisites() {
            return None;
        }
        let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        run(Command::new(sandbox_sh())
            .arg("install-module")
            .arg(module()));
        let mut lock = Some(lock);
        Some(
            names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    Sandbox::boot_instance(
                        name,
                        webhook_conf,
                        receiver_url,
                        lock.take(),
                        Some(name),
                        i,
                        &[],
                        |_| {},
                    )
                })
                .collect(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn boot_instance(
        name: &str,
        webhook_conf: &str,
        receiver_url: &str,
        lock: Option<MutexGuard<'static, ()>>,
        system_name: Option<&str>,
        index: usize,
        env: &[(&str, &str)],
        prepare: impl FnOnce(&Path),
    ) -> Sandbox {
        let dir = repo().join("target/live").join(name);
        // A tmpfs a crashed earlier run left mounted under the instance.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(dir.join("spool"))
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        let ports = Ports {
            sip: free_udp_port(),
            http: free_tcp_port(),
            uas_answer: free_udp_port(),
            uas_busy: free_udp_port(),
            uas_ring: free_udp_port(),
            uas_refer: free_udp_port(),
            ami: free_tcp_port(),
            rtp: 20000 + ((std::process::id() as usize + 37 * index) % 200) as u16 * 200,
        };
        let mut sandbox = Sandbox {
            dir,
            ports,
            uas: Vec::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
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
        if let Some(system_name) = system_name {
            // asterisk.conf ends with [options].
            let conf = sandbox.dir.join("etc/asterisk.conf");
            let text = std::fs::read_to_string(&conf).unwrap();
            std::fs::write(&conf, format!("{text}\nsystemname = {system_name}\n")).unwrap();
        }
        sandbox.write_webhook_conf(webhook_conf, receiver_url);
        write_silence_wav(&sandbox.dir.join("silence.wav"));
        std::fs::create_dir_all(sandbox.dir.join("spool")).unwrap();
        prepare(&sandbox.dir);
        sandbox.start_uas();
        sandbox.boot();
        sandbox
    }

    fn substitute(&self, text: &str, receiver_url: &str) -> String {
        let p = self.ports;
        text.replace("@SIP_PORT@", &p.sip.to_string())
            .replace("@HTTP_PORT@", &p.http.to_string())
            .replace("@UAS_ANSWER_PORT@", &p.uas_answer.to_string())
            .replace("@UAS_BUSY_PORT@", &p.uas_busy.to_string())
            .replace("@UAS_RING_PORT@", &p.uas_ring.to_string())
            .replace("@UAS_REFER_PORT@", &p.uas_refer.to_string())
            .replace("@AMI_PORT@", &p.ami.to_string())
            .replace("@RTP_START@", &p.rtp.to_string())
            .replace("@RTP_END@", &(p.rtp + 198).to_string())
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
            ("uas_refer.xml", self.ports.uas_refer, vec!["-s", "100"]),
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
                .current_dir(&self.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sipp");
            self.uas.push(child);
        }
    }

    fn boot(&self) {
        run(Command::new(sandbox_sh())
            .arg("start")
            .arg(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v))));
    }

    /// One Asterisk CLI command run in the background (for a command that takes a while);
    /// its output is the child's stdout.
    pub fn spawn_cli(&self, cmd: &str) -> Child {
        Command::new(sandbox_sh())
            .arg("cli")
            .arg(&self.dir)
            .arg(cmd)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sandbox.sh cli")
    }

    /// One Asterisk CLI command.
    pub fn cli(&self, cmd: &str) -> String {
        run(Command::new(sandbox_sh())
            .arg("cli")
            .arg(&self.dir)
            .arg(cmd))
    }

    /// Runs a CLI command until its output satisfies `pred`; returns that output.
    pub fn wait_cli(
        &self,
        cmd: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.cli(cmd);
            if pred(&out) {
                return out;
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {what}; `{cmd}`:\n{out}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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

    /// Runs a SIPp phone to its end. On failure SIPp's own words are printed (the test's output
    /// shows them only when it fails), so a flake says why.
    fn sipp_uac(&self, scenario: &str, caller: &str, did: &str, ms: u64) -> bool {
        let out = self
            .sipp_command(scenario, caller, did, ms)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("sipp");
        if !out.status.success() {
            eprintln!(
                "SIPp {scenario} {caller} -> {did} exited with {}:\n{}\n{}",
                out.status,
                tail_lines(&String::from_utf8_lossy(&out.stdout), 40),
                tail_lines(&String::from_utf8_lossy(&out.stderr), 40)
            );
        }
        out.status.success()
    }

    /// A SIPp phone (`scenario` in tests/sipp) calling `did` as `caller`, run in the instance's
    /// folder (where `silence.wav` is, for scenarios that send RTP); `ms` is SIPp's `-d`.
    pub fn sipp_command(&self, scenario: &str, caller: &str, did: &str, ms: u64) -> Command {
        let port = free_udp_port();
        let mut cmd = Command::new("timeout");
        cmd.arg("60")
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
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// Places a call in the background (`uac.xml`): the caller talks `talk_ms` once answered.
    pub fn spawn_call(&self, caller: &str, did: &str, talk_ms: u64) -> Child {
        self.spawn_sipp("uac.xml", caller, did, talk_ms)
    }

    /// Runs a SIPp phone in the background; wait on the returned child for its outcome.
    pub fn spawn_sipp(&self, scenario: &str, caller: &str, did: &str, ms: u64) -> Child {
        self.sipp_command(scenario, caller, did, ms)
            .spawn()
            .expect("sipp")
    }

    /// The live channels (`core show channels concise`).
    pub fn channels(&self) -> Vec<Channel> {
        self.cli("core show channels concise")
            .lines()
            .filter_map(Channel::parse)
            .collect()
    }

    /// Waits until a live channel satisfies `pred` (given it and all live channels).
    pub fn wait_channel(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Channel, &[Channel]) -> bool,
    ) -> Channel {
        let deadline = Instant::now() + timeout;
        loop {
            let all = self.channels();
            if let Some(c) = all.iter().find(|c| pred(c, &all)) {
                return c.clone();
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {what}; channels: {all:#?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until no channel is left (every call is over in Asterisk).
    pub fn wait_no_channels(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let all = self.channels();
            if all.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!("channels still up after {timeout:?}: {all:#?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A logged-in AMI connection (manager.conf: user `rwtest`).
    pub fn ami(&self) -> Ami {
        Ami::connect(self.ports.ami)
    }

    /// Every CEL event so far (cel_custom.conf writes `log/cel.csv`).
    pub fn cel(&self) -> Vec<CelEvent> {
        std::fs::read_to_string(self.dir.join("log/cel.csv"))
            .unwrap_or_default()
            .lines()
            .filter_map(CelEvent::parse)
            .collect()
    }

    /// Every CDR so far (cdr_custom.conf writes `log/cdr.csv`).
    pub fn cdr(&self) -> Vec<Cdr> {
        std::fs::read_to_string(self.dir.join("log/cdr.csv"))
            .unwrap_or_default()
            .lines()
            .filter_map(Cdr::parse)
            .collect()
    }

    /// Waits until CEL's events satisfy `pred`.
    pub fn wait_cel(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[CelEvent]) -> bool,
    ) -> Vec<CelEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let cel = self.cel();
            if pred(&cel) {
                return cel;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what} in CEL:\n{}",
                    cel.iter()
                        .map(|e| e.line.clone())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until Asterisk is done with every call: no channel left, and CEL wrote
    /// `LINKEDID_END` for every linkedid it saw (not vacuously: cel_custom may not have written
    /// the first line yet). Returns CEL and the linkedids it ended.
    pub fn wait_cel_all_ended(&self, timeout: Duration) -> (Vec<CelEvent>, BTreeSet<String>) {
        self.wait_no_channels(timeout);
        let cel = self.wait_cel("LINKEDID_END of every linkedid", timeout, |cel| {
            let ids: BTreeSet<&str> = cel.iter().map(|e| e.linkedid.as_str()).collect();
            !ids.is_empty()
                && ids.iter().all(|id| {
                    cel.iter()
                        .any(|e| e.eventtype == "LINKEDID_END" && e.linkedid == *id)
                })
        });
        let ended = cel
            .iter()
            .filter(|e| e.eventtype == "LINKEDID_END")
            .map(|e| e.linkedid.clone())
            .collect();
        (cel, ended)
    }

    /// Saves what Asterisk itself recorded of this instance's calls to
    /// `target/flow-traces/<flow>.txt`: CEL and CDR lines, the module's "host event" debug lines
    /// (if it logs them), and the webhooks `received`.
    pub fn save_flow_trace(&self, flow: &str, received: &[Received]) {
        let dir = target_dir().join("flow-traces");
        std::fs::create_dir_all(&dir).unwrap();
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        let mut out = format!("# {flow}\n\n## CEL (log/cel.csv)\n# {CEL_COLUMNS}\n");
        out += &read("log/cel.csv");
        out += &format!("\n## CDR (log/cdr.csv)\n# {CDR_COLUMNS}\n");
        out += &read("log/cdr.csv");
        out += "\n## host events (log/messages, res_webhook debug)\n";
        for l in read("log/messages")
            .lines()
            .filter(|l| l.contains("host event"))
        {
            out += l;
            out += "\n";
        }
        out += "\n## webhooks received\n";
        for r in received {
            out += &r.body;
            out += "\n";
        }
        std::fs::write(dir.join(format!("{flow}.txt")), out).unwrap();
    }
}

/// A 2 s µ-law WAV of silence: SIPp phones stream it as RTP (`<exec rtp_stream>`), so that
/// Asterisk sees media (Local channels are optimized away only when frames pass).
fn write_silence_wav(path: &Path) {
    let n: u32 = 16000;
    let mut w = Vec::with_capacity(44 + n as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + n).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&7u16.to_le_bytes()); // µ-law
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&n.to_le_bytes());
    w.resize(44 + n as usize, 0xff);
    std::fs::write(path, w).unwrap();
}

/// One line of `core show channels concise`.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub name: String,
    pub context: String,
    pub exten: String,
    /// `Up`, `Ring`, `Ringing`, `Down`, …
    pub state: String,
    pub app: String,
    pub data: String,
    pub callerid: String,
    pub bridge: String,
    pub uniqueid: String,
}

impl Channel {
    fn parse(line: &str) -> Option<Channel> {
        let f: Vec<&str> = line.split('!').collect();
        if f.len() < 14 {
            return None;
        }
        Some(Channel {
            name: f[0].into(),
            context: f[1].into(),
            exten: f[2].into(),
            state: f[4].into(),
            app: f[5].into(),
            data: f[6].into(),
            callerid: f[7].into(),
            bridge: f[12].into(),
            uniqueid: f[13].into(),
        })
    }

    pub fn up(&self) -> bool {
        self.state == "Up"
    }

    /// The other channels in this channel's bridge.
    pub fn bridged_with<'a>(&self, all: &'a [Channel]) -> Vec<&'a Channel> {
        all.iter()
            .filter(|c| !self.bridge.is_empty() && c.bridge == self.bridge && c.name != self.name)
            .collect()
    }
}

/// Splits one CSV line written with `quoting_method = all`: every field quoted, quotes doubled.
pub fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// cel_custom.conf's columns, in order.
pub const CEL_COLUMNS: &str = "eventtype,eventtime,uniqueid,linkedid,channame,peer,eventextra,appname,appdata,context,exten,num,name,dnid";

/// One CEL event (tests/asterisk-etc/cel_custom.conf).
#[derive(Debug, Clone)]
pub struct CelEvent {
    pub eventtype: String,
    /// Seconds since the epoch, with microseconds.
    pub time: f64,
    pub uniqueid: String,
    pub linkedid: String,
    pub channel: String,
    pub peer: String,
    pub extra: String,
    pub appname: String,
    pub appdata: String,
    pub context: String,
    pub exten: String,
    pub cid_num: String,
    pub line: String,
}

impl CelEvent {
    fn parse(line: &str) -> Option<CelEvent> {
        let f = csv_fields(line);
        if f.len() < 14 {
            return None;
        }
        Some(CelEvent {
            eventtype: f[0].clone(),
            time: f[1].parse().ok()?,
            uniqueid: f[2].clone(),
            linkedid: f[3].clone(),
            channel: f[4].clone(),
            peer: f[5].clone(),
            extra: f[6].clone(),
            appname: f[7].clone(),
            appdata: f[8].clone(),
            context: f[9].clone(),
            exten: f[10].clone(),
            cid_num: f[11].clone(),
            line: line.to_string(),
        })
    }
}

/// cdr_custom.conf's columns, in order.
pub const CDR_COLUMNS: &str = "linkedid,uniqueid,channel,dstchannel,src,dst,dcontext,lastapp,lastdata,start,answer,end,duration,billsec,disposition,sequence";

/// One CDR (tests/asterisk-etc/cdr_custom.conf); times in epoch seconds, 0 when unset.
#[derive(Debug, Clone)]
pub struct Cdr {
    pub linkedid: String,
    pub uniqueid: String,
    pub channel: String,
    pub dstchannel: String,
    pub src: String,
    pub dst: String,
    pub dcontext: String,
    pub lastapp: String,
    pub lastdata: String,
    pub start: f64,
    pub answer: f64,
    pub end: f64,
    pub duration: i64,
    pub billsec: i64,
    /// `ANSWERED`, `NO ANSWER`, `BUSY`, `FAILED`, `CONGESTION`.
    pub disposition: String,
    pub sequence: i64,
    pub line: String,
}

impl Cdr {
    fn parse(line: &str) -> Option<Cdr> {
        let f = csv_fields(line);
        if f.len() < 16 {
            return None;
        }
        Some(Cdr {
            linkedid: f[0].clone(),
            uniqueid: f[1].clone(),
            channel: f[2].clone(),
            dstchannel: f[3].clone(),
            src: f[4].clone(),
            dst: f[5].clone(),
            dcontext: f[6].clone(),
            lastapp: f[7].clone(),
            lastdata: f[8].clone(),
            start: f[9].parse().ok()?,
            answer: f[10].parse().ok()?,
            end: f[11].parse().ok()?,
            duration: f[12].parse().ok()?,
            billsec: f[13].parse().ok()?,
            disposition: f[14].clone(),
            sequence: f[15].parse().ok()?,
            line: line.to_string(),
        })
    }
}

/// A tiny blocking AMI client: login, one action at a time, its response.
pub struct Ami {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_id: u64,
}

impl Ami {
    pub fn connect(port: u16) -> Ami {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("AMI connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut ami = Ami {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            next_id: 1,
        };
        let mut banner = String::new();
        ami.reader.read_line(&mut banner).expect("AMI banner");
        assert!(banner.starts_with("Asterisk Call Manager"), "{banner}");
        ami.ok(&[
            ("Action", "Login"),
            ("Username", "rwtest"),
            ("Secret", "rwtest"),
            ("Events", "off"),
        ]);
        ami
    }

    /// Sends one action and returns its response's headers (events are skipped).
    pub fn action(&mut self, headers: &[(&str, &str)]) -> HashMap<String, String> {
        let id = format!("rw-{}", self.next_id);
        self.next_id += 1;
        let mut msg = String::new();
        for (k, v) in headers {
            msg += &format!("{k}: {v}\r\n");
        }
        msg += &format!("ActionID: {id}\r\n\r\n");
        self.writer.write_all(msg.as_bytes()).expect("AMI write");
        loop {
            let mut packet = HashMap::new();
            loop {
                let mut line = String::new();
                let n = self.reader.read_line(&mut line).expect("AMI read");
                assert!(n > 0, "AMI closed the connection");
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(": ") {
                    packet.insert(k.to_string(), v.to_string());
                }
            }
            if packet.contains_key("Response") && packet.get("ActionID") == Some(&id) {
                return packet;
            }
        }
    }

    /// Sends one action and panics unless Asterisk answers `Response: Success`.
    pub fn ok(&mut self, headers: &[(&str, &str)]) -> HashMap<String, String> {
        let r = self.action(headers);
        assert_eq!(
            r.get("Response").map(String::as_str),
            Some("Success"),
            "AMI {headers:?}: {r:?}"
        );
        r
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
    /// Wall-clock time of arrival (to compare with CEL's event times).
    pub wall: SystemTime,
}

impl Received {
    /// Arrival as seconds since the epoch.
    pub fn epoch(&self) -> f64 {
        self.wall.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
    }
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
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub status: u16,
    pub delay: Duration,
    /// Requests whose body contains this are held this long instead (one hanging call).
    pub hang: Option<(String, Duration)>,
}

/// A local webhook endpoint that records every request.
pub struct Receiver {
    pub port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    /// Every request, recorded when it arrives (before any delay), whatever the answer.
    arrived: Arc<Mutex<Vec<Received>>>,
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
        let arrived = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(Behaviour {
            status: 200,
            delay: Duration::ZERO,
            hang: None,
        }));
        let (s, g, b, a) = (
            server.clone(),
            got.clone(),
            behaviour.clone(),
            arrived.clone(),
        );
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
                    wall: SystemTime::now(),
                };
                a.lock().unwrap().push(r.clone());
                let now = b.lock().unwrap().clone();
                let delay = match &now.hang {
                    Some((needle, hold)) if r.body.contains(needle.as_str()) => *hold,
                    _ => now.delay,
                };
                let (g, status) = (g.clone(), now.status);
                let respond = move || {
                    std::thread::sleep(delay);
                    if (200..300).contains(&status) {
                        g.lock().unwrap().push(r);
                    }
                    let _ = req
                        .respond(tiny_http::Response::from_string("ok").with_status_code(status));
                };
                if delay.is_zero() {
                    respond();
                } else {
                    // A held answer holds only its own request.
                    std::thread::spawn(respond);
                }
            }
        });
        Receiver {
            port,
            got,
            arrived,
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

    /// Holds the answer to requests whose body contains `needle` for `hold` (one hanging
    /// call); the others are answered as before.
    pub fn set_hang(&self, needle: &str, hold: Duration) {
        self.behaviour.lock().unwrap().hang = Some((needle.to_string(), hold));
    }

    /// Stops holding the hanging call's requests.
    pub fn clear_hang(&self) {
        self.behaviour.lock().unwrap().hang = None;
    }

    /// Every request so far, as it arrived (before any delay), whatever it was answered.
    pub fn arrived(&self) -> Vec<Received> {
        self.arrived.lock().unwrap().clone()
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

/// The last `n` lines of `text`.
fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
