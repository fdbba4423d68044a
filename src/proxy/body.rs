//! Body plumbing: one boxed body type for everything lantern sends, bounded
//! buffering for inspection, and short plain-text error responses.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, Response, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Errors from any body lantern relays.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request and response lantern produces.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Boxes any body with a convertible error.
pub fn boxed<B>(body: B) -> Body
where
    B: HttpBody<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// The client's request body failed to arrive: malformed chunking, or the
/// client went away. Marked so that the upstream exchange it breaks is
/// reported as the client's fault (400), not the upstream's (502).
#[derive(Debug, thiserror::Error)]
#[error("the request body could not be read")]
pub struct ClientBodyError(#[source] pub hyper::Error);

/// Boxes a body arriving from the client, marking its errors.
pub fn from_client<B>(body: B) -> Body
where
    B: HttpBody<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    body.map_err(|e| Box::new(ClientBodyError(e)) as BoxError)
        .boxed()
}

/// A short plain-text response from lantern itself.
pub fn text_response(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut text = message.into();
    text.push('\n');
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Room for request bodies buffered for inspection, shared by every
/// connection (`inspect.max_buffered_bytes`), counted in KiB.
pub struct Budget {
    permits: Arc<Semaphore>,
    total: u32,
}

impl Budget {
    pub fn new(bytes: u64) -> Budget {
        let total = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .max(1);
        Budget {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Reserves room for `bytes`, waiting at most `wait` for others to
    /// finish; `None` when the wait ran out.
    pub async fn reserve(&self, bytes: u64, wait: Duration) -> Option<OwnedSemaphorePermit> {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total);
        tokio::time::timeout(wait, self.permits.clone().acquire_many_owned(kib))
            .await
            .ok()?
            .ok()
    }
}

/// The result of reading a body up to a cap.
pub enum Buffered<B> {
    /// The whole body, within the cap.
    Complete(Bytes),
    /// The cap was reached: what was read so far, and the unread rest.
    Oversize(Bytes, B),
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E> {
    #[error(transparent)]
    Body(E),
    #[error("no body bytes arrived for {0:?}")]
    Stalled(Duration),
}

/// Reads `body` until it ends or more than `cap` bytes have arrived, giving
/// up when no frame comes for `gap`. Memory is bounded by `cap` plus one frame.
pub async fn read_bounded<B>(
    mut body: B,
    cap: u64,
    gap: Duration,
) -> Result<Buffered<B>, ReadError<B::Error>>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    // A declared length sizes the buffer once instead of doubling it.
    let expected = body.size_hint().exact().unwrap_or(0).min(cap);
    let mut buf = BytesMut::with_capacity(expected as usize);
    loop {
        let frame = match tokio::time::timeout(gap, body.frame()).await {
            Ok(Some(frame)) => frame.map_err(ReadError::Body)?,
            Ok(None) => break,
            Err(_) => return Err(ReadError::Stalled(gap)),
        };
        // Trailers on an inspected request are dropped: no AI API uses them.
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() as u64 > cap {
                return Ok(Buffered::Oversize(buf.freeze(), body));
            }
        }
    }
    Ok(Buffered::Complete(buf.freeze()))
}

/// A body that yields a buffered prefix, then the rest of another body:
/// how an over-cap request is forwarded uninspected without re-buffering.
pub struct Prefixed<B> {
    prefix: Option<Bytes>,
    rest: B,
}

impl<B> Prefixed<B> {
    pub fn new(prefix: Bytes, rest: B) -> Self {
        Prefixed {
            prefix: Some(prefix).filter(|p| !p.is_empty()),
            rest,
        }
    }
}

impl<B> HttpBody for Prefixed<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let mut hint = SizeHint::new();
        // Upper before lower: each setter asserts lower <= upper.
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(extra));
        }
        hint.set_lower(rest.lower().saturating_add(extra));
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn chunked(chunks: &[&'static [u8]]) -> impl HttpBody<Data = Bytes, Error = BoxError> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn under_cap_is_complete() {
        match read_bounded(chunked(&[b"ab", b"cd"]), 4, Duration::from_secs(5))
            .await
            .unwrap()
        {
            Buffered::Complete(b) => assert_eq!(&b[..], b"abcd"),
            Buffered::Oversize(..) => panic!("within cap"),
        }
    }

    #[tokio::test]
    async fn over_cap_keeps_prefix_and_rest_streams_in_order() {
        let Buffered::Oversize(prefix, rest) = read_bounded(
            chunked(&[b"ab", b"cd", b"ef", b"gh"]),
            3,
            Duration::from_secs(5),
        )
        .await
        .unwrap() else {
            panic!("over cap")
        };
        assert_eq!(&prefix[..], b"abcd");
        let all = Prefixed::new(prefix, rest)
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&all[..], b"abcdefgh");
    }
}
