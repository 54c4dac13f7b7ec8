//! Outbound HTTP, for an agent whose workflow grants it (`grants: { http:
//! { allow: [...] } }`). Behind the crate's `http` feature: an agent without
//! it imports nothing but the `ensemble:agent` interfaces.
//!
//! The requests go through WASI 0.2's `wasi:http/outgoing-handler`; the host
//! checks each one against the agent's allow-list and limits before it
//! connects. A refused request is an [`Error`] like any failed one (the
//! host names the refusal in its events and in the agent's error if the
//! agent then fails). Redirects are not followed: a 3xx is returned as it is.
//!
//! ```no_run
//! use ensemble_agent_sdk::{AgentError, context, http};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Weather {
//!     temperature: f64,
//! }
//!
//! #[derive(Serialize)]
//! struct Query<'a> {
//!     city: &'a str,
//! }
//!
//! fn fetch() -> Result<(), AgentError> {
//!     let response = http::get("https://api.example.com/weather?city=Paris")?;
//!     if response.status != 200 {
//!         return Err(AgentError::Failed(format!("the weather service said {}", response.status)));
//!     }
//!     let weather: Weather = response.json()?;
//!     context::put("weather.temperature", &weather.temperature)?;
//!
//!     let answer = http::post_json("https://api.example.com/search", &Query { city: "Paris" })?;
//!     context::put("weather.search", &answer.text()?)?;
//!     Ok(())
//! }
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::AgentError;

/// The raw `wasi:http` bindings generated from `wit-http/` (WASI 0.2).
#[allow(
    unsafe_code,
    unused_qualifications,
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "ensemble:agent-http/fetch",
        path: "wit-http",
        generate_all,
    });
}

use bindings::wasi::http::outgoing_handler;
use bindings::wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use bindings::wasi::io::streams::StreamError;

/// Bytes written to the request body per call (WASI's limit for one blocking write).
const WRITE_CHUNK: usize = 4096;
/// Bytes asked for per read of the response body.
const READ_CHUNK: u64 = 64 << 10;

/// An HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// `http://` or `https://`, a host, an optional port, path and query.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl Request {
    /// A `GET` of `url`.
    pub fn get(url: &str) -> Self {
        Self { method: "GET".into(), url: url.into(), headers: Vec::new(), body: None }
    }

    /// A `POST` of `body` (a `content-type` of `content_type`) to `url`.
    pub fn post(url: &str, content_type: &str, body: Vec<u8>) -> Self {
        Self {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("content-type".into(), content_type.into())],
            body: Some(body),
        }
    }

    /// The same request with header `name: value` added.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// An HTTP response, its body read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body, JSON-decoded.
    ///
    /// # Errors
    ///
    /// An [`Error`] saying why the body does not decode as a `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error(format!("the response body is not the JSON expected: {e}")))
    }

    /// The body as UTF-8 text.
    ///
    /// # Errors
    ///
    /// An [`Error`] when it is not UTF-8.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body).map_err(|e| Error(format!("the response body is not UTF-8: {e}")))
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why a request failed: refused by the host, unreachable, timed out, too
/// large, or not HTTP. It converts to [`AgentError::Failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<Error> for AgentError {
    fn from(e: Error) -> Self {
        AgentError::Failed(e.0)
    }
}

/// `GET` `url` and read the whole response.
///
/// # Errors
///
/// An [`Error`] when the request is refused or fails, or the response
/// cannot be read whole (a non-2xx status is not an error).
pub fn get(url: &str) -> Result<Response, Error> {
    send(&Request::get(url))
}

/// `POST` `value` as JSON to `url` and read the whole response.
///
/// # Errors
///
/// As for [`get`], and when `value` does not serialize.
pub fn post_json<T: Serialize + ?Sized>(url: &str, value: &T) -> Result<Response, Error> {
    let body = serde_json::to_vec(value).map_err(|e| Error(format!("cannot encode the JSON body: {e}")))?;
    send(&Request::post(url, "application/json", body).header("accept", "application/json"))
}

/// Send `request` and read the whole response.
///
/// # Errors
///
/// As for [`get`].
pub fn send(request: &Request) -> Result<Response, Error> {
    let pending = start(request)?;
    pending.finish(true)
}

/// Send all `requests` at once (the host bounds how many are in flight) and
/// read their responses, in order. With `read_body` false only the status
/// and headers are read (the body is dropped unread).
pub fn send_all(requests: &[Request], read_body: bool) -> Vec<Result<Response, Error>> {
    let started: Vec<Result<Pending, Error>> = requests.iter().map(start).collect();
    started.into_iter().map(|p| p.and_then(|p| p.finish(read_body))).collect()
}

/// A request sent, its response awaited.
struct Pending {
    what: String,
    future: FutureIncomingResponse,
    /// Writing the body failed (the request was probably refused).
    write_error: Option<String>,
}

/// The parts of an absolute `http` or `https` URL.
fn split_url(url: &str) -> Result<(Scheme, &str, &str), Error> {
    let bad = || Error(format!("`{url}` is not an absolute http or https URL"));
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(bad()),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let path = path.split('#').next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    Ok((scheme, authority, if path.is_empty() { "/" } else { path }))
}

fn method(name: &str) -> Method {
    match name.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_owned()),
    }
}

fn start(request: &Request) -> Result<Pending, Error> {
    let what = format!("{} {}", request.method.to_ascii_uppercase(), request.url);
    let fail = |why: String| Error(format!("{what}: {why}"));
    let (scheme, authority, path) = split_url(&request.url)?;
    let headers = Fields::new();
    for (name, value) in &request.headers {
        headers.append(name, value.as_bytes()).map_err(|e| fail(format!("header `{name}`: {e:?}")))?;
    }
    if let Some(body) = &request.body {
        headers
            .set("content-length", &[body.len().to_string().into_bytes()])
            .map_err(|e| fail(format!("content-length: {e:?}")))?;
    }
    let outgoing = OutgoingRequest::new(headers);
    let refused = |part: &str| fail(format!("the {part} is not accepted"));
    outgoing.set_method(&method(&request.method)).map_err(|()| refused("method"))?;
    outgoing.set_scheme(Some(&scheme)).map_err(|()| refused("scheme"))?;
    outgoing.set_authority(Some(authority)).map_err(|()| refused("host"))?;
    outgoing.set_path_with_query(Some(path)).map_err(|()| refused("path"))?;
    let body = outgoing.body().map_err(|()| fail("no request body".into()))?;
    let future = outgoing_handler::handle(outgoing, None).map_err(|code| fail(describe(&code)))?;
    let mut write_error = None;
    if let Some(bytes) = &request.body {
        write_error = write_body(&body, bytes).err();
    }
    if let Err(code) = OutgoingBody::finish(body, None) {
        write_error.get_or_insert(describe(&code));
    }
    Ok(Pending { what, future, write_error })
}

fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), String> {
    let stream = body.write().map_err(|()| "no request body stream".to_owned())?;
    for chunk in bytes.chunks(WRITE_CHUNK) {
        stream.blocking_write_and_flush(chunk).map_err(|e| stream_error(&e))?;
    }
    Ok(())
}

impl Pending {
    fn finish(self, read_body: bool) -> Result<Response, Error> {
        let Self { what, future, write_error } = self;
        let fail = |why: String| Error(format!("{what}: {why}"));
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(fail(describe(&code))),
            Some(Err(())) | None => return Err(fail("the response was already taken".into())),
        };
        if let Some(why) = write_error {
            return Err(fail(format!("cannot send the request body: {why}")));
        }
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), String::from_utf8_lossy(&value).into_owned()))
            .collect();
        let mut body = Vec::new();
        if read_body {
            let incoming = response.consume().map_err(|()| fail("the body was already taken".into()))?;
            read_all(&incoming, &mut body)
                .map_err(|why| fail(format!("reading the response body: {why}")))?;
            drop(IncomingBody::finish(incoming));
        }
        Ok(Response { status, headers, body })
    }
}

fn read_all(incoming: &IncomingBody, into: &mut Vec<u8>) -> Result<(), String> {
    let stream = incoming.stream().map_err(|()| "no body stream".to_owned())?;
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(bytes) => into.extend_from_slice(&bytes),
            Err(StreamError::Closed) => return Ok(()),
            Err(e) => return Err(stream_error(&e)),
        }
    }
}

fn stream_error(e: &StreamError) -> String {
    match e {
        StreamError::Closed => "the stream was closed".to_owned(),
        StreamError::LastOperationFailed(error) => {
            match bindings::wasi::http::types::http_error_code(error) {
                Some(code) => describe(&code),
                None => error.to_debug_string(),
            }
        }
    }
}

/// An error code in words.
fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => "the host refused the request (HttpRequestDenied)".to_owned(),
        ErrorCode::ConnectionLimitReached => {
            "too many requests in flight (ConnectionLimitReached)".to_owned()
        }
        ErrorCode::HttpRequestBodySize(Some(n)) => format!("the request body is over the limit of {n} bytes"),
        ErrorCode::HttpResponseBodySize(Some(n)) => {
            format!("the response body is over the limit of {n} bytes")
        }
        ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout | ErrorCode::ConnectionTimeout => {
            format!("timed out ({code:?})")
        }
        other => format!("{other:?}"),
    }
}
