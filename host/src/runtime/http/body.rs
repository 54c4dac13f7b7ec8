//! The bodies of a request in flight: the request body cut off at its limit,
//! the response body guarded by its limit and timeout, and the [`Flight`]
//! that reports the request when it ends.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::{Error, WasiBody};

use super::{InFlight, Shared, data_len, timeout_reason};
use crate::events::EventKind;

/// A request let through, from its connection to the end of its response:
/// when dropped, it sends [`EventKind::HttpRequest`] and frees its place
/// among the invocation's requests in flight.
pub(super) struct Flight {
    shared: Arc<Shared>,
    method: String,
    origin: String,
    started: Instant,
    pub(super) status: Option<u16>,
    /// Request body bytes sent.
    pub(super) sent: Arc<AtomicU64>,
    received: u64,
    error: Option<String>,
    connection: Option<tokio::task::JoinHandle<Result<(), hyper::Error>>>,
    _in_flight: InFlight,
}

impl Flight {
    pub(super) fn new(shared: Arc<Shared>, method: String, origin: String, in_flight: InFlight) -> Self {
        Self {
            shared,
            method,
            origin,
            started: Instant::now(),
            status: None,
            sent: Arc::new(AtomicU64::new(0)),
            received: 0,
            error: None,
            connection: None,
            _in_flight: in_flight,
        }
    }

    /// The task driving its connection (stopped when the flight ends).
    pub(super) fn connection(&mut self, task: tokio::task::JoinHandle<Result<(), hyper::Error>>) {
        self.connection = Some(task);
    }

    /// Record that it failed with `error`, and return the error.
    pub(super) fn fail(&mut self, error: Error) -> Error {
        self.error.get_or_insert_with(|| error.to_string());
        error
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if let Some(task) = self.connection.take() {
            task.abort();
        }
        self.shared.events.send(EventKind::HttpRequest {
            agent: self.shared.agent.to_string(),
            method: std::mem::take(&mut self.method),
            origin: self.shared.secrets.redact_any_case(&std::mem::take(&mut self.origin)),
            status: self.status,
            sent: self.sent.load(Ordering::Acquire),
            received: self.received,
            elapsed: self.started.elapsed(),
            error: self.error.take().map(|e| self.shared.secrets.redact_any_case(&e)),
        });
    }
}

/// The request body, failing once it goes past `limit` bytes.
pub(super) struct LimitedBody {
    inner: WasiBody,
    limit: u64,
    sent: Arc<AtomicU64>,
    /// Set when it went past the limit.
    pub(super) exceeded: Arc<AtomicBool>,
}

impl LimitedBody {
    pub(super) fn new(inner: WasiBody, limit: u64, sent: Arc<AtomicU64>) -> Self {
        Self { inner, limit, sent, exceeded: Arc::new(AtomicBool::new(false)) }
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            let n = data_len(frame);
            let total = this.sent.fetch_add(n, Ordering::AcqRel) + n;
            if total > this.limit {
                this.exceeded.store(true, Ordering::Release);
                return Poll::Ready(Some(Err(Error::HttpRequestBodySize(Some(this.limit)))));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The response body: at most `limit` bytes, and no gap between bytes
/// longer than `gap`. Past either it fails (the agent gets an error, never a
/// truncated body).
pub(super) struct GuardedBody {
    incoming: hyper::body::Incoming,
    /// `None` once the body ended.
    flight: Option<Flight>,
    limit: u64,
    gap: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl GuardedBody {
    pub(super) fn new(incoming: hyper::body::Incoming, flight: Flight, limit: u64, gap: Duration) -> Self {
        let timer = Box::pin(tokio::time::sleep(gap));
        Self { incoming, flight: Some(flight), limit, gap, timer }
    }

    /// End the flight, failed with `error` (a refusal of `reason`) if given.
    fn end(&mut self, failure: Option<(Error, String)>) -> Option<Result<Frame<Bytes>, Error>> {
        let mut flight = self.flight.take()?;
        let (error, reason) = failure?;
        let error = flight.shared.refuse(&flight.origin, reason, error);
        Some(Err(flight.fail(error)))
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        let Some(flight) = this.flight.as_mut() else { return Poll::Ready(None) };
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(None) => {
                this.flight = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                let error = flight.fail(Error::Hyper(e));
                this.flight = None;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                flight.received += data_len(&frame);
                if flight.received > this.limit {
                    let limit = this.limit;
                    let reason =
                        format!("the response body went past its `max_response_body` of {limit} bytes");
                    return Poll::Ready(this.end(Some((Error::HttpResponseBodySize(Some(limit)), reason))));
                }
                let now = tokio::time::Instant::now();
                this.timer
                    .as_mut()
                    .reset(now.checked_add(this.gap).unwrap_or(now + Duration::from_secs(86_400)));
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(this.timer.as_mut().poll(cx));
                let reason = timeout_reason("the next bytes of the response", this.gap);
                Poll::Ready(this.end(Some((Error::ConnectionReadTimeout, reason))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.flight.is_none() || self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
