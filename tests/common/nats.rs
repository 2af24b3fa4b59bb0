//! A real `nats-server` with JetStream (Debian's package), on a loopback port with file
//! storage, and a reader of its stream — for the fleet tests.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;

/// The stream every test section publishes into.
pub const STREAM: &str = "PBX";

/// What the server requires of clients.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    User(String, String),
    Token(String),
}

/// One nats-server process; killed when dropped.
pub struct NatsServer {
    pub port: u16,
    store: PathBuf,
    auth: Auth,
    child: Option<Child>,
}

/// One message of the stream.
#[derive(Debug, Clone)]
pub struct StreamMessage {
    pub seq: u64,
    pub subject: String,
    pub msg_id: String,
    pub json: serde_json::Value,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

impl NatsServer {
    /// Starts a server requiring `auth` and creates the stream `PBX` on `pbx.>` (file
    /// storage, 2-minute duplicate window).
    pub fn start(name: &str, auth: Auth) -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = super::target_dir().join("live-nats").join(name);
        let _ = std::fs::remove_dir_all(&store);
        std::fs::create_dir_all(&store).unwrap();
        let mut s = NatsServer {
            port,
            store,
            auth,
            child: None,
        };
        s.launch();
        let (url, auth) = (s.url(), s.auth.clone());
        runtime().block_on(async {
            let js = jetstream::new(connect(url, auth).await);
            js.create_stream(jetstream::stream::Config {
                name: STREAM.into(),
                subjects: vec!["pbx.>".into()],
                storage: jetstream::stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .expect("create the stream");
        });
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let mut cmd = Command::new("nats-server");
        cmd.args([
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-sd",
        ])
        .arg(&self.store);
        match &self.auth {
            Auth::None => {}
            Auth::User(u, p) => {
                cmd.args(["--user", u, "--pass", p]);
            }
            Auth::Token(t) => {
                cmd.args(["--auth", t]);
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (sandbox.sh deps installs Debian's nats-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and store (the stream and its duplicate window survive).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Every message in the stream, in stream order.
    pub fn messages(&self) -> Vec<StreamMessage> {
        let (url, auth) = (self.url(), self.auth.clone());
        runtime().block_on(async move {
            let js = jetstream::new(connect(url, auth).await);
            let mut stream = js.get_stream(STREAM).await.expect("the stream");
            let last = stream.info().await.unwrap().state.last_sequence;
            let mut out = Vec::new();
            for seq in 1..=last {
                let Ok(m) = stream.get_raw_message(seq).await else {
                    continue;
                };
                let msg_id = m
                    .headers
                    .get("Nats-Msg-Id")
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                out.push(StreamMessage {
                    seq,
                    subject: m.subject.to_string(),
                    msg_id,
                    json: serde_json::from_slice(&m.payload).unwrap_or_default(),
                });
            }
            out
        })
    }

    /// Waits until the stream holds at least `n` messages; returns them all.
    pub fn wait_messages(&self, n: usize, timeout: Duration) -> Vec<StreamMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} of {n} messages in the stream after {timeout:?}: {got:#?}",
                    got.len()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A client, retrying while the server starts (one runtime per use: the client lives in it).
async fn connect(url: String, auth: Auth) -> async_nats::Client {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let opts = match &auth {
            Auth::User(u, p) => {
                async_nats::ConnectOptions::with_user_and_password(u.clone(), p.clone())
            }
            Auth::Token(t) => async_nats::ConnectOptions::with_token(t.clone()),
            Auth::None => async_nats::ConnectOptions::new(),
        };
        match opts.connect(url.as_str()).await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("connect to {url}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
