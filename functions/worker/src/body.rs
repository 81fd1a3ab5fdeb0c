//! The request body as the core reads it, with a second handle kept by the entry point.
//!
//! workerd resets the connection of a request whose body was left unread when the Worker
//! answered, so a client that sends its whole body before reading (one that ignores
//! `Expect: 100-continue`) would get a reset instead of the error (a 416 for an out-of-order
//! chunk, a 413 over the size limit). After an error answer the entry point reads what is
//! left, up to [`DRAIN_LIMIT`] bytes, before returning the response.

use bytes::{Buf, Bytes};
use http_body::{Body as _, Frame, SizeHint};
use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// At most this much of a refused request's body is read; beyond it the client gets the
/// reset it would have got anyway.
pub const DRAIN_LIMIT: u64 = 64 << 20;

/// A shared handle on workerd's request body (one isolate thread: `Rc<RefCell>`; never
/// borrowed across an `.await`).
#[derive(Clone)]
pub struct Retained(Rc<RefCell<worker::Body>>);

impl Retained {
    /// Wraps a request body.
    pub fn new(body: worker::Body) -> Self {
        Self(Rc::new(RefCell::new(body)))
    }

    /// Reads and discards the rest of the body, at most [`DRAIN_LIMIT`] bytes.
    pub async fn drain(&self) {
        let mut left = DRAIN_LIMIT;
        loop {
            let frame =
                std::future::poll_fn(|cx| Pin::new(&mut *self.0.borrow_mut()).poll_frame(cx)).await;
            let Some(Ok(frame)) = frame else { return };
            if let Ok(data) = frame.into_data() {
                match left.checked_sub(data.remaining() as u64) {
                    Some(l) => left = l,
                    None => return,
                }
            }
        }
    }

    /// Whether the body was read to its end (or had none).
    pub fn is_done(&self) -> bool {
        self.0.borrow().is_end_stream()
    }
}

impl http_body::Body for Retained {
    type Data = Bytes;
    type Error = worker::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, worker::Error>>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.borrow().is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.borrow().size_hint()
    }
}
