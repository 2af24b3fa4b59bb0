//! One kept-alive TCP connection of the plain-`http://` path, every read and write bounded by
//! the current request's deadline.
//!
//! Setting a socket timeout is a syscall, and ureq made one before every read and write. Here
//! the socket keeps a timeout of half the section's and every read or write that ends on it
//! without data and with time left simply goes again; the timeout is lowered (one syscall)
//! only when it would outlast the deadline — on a slow answer, not on a normal one.

use std::fmt;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::RecvFlags;

/// A kept-alive TCP connection; reads are [`Read`], the request goes out through [`Conn::send`].
pub struct Conn {
    stream: TcpStream,
    /// When the request being carried must be over.
    deadline: Instant,
    /// The socket's read and write timeouts now: a blocked read or write returns after that.
    read_wait: Duration,
    write_wait: Duration,
    /// The answer buffer, kept so a request on a reused connection allocates none.
    pub buf: Vec<u8>,
    /// When it last went back to the pool.
    pub idle_since: Instant,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("stream", &self.stream)
            .finish()
    }
}

/// Why no connection was made.
#[derive(Debug)]
pub enum ConnectError {
    /// Every address refused or failed; the last failure.
    Failed { addr: SocketAddr, error: io::Error },
    /// Connecting took longer than the connect timeout (or the request's).
    Timeout,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Failed { addr, error } => write!(f, "connect to {addr}: {error}"),
            ConnectError::Timeout => write!(f, "timeout: connect"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// The request could not be written; `written` bytes of it had gone out.
#[derive(Debug)]
pub struct SendError {
    pub written: usize,
    pub error: io::Error,
}

impl Conn {
    /// Connects to the first of `addrs` that answers before `deadline`, with `TCP_NODELAY`;
    /// reads and writes then wait at most `wait` at a time.
    pub fn connect(
        addrs: &[SocketAddr],
        deadline: Instant,
        wait: Duration,
    ) -> Result<Conn, ConnectError> {
        let mut last = None;
        for addr in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ConnectError::Timeout);
            }
            match TcpStream::connect_timeout(addr, left) {
                Ok(stream) => {
                    let wait = wait.max(Duration::from_millis(1));
                    let setup = stream
                        .set_nodelay(true)
                        .and_then(|_| stream.set_read_timeout(Some(wait)))
                        .and_then(|_| stream.set_write_timeout(Some(wait)));
                    if let Err(error) = setup {
                        last = Some((*addr, error));
                        continue;
                    }
                    let now = Instant::now();
                    return Ok(Conn {
                        stream,
                        deadline: now,
                        read_wait: wait,
                        write_wait: wait,
                        buf: Vec::new(),
                        idle_since: now,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(ConnectError::Timeout),
                Err(error) => last = Some((*addr, error)),
            }
        }
        Err(match last {
            Some((addr, error)) => ConnectError::Failed { addr, error },
            None => ConnectError::Failed {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                error: io::ErrorKind::AddrNotAvailable.into(),
            },
        })
    }

    /// The deadline of the request this connection carries next.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    /// Whether an idle connection can carry a request: one non-blocking peek, which sees the
    /// server's close (or stray bytes, which make it unusable too).
    pub fn is_alive(&self) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            rustix::net::recv(
                &self.stream,
                &mut byte[..],
                RecvFlags::PEEK | RecvFlags::DONTWAIT
            ),
            Err(Errno::AGAIN)
        )
    }

    /// Readies a write (or a read): a `TimedOut` error once the deadline has passed, else the
    /// socket's timeout for it lowered to the time left when it would outlast it.
    fn left(&mut self, write: bool) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        if write && self.write_wait > left {
            self.stream.set_write_timeout(Some(left))?;
            self.write_wait = left;
        } else if !write && self.read_wait > left {
            self.stream.set_read_timeout(Some(left))?;
            self.read_wait = left;
        }
        Ok(())
    }

    /// Writes all of `bytes` (normally one `send`), by the deadline, then asks the kernel to
    /// acknowledge the answer at once ([`Conn::ack_promptly`]).
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        let mut written = 0;
        while written < bytes.len() {
            if let Err(error) = self.left(true) {
                return Err(SendError { written, error });
            }
            match io::Write::write(&mut self.stream, &bytes[written..]) {
                Ok(0) => {
                    return Err(SendError {
                        written,
                        error: io::ErrorKind::WriteZero.into(),
                    })
                }
                Ok(n) => written += n,
                Err(e) if waited(&e) => {}
                Err(error) => return Err(SendError { written, error }),
            }
        }
        self.ack_promptly();
        Ok(())
    }

    /// Leaves delayed-ACK ("pingpong") mode, which Linux enters on a connection that sends
    /// soon after it receives, as a kept-alive one does. An endpoint that writes an answer in
    /// more than one piece without `TCP_NODELAY` (tiny_http, Python's `http.server`; and with
    /// pipelining, every answer after the first) holds the later pieces until the first is
    /// acknowledged (Nagle), and a delayed ACK comes 40 ms later: measured here, pipelined
    /// batches to tiny_http at 100 calls/s waited 40–45 ms for all but their first answer.
    /// Best effort: a socket that refuses it only answers later.
    fn ack_promptly(&self) {
        let _ = rustix::net::sockopt::set_tcp_quickack(&self.stream, true);
    }
}

/// A read or write that ended on the socket's timeout (or a signal): try again if time is left.
fn waited(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

impl Read for Conn {
    /// Reads what is there, waiting at most until the deadline (then `TimedOut`).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.left(false)?;
            match self.stream.read(buf) {
                Err(e) if waited(&e) => {}
                r => return r,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn a_read_waits_no_longer_than_the_deadline_even_with_a_longer_socket_timeout() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let far = Instant::now() + Duration::from_secs(5);
        let mut c = Conn::connect(&[addr], far, Duration::from_secs(10)).unwrap();
        let (_peer, _) = l.accept().unwrap();
        let started = Instant::now();
        c.set_deadline(started + Duration::from_millis(200));
        let e = c.read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[test]
    fn reads_go_on_past_the_socket_timeout_while_time_is_left() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let far = Instant::now() + Duration::from_secs(5);
        let mut c = Conn::connect(&[addr], far, Duration::from_millis(20)).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        c.set_deadline(Instant::now() + Duration::from_secs(5));
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            peer.write_all(b"late").unwrap();
            peer
        });
        let mut buf = [0u8; 16];
        let n = c.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"late");
        drop(t.join());
    }

    #[test]
    fn the_probe_sees_a_close_and_stray_bytes() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let far = Instant::now() + Duration::from_secs(5);
        let c = Conn::connect(&[addr], far, Duration::from_secs(1)).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        assert!(c.is_alive());
        peer.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!c.is_alive(), "stray bytes");
        let c = Conn::connect(&[addr], far, Duration::from_secs(1)).unwrap();
        let (peer, _) = l.accept().unwrap();
        drop(peer);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!c.is_alive(), "closed by the server");
    }

    #[test]
    fn refused_is_a_failure_naming_the_address() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let far = Instant::now() + Duration::from_secs(5);
        match Conn::connect(&[addr], far, Duration::from_secs(1)) {
            Err(ConnectError::Failed { addr: a, error }) => {
                assert_eq!(a, addr);
                assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
            }
            other => panic!("{other:?}"),
        }
    }
}
