//! Byte splicing for blind tunnels and relayed upgrades, with an idle
//! timeout. lantern never looks at these bytes.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

/// Once shutdown begins, a tunnel silent for this long is closed rather than
/// holding the drain for the whole grace period.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// Copies both ways until either side closes, the tunnel is idle for
/// `idle`, or shutdown finds it idle. Returns bytes (client→server, server→client).
pub async fn splice<A, B>(a: A, b: B, idle: Duration, shutdown: CancellationToken) -> (u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let clock = Arc::new(Clock::new());
    let mut a = Tracked {
        inner: a,
        clock: clock.clone(),
    };
    let mut b = Tracked {
        inner: b,
        clock: clock.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    let mut limit = idle;
    loop {
        let wait = limit
            .saturating_sub(clock.idle())
            .max(Duration::from_millis(10));
        tokio::select! {
            result = &mut copy => return result.unwrap_or((0, 0)),
            _ = tokio::time::sleep(wait) => {
                if clock.idle() >= limit {
                    return (0, 0);
                }
            }
            _ = shutdown.cancelled(), if limit > DRAIN_IDLE => limit = DRAIN_IDLE,
        }
    }
}

/// Time of the last byte moved, shared by both directions.
struct Clock {
    start: Instant,
    last_ms: AtomicU64,
}

impl Clock {
    fn new() -> Self {
        Clock {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A stream that records activity on the shared clock.
struct Tracked<S> {
    inner: S,
    clock: Arc<Clock>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.clock.touch();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.touch();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_until_close() {
        let (mut client, a) = tokio::io::duplex(64);
        let (b, mut server) = tokio::io::duplex(64);
        let task = tokio::spawn(splice(
            a,
            b,
            Duration::from_secs(60),
            CancellationToken::new(),
        ));
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        server.write_all(b"pong").await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        drop(client);
        drop(server);
        assert_eq!(task.await.unwrap(), (4, 4));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_tunnel_is_closed() {
        let (_client, a) = tokio::io::duplex(64);
        let (b, _server) = tokio::io::duplex(64);
        let result = splice(a, b, Duration::from_secs(5), CancellationToken::new()).await;
        assert_eq!(result, (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_closes_idle_tunnel_quickly() {
        let (_client, a) = tokio::io::duplex(64);
        let (b, _server) = tokio::io::duplex(64);
        let token = CancellationToken::new();
        token.cancel();
        let started = tokio::time::Instant::now();
        splice(a, b, Duration::from_secs(600), token).await;
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
