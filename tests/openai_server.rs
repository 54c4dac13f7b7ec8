//! A scripted OpenAI-compatible Chat Completions server on 127.0.0.1, for
//! tests: a real HTTP/1.1 server (hyper's) that answers `POST
//! /v1/chat/completions` in the protocol's JSON shapes, as a script says:
//! an answer with usage, an error status with `Retry-After`, a stall, or a
//! body that is not JSON. It records every request (its JSON and its
//! `Authorization` header) and the most requests it was answering at once.
//! Clearly a test peer, not a model: it knows nothing but its script.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

/// What the server answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A chat completion.
    Answer {
        /// The assistant's text.
        text: String,
        /// `finish_reason`.
        finish: &'static str,
        /// `usage.prompt_tokens`.
        prompt_tokens: u64,
        /// `usage.completion_tokens`.
        completion_tokens: u64,
    },
    /// An error status, its `error.message`, and a `Retry-After` header.
    Error {
        /// The HTTP status.
        status: u16,
        /// The message.
        message: String,
        /// The `Retry-After` value, if any.
        retry_after: Option<String>,
    },
    /// Wait this long before answering with the next reply.
    Stall(Duration, Box<Reply>),
    /// Status 200 with this body, whatever it is.
    Raw(String),
}

impl Reply {
    /// An answer that stopped by itself, with these token counts.
    pub fn text(text: impl Into<String>, prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self::Answer { text: text.into(), finish: "stop", prompt_tokens, completion_tokens }
    }

    /// An error status.
    pub fn status(status: u16, message: impl Into<String>) -> Self {
        Self::Error { status, message: message.into(), retry_after: None }
    }
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its JSON body.
    pub body: serde_json::Value,
    /// Its `Authorization` header.
    pub authorization: Option<String>,
    /// Its path.
    pub path: String,
    /// Its request target as sent (origin form: `/v1/chat/completions`).
    pub target: String,
}

type Script = dyn Fn(usize, &serde_json::Value) -> Reply + Send + Sync;

struct State {
    script: Box<Script>,
    received: Mutex<Vec<Received>>,
    active: AtomicUsize,
    peak: AtomicUsize,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("peak", &self.peak).finish_non_exhaustive()
    }
}

/// The server; stops when dropped.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Start a server answering request `n` (from 0) with `script(n, body)`.
    /// Call within a tokio runtime.
    pub async fn start(script: impl Fn(usize, &serde_json::Value) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("its address");
        let state = Arc::new(State {
            script: Box::new(script),
            received: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        });
        let served = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = served.clone();
                tokio::spawn(async move {
                    let io = wasmtime_wasi_http::io::TokioIo::new(stream);
                    let service = service_fn(move |request| answer(state.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Self { addr, state, task }
    }

    /// The base URL a provider is given (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("not poisoned").clone()
    }

    /// How many requests it received.
    pub fn calls(&self) -> usize {
        self.state.received.lock().expect("not poisoned").len()
    }

    /// The most requests it was answering at once.
    pub fn peak(&self) -> usize {
        self.state.peak.load(Ordering::SeqCst)
    }
}

async fn answer(state: Arc<State>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let target = request.uri().to_string();
    let authorization =
        request.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bytes = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(plain(StatusCode::BAD_REQUEST, "unreadable body")),
    };
    if path != "/v1/chat/completions" {
        return Ok(plain(StatusCode::NOT_FOUND, "only /v1/chat/completions here"));
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Ok(error(400, "the request is not JSON", None));
    };
    let n = {
        let mut received = state.received.lock().expect("not poisoned");
        received.push(Received { body: body.clone(), authorization, path, target });
        received.len() - 1
    };
    let now = state.active.fetch_add(1, Ordering::SeqCst) + 1;
    state.peak.fetch_max(now, Ordering::SeqCst);
    // Counted out even when the client gives up mid-stall (this future is dropped).
    struct Active<'a>(&'a AtomicUsize);
    impl Drop for Active<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let active = Active(&state.active);
    let mut reply = (state.script)(n, &body);
    while let Reply::Stall(wait, next) = reply {
        tokio::time::sleep(wait).await;
        reply = *next;
    }
    drop(active);
    let model = body["model"].as_str().unwrap_or("unknown").to_owned();
    Ok(match reply {
        Reply::Answer { text, finish, prompt_tokens, completion_tokens } => {
            let json = serde_json::json!({
                "id": format!("chatcmpl-test-{n}"),
                "object": "chat.completion",
                "created": 1_700_000_000u64,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                }],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            });
            json_response(StatusCode::OK, &json, None)
        }
        Reply::Error { status, message, retry_after } => error(status, &message, retry_after),
        Reply::Raw(body) => plain(StatusCode::OK, &body),
        Reply::Stall(..) => unreachable!("stalls were waited out above"),
    })
}

fn error(status: u16, message: &str, retry_after: Option<String>) -> Response<Full<Bytes>> {
    let json = serde_json::json!({"error": {"message": message, "type": "test_error", "code": null}});
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &json,
        retry_after,
    )
}

fn json_response(
    status: StatusCode,
    json: &serde_json::Value,
    retry_after: Option<String>,
) -> Response<Full<Bytes>> {
    let mut response = Response::builder().status(status).header("content-type", "application/json");
    if let Some(after) = retry_after {
        response = response.header("retry-after", after);
    }
    response.body(Full::new(Bytes::from(json.to_string()))).expect("a valid response")
}

fn plain(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("a valid response")
}
