//! One write per request.
//!
//! ureq sends a request's head and its body with two `send` calls. With `TCP_NODELAY` each
//! becomes its own TCP segment, and on a loopback or LAN endpoint each segment costs the sender
//! the whole trip through the network stack (on loopback, the receiver's side of it too): half
//! of a delivery worker's CPU was in those two sends. This transport keeps what ureq hands it
//! until ureq waits for the answer, then sends it in one piece — for TLS, above the TLS layer,
//! so it is one record too.
//!
//! It also probes a kept-alive connection once per reuse instead of twice. ureq asks a
//! transport `is_open` when it puts a connection back in its pool, right after the answer, and
//! again when it takes it out for the next request; for TCP each probe is three syscalls
//! (non-blocking on, a read, non-blocking off). The probe taken before the next request sees
//! everything the first one would have (stray bytes after the answer, a close), and later, so
//! the one right after the answer is skipped.

use std::fmt;

use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};
use ureq::Error;

/// Wraps the transport the connectors before it made (plain TCP, or TLS over it).
#[derive(Debug, Default)]
pub struct CoalescingConnector;

impl<In: Transport> Connector<In> for CoalescingConnector {
    type Out = Coalescing<In>;

    fn connect(
        &self,
        _details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        Ok(chained.map(Coalescing::new))
    }
}

/// A transport whose output waits for the first wait on input.
pub struct Coalescing<T> {
    inner: T,
    /// Output handed over by ureq and not sent yet.
    pending: Vec<u8>,
    /// Input was awaited since the last `is_open`: the next one is ureq's return-to-pool probe.
    answered: bool,
}

impl<T> fmt::Debug for Coalescing<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalescing")
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// Output held at most before it is sent anyway (a large body streams as it comes).
const MAX_PENDING: usize = 64 * 1024;

impl<T: Transport> Coalescing<T> {
    fn new(inner: T) -> Coalescing<T> {
        Coalescing {
            inner,
            pending: Vec::new(),
            answered: false,
        }
    }

    /// Sends what is pending through the inner transport's output buffer.
    fn flush(&mut self, timeout: NextTimeout) -> Result<(), Error> {
        let mut sent = 0;
        while sent < self.pending.len() {
            let out = self.inner.buffers().output();
            let n = out.len().min(self.pending.len() - sent);
            if n == 0 {
                return Err(Error::Io(std::io::Error::other("no output buffer")));
            }
            out[..n].copy_from_slice(&self.pending[sent..sent + n]);
            self.inner.transmit_output(n, timeout)?;
            sent += n;
        }
        self.pending.clear();
        Ok(())
    }
}

impl<T: Transport> Transport for Coalescing<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        let out = &self.inner.buffers().output()[..amount];
        self.pending.extend_from_slice(out);
        if self.pending.len() >= MAX_PENDING {
            self.flush(timeout)?;
        }
        Ok(())
    }

    fn maybe_await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.flush(timeout)?;
        self.answered = true;
        self.inner.maybe_await_input(timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.flush(timeout)?;
        self.answered = true;
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        // Right after an answer: the probe before the next request will tell.
        if std::mem::take(&mut self.answered) {
            return true;
        }
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::unversioned::transport::time::Duration;
    use ureq::unversioned::transport::LazyBuffers;

    /// Records each send.
    #[derive(Debug)]
    struct Recording {
        buffers: LazyBuffers,
        sent: Vec<Vec<u8>>,
        probes: usize,
    }

    impl Transport for Recording {
        fn buffers(&mut self) -> &mut dyn Buffers {
            &mut self.buffers
        }
        fn transmit_output(&mut self, amount: usize, _: NextTimeout) -> Result<(), Error> {
            self.sent.push(self.buffers.output()[..amount].to_vec());
            Ok(())
        }
        fn await_input(&mut self, _: NextTimeout) -> Result<bool, Error> {
            Ok(true)
        }
        fn is_open(&mut self) -> bool {
            self.probes += 1;
            true
        }
    }

    /// A coalescing transport over a [`Recording`] with these buffer sizes.
    fn recording(input: usize, output: usize) -> Coalescing<Recording> {
        Coalescing::new(Recording {
            buffers: LazyBuffers::new(input, output),
            sent: Vec::new(),
            probes: 0,
        })
    }

    fn timeout() -> NextTimeout {
        NextTimeout {
            after: Duration::from_secs(1),
            reason: ureq::Timeout::SendRequest,
            per_read: None,
            per_write: None,
        }
    }

    /// What ureq does: write into the output buffer, hand over `amount`, repeat.
    fn hand_over(t: &mut Coalescing<Recording>, bytes: &[u8]) {
        for chunk in bytes.chunks(t.buffers().output().len()) {
            t.buffers().output()[..chunk.len()].copy_from_slice(chunk);
            t.transmit_output(chunk.len(), timeout()).unwrap();
        }
    }

    #[test]
    fn head_and_body_go_out_in_one_send_when_the_answer_is_awaited() {
        let mut t = recording(1024, 4096);
        hand_over(&mut t, b"POST /hook HTTP/1.1\r\nContent-Length: 2\r\n\r\n");
        hand_over(&mut t, b"{}");
        assert!(t.inner.sent.is_empty(), "nothing sent before the wait");
        assert!(t.maybe_await_input(timeout()).unwrap());
        assert_eq!(
            t.inner.sent,
            [b"POST /hook HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}".to_vec()]
        );
        assert!(t.await_input(timeout()).unwrap());
        assert_eq!(t.inner.sent.len(), 1, "nothing left to send twice");
    }

    #[test]
    fn a_large_body_streams_in_buffer_sized_pieces() {
        let mut t = recording(1024, 16 * 1024);
        let body: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        hand_over(&mut t, &body);
        t.await_input(timeout()).unwrap();
        assert!(t.inner.sent.iter().all(|s| s.len() <= 16 * 1024));
        assert_eq!(t.inner.sent.concat(), body, "every byte, in order");
        assert!(t.pending.is_empty());
    }

    #[test]
    fn a_connection_is_probed_before_its_next_request_not_also_right_after_the_answer() {
        let mut t = recording(1024, 4096);
        for request in 1..=3 {
            assert!(t.is_open(), "taken from the pool");
            hand_over(&mut t, b"GET / HTTP/1.1\r\n\r\n");
            t.await_input(timeout()).unwrap();
            assert!(t.is_open(), "put back into the pool");
            assert_eq!(t.inner.probes, request, "one probe per reuse");
        }
    }
}
