//! The response body the core produces: nothing, a buffer, or a blob stream.

use crate::error::{ErrorCode, RegistryError, Result, StoreError};
use bytes::Buf;
use bytes::Bytes;
use futures_core::Stream;
use http_body::{Frame, SizeHint};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

/// A response body: empty, in memory, or streamed from a blob store.
pub enum Body<R> {
    /// No body.
    Empty,
    /// A whole body in memory (JSON documents, manifests).
    Full(Option<Bytes>),
    /// A blob read from storage.
    Stream(R),
}

impl<R> Body<R> {
    /// A body from bytes.
    pub fn full(b: impl Into<Bytes>) -> Self {
        Body::Full(Some(b.into()))
    }
}

impl<R> http_body::Body for Body<R>
where
    R: Stream<Item = Result<Bytes, StoreError>> + Unpin,
{
    type Data = Bytes;
    type Error = StoreError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StoreError>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(s) => Pin::new(s)
                .poll_next(cx)
                .map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

/// Reads a whole (small) request body, failing with `SIZE_INVALID` beyond `limit` bytes.
pub(crate) async fn read_limited<In>(body: In, limit: usize) -> Result<Bytes>
where
    In: http_body::Body,
    In::Error: std::fmt::Display,
{
    let mut body = pin!(body);
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|e| {
            RegistryError::new(
                ErrorCode::ManifestInvalid,
                format!("request body ended early: {e}"),
            )
        })?;
        if let Ok(mut data) = frame.into_data() {
            if out.len().saturating_add(data.remaining()) > limit {
                return Err(RegistryError::new(ErrorCode::SizeInvalid, "body too large"));
            }
            while data.has_remaining() {
                let c = data.chunk();
                out.extend_from_slice(c);
                let n = c.len();
                data.advance(n);
            }
        }
    }
    Ok(out.freeze())
}
