//! Reading one HTTP/1.1 answer off a kept-alive connection (the plain-`http://` path).
//!
//! Only what a delivery needs is kept: the status, `Retry-After`, and at most
//! [`BODY_EXCERPT`] bytes of the body; the rest is never read. Whether the connection can carry
//! the next request follows from the framing (Content-Length, chunked, or close-delimited), the
//! answer's `Connection` header and whether the body was read to its end.
//!
//! Like the ureq path, a failure inside the body (a timeout, a close, bad chunking) does not
//! undo the status: the answer comes back with what was read and the connection is dropped.

use std::fmt;
use std::io::{self, Read};
use std::mem::MaybeUninit;

use super::client::BODY_EXCERPT;

/// The largest answer head read (ureq's limit too); a larger one is an error, not a wait.
pub const MAX_HEAD: usize = 64 * 1024;

/// Headers parsed at most (ureq's limit too).
const MAX_HEADERS: usize = 128;

/// A chunk-size line, or a chunked answer's whole trailer section, longer than this is
/// malformed.
const MAX_LINE: usize = 4096;

/// The buffer an answer is read into at first; it grows (up to [`MAX_HEAD`]) for a larger head.
pub const FIRST_BUFFER: usize = 8 * 1024;

/// What one request got back.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The raw `Retry-After` value, when there is one.
    pub retry_after: Option<String>,
    /// At most [`BODY_EXCERPT`] bytes of the body (de-chunked).
    pub body: Vec<u8>,
    /// The answer was read to its end, nothing follows it, and neither side asked to close:
    /// the connection can carry another request.
    pub reusable: bool,
}

/// Why no answer could be read.
#[derive(Debug)]
pub enum AnswerError {
    /// The connection was closed (or reset) before the first byte of an answer.
    NoAnswer,
    /// The connection was closed in the middle of the answer's head.
    Truncated,
    /// The answer's head did not come within the request's timeout.
    Timeout,
    /// Reading the head failed otherwise.
    Io(io::Error),
    /// What came is not an HTTP/1.x answer head.
    Malformed(httparse::Error),
    /// Content-Length is not a number, or given twice with different values.
    BadLength,
    /// The head is larger than [`MAX_HEAD`].
    HeadTooLarge,
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerError::NoAnswer => write!(f, "the connection was closed before any answer"),
            AnswerError::Truncated => {
                write!(f, "the connection was closed inside the answer's head")
            }
            AnswerError::Timeout => write!(f, "timeout: no answer in time"),
            AnswerError::Io(e) => write!(f, "reading the answer: {e}"),
            AnswerError::Malformed(e) => write!(f, "malformed answer head: {e}"),
            AnswerError::BadLength => write!(f, "malformed answer head: bad Content-Length"),
            AnswerError::HeadTooLarge => {
                write!(f, "answer head larger than {} KiB", MAX_HEAD / 1024)
            }
        }
    }
}

impl std::error::Error for AnswerError {}

/// How the body's end is found.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the server closes (never reusable).
    Close,
}

/// The bytes read from the connection and not yet used: `buf[pos..end]`.
struct Input<'a, R> {
    r: &'a mut R,
    buf: &'a mut Vec<u8>,
    pos: usize,
    end: usize,
    /// Bytes read for this answer so far.
    received: usize,
}

impl<R: Read> Input<'_, R> {
    fn available(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }

    /// Reads more; `false` at end of stream. Room is made by moving unused bytes to the front,
    /// then by growing the buffer up to `max` bytes unused (then an `OutOfMemory` error).
    fn fill(&mut self, max: usize) -> io::Result<bool> {
        if self.pos == self.end {
            (self.pos, self.end) = (0, 0);
        }
        if self.end == self.buf.len() {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            } else if self.buf.len() < max {
                let len = (self.buf.len() * 2).clamp(FIRST_BUFFER, max);
                self.buf.resize(len, 0);
            } else {
                return Err(io::ErrorKind::OutOfMemory.into());
            }
        }
        let n = self.r.read(&mut self.buf[self.end..])?;
        self.end += n;
        self.received += n;
        Ok(n > 0)
    }
}

/// What the head says, copied out of the buffer it was parsed from.
struct Head {
    status: u16,
    len: usize,
    framing: Framing,
    close: bool,
    retry_after: Option<String>,
}

/// Reads the answer to a single request from `r` (what [`super::plain::Plain::send`] does,
/// through [`read_answer_after`] and [`answer_alone`]), using `buf` for what is read.
/// Informational (1xx) heads before it are skipped.
#[cfg(test)]
pub fn read_answer<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<Answer, AnswerError> {
    read_answer_after(r, buf, 0).map(|(answer, rest)| answer_alone(answer, rest))
}

/// The answer to a single request, with `rest` bytes read after it: anything there means the
/// connection is out of step, so it cannot carry another request.
pub fn answer_alone(mut answer: Answer, rest: usize) -> Answer {
    answer.reusable &= rest == 0;
    answer
}

/// Reads the next answer of a pipelined exchange: the first `held` bytes of `buf` were read
/// before (after the previous answer) and belong to this one. Returns the answer and how many
/// bytes read after it are now at the start of `buf`: the beginning of the next answer. Here
/// `reusable` says only that the answer was read to its end and neither side asked to close.
pub fn read_answer_after<R: Read>(
    r: &mut R,
    buf: &mut Vec<u8>,
    held: usize,
) -> Result<(Answer, usize), AnswerError> {
    if buf.len() < FIRST_BUFFER {
        buf.resize(FIRST_BUFFER, 0);
    }
    let end = held.min(buf.len());
    let mut input = Input {
        r,
        buf,
        pos: 0,
        end,
        received: end,
    };
    let head = loop {
        let head = read_head(&mut input)?;
        input.consume(head.len);
        if !(100..200).contains(&head.status) || head.status == 101 {
            break head;
        }
    };
    let mut body = Vec::new();
    let ended = match head.framing {
        Framing::None => true,
        Framing::Length(n) => read_length(&mut input, n, &mut body),
        Framing::Chunked => read_chunked(&mut input, &mut body),
        Framing::Close => {
            read_to_close(&mut input, &mut body);
            false
        }
    };
    let (pos, end) = (input.pos, input.end);
    buf.copy_within(pos..end, 0);
    Ok((
        Answer {
            status: head.status,
            retry_after: head.retry_after,
            body,
            reusable: ended && !head.close,
        },
        end - pos,
    ))
}

/// Reads until a whole head is buffered; parses it.
fn read_head<R: Read>(input: &mut Input<'_, R>) -> Result<Head, AnswerError> {
    loop {
        if input.pos < input.end {
            if let Some(head) = parse_head(input.available())? {
                return Ok(head);
            }
        }
        match input.fill(MAX_HEAD) {
            Ok(true) => {}
            Ok(false) if input.received == 0 => return Err(AnswerError::NoAnswer),
            Ok(false) => return Err(AnswerError::Truncated),
            Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                return Err(AnswerError::HeadTooLarge)
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(AnswerError::Timeout),
            Err(e)
                if input.received == 0
                    && matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::BrokenPipe
                    ) =>
            {
                return Err(AnswerError::NoAnswer)
            }
            Err(e) => return Err(AnswerError::Io(e)),
        }
    }
}

/// Parses a complete head at the start of `bytes`; `None` while it is incomplete.
fn parse_head(bytes: &[u8]) -> Result<Option<Head>, AnswerError> {
    let mut headers = [MaybeUninit::<httparse::Header>::uninit(); MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        bytes,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(AnswerError::Malformed(e)),
    };
    // httparse accepts any three digits; a status below 100 is not HTTP.
    let status = resp
        .code
        .filter(|c| *c >= 100)
        .ok_or(AnswerError::Malformed(httparse::Error::Status))?;
    let http10 = resp.version == Some(0);
    let (mut length, mut chunked, mut coded) = (None, false, false);
    let (mut close, mut keep_alive) = (false, false);
    let mut retry_after = None;
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(AnswerError::BadLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(AnswerError::BadLength);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            coded = true;
            chunked = tokens(h.value)
                .last()
                .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                close |= t.eq_ignore_ascii_case(b"close");
                keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("retry-after") {
            retry_after = Some(String::from_utf8_lossy(h.value).into_owned());
        }
    }
    let framing = if matches!(status, 100..=199 | 204 | 304) {
        Framing::None
    } else if coded && !http10 {
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; not chunked last, the
        // body ends at the close.
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    // Both framings given is a smuggling shape: the answer is read, the connection dropped.
    close |= (http10 && !keep_alive)
        || status == 101
        || framing == Framing::Close
        || (coded && length.is_some());
    Ok(Some(Head {
        status,
        len,
        framing,
        close,
        retry_after,
    }))
}

/// The comma-separated tokens of a header value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Room left in the excerpt.
fn room(body: &[u8]) -> usize {
    BODY_EXCERPT as usize - body.len()
}

/// `n` bytes of body (a Content-Length body, or one chunk's data): whether all were read.
/// Stops, unread, once the excerpt is full.
fn read_length<R: Read>(input: &mut Input<'_, R>, n: u64, body: &mut Vec<u8>) -> bool {
    let mut left = n;
    while left > 0 {
        let take = (input.available().len() as u64)
            .min(left)
            .min(room(body) as u64) as usize;
        body.extend_from_slice(&input.available()[..take]);
        input.consume(take);
        left -= take as u64;
        if left == 0 {
            break;
        }
        if room(body) == 0 || !matches!(input.fill(FIRST_BUFFER), Ok(true)) {
            return false;
        }
    }
    true
}

/// A close-delimited body: read until the close or until the excerpt is full.
fn read_to_close<R: Read>(input: &mut Input<'_, R>, body: &mut Vec<u8>) {
    loop {
        let take = input.available().len().min(room(body));
        body.extend_from_slice(&input.available()[..take]);
        input.consume(take);
        if room(body) == 0 || !matches!(input.fill(FIRST_BUFFER), Ok(true)) {
            return;
        }
    }
}

/// A chunked body: whether it was read to its last chunk and trailers. Once the excerpt is
/// full, only what is already buffered is looked at (the end may be there too).
fn read_chunked<R: Read>(input: &mut Input<'_, R>, body: &mut Vec<u8>) -> bool {
    loop {
        let Some((line, size)) = parse_buffered(input, body, chunk_size) else {
            return false;
        };
        input.consume(line);
        if size == 0 {
            // Trailers, up to the empty line: skipped, but they must be header fields.
            return match parse_buffered(input, body, trailers) {
                Some(len) => {
                    input.consume(len);
                    true
                }
                None => false,
            };
        }
        if !read_length(input, size, body) {
            return false;
        }
        // The CRLF after the chunk's data.
        match parse_buffered(input, body, crlf) {
            Some(len) => input.consume(len),
            None => return false,
        }
    }
}

/// Runs `parse` on the front of the input until it completes, reading more while the excerpt
/// has room; `None` if it fails, the input ends, or more than [`MAX_LINE`] bytes do not
/// complete it.
fn parse_buffered<R: Read, T>(
    input: &mut Input<'_, R>,
    body: &[u8],
    parse: fn(&[u8]) -> Option<httparse::Status<T>>,
) -> Option<T> {
    loop {
        if let httparse::Status::Complete(t) = parse(input.available())? {
            return Some(t);
        }
        if input.available().len() > MAX_LINE || room(body) == 0 {
            return None;
        }
        if !matches!(input.fill(FIRST_BUFFER + MAX_LINE), Ok(true)) {
            return None;
        }
    }
}

/// A chunk-size line (hex digits, optional `;extensions`, CRLF): its length and the size.
/// httparse reads an empty size as 0; here it must start with a digit.
fn chunk_size(bytes: &[u8]) -> Option<httparse::Status<(usize, u64)>> {
    match bytes.first() {
        None => Some(httparse::Status::Partial),
        Some(b) if b.is_ascii_hexdigit() => httparse::parse_chunk_size(bytes).ok(),
        Some(_) => None,
    }
}

/// The trailer section (header fields, then an empty line): its length.
fn trailers(bytes: &[u8]) -> Option<httparse::Status<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(bytes, &mut headers).ok()? {
        httparse::Status::Complete((len, _)) => Some(httparse::Status::Complete(len)),
        httparse::Status::Partial => Some(httparse::Status::Partial),
    }
}

/// The CRLF ending a chunk's data.
fn crlf(bytes: &[u8]) -> Option<httparse::Status<usize>> {
    match bytes {
        [b'\r', b'\n', ..] => Some(httparse::Status::Complete(2)),
        [] | [b'\r'] => Some(httparse::Status::Partial),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader handing out `parts` one per read (then end of stream).
    struct Parts(Vec<Vec<u8>>);

    impl Read for Parts {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let part = &mut self.0[0];
            let n = part.len().min(out.len());
            out[..n].copy_from_slice(&part[..n]);
            part.drain(..n);
            if part.is_empty() {
                self.0.remove(0);
            }
            Ok(n)
        }
    }

    fn answer(parts: &[&[u8]]) -> Result<Answer, AnswerError> {
        let mut r = Parts(parts.iter().map(|p| p.to_vec()).collect());
        read_answer(&mut r, &mut Vec::new())
    }

    #[test]
    fn pipelined_answers_are_read_one_after_the_other_however_they_arrive() {
        // Three answers (length, chunked, no body) back to back, cut at every place.
        let whole: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none\
HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n";
        for cut in 1..whole.len() {
            let mut r = Parts(vec![whole[..cut].to_vec(), whole[cut..].to_vec()]);
            let mut buf = Vec::new();
            let mut held = 0;
            let mut got = Vec::new();
            for _ in 0..3 {
                let (a, rest) = read_answer_after(&mut r, &mut buf, held).unwrap();
                assert!(a.reusable, "cut {cut}");
                got.push((a.status, String::from_utf8(a.body).unwrap()));
                held = rest;
            }
            assert_eq!(held, 0, "cut {cut}");
            assert_eq!(
                got,
                [
                    (200, "one".into()),
                    (503, "two".into()),
                    (204, String::new())
                ],
                "cut {cut}"
            );
        }
        // A single answer with bytes after it: the connection is out of step.
        let mut r = Parts(vec![whole.to_vec()]);
        assert!(!read_answer(&mut r, &mut Vec::new()).unwrap().reusable);
    }

    #[test]
    fn content_length_answer_split_anywhere() {
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nRetry-After: 7\r\n\r\nhello";
        for cut in 1..whole.len() {
            let a = answer(&[&whole[..cut], &whole[cut..]]).unwrap();
            assert_eq!(
                (a.status, &a.body[..], a.reusable),
                (200, &b"hello"[..], true)
            );
            assert_eq!(a.retry_after.as_deref(), Some("7"));
        }
    }

    #[test]
    fn chunked_with_extensions_and_trailers_split_anywhere() {
        let whole =
            b"HTTP/1.1 503 No\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nX-T: 1\r\n\r\n";
        for cut in 1..whole.len() {
            let a = answer(&[&whole[..cut], &whole[cut..]]).unwrap();
            assert_eq!(
                (a.status, &a.body[..], a.reusable),
                (503, &b"hello!"[..], true)
            );
        }
    }

    #[test]
    fn informational_heads_are_skipped() {
        let a = answer(&[
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        ])
        .unwrap();
        assert_eq!((a.status, a.reusable), (201, true));
    }

    #[test]
    fn no_body_statuses_and_close_delimited_bodies() {
        let a = answer(&[b"HTTP/1.1 204 No Content\r\n\r\n"]).unwrap();
        assert_eq!((a.status, a.body.len(), a.reusable), (204, 0, true));
        let a = answer(&[b"HTTP/1.1 200 OK\r\n\r\nuntil", b" the close"]).unwrap();
        assert_eq!((&a.body[..], a.reusable), (&b"until the close"[..], false));
        let a = answer(&[b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"]).unwrap();
        assert!(!a.reusable, "HTTP/1.0 without keep-alive");
        let a = answer(&[b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"])
            .unwrap();
        assert!(!a.reusable, "Connection: close");
        let a = answer(&[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1"]).unwrap();
        assert!(!a.reusable, "bytes after the answer");
    }

    #[test]
    fn a_long_body_is_cut_at_the_excerpt_and_the_connection_dropped() {
        let big = vec![b'x'; 10_000];
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", big.len());
        let a = answer(&[head.as_bytes(), &big]).unwrap();
        assert_eq!((a.body.len(), a.reusable), (BODY_EXCERPT as usize, false));
        let a = answer(&[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2710\r\n",
            &big,
        ])
        .unwrap();
        assert_eq!((a.body.len(), a.reusable), (BODY_EXCERPT as usize, false));
        // Exactly the excerpt, with the end already buffered: reusable.
        let exact = vec![b'y'; BODY_EXCERPT as usize];
        let mut whole = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n".to_vec();
        whole.extend_from_slice(&exact);
        whole.extend_from_slice(b"\r\n0\r\n\r\n");
        let a = answer(&[&whole]).unwrap();
        assert_eq!((a.body.len(), a.reusable), (BODY_EXCERPT as usize, true));
    }

    #[test]
    fn a_broken_body_keeps_the_status_and_drops_the_connection() {
        let a = answer(&[b"HTTP/1.1 500 Oops\r\nContent-Length: 10\r\n\r\nshort"]).unwrap();
        assert_eq!(
            (a.status, &a.body[..], a.reusable),
            (500, &b"short"[..], false)
        );
        let a = answer(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"])
            .unwrap();
        assert_eq!((a.status, a.body.len(), a.reusable), (200, 0, false));
        let a = answer(&[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        ])
        .unwrap();
        assert_eq!((&a.body[..], a.reusable), (&b"hello"[..], false));
    }

    #[test]
    fn heads_that_are_not_http_are_errors() {
        assert!(matches!(answer(&[]), Err(AnswerError::NoAnswer)));
        assert!(matches!(
            answer(&[b"HTTP/1.1 200 O"]),
            Err(AnswerError::Truncated)
        ));
        assert!(matches!(
            answer(&[b"SSH-2.0-OpenSSH\r\n\r\n"]),
            Err(AnswerError::Malformed(_))
        ));
        assert!(matches!(
            answer(&[b"HTTP/1.1 099 Low\r\n\r\n"]),
            Err(AnswerError::Malformed(_))
        ));
        for bad in ["x", "-1", "", "1, 2"] {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n");
            assert!(
                matches!(answer(&[head.as_bytes()]), Err(AnswerError::BadLength)),
                "{bad:?}"
            );
        }
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(matches!(
            answer(&[head.as_bytes()]),
            Err(AnswerError::BadLength)
        ));
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            many.extend_from_slice(b"X-Pad: a\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(
            answer(&[&many]),
            Err(AnswerError::Malformed(httparse::Error::TooManyHeaders))
        ));
        let huge = format!("HTTP/1.1 200 OK\r\nX-Big: {}", "a".repeat(MAX_HEAD));
        assert!(matches!(
            answer(&[huge.as_bytes()]),
            Err(AnswerError::HeadTooLarge)
        ));
    }

    /// A reader handing out `head`, then `fill` bytes for as long as it is read.
    struct Endless {
        head: Vec<u8>,
        fill: u8,
        given: usize,
    }

    impl Read for Endless {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = if self.head.is_empty() {
                out.fill(self.fill);
                out.len()
            } else {
                let n = self.head.len().min(out.len());
                out[..n].copy_from_slice(&self.head[..n]);
                self.head.drain(..n);
                n
            };
            self.given += n;
            Ok(n)
        }
    }

    /// An answer whose `head` is followed by `fill` without end: it must end, with the
    /// status, unreusable, having read and buffered only a bounded amount.
    fn endless(head: &[u8], fill: u8) -> Answer {
        let mut r = Endless {
            head: head.to_vec(),
            fill,
            given: 0,
        };
        let mut buf = Vec::new();
        let a = read_answer(&mut r, &mut buf).unwrap();
        assert!(!a.reusable);
        assert!(buf.len() <= FIRST_BUFFER + MAX_LINE, "{}", buf.len());
        assert!(
            r.given <= head.len() + FIRST_BUFFER + MAX_LINE,
            "{}",
            r.given
        );
        a
    }

    #[test]
    fn an_endless_chunk_size_line_or_trailer_section_fails_bounded() {
        let chunked = b"HTTP/1.1 502 Bad\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut head = chunked.to_vec();
        head.extend_from_slice(b"5;ext=");
        assert_eq!(endless(&head, b'x').status, 502);
        let mut head = chunked.to_vec();
        head.extend_from_slice(b"2\r\nok\r\n0\r\nX-T: ");
        let a = endless(&head, b'x');
        assert_eq!((a.status, &a.body[..]), (502, &b"ok"[..]));
        // Trailer lines one after another: the section as a whole is bounded.
        let mut head = chunked.to_vec();
        head.extend_from_slice(b"0\r\n");
        let mut r = Parts(vec![head, b"X-T: 1\r\n".repeat(MAX_LINE)]);
        let a = read_answer(&mut r, &mut Vec::new()).unwrap();
        assert!(!a.reusable);
        assert!(
            !r.0.is_empty() && r.0[0].len() > MAX_LINE,
            "read on past the limit"
        );
    }

    #[test]
    fn chunk_size_lines_httparse_would_take_as_zero_or_that_are_not_hex_fail() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        for bad in [
            &b"\r\n\r\n"[..],
            b";ext\r\n\r\n",
            b" 0\r\n\r\n",
            b"+0\r\n\r\n",
            b"0x0\r\n\r\n",
            b"1 2\r\n",
            b"00000000000000000\r\n\r\n",
            b"0\rX\r\n\r\n",
            b"0\r\nnot a trailer\r\n\r\n",
        ] {
            let mut whole = chunked.to_vec();
            whole.extend_from_slice(bad);
            let a = answer(&[&whole]).unwrap();
            assert_eq!(
                (a.status, a.reusable),
                (200, false),
                "{:?}",
                bad.escape_ascii()
            );
        }
        // What does parse: upper-case hex, white space before the extension, no trailers.
        let mut whole = chunked.to_vec();
        whole.extend_from_slice(b"A \t;a=\"b\"\r\n0123456789\r\n0\r\n\r\n");
        let a = answer(&[&whole]).unwrap();
        assert_eq!((&a.body[..], a.reusable), (&b"0123456789"[..], true));
        // The largest size (16 hex digits) neither overflows nor waits for its data.
        let mut whole = chunked.to_vec();
        whole.extend_from_slice(b"ffffffffffffffff\r\nabc");
        let a = answer(&[&whole]).unwrap();
        assert_eq!((&a.body[..], a.reusable), (&b"abc"[..], false));
    }

    #[test]
    fn a_head_larger_than_the_first_buffer_is_read() {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..100 {
            head.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "a".repeat(100)).as_bytes());
        }
        head.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
        assert!(head.len() > FIRST_BUFFER);
        let a = answer(&[&head]).unwrap();
        assert_eq!((&a.body[..], a.reusable), (&b"ok"[..], true));
    }
}
