//! Request bodies a handler did not read to their end are read (and dropped), within
//! bounds, after it: the answer then reaches a client that is still sending.
//!
//! A route that answers without reading the whole body — above all the `413
//! payload_too_large` of a body over `CONFLUX_MAX_BODY_BYTES`, which stops reading at
//! the limit, but also a `401` or `429` that refuses the request before its body — leaves
//! the client still sending. hyper drains only what has already arrived, then closes the
//! connection as soon as the answer is written; closing a socket that still has unread
//! bytes makes the kernel reset the connection. A client that is still writing its body
//! then sees a broken pipe or a reset instead of the answer (an HTTP client such as
//! hyper's gives up on the request), and one that reuses its keep-alive connection finds
//! it closed under its next request.
//!
//! [`drain_unread`] wraps every request body: when the body is dropped before its end,
//! a task keeps reading it — at most [`DRAIN_BYTES`], for at most [`DRAIN_FOR`] — while
//! hyper writes the answer. A body that ends within those bounds leaves the connection
//! open for the next request; past them hyper closes it as before, by which time the
//! client has had its answer for seconds. A request that sent `Expect: 100-continue` is
//! left alone: its client waits to be asked for the body, and is never asked.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::EXPECT;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;

/// The most bytes of an unread body read after its handler is done with it.
pub const DRAIN_BYTES: u64 = 64 * 1024 * 1024;
/// The longest an unread body is read after its handler is done with it.
pub const DRAIN_FOR: Duration = Duration::from_secs(5);

/// The middleware: every request's body is a [`Drained`] one (see the module docs).
pub async fn drain_unread(req: Request, next: Next) -> Response {
    let expects_continue = req
        .headers()
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        return next.run(req).await;
    }
    next.run(req.map(|body| Body::new(Drained::new(body))))
        .await
}

/// A request body that, dropped before its end, is read to its end (within bounds) by
/// a task of its own.
struct Drained {
    inner: Option<Body>,
    /// The body ended, or failed: nothing is left to read.
    finished: bool,
}

impl Drained {
    fn new(inner: Body) -> Self {
        Self {
            inner: Some(inner),
            finished: false,
        }
    }
}

impl http_body::Body for Drained {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.finished = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if self.finished || body.is_end_stream() {
            return;
        }
        // Dropped outside a runtime (never while serving): hyper closes as it would.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body));
        }
    }
}

/// Reads `body` to its end, at most [`DRAIN_BYTES`] and for at most [`DRAIN_FOR`].
async fn drain(mut body: Body) {
    let mut read: u64 = 0;
    let reading = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                read = read.saturating_add(data.len() as u64);
                if read > DRAIN_BYTES {
                    return false;
                }
            }
        }
        true
    };
    let ended = tokio::time::timeout(DRAIN_FOR, reading)
        .await
        .unwrap_or(false);
    tracing::debug!(
        bytes = read,
        ended,
        "read the rest of a request body its handler left unread"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use axum::Router;
    use tower::ServiceExt;

    /// A body dropped unread is read on by a task: its sender can go on sending after
    /// the answer.
    #[tokio::test]
    async fn an_unread_body_is_read_to_its_end() {
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, axum::Error>::new(1);
        let app = Router::new()
            .route("/", post(|| async { "answered without reading" }))
            .layer(axum::middleware::from_fn(drain_unread));
        let request = Request::post("/").body(Body::new(body)).expect("request");
        let answer = app.oneshot(request).await.expect("answer");
        assert_eq!(answer.status(), 200);
        for _ in 0..10 {
            let chunk = Bytes::from_static(b"more");
            tokio::time::timeout(Duration::from_secs(5), tx.send_data(chunk))
                .await
                .expect("the rest of the body is read")
                .expect("the body is still open");
        }
    }

    /// Without the layer, the same body is dropped: the sender is refused at once.
    #[tokio::test]
    async fn without_it_the_body_is_dropped() {
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, axum::Error>::new(1);
        let app = Router::new().route("/", post(|| async { "answered without reading" }));
        let request = Request::post("/").body(Body::new(body)).expect("request");
        app.oneshot(request).await.expect("answer");
        let chunk = Bytes::from_static(b"more");
        assert!(tx.send_data(chunk).await.is_err());
    }
}
