//! The proxy's own safety bounds: connection cap, header size, slow clients.

mod common;

use std::time::Duration;

use common::{Lantern, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until EOF (bounded), returning what arrived.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "connection was not closed");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn connections_over_the_cap_get_503() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with(&upstream, |c| c.proxy.max_connections = 1).await;
    // The first connection holds the only slot: prove it is being served.
    let mut first = TcpStream::connect(lantern.proxy_addr).await.unwrap();
    first
        .write_all(b"GET http://example.test/echo HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    first.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    let mut second = TcpStream::connect(lantern.proxy_addr).await.unwrap();
    second
        .write_all(b"GET http://example.test/echo HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .await
        .unwrap();
    let reply = read_to_close(&mut second).await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    let (_, scrape) = lantern.admin_get("/metrics").await;
    assert_eq!(
        common::metric(
            &scrape,
            "lantern_connections_refused_total{reason=\"capacity\"}"
        ),
        1.0
    );
    drop(first);
    lantern.stop().await;
}

#[tokio::test]
async fn oversized_request_head_gets_431_and_is_not_forwarded() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with(&upstream, |c| c.proxy.max_header_bytes = 16 * 1024).await;
    let mut stream = TcpStream::connect(lantern.proxy_addr).await.unwrap();
    let big = "a".repeat(64 * 1024);
    let request = format!(
        "GET http://example.test/echo HTTP/1.1\r\nHost: example.test\r\nX-Big: {big}\r\n\r\n"
    );
    // The proxy may close before reading everything; a write error is fine.
    let _ = stream.write_all(request.as_bytes()).await;
    let reply = read_to_close(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    assert_eq!(upstream.hits(), 0);
    lantern.stop().await;
}

#[tokio::test]
async fn slow_client_is_dropped_after_the_header_read_timeout() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with(&upstream, |c| {
        c.proxy.header_read_timeout = Duration::from_millis(300)
    })
    .await;
    let mut stream = TcpStream::connect(lantern.proxy_addr).await.unwrap();
    stream
        .write_all(b"GET http://example.test/echo HTTP/1.1\r\nHost: exa")
        .await
        .unwrap();
    // Never finish the head: lantern must close the connection by itself.
    let reply = read_to_close(&mut stream).await;
    assert!(!reply.contains("200"), "{reply}");
    assert_eq!(upstream.hits(), 0);
    lantern.stop().await;
}

#[tokio::test]
async fn garbage_instead_of_http_gets_400() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    let mut stream = TcpStream::connect(lantern.proxy_addr).await.unwrap();
    stream
        .write_all(b"\x16\x03\x01\x00\xa5garbage\r\n\r\n")
        .await
        .unwrap();
    let reply = read_to_close(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let mut stream = TcpStream::connect(lantern.proxy_addr).await.unwrap();
    stream
        .write_all(b"GET /origin-form HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let reply = read_to_close(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("forward proxy"), "{reply}");
    assert_eq!(upstream.hits(), 0);
    lantern.stop().await;
}

#[tokio::test]
async fn requests_addressed_to_lantern_itself_are_refused_as_loops() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    let port = lantern.proxy_addr.port();
    for host in ["127.0.0.1", "localhost", "127.0.0.2"] {
        let mut stream = TcpStream::connect(lantern.proxy_addr).await.unwrap();
        let request = format!("GET http://{host}:{port}/ HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let reply = read_to_close(&mut stream).await;
        assert!(reply.starts_with("HTTP/1.1 508"), "{host}: {reply}");
    }
    lantern.stop().await;
}

#[tokio::test]
async fn idle_connections_are_capped_counted_and_reaped() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with(&upstream, |c| {
        c.proxy.max_connections = 20;
        c.proxy.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    // Twenty clients: ten never send a byte, ten go idle after one request.
    let mut idle = Vec::new();
    for i in 0..20 {
        let mut stream = TcpStream::connect(lantern.proxy_addr).await.unwrap();
        if i % 2 == 1 {
            stream
                .write_all(b"GET http://example.test/echo HTTP/1.1\r\nHost: example.test\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 12];
            stream.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"HTTP/1.1 200");
        }
        idle.push(stream);
    }
    let mut extra = TcpStream::connect(lantern.proxy_addr).await.unwrap();
    extra
        .write_all(b"GET http://example.test/echo HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .await
        .unwrap();
    assert!(read_to_close(&mut extra).await.starts_with("HTTP/1.1 503"));
    let (_, scrape) = lantern.admin_get("/metrics").await;
    assert_eq!(common::metric(&scrape, "lantern_active_connections"), 20.0);
    // Every idle connection is closed by lantern after the header timeout...
    for stream in &mut idle {
        read_to_close(stream).await;
    }
    // ...and its slot is free again.
    let client = lantern.client(&upstream.ca.cert_pem, common::HttpVersion::H1);
    let resp = common::post(&client, "http://example.test/echo", "back").await;
    assert_eq!(resp.text().await.unwrap(), "back");
    let (_, scrape) = lantern.admin_get("/metrics").await;
    assert_eq!(
        common::metric(
            &scrape,
            "lantern_connections_refused_total{reason=\"capacity\"}"
        ),
        1.0
    );
    lantern.stop().await;
}

/// Inspection buffer room for exactly one 1 MiB body.
fn room_for_one_body(c: &mut lantern::config::Config) {
    c.inspect.max_body_bytes = 1 << 20;
    c.inspect.max_buffered_bytes = 1 << 20;
}

/// Starts a chat POST to an inspected app: its head, ending with `rest`
/// (framing headers, blank line, any body bytes), and nothing more.
async fn start_upload(lantern: &Lantern, rest: &str) -> TcpStream {
    let mut stream = TcpStream::connect(lantern.proxy_addr).await.unwrap();
    let head =
        "POST http://api.openai.com/v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n";
    stream
        .write_all(format!("{head}{rest}").as_bytes())
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn a_body_that_stops_arriving_frees_its_buffer_room() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with(&upstream, |c| {
        room_for_one_body(c);
        c.proxy.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    let mut hog = start_upload(&lantern, "Content-Length: 1048576\r\n\r\n").await;
    let reply = read_to_close(&mut hog).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    let client = lantern.client(&upstream.ca.cert_pem, common::HttpVersion::H1);
    let resp = common::post(&client, "http://api.openai.com/echo", "room again").await;
    assert_eq!(resp.text().await.unwrap(), "room again");
    lantern.stop().await;
}

#[tokio::test]
async fn requests_without_a_body_never_wait_for_buffer_room() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with(&upstream, room_for_one_body).await;
    // A chunked upload that never ends holds all the room (for the 30 s
    // header timeout, longer than the 10 s a waiting request would get).
    let hog = start_upload(&lantern, "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n").await;
    let client = lantern.client(&upstream.ca.cert_pem, common::HttpVersion::H1);
    let resp = client
        .get("http://api.openai.com/echo")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(hog);
    lantern.stop().await;
}
