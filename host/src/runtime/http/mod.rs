//! Outbound HTTP for agents with an `http` grant: the host side of
//! `wasi:http/outgoing-handler`, linked only for them.
//!
//! Every request is checked here, in the host, before any connection:
//! - its scheme, host and port must be admitted by a pattern of the grant's
//!   allow-list ([`HostPattern::admits`]);
//! - the invocation's request count (`max_requests`), requests in flight
//!   (`max_concurrent`) and the request body's announced size
//!   (`max_request_body`) must be within the grant's limits;
//! - the host name is resolved once, and every address it resolves to must
//!   be public ([`is_public`]) unless a pattern that admitted the request
//!   names that address ([`HostPattern::names_address`]);
//! - the connection goes to a vetted address itself (never resolved again,
//!   so a second DNS answer cannot point it elsewhere), with TLS for `https`
//!   (the server name is the URL's host).
//!
//! While it runs: the request body is cut off past `max_request_body`, the
//! response body fails past `max_response_body`, and connecting, the first
//! response byte and every gap between body bytes each have the grant's
//! `timeout`. Redirects are never followed: the agent sees the 3xx.
//! Requests waiting for their response across a whole run are bounded by
//! [`HttpSlots`] (`resources.http_concurrent`); a request waits for a slot.
//!
//! Each refusal is a `wasi:http` error code to the agent (`HttpRequestDenied`
//! for the allow-list and addresses), an [`EventKind::HttpRefused`] event, and
//! the first one is named in the agent's error if it then fails. Each request
//! that was let through ends with an [`EventKind::HttpRequest`] event.

mod body;
mod connect;

use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::BodyExt;
use wasmtime_wasi_http::{
    Error, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use super::host::AgentState;
use super::secrets::Secrets;
use crate::events::{EventKind, EventSink};
use crate::workflow::{DEFAULT_HTTP_CONCURRENT_PER_RUN, HostPattern, HttpGrant, is_public};
use body::{Flight, GuardedBody, LimitedBody};

/// The requests in flight that every agent of a run shares
/// (`resources.http_concurrent`): a request waits for a slot, and holds it
/// from connecting to its response's head. Cheap to clone; clones share the
/// slots.
#[derive(Debug, Clone)]
pub struct HttpSlots(Arc<tokio::sync::Semaphore>);

impl HttpSlots {
    /// `n` requests in flight at once (at least 1).
    pub fn new(n: u32) -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(n.max(1) as usize)))
    }
}

impl Default for HttpSlots {
    fn default() -> Self {
        Self::new(DEFAULT_HTTP_CONCURRENT_PER_RUN)
    }
}

/// The HTTP side of one invocation's store.
pub(crate) struct HttpState {
    ctx: WasiHttpCtx,
    guard: Guard,
}

impl HttpState {
    /// For `agent` under `grant` (`None`: every request is refused).
    pub(crate) fn new(
        agent: Arc<str>,
        grant: Option<HttpGrant>,
        events: EventSink,
        slots: HttpSlots,
        secrets: Secrets,
    ) -> Self {
        Self {
            ctx: WasiHttpCtx::new(),
            guard: Guard {
                shared: Arc::new(Shared { agent, events, refused: Mutex::new(None), secrets }),
                grant: grant.map(Arc::new),
                slots,
                requests: 0,
                in_flight: Arc::new(AtomicU32::new(0)),
            },
        }
    }

    /// The first request it refused or cut off, and why.
    pub(crate) fn refused(&self) -> Option<String> {
        self.guard.shared.refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl WasiHttpView for AgentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let http = self.http.get_or_insert_with(|| {
            // Only a component loaded with an `http` grant reaches here; an
            // invocation without one refuses every request all the same.
            Box::new(HttpState::new(
                self.agent.clone(),
                None,
                self.events.clone(),
                HttpSlots::default(),
                Secrets::default(),
            ))
        });
        WasiHttpCtxView { ctx: &mut http.ctx, hooks: &mut http.guard, table: &mut self.table }
    }
}

/// What the checks and the requests in flight share.
struct Shared {
    agent: Arc<str>,
    events: EventSink,
    /// The first refusal, `origin: reason`.
    refused: Mutex<Option<String>>,
    /// Kept out of events and logs: a guest may put a secret in a host name.
    secrets: Secrets,
}

impl Shared {
    /// Report a refusal: the event, the first one recorded, and the error
    /// the agent gets.
    fn refuse(&self, origin: &str, reason: String, code: Error) -> Error {
        let (origin, reason) = match self.secrets.is_empty() {
            true => (origin.to_owned(), reason),
            false => (self.secrets.redact_any_case(origin), self.secrets.redact_any_case(&reason)),
        };
        let origin = origin.as_str();
        tracing::debug!(agent = %self.agent, %origin, "HTTP refused: {reason}");
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert_with(|| format!("{origin}: {reason}"));
        self.events.send(EventKind::HttpRefused {
            agent: self.agent.to_string(),
            origin: origin.to_owned(),
            reason,
        });
        code
    }
}

/// The hooks `wasi:http` calls: every outgoing request passes here.
struct Guard {
    shared: Arc<Shared>,
    grant: Option<Arc<HttpGrant>>,
    slots: HttpSlots,
    /// Requests let through so far.
    requests: u32,
    in_flight: Arc<AtomicU32>,
}

/// The future `send_request` returns.
type Sent = Box<
    dyn Future<
            Output = Result<
                (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>),
                Error,
            >,
        > + Send,
>;

/// A request's target, from its URL.
#[derive(Debug, Clone)]
struct Target {
    https: bool,
    /// The URL's host; an IPv6 address without brackets.
    host: String,
    port: u16,
    /// `scheme://host:port`, never a path or query.
    origin: String,
}

impl Target {
    fn of(uri: &http::Uri) -> Option<Self> {
        let https = match uri.scheme_str()? {
            s if s.eq_ignore_ascii_case("https") => true,
            s if s.eq_ignore_ascii_case("http") => false,
            _ => return None,
        };
        let host = uri.host()?;
        let host =
            host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let scheme = if https { "https" } else { "http" };
        let origin = if host.contains(':') {
            format!("{scheme}://[{host}]:{port}")
        } else {
            format!("{scheme}://{host}:{port}")
        };
        Some(Self { https, host, port, origin })
    }
}

/// Counts a request in flight until dropped.
struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Guard {
    fn refused_now(&self, origin: &str, reason: String, code: Error) -> Sent {
        let error = self.shared.refuse(origin, reason, code);
        Box::new(std::future::ready(Err(error)))
    }
}

impl WasiHttpHooks for Guard {
    fn default_scheme(&mut self) -> Option<Scheme> {
        // A request must say whether it wants TLS.
        None
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Sent {
        drop(fut);
        let Some(target) = Target::of(request.uri()) else {
            let origin = request.uri().authority().map(ToString::to_string).unwrap_or_default();
            return self.refused_now(
                &origin,
                "the URL has no http or https scheme and host".into(),
                Error::HttpRequestUriInvalid,
            );
        };
        let agent = &self.shared.agent;
        let Some(grant) = self.grant.clone() else {
            return self.refused_now(
                &target.origin,
                format!("agent `{agent}` has no `http` grant"),
                Error::HttpRequestDenied,
            );
        };
        let scheme = if target.https { "https" } else { "http" };
        let admitting: Vec<HostPattern> =
            grant.allow.iter().filter(|p| p.admits(scheme, &target.host, target.port)).cloned().collect();
        if admitting.is_empty() {
            let allowed = grant.allow.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ");
            return self.refused_now(
                &target.origin,
                format!("`{}` is not on the allow-list of agent `{agent}` ({allowed})", target.origin),
                Error::HttpRequestDenied,
            );
        }
        let limits = grant.limits;
        if self.requests >= limits.max_requests {
            return self.refused_now(
                &target.origin,
                format!(
                    "agent `{agent}` already made {} requests, its `max_requests` in one invocation",
                    self.requests
                ),
                Error::HttpRequestDenied,
            );
        }
        if self.in_flight.load(Ordering::Acquire) >= limits.max_concurrent {
            return self.refused_now(
                &target.origin,
                format!(
                    "agent `{agent}` already has {} requests in flight, its `max_concurrent`",
                    limits.max_concurrent
                ),
                Error::ConnectionLimitReached,
            );
        }
        let announced = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(length) = announced.filter(|&n| n > limits.max_request_body) {
            return self.refused_now(
                &target.origin,
                format!(
                    "its request body is {length} bytes, more than its `max_request_body` of {}",
                    limits.max_request_body
                ),
                Error::HttpRequestBodySize(Some(limits.max_request_body)),
            );
        }
        self.requests += 1;
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let in_flight = InFlight(self.in_flight.clone());
        // The guest may ask for shorter timeouts, never longer ones.
        let shorter = |asked: Option<Duration>| asked.map_or(limits.timeout, |a| a.min(limits.timeout));
        let timeouts = Timeouts {
            connect: shorter(options.and_then(|o| o.connect_timeout)),
            first_byte: shorter(options.and_then(|o| o.first_byte_timeout)),
            between_bytes: shorter(options.and_then(|o| o.between_bytes_timeout)),
        };
        let job = Job {
            shared: self.shared.clone(),
            target,
            admitting,
            limits: grant.limits,
            timeouts,
            slots: self.slots.clone(),
            in_flight,
        };
        Box::new(job.send(request))
    }
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    connect: Duration,
    first_byte: Duration,
    between_bytes: Duration,
}

/// One admitted request, on its way.
struct Job {
    shared: Arc<Shared>,
    target: Target,
    admitting: Vec<HostPattern>,
    limits: crate::workflow::HttpLimits,
    timeouts: Timeouts,
    slots: HttpSlots,
    in_flight: InFlight,
}

impl Job {
    async fn send(
        self,
        request: http::Request<WasiBody>,
    ) -> Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>), Error> {
        let Self { shared, target, admitting, limits, timeouts, slots, in_flight } = self;
        let origin = target.origin.clone();
        // Wait for one of the run's slots, held until the response's head
        // (what follows waits on the agent reading the body: holding a slot
        // then could deadlock agents reading their responses in order).
        let _slot = slots.0.acquire_owned().await.map_err(|_| Error::InternalError(Some("closed".into())))?;

        let addresses = connect::resolve(&target.host, target.port, timeouts.connect).await?;
        if let Some(address) = addresses
            .iter()
            .map(|a| a.ip())
            .find(|&ip| !is_public(ip) && !admitting.iter().any(|p| p.names_address(ip)))
        {
            return Err(shared.refuse(
                &origin,
                private_reason(&target.host, address, &admitting),
                Error::HttpRequestDenied,
            ));
        }

        let method = request.method().to_string();
        let mut flight = Flight::new(shared.clone(), method, origin.clone(), in_flight);
        let started = Instant::now();
        let stream = match connect::connect(&addresses, &target, timeouts.connect).await {
            Ok(stream) => stream,
            Err(e) => {
                if matches!(e, Error::ConnectionTimeout) {
                    shared.refuse(
                        &origin,
                        timeout_reason("connecting", timeouts.connect),
                        Error::ConnectionTimeout,
                    );
                }
                return Err(flight.fail(e));
            }
        };
        let (mut sender, conn) = match tokio::time::timeout(
            timeouts.connect,
            hyper::client::conn::http1::Builder::new().handshake::<_, LimitedBody>(connect::Io::new(stream)),
        )
        .await
        {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(flight.fail(Error::Hyper(e))),
            Err(_) => return Err(flight.fail(Error::ConnectionTimeout)),
        };
        flight.connection(tokio::spawn(conn));

        // The request line carries the path and query; the host is in `Host`.
        let (mut parts, body) = request.into_parts();
        parts.uri = http::Uri::builder()
            .path_and_query(parts.uri.path_and_query().map_or("/", |p| p.as_str()))
            .build()
            .map_err(|_| flight.fail(Error::HttpRequestUriInvalid))?;
        let limited = LimitedBody::new(body, limits.max_request_body, flight.sent.clone());
        let exceeded = limited.exceeded.clone();
        let request = http::Request::from_parts(parts, limited);

        let response = match tokio::time::timeout(timeouts.first_byte, sender.send_request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                if exceeded.load(Ordering::Acquire) {
                    let limit = limits.max_request_body;
                    let reason =
                        format!("its request body went past its `max_request_body` of {limit} bytes");
                    return Err(flight.fail(shared.refuse(
                        &origin,
                        reason,
                        Error::HttpRequestBodySize(Some(limit)),
                    )));
                }
                return Err(flight.fail(Error::Hyper(e)));
            }
            Err(_) => {
                let reason = timeout_reason("the response", timeouts.first_byte);
                return Err(flight.fail(shared.refuse(&origin, reason, Error::ConnectionReadTimeout)));
            }
        };
        flight.status = Some(response.status().as_u16());
        tracing::trace!(after = ?started.elapsed(), %origin, "HTTP response head");
        let announced = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(length) = announced.filter(|&n| n > limits.max_response_body) {
            let reason = format!(
                "the response body is {length} bytes, more than its `max_response_body` of {}",
                limits.max_response_body
            );
            let error =
                shared.refuse(&origin, reason, Error::HttpResponseBodySize(Some(limits.max_response_body)));
            return Err(flight.fail(error));
        }
        let response = response.map(|incoming| {
            GuardedBody::new(incoming, flight, limits.max_response_body, timeouts.between_bytes)
                .boxed_unsync()
        });
        Ok((response, Box::new(std::future::ready(Ok(()))) as Box<dyn Future<Output = _> + Send>))
    }
}

fn timeout_reason(what: &str, after: Duration) -> String {
    format!("no answer to {what} within {}, its `timeout`", humantime::format_duration(after))
}

fn private_reason(host: &str, address: IpAddr, admitting: &[HostPattern]) -> String {
    let patterns = admitting.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ");
    format!(
        "`{host}` resolves to {address}, a loopback, private or local address that the pattern admitting it ({patterns}) does not name"
    )
}

/// Data of a body, as bytes.
fn data_len(frame: &http_body::Frame<Bytes>) -> u64 {
    frame.data_ref().map_or(0, |d| d.len() as u64)
}

/// An agent's failure `message`, naming the first HTTP request the host
/// refused (if any and if the message does not already).
pub(crate) fn name_refusal(message: String, refused: Option<String>) -> String {
    match refused {
        Some(refused) if !message.contains(&refused) => {
            format!("{message} (the host refused an HTTP request: {refused})")
        }
        _ => message,
    }
}
