//! What one client may hold of the server: a connection slot (at most `max_connections`),
//! time to send its headers (hyper's `header_read_timeout`, set in `main.rs`), time between
//! body bytes, and, once refused, how much of its unread body is read so it sees the answer.

use axum::body::Body;
use axum_server::accept::Accept;
use bytes::Buf;
use http_body::{Body as _, Frame, SizeHint};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_http::timeout::TimeoutBody;

/// An acceptor that gives each connection one of a fixed number of slots, before any TLS
/// handshake; a connection beyond the limit is closed at once (the client sees a reset or
/// EOF and may retry), so a flood of idle connections cannot exhaust file descriptors.
#[derive(Clone)]
pub struct ConnectionLimit<A> {
    inner: A,
    slots: Arc<Semaphore>,
}

impl<A> ConnectionLimit<A> {
    pub fn new(inner: A, max: usize) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(max)),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<I, S, A> Accept<I, S> for ConnectionLimit<A>
where
    I: 'static,
    S: 'static,
    A: Accept<I, S> + 'static,
    A::Future: Send + 'static,
    A::Stream: Send,
    A::Service: Send,
{
    type Stream = Slotted<A::Stream>;
    type Service = A::Service;
    type Future = BoxFuture<io::Result<(Self::Stream, A::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            tracing::debug!("connection limit reached: closing a new connection");
            drop(stream);
            return Box::pin(std::future::ready(Err(io::Error::other(
                "connection limit reached",
            ))));
        };
        let accepted = self.inner.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            Ok((
                Slotted {
                    stream,
                    _slot: slot,
                },
                service,
            ))
        })
    }
}

/// A connection holding its slot until it is dropped.
pub struct Slotted<T> {
    stream: T,
    _slot: OwnedSemaphorePermit,
}

impl<T: AsyncRead + Unpin> AsyncRead for Slotted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Slotted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

struct Shared {
    body: Pin<Box<TimeoutBody<Body>>>,
    polled: bool,
}

/// A request body the core reads through a handle while the server keeps another, so
/// that what the core left unread can be drained after it answered. Between frames, at
/// most the body idle timeout may pass (tower-http's `TimeoutBody`): a stalled body is an
/// error, which the core answers as a body that ended early.
#[derive(Clone)]
pub struct Retained(Arc<Mutex<Shared>>);

impl Retained {
    pub fn new(body: Body, idle: Duration) -> Self {
        Self(Arc::new(Mutex::new(Shared {
            body: Box::pin(TimeoutBody::new(idle, body)),
            polled: false,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// After an error answer: reads and discards what is left of the body, at most `limit`
    /// bytes and for at most `time`, in a task of its own so the answer goes out first. A
    /// client that sent `Expect: 100-continue` and was never told to continue has sent
    /// nothing, so its body is not asked for (reading it would send the `100`).
    pub fn drain_after_error(self, expects_continue: bool, limit: u64, time: Duration) {
        {
            let s = self.lock();
            if s.body.is_end_stream() || (expects_continue && !s.polled) {
                return;
            }
        }
        tokio::spawn(async move {
            let mut left = limit;
            let drained = tokio::time::timeout(time, async {
                while let Some(Ok(frame)) =
                    std::future::poll_fn(|cx| self.lock().body.as_mut().poll_frame(cx)).await
                {
                    if let Ok(data) = frame.into_data() {
                        match left.checked_sub(data.remaining() as u64) {
                            Some(l) => left = l,
                            None => return false,
                        }
                    }
                }
                true
            })
            .await;
            if !matches!(drained, Ok(true)) {
                tracing::debug!("unread request body over the drain limit: closing");
            }
        });
    }
}

impl http_body::Body for Retained {
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut s = self.lock();
        s.polled = true;
        s.body.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.lock().body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.lock().body.size_hint()
    }
}
