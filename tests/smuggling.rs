//! Request smuggling and parser defences: raw bytes over a socket, each
//! answered with a clear 4xx, and nothing reaches the upstream.

mod common;

use std::time::Duration;

use common::{Lantern, Upstream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes `raw` and reads `count` responses (head and sized body each), or
/// what arrived before lantern closed the connection.
async fn exchange_n<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    raw: &[u8],
    count: usize,
) -> String {
    // lantern may answer and close before reading everything.
    let _ = stream.write_all(raw).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        let mut done = 0;
        while done < count {
            if complete_responses(&out) > done {
                done += 1;
                continue;
            }
            // A reset after the answer is fine: keep what arrived.
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "lantern neither answered nor closed");
    String::from_utf8_lossy(&out).into_owned()
}

/// How many whole responses (head plus `content-length` body) `data` holds.
fn complete_responses(data: &[u8]) -> usize {
    let mut rest = data;
    let mut count = 0;
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if rest.len() < end + 4 + length {
            break;
        }
        rest = &rest[end + 4 + length..];
        count += 1;
    }
    count
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: S, raw: &[u8]) -> String {
    exchange_n(stream, raw, 1).await
}

/// Exactly two answers: 200 to the valid request, then 400 to the bad one.
fn assert_served_then_refused(reply: &str) {
    let ok = reply.find("HTTP/1.1 200 OK").expect(reply);
    let refused = reply.find("HTTP/1.1 400 Bad Request").expect(reply);
    assert!(ok < refused, "{reply}");
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 2, "{reply}");
}

async fn send(lantern: &Lantern, raw: &[u8]) -> String {
    exchange(TcpStream::connect(lantern.proxy_addr).await.unwrap(), raw).await
}

fn status(reply: &str) -> &str {
    reply.lines().next().unwrap_or("<closed without an answer>")
}

/// Each request, alone on a connection, gets `expected` and reaches nobody.
async fn refused(lantern: &Lantern, upstream: &Upstream, cases: &[(&str, &str, &str)]) {
    for (name, raw, expected) in cases {
        let reply = send(lantern, raw.as_bytes()).await;
        assert!(
            status(&reply).starts_with(expected),
            "{name}: expected {expected}, got {reply:?}"
        );
        assert_eq!(upstream.hits(), 0, "{name} was forwarded");
    }
}

const PLAIN: &str = "POST http://example.test/echo HTTP/1.1\r\nHost: example.test\r\n";
const INSPECTED: &str =
    "POST http://api.openai.com/v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n";

#[tokio::test]
async fn ambiguous_body_framing_is_refused() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    let mut cases = Vec::new();
    for (route, head) in [("plain", PLAIN), ("inspected", INSPECTED)] {
        for (name, rest) in [
            (
                "CL then TE",
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ),
            (
                "TE then CL",
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            ),
            (
                "two equal CLs",
                "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            ),
            (
                "two differing CLs",
                "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            ),
            ("CL list", "Content-Length: 5, 5\r\n\r\nhello"),
            ("signed CL", "Content-Length: +5\r\n\r\nhello"),
            (
                "TE not ending in chunked",
                "Transfer-Encoding: chunked, gzip\r\n\r\nhello",
            ),
            ("unknown TE", "Transfer-Encoding: xchunked\r\n\r\nhello"),
            (
                "space before colon",
                "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
            ),
            (
                "chunk size not hex",
                "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            ),
            (
                "chunk size overflow",
                "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            ),
            (
                "LF in chunk extension",
                "Transfer-Encoding: chunked\r\n\r\n5;a=b\nhello\r\n0\r\n\r\n",
            ),
        ] {
            cases.push((
                format!("{route}: {name}"),
                format!("{head}{rest}"),
                "HTTP/1.1 400",
            ));
        }
    }
    // Buffered for inspection, a body that breaks off midway never leaves.
    // (An uninspected body streams: the upstream sees its start, then a reset.)
    cases.push((
        "inspected: chunk longer than its size".into(),
        format!("{INSPECTED}Transfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n"),
        "HTTP/1.1 400",
    ));
    cases.push((
        "HTTP/1.0 with TE".into(),
        "POST http://example.test/echo HTTP/1.0\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".into(),
        "HTTP/1.1 400",
    ));
    let cases: Vec<(&str, &str, &str)> = cases
        .iter()
        .map(|(n, r, e)| (n.as_str(), r.as_str(), *e))
        .collect();
    refused(&lantern, &upstream, &cases).await;
    let (_, scrape) = lantern.admin_get("/metrics").await;
    for reason in ["framing", "body"] {
        let series = format!("lantern_requests_refused_total{{reason=\"{reason}\"}}");
        assert!(common::metric(&scrape, &series) >= 2.0, "{series}");
    }
    lantern.stop().await;
}

#[tokio::test]
async fn malformed_lines_are_refused() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    let get = "GET http://example.test/echo HTTP/1.1";
    let cases = [
        ("bare LF line ends", format!("{get}\nHost: example.test\n\n")),
        (
            "bare LF hiding a header",
            format!("{get}\r\nHost: example.test\r\nX-A: b\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ),
        ("bare CR", format!("{get}\r\nHost: example.test\r\nX-A: b\rX-B: c\r\n\r\n")),
        ("obs-fold", format!("{get}\r\nHost: example.test\r\nX-Folded: a\r\n b\r\n\r\n")),
        ("NUL in a value", format!("{get}\r\nHost: example.test\r\nX-A: a\0b\r\n\r\n")),
        ("space in the target", "GET http://example.test/e cho HTTP/1.1\r\nHost: example.test\r\n\r\n".into()),
        ("no Host", format!("{get}\r\n\r\n")),
        ("two Hosts", format!("{get}\r\nHost: example.test\r\nHost: example.test\r\n\r\n")),
        ("Host naming another host", format!("{get}\r\nHost: api.openai.com\r\n\r\n")),
        ("Host naming another port", format!("{get}\r\nHost: example.test:8080\r\n\r\n")),
        ("origin-form to a proxy", "GET /echo HTTP/1.1\r\nHost: example.test\r\n\r\n".into()),
        ("https:// absolute-form", "GET https://example.test/echo HTTP/1.1\r\nHost: example.test\r\n\r\n".into()),
    ];
    let cases: Vec<(&str, &str, &str)> = cases
        .iter()
        .map(|(n, r)| (*n, r.as_str(), "HTTP/1.1 400"))
        .collect();
    refused(&lantern, &upstream, &cases).await;
    lantern.stop().await;
}

#[tokio::test]
async fn oversized_targets_and_heads_are_refused() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with(&upstream, |c| c.proxy.max_header_bytes = 32 * 1024).await;
    let long_uri = format!(
        "GET http://example.test/{} HTTP/1.1\r\nHost: example.test\r\n\r\n",
        "a".repeat(70_000)
    );
    let many_headers = format!(
        "GET http://example.test/echo HTTP/1.1\r\nHost: example.test\r\n{}\r\n",
        "X-Many: 1\r\n".repeat(200)
    );
    let big_header = format!(
        "GET http://example.test/echo HTTP/1.1\r\nHost: example.test\r\nX-Big: {}\r\n\r\n",
        "b".repeat(40_000)
    );
    refused(
        &lantern,
        &upstream,
        &[
            ("URI over 64 KiB", &long_uri, "HTTP/1.1 4"),
            ("200 header lines", &many_headers, "HTTP/1.1 431"),
            ("head over the cap", &big_header, "HTTP/1.1 431"),
        ],
    )
    .await;
    lantern.stop().await;
}

#[tokio::test]
async fn connect_outside_the_port_allow_list_and_loops_are_refused() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with(&upstream, |c| c.proxy.connect_ports = vec![443, 8443]).await;
    let own = lantern.proxy_addr;
    let cases = [
        ("CONNECT to port 22", "CONNECT example.test:22 HTTP/1.1\r\nHost: example.test:22\r\nConnection: close\r\n\r\n".to_string(), "HTTP/1.1 403"),
        ("CONNECT to port 80", "CONNECT example.test:80 HTTP/1.1\r\nHost: example.test:80\r\nConnection: close\r\n\r\n".to_string(), "HTTP/1.1 403"),
        ("CONNECT without a port", "CONNECT example.test HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n".to_string(), "HTTP/1.1 400"),
        ("request to lantern itself", format!("GET http://{own}/echo HTTP/1.1\r\nHost: {own}\r\n\r\n"), "HTTP/1.1 508"),
    ];
    let cases: Vec<(&str, &str, &str)> =
        cases.iter().map(|(n, r, e)| (*n, r.as_str(), *e)).collect();
    refused(&lantern, &upstream, &cases).await;
    lantern.stop().await;
}

#[tokio::test]
async fn a_smuggled_request_behind_a_valid_one_is_refused() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    // One connection: a valid keep-alive request, then one whose chunked
    // body hides a second request behind a Content-Length.
    let raw = format!(
        "{PLAIN}Content-Length: 5\r\n\r\nhello\
         {PLAIN}Content-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
         GET http://example.test/echo HTTP/1.1\r\nHost: example.test\r\n\r\n"
    );
    let stream = TcpStream::connect(lantern.proxy_addr).await.unwrap();
    let reply = exchange_n(stream, raw.as_bytes(), 2).await;
    assert_served_then_refused(&reply);
    assert_eq!(upstream.hits(), 1, "only the valid request is forwarded");
    lantern.stop().await;
}

#[tokio::test]
async fn keep_alive_with_chunked_and_sized_bodies_still_works() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    let raw = format!(
        "{PLAIN}Content-Length: 5\r\n\r\nhello\
         {PLAIN}Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n\
         {PLAIN}Content-Length: 2\r\nConnection: close\r\n\r\nok"
    );
    let stream = TcpStream::connect(lantern.proxy_addr).await.unwrap();
    let reply = exchange_n(stream, raw.as_bytes(), 3).await;
    let statuses = reply.matches("HTTP/1.1 200 OK").count();
    assert_eq!(statuses, 3, "{reply}");
    assert!(
        reply.contains("hello") && reply.contains("abcde"),
        "{reply}"
    );
    assert_eq!(upstream.hits(), 3);
    lantern.stop().await;
}

#[tokio::test]
async fn inside_an_intercepted_tunnel_the_same_rules_hold() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    let post = "POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n";
    let cases = [
        (
            "CL and TE",
            format!("{post}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            "HTTP/1.1 400",
        ),
        (
            "bare LF",
            "GET /v1/models HTTP/1.1\nHost: api.openai.com\n\n".to_string(),
            "HTTP/1.1 400",
        ),
        (
            "bad chunk",
            format!("{post}Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\n"),
            "HTTP/1.1 400",
        ),
        // Domain fronting: a tunnel opened for one host, a request for another.
        (
            "Host of another app",
            "GET /v1/models HTTP/1.1\r\nHost: chatgpt.com\r\n\r\n".to_string(),
            "HTTP/1.1 421",
        ),
        (
            "absolute-form for another app",
            "GET https://chatgpt.com/ HTTP/1.1\r\nHost: chatgpt.com\r\n\r\n".to_string(),
            "HTTP/1.1 421",
        ),
    ];
    for (name, raw, expected) in cases {
        let tls = common::intercepted(&lantern, "api.openai.com:443", "api.openai.com").await;
        let reply = exchange(tls, raw.as_bytes()).await;
        assert!(status(&reply).starts_with(expected), "{name}: {reply:?}");
        assert_eq!(upstream.hits(), 0, "{name} was forwarded");
        assert!(lantern.recorder.seen().is_empty(), "{name} was inspected");
    }
    lantern.stop().await;
}

#[tokio::test]
async fn a_bare_lf_in_a_trailer_cannot_blind_the_strict_reader() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    // hyper keeps the bare LF inside the trailer line; a reader that ended
    // the body there would take the next request's bytes for a body and
    // let the bare-LF and CL+TE requests hidden in it through unchecked.
    let hidden = "GET http://example.test/echo HTTP/1.1\nHost: example.test\n\n\
                  POST http://example.test/echo HTTP/1.1\r\nHost: example.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let raw = format!(
        "{PLAIN}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX: a\n\n\
         {PLAIN}Content-Length: {}\r\n\r\n{hidden}",
        hidden.len()
    );
    let stream = TcpStream::connect(lantern.proxy_addr).await.unwrap();
    let reply = exchange_n(stream, raw.as_bytes(), 2).await;
    assert_served_then_refused(&reply);
    assert_eq!(
        upstream.hits(),
        1,
        "hidden requests were forwarded: {reply}"
    );
    lantern.stop().await;
}

#[tokio::test]
async fn unusual_but_valid_requests_pass() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    let raw = format!(
        "POST http://user@example.test/echo HTTP/1.1\r\nHost: example.test\r\nContent-Length: 2\r\n\r\nhi\
         {PLAIN}Transfer-Encoding: chunked\r\n\r\n00000000000000000003\r\nabc\r\n0\r\n\r\n\
         {PLAIN}Content-Length: 2\r\nConnection: close\r\n\r\nok"
    );
    let stream = TcpStream::connect(lantern.proxy_addr).await.unwrap();
    let reply = exchange_n(stream, raw.as_bytes(), 3).await;
    assert_eq!(reply.matches("HTTP/1.1 200 OK").count(), 3, "{reply}");
    assert_eq!(upstream.hits(), 3);
    lantern.stop().await;
}
