//! The OpenAI-compatible Chat Completions protocol (`POST
//! {base}/chat/completions`), which OpenAI, vLLM, llama.cpp's server,
//! Ollama's `/v1` and LM Studio all speak.
//!
//! A structured answer is asked for with `response_format: {type:
//! "json_schema", ...}`, the standard way. For a server without it, the
//! provider can be set to put the schema into a system message instead
//! ([`OpenAi::schema_in_prompt`]); either way the host checks the answer
//! against the schema before the agent sees it.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use super::{ChatFuture, ChatRequest, Completion, Failure, FinishReason, Provider, Role, Usage};

/// The largest answer body read, bytes.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// A Chat Completions endpoint.
#[derive(Clone)]
pub struct OpenAi {
    base: String,
    /// The request target, path only (`/v1/chat/completions`): servers such
    /// as llama.cpp's do not route the absolute form.
    target: Uri,
    /// The `Host` header (brackets kept for an IPv6 address).
    authority: String,
    host: String,
    port: u16,
    https: bool,
    key: Option<String>,
    schema_in_prompt: bool,
}

impl fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("OpenAi")
            .field("base", &self.base)
            .field("key", &self.key.as_ref().map(|_| "(set)"))
            .finish_non_exhaustive()
    }
}

impl OpenAi {
    /// The endpoint at `base` (e.g. `https://api.openai.com/v1`,
    /// `http://127.0.0.1:11434/v1`), with `key` sent as a bearer token.
    pub fn new(base: &str, key: Option<String>) -> Result<Self, String> {
        let base = base.trim_end_matches('/').to_owned();
        let uri: Uri =
            format!("{base}/chat/completions").parse().map_err(|e| format!("`{base}` is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("`{base}` is not an http:// or https:// URL")),
        };
        let authority = uri.authority().ok_or_else(|| format!("`{base}` names no host"))?;
        if authority.as_str().contains('@') {
            return Err(
                "a provider's URL may not carry a user or password: give the key as `api_key_env`".into()
            );
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let target =
            uri.path_and_query().map_or("/", |p| p.as_str()).parse().map_err(|e| format!("`{base}`: {e}"))?;
        Ok(Self {
            base,
            target,
            authority: authority.as_str().to_owned(),
            host,
            port,
            https,
            key,
            schema_in_prompt: false,
        })
    }

    /// Put a request's JSON Schema into a system message instead of
    /// `response_format` (for servers without structured output).
    pub fn schema_in_prompt(mut self, on: bool) -> Self {
        self.schema_in_prompt = on;
        self
    }

    /// `message` without the key (a provider may echo what it was sent).
    fn redact(&self, message: String) -> String {
        match &self.key {
            Some(key) if !key.is_empty() && message.contains(key.as_str()) => {
                message.replace(key.as_str(), "[redacted]")
            }
            _ => message,
        }
    }

    fn body(&self, request: &ChatRequest) -> Result<Vec<u8>, Failure> {
        let instruction = request.schema.as_ref().filter(|_| self.schema_in_prompt).map(|schema| {
            format!("Answer with one JSON document, and nothing else, that is an instance of this JSON Schema:\n{schema}")
        });
        let mut messages: Vec<WireMessage<'_>> =
            request.messages.iter().map(|m| WireMessage { role: m.role, content: &m.content }).collect();
        let response_format = match &request.schema {
            Some(_) if self.schema_in_prompt => {
                // First: chat templates of local models often refuse a
                // system message anywhere else.
                if let Some(instruction) = &instruction {
                    messages.insert(0, WireMessage { role: Role::System, content: instruction });
                }
                None
            }
            Some(schema) => Some(ResponseFormat {
                kind: "json_schema",
                json_schema: JsonSchemaFormat { name: "answer", schema },
            }),
            None => None,
        };
        let wire = WireRequest {
            model: &request.model,
            messages,
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            stop: if request.stop.is_empty() { None } else { Some(&request.stop) },
            response_format,
        };
        serde_json::to_vec(&wire).map_err(|e| Failure::Malformed(format!("cannot encode the request: {e}")))
    }

    async fn call(&self, request: &ChatRequest) -> Result<Completion, Failure> {
        let body = self.body(request)?;
        let stream = self.connect().await?;
        let io = wasmtime_wasi_http::io::TokioIo::new(stream);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(io).await.map_err(|e| Failure::Transport(e.to_string()))?;
        let driver = tokio::spawn(connection);
        let _stop_driver = tokio_util::task::AbortOnDropHandle::new(driver);
        let mut builder = Request::post(self.target.clone())
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, concat!("ensemble/", env!("CARGO_PKG_VERSION")));
        if let Some(key) = &self.key {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let http_request =
            builder.body(Full::new(Bytes::from(body))).map_err(|e| Failure::Transport(e.to_string()))?;
        let response =
            sender.send_request(http_request).await.map_err(|e| Failure::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| super::retry::parse_retry_after(v, std::time::SystemTime::now()));
        let bytes = match Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(Failure::Malformed(format!(
                    "the answer is larger than {} MiB",
                    MAX_ANSWER_BYTES >> 20
                )));
            }
            Err(e) => return Err(Failure::Transport(format!("reading the answer: {e}"))),
        };
        if !(200..300).contains(&status) {
            return Err(Failure::Status { status, message: self.redact(error_message(&bytes)), retry_after });
        }
        parse_answer(&bytes)
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, Failure> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| Failure::Transport(format!("cannot connect to {}: {e}", self.base)))?;
        let _ = tcp.set_nodelay(true);
        if !self.https {
            return Ok(Box::new(tcp));
        }
        let name = match self.host.parse::<std::net::IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(self.host.clone())
                .map_err(|_| Failure::Transport(format!("`{}` is not a DNS name", self.host)))?,
        };
        let config = crate::tls::client_config().map_err(Failure::Transport)?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| Failure::Transport(format!("TLS with {}: {e}", self.host)))?;
        Ok(Box::new(stream))
    }
}

impl Provider for OpenAi {
    fn protocol(&self) -> &'static str {
        "openai"
    }

    fn endpoint(&self) -> &str {
        &self.base
    }

    fn chat<'a>(&'a self, request: &'a ChatRequest, timeout: Duration) -> ChatFuture<'a> {
        Box::pin(async move {
            match tokio::time::timeout(timeout, self.call(request)).await {
                Ok(answer) => answer,
                Err(_) => Err(Failure::Timeout),
            }
        })
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: Role,
    content: &'a str,
}

#[derive(Serialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    json_schema: JsonSchemaFormat<'a>,
}

#[derive(Serialize)]
struct JsonSchemaFormat<'a> {
    name: &'static str,
    schema: &'a serde_json::Value,
}

#[derive(Deserialize)]
struct WireAnswer {
    #[serde(default)]
    model: String,
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireAnswerMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireAnswerMessage {
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// A successful answer's completion.
fn parse_answer(bytes: &[u8]) -> Result<Completion, Failure> {
    let answer: WireAnswer = serde_json::from_slice(bytes)
        .map_err(|e| Failure::Malformed(format!("the answer is not a chat completion ({e})")))?;
    let Some(choice) = answer.choices.into_iter().next() else {
        return Err(Failure::Malformed("the answer has no choices".into()));
    };
    if let Some(refusal) = choice.message.refusal.filter(|r| !r.is_empty()) {
        return Err(Failure::Malformed(format!("the model refused: {refusal}")));
    }
    let finish = FinishReason::parse(choice.finish_reason.as_deref().unwrap_or("stop"));
    let text = choice.message.content.unwrap_or_default();
    let usage = answer.usage.map(|u| Usage { input: u.prompt_tokens, output: u.completion_tokens });
    Ok(Completion {
        // Servers that report no usage are charged an estimate.
        usage: usage.unwrap_or(Usage { input: 0, output: (text.len() as u64).div_ceil(3) }),
        text,
        model: answer.model,
        finish,
    })
}

/// The message of an error answer: its `error.message`, or the body's start.
fn error_message(bytes: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Wrapper {
        error: Inner,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Inner {
        Object { message: String },
        Text(String),
    }
    match serde_json::from_slice::<Wrapper>(bytes) {
        Ok(Wrapper { error: Inner::Object { message } | Inner::Text(message) }) => message,
        Err(_) => {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
            if text.trim().is_empty() { "(no message)".into() } else { text }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Message;

    #[test]
    fn answers_and_errors_are_read_as_the_protocol_shapes_them() {
        let ok = br#"{"id":"c1","object":"chat.completion","model":"gpt-x-2025","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"length"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#;
        let completion = parse_answer(ok).expect("parses");
        assert_eq!(completion.text, "Hi");
        assert_eq!(completion.model, "gpt-x-2025");
        assert_eq!(completion.finish, FinishReason::Length);
        assert_eq!(completion.usage, Usage { input: 9, output: 2 });
        assert!(matches!(parse_answer(b"{\"choices\": [}"), Err(Failure::Malformed(_))));
        assert!(matches!(parse_answer(br#"{"choices": []}"#), Err(Failure::Malformed(_))));
        let error =
            br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
        assert_eq!(error_message(error), "Rate limit reached");
        assert_eq!(error_message(b"upstream timed out"), "upstream timed out");
    }

    #[test]
    fn a_request_carries_the_schema_as_response_format_or_in_a_system_message() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![Message::new(Role::User, "hi")],
            max_tokens: Some(10),
            temperature: Some(0.0),
            stop: Vec::new(),
            schema: Some(serde_json::json!({"type": "object"})),
        };
        let provider = OpenAi::new("http://127.0.0.1:9/v1/", Some("sk-secret".into())).expect("a URL");
        let body: serde_json::Value = serde_json::from_slice(&provider.body(&request).unwrap()).unwrap();
        assert_eq!(body["response_format"]["type"], "json_schema");
        assert_eq!(body["response_format"]["json_schema"]["schema"], serde_json::json!({"type": "object"}));
        assert_eq!(body["max_tokens"], 10);
        assert!(body.get("stop").is_none());
        let prompt = provider.clone().schema_in_prompt(true);
        let body: serde_json::Value = serde_json::from_slice(&prompt.body(&request).unwrap()).unwrap();
        assert!(body.get("response_format").is_none());
        assert_eq!(body["messages"][0]["role"], "system");
        assert!(body["messages"][0]["content"].as_str().unwrap().contains("JSON Schema"));
        assert_eq!(provider.target, "/v1/chat/completions");
        assert_eq!(provider.authority, "127.0.0.1:9");
        let v6 = OpenAi::new("http://[::1]:11434/v1", None).expect("a URL");
        assert_eq!((v6.authority.as_str(), v6.host.as_str(), v6.port), ("[::1]:11434", "::1", 11434));
        assert!(OpenAi::new("https://user:pass@example.com/v1", None).is_err());
        assert!(!format!("{provider:?}").contains("sk-secret"));
    }
}
