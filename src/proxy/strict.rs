//! A strict second reading of HTTP/1.1 request heads, as their bytes arrive.
//!
//! hyper's parser is lenient where RFC 9112 lets a recipient be: it takes a
//! bare LF as a line end, lets `Transfer-Encoding` silently win over
//! `Content-Length`, and folds repeated equal `Content-Length` lines into
//! one. Each leaves no trace in the parsed request, yet each is how request
//! smuggling starts, so a security proxy refuses them. [`Strict`] wraps the
//! client connection and follows its message framing (heads, then
//! `Content-Length` or chunked bodies) independently of hyper; the service
//! asks [`HeadCheck::next_request`] before handling each request and
//! answers 400 to one whose head broke a rule.
//!
//! Once a head breaks a rule the framing that follows is ambiguous, so the
//! reader stops looking and the refused request closes the connection. Bytes
//! after an upgrade or a successful `CONNECT` are not HTTP: the reader may
//! flag them, but no request is ever served after them, so nobody asks.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The reason given for a head over the size limit (answered with 431).
pub const HEAD_TOO_LARGE: &str = "the request head is too large";

/// The first head that broke a rule: its index on the connection and why.
type Flag = OnceLock<(u64, &'static str)>;

/// The service's side: counts requests and tells whether one was malformed.
pub struct HeadCheck {
    flag: Arc<Flag>,
    served: AtomicU64,
}

impl HeadCheck {
    /// Call once per request, in order: `Err` names the rule its head broke.
    pub fn next_request(&self) -> Result<(), &'static str> {
        let index = self.served.fetch_add(1, Ordering::Relaxed);
        match self.flag.get() {
            Some(&(bad, reason)) if bad <= index => Err(reason),
            _ => Ok(()),
        }
    }
}

/// A client connection read through the strict head reader.
pub struct Strict<S> {
    inner: S,
    reader: Reader,
}

/// Wraps `inner`; `max_head` bounds the bytes kept for one head.
pub fn guard<S>(inner: S, max_head: usize) -> (Strict<S>, Arc<HeadCheck>) {
    let flag = Arc::new(Flag::new());
    let check = Arc::new(HeadCheck {
        flag: flag.clone(),
        served: AtomicU64::new(0),
    });
    let reader = Reader::new(max_head, flag);
    (Strict { inner, reader }, check)
}

impl<S: AsyncRead + Unpin> AsyncRead for Strict<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            this.reader.feed(&buf.filled()[before..]);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Strict<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Where the reader is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a request head.
    Head,
    /// Skipping a body's bytes.
    Body(u64),
    /// In a chunk-size line: the size so far, and whether an extension began.
    ChunkSize { size: u64, digits: u8, ext: bool },
    /// Skipping chunk data.
    ChunkData(u64),
    /// After chunk data: expecting CR (false) or LF (true).
    ChunkEnd(bool),
    /// In the trailer section: the current line's length so far, and
    /// whether a CR just came (lines end in CRLF, as in a head).
    Trailer { len: usize, cr: bool },
    /// Stopped: a rule was broken, or the stream left HTTP/1.1.
    Done,
}

struct Reader {
    state: State,
    head: Vec<u8>,
    max_head: usize,
    /// Index of the request whose head or body is being read.
    index: u64,
    flag: Arc<Flag>,
}

/// The connection preface of HTTP/2 with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

impl Reader {
    fn new(max_head: usize, flag: Arc<Flag>) -> Reader {
        Reader {
            state: State::Head,
            head: Vec::new(),
            max_head,
            index: 0,
            flag,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let used = match self.state {
                State::Done => return,
                State::Head => self.head_bytes(bytes),
                State::Body(left) => {
                    let n = left.min(bytes.len() as u64);
                    self.state = if n == left {
                        self.index += 1;
                        State::Head
                    } else {
                        State::Body(left - n)
                    };
                    n as usize
                }
                State::ChunkData(left) => {
                    let n = left.min(bytes.len() as u64);
                    self.state = if n == left {
                        State::ChunkEnd(false)
                    } else {
                        State::ChunkData(left - n)
                    };
                    n as usize
                }
                _ => {
                    self.chunk_byte(bytes[0]);
                    1
                }
            };
            bytes = &bytes[used..];
        }
    }

    /// Stops reading: request `index` (or later) broke `reason`.
    fn flag(&mut self, index: u64, reason: &'static str) {
        let _ = self.flag.set((index, reason));
        self.state = State::Done;
        self.head = Vec::new();
    }

    /// Collects head bytes; returns how many of `bytes` belonged to the head.
    fn head_bytes(&mut self, bytes: &[u8]) -> usize {
        // Empty lines before a request are allowed (RFC 9112 §2.2).
        let start = if self.head.is_empty() {
            bytes
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .unwrap_or(bytes.len())
        } else {
            0
        };
        // Look for the blank line, including across the previous read.
        let from = self.head.len().saturating_sub(3);
        let old = self.head.len();
        let take = match find_head_end(&self.head[from..], &bytes[start..]) {
            Some(end) => end - (old - from),
            None => bytes.len() - start,
        };
        // Control bytes never belong in a head: NUL, or the TLS or
        // WebSocket bytes of a tunnel that follow a successful CONNECT or
        // upgrade. Stop at once rather than collect them.
        if bytes[start..start + take].iter().any(|&b| is_control(b)) {
            self.flag(self.index, "a control character in the request head");
            return bytes.len();
        }
        if old + take > self.max_head {
            // hyper answers 431; nothing more to learn from this connection.
            self.flag(self.index, HEAD_TOO_LARGE);
            return bytes.len();
        }
        self.head.extend_from_slice(&bytes[start..start + take]);
        if self.head.ends_with(b"\n\r\n") || self.head.ends_with(b"\n\n") {
            self.end_of_head();
        }
        start + take
    }

    fn end_of_head(&mut self) {
        if self.head.starts_with(H2_PREFACE) {
            self.state = State::Done;
            self.head = Vec::new();
            return;
        }
        let framing = framing(&self.head);
        // Keep a small allocation for the next head on this connection.
        if self.head.capacity() > 8 * 1024 {
            self.head = Vec::new();
        } else {
            self.head.clear();
        }
        match framing {
            Ok(Framing::None) => self.index += 1,
            Ok(Framing::Length(n)) => self.state = State::Body(n),
            Ok(Framing::Chunked) => {
                self.state = State::ChunkSize {
                    size: 0,
                    digits: 0,
                    ext: false,
                }
            }
            Err(reason) => self.flag(self.index, reason),
        }
    }

    fn chunk_byte(&mut self, b: u8) {
        const BAD: &str = "a malformed chunked body came before this request";
        let next = self.index + 1;
        match self.state {
            State::ChunkSize { size, digits, ext } => match b {
                b'\n' if digits == 0 => self.flag(next, BAD),
                b'\n' if size == 0 => self.state = State::Trailer { len: 0, cr: false },
                b'\n' => self.state = State::ChunkData(size),
                _ if ext => {}
                b';' | b'\r' | b' ' | b'\t' => {
                    self.state = State::ChunkSize {
                        size,
                        digits,
                        ext: true,
                    }
                }
                _ => match (b as char).to_digit(16) {
                    // Leading zeros are fine (hyper only refuses overflow).
                    Some(d) if size >> 60 == 0 => {
                        self.state = State::ChunkSize {
                            size: size << 4 | u64::from(d),
                            digits: digits.saturating_add(1),
                            ext,
                        }
                    }
                    _ => self.flag(next, BAD),
                },
            },
            State::ChunkEnd(false) if b == b'\r' => self.state = State::ChunkEnd(true),
            State::ChunkEnd(_) if b == b'\n' => {
                self.state = State::ChunkSize {
                    size: 0,
                    digits: 0,
                    ext: false,
                }
            }
            State::ChunkEnd(_) => self.flag(next, BAD),
            // hyper ends trailer lines only at CRLF and keeps a bare LF
            // inside a line; ending lines anywhere else would desynchronise.
            State::Trailer { len, cr: true } => match b {
                b'\n' if len == 0 => {
                    self.index += 1;
                    self.state = State::Head;
                }
                b'\n' => self.state = State::Trailer { len: 0, cr: false },
                _ => self.flag(next, BAD),
            },
            State::Trailer { len, cr: false } => match b {
                b'\r' => self.state = State::Trailer { len, cr: true },
                b'\n' => self.flag(next, BAD),
                _ if is_control(b) || len >= self.max_head => self.flag(next, BAD),
                _ => {
                    self.state = State::Trailer {
                        len: len + 1,
                        cr: false,
                    }
                }
            },
            _ => unreachable!("chunk_byte outside a chunked body"),
        }
    }
}

/// A byte that never belongs in a head or trailer line (CR and LF are
/// line ends, checked separately; HTAB is whitespace).
fn is_control(b: u8) -> bool {
    (b < 0x20 && !matches!(b, b'\r' | b'\n' | b'\t')) || b == 0x7f
}

/// The offset just past the blank line ending a head, searching `tail` (the
/// last bytes already collected) then `bytes`, counted over both.
fn find_head_end(tail: &[u8], bytes: &[u8]) -> Option<usize> {
    let joined = tail.len() + bytes.len();
    let at = |i: usize| {
        if i < tail.len() {
            tail[i]
        } else {
            bytes[i - tail.len()]
        }
    };
    (tail.len()..joined).find_map(|i| {
        let b = at(i);
        let lf_lf = b == b'\n' && i >= 1 && at(i - 1) == b'\n';
        let lf_crlf = b == b'\n' && i >= 2 && at(i - 1) == b'\r' && at(i - 2) == b'\n';
        (lf_lf || lf_crlf).then_some(i + 1)
    })
}

/// How a request's body is delimited.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Checks one complete head and reads its framing.
fn framing(head: &[u8]) -> Result<Framing, &'static str> {
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' && (i == 0 || head[i - 1] != b'\r') {
            return Err("a line ends in a bare LF; lines must end in CRLF");
        }
        if b == b'\r' && head.get(i + 1) != Some(&b'\n') {
            return Err("a bare CR in the request head");
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        // hyper refuses these heads itself; the framing after them is unknown.
        Ok(httparse::Status::Partial) | Err(_) => return Err("a malformed request head"),
    }
    let (mut length, mut lengths, mut coding) = (None, 0, None);
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            length = std::str::from_utf8(header.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            coding = Some(header.value);
        }
    }
    match (lengths, coding) {
        (0, None) => Ok(Framing::None),
        (1, None) => length
            .map(Framing::Length)
            .ok_or("an invalid Content-Length"),
        (0, Some(coding)) if last_coding_is_chunked(coding) => Ok(Framing::Chunked),
        (0, Some(_)) => Err("a Transfer-Encoding that does not end in chunked"),
        (_, None) => Err("more than one Content-Length header"),
        (_, Some(_)) => {
            Err("both Content-Length and Transfer-Encoding: the body's length is ambiguous")
        }
    }
}

fn last_coding_is_chunked(value: &[u8]) -> bool {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` in pieces of `step` bytes; returns the flag and the
    /// number of requests whose end was seen.
    fn run(stream: &[u8], step: usize) -> (Option<(u64, &'static str)>, u64) {
        let flag = Arc::new(Flag::new());
        let mut reader = Reader::new(1024, flag.clone());
        for piece in stream.chunks(step) {
            reader.feed(piece);
        }
        (flag.get().copied(), reader.index)
    }

    fn each_step(stream: &[u8]) -> (Option<(u64, &'static str)>, u64) {
        let whole = run(stream, stream.len().max(1));
        for step in 1..stream.len().min(40) {
            assert_eq!(run(stream, step), whole, "split every {step} bytes");
        }
        whole
    }

    #[test]
    fn follows_keep_alive_framing() {
        let stream = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n\
POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhe\nlo\
POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
5;name=\"x\"\r\nhe\r\nl\r\n000000000000000000A\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n\
GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(each_step(stream), (None, 4));
    }

    #[test]
    fn flags_the_request_that_breaks_a_rule() {
        let cases: [(&[u8], &str); 6] = [
            (b"GET / HTTP/1.1\nHost: a\n\n", "bare LF"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n", "bare CR"),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                "both Content-Length",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                "both Content-Length",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n",
                "more than one Content-Length",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
                "invalid Content-Length",
            ),
        ];
        for (bad, reason) in cases {
            let mut stream = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
            stream.extend_from_slice(bad);
            let (flag, _) = each_step(&stream);
            let (index, said) = flag.expect(reason);
            assert_eq!(index, 1, "{reason}");
            assert!(said.contains(reason), "{said} / {reason}");
        }
    }

    #[test]
    fn a_broken_chunked_body_flags_what_follows() {
        for body in [
            &b"zz\r\n"[..],
            b"11111111111111111\r\n",
            b"3\r\nabcX",
            // hyper keeps a bare LF inside a trailer line: no line end here.
            b"0\r\nX: a\n\n",
            b"0\r\nX: a\rb\r\n\r\n",
            b"0\r\nX: \x01\r\n\r\n",
        ] {
            let mut stream =
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            stream.extend_from_slice(body);
            let (flag, _) = each_step(&stream);
            assert_eq!(flag.map(|f| f.0), Some(1), "{body:?}");
        }
    }

    #[test]
    fn oversized_heads_stop_the_reader() {
        let mut stream = b"GET / HTTP/1.1\r\nX: ".to_vec();
        stream.extend(std::iter::repeat_n(b'a', 2000));
        assert_eq!(run(&stream, 100).0.map(|f| f.0), Some(0));
    }

    #[test]
    fn tunnel_bytes_after_connect_stop_the_reader_at_once() {
        let flag = Arc::new(Flag::new());
        let mut reader = Reader::new(1024, flag.clone());
        reader.feed(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n");
        // A TLS ClientHello record.
        reader.feed(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
        assert_eq!(reader.state, State::Done);
        assert!(reader.head.capacity() == 0, "nothing kept for the tunnel");
        assert_eq!(flag.get().map(|f| f.0), Some(1));
    }

    #[test]
    fn h2_prior_knowledge_is_left_alone() {
        let stream = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04";
        assert_eq!(each_step(stream), (None, 0));
    }

    #[test]
    fn the_check_counts_requests() {
        let flag = Arc::new(Flag::new());
        let check = HeadCheck {
            flag: flag.clone(),
            served: AtomicU64::new(0),
        };
        flag.set((1, "bad")).unwrap();
        assert_eq!(check.next_request(), Ok(()));
        assert_eq!(check.next_request(), Err("bad"));
    }
}
