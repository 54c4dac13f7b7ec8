//! Language models as a host capability: an agent asks the host for a chat
//! completion; the host calls the provider, so the API key never enters the
//! guest and every call is budgeted, rate-limited across the run, retried
//! and measured.
//!
//! - [`Provider`] is one wire protocol ([`openai::OpenAi`]: Chat Completions,
//!   which OpenAI, vLLM, llama.cpp's server, Ollama's `/v1` and LM Studio
//!   all speak). A provider makes one try of one call; everything around it
//!   is provider-independent, so a third protocol is one small file.
//! - [`Client`] is what a run shares: the model aliases the workflow names
//!   (each a provider and its model), the retry policy ([`Retry`]), and the
//!   run's [`Limits`] (calls in flight, requests and tokens per minute),
//!   taken in priority order when calls queue.
//! - [`Budget`] is one agent's token budget: checked before each call with
//!   the request's size estimate, charged with the real usage.
//! - An answer to a request with a JSON Schema is checked against it before
//!   the agent sees it ([`CallError::InvalidOutput`] otherwise).

mod budget;
mod client;
mod gate;
pub mod openai;
mod retry;
mod schema;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use budget::Budget;
pub use client::{CallRecord, Client, Model};
pub use gate::Limits;
pub use retry::Retry;

/// Who says a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions to the model.
    System,
    /// The user's turn.
    User,
    /// The model's earlier turns.
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// Who says it.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl Message {
    /// A message of `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into() }
    }
}

/// What an agent asks for: a conversation and how to answer it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ask {
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// The model alias (as the workflow names it); empty: the agent's first
    /// granted alias.
    pub model: String,
    /// The most tokens the answer may have.
    pub max_tokens: Option<u32>,
    /// Sampling temperature; `None`: the provider's default.
    pub temperature: Option<f32>,
    /// Sequences that end the answer.
    pub stop: Vec<String>,
    /// A JSON Schema the answer must be an instance of (structured output).
    pub schema: Option<serde_json::Value>,
}

/// One try of a call, as a [`Provider`] gets it: the [`Ask`] with the
/// alias resolved to the provider's model name and the output cap settled.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The provider's name for the model.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// The most tokens the answer may have.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Sequences that end the answer.
    pub stop: Vec<String>,
    /// The JSON Schema of a structured answer.
    pub schema: Option<serde_json::Value>,
}

/// Why an answer ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// It was complete, or hit a stop sequence.
    Stop,
    /// It reached its token cap.
    Length,
    /// The provider's filter cut it.
    ContentFilter,
    /// The model asked for tools.
    ToolCalls,
    /// Anything else, as the provider said it.
    Other(String),
}

impl FinishReason {
    /// The reason as the Chat Completions protocol names it.
    pub fn parse(reason: &str) -> Self {
        match reason {
            "stop" | "end_turn" | "stop_sequence" => Self::Stop,
            "length" | "max_tokens" => Self::Length,
            "content_filter" => Self::ContentFilter,
            "tool_calls" | "function_call" | "tool_use" => Self::ToolCalls,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// Tokens a call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the request (the prompt).
    pub input: u64,
    /// Tokens of the answer.
    pub output: u64,
}

impl Usage {
    /// Input and output.
    pub fn total(self) -> u64 {
        self.input + self.output
    }
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The answer's text (a JSON document for a structured answer).
    pub text: String,
    /// The model that answered, as the provider names it.
    pub model: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// Tokens used.
    pub usage: Usage,
}

/// Why one try of a call failed, as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The provider answered with an error status.
    Status {
        /// The HTTP status.
        status: u16,
        /// The provider's message (its `error.message`, or the body's start).
        message: String,
        /// How long its `Retry-After` header asks to wait.
        retry_after: Option<Duration>,
    },
    /// No answer within the call's timeout.
    Timeout,
    /// The connection failed or broke.
    Transport(String),
    /// The answer was not the protocol's JSON.
    Malformed(String),
}

impl Failure {
    /// Whether a later try may succeed: rate limits, server errors,
    /// timeouts and broken connections.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            Self::Timeout | Self::Transport(_) => true,
            Self::Malformed(_) => false,
        }
    }
}

/// A boxed future a [`Provider`] returns.
pub type ChatFuture<'a> = Pin<Box<dyn Future<Output = Result<Completion, Failure>> + Send + 'a>>;

/// One wire protocol to a model endpoint.
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// The protocol's name, for reports (`openai`).
    fn protocol(&self) -> &'static str;
    /// The endpoint, for reports and cache keys (never the key).
    fn endpoint(&self) -> &str;
    /// Make one try of `request`, within `timeout` for the whole answer.
    fn chat<'a>(&'a self, request: &'a ChatRequest, timeout: Duration) -> ChatFuture<'a>;
}

/// Why a call failed, as the agent is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CallError {
    /// The agent has no `llm` grant.
    #[error("no language model is granted to this agent")]
    NotGranted,
    /// The alias is not one the agent is granted.
    #[error("model `{model}` is not granted to this agent (granted: {})", granted.join(", "))]
    UnknownModel {
        /// The alias asked for.
        model: String,
        /// The aliases it may use.
        granted: Vec<String>,
    },
    /// The call would take the agent past its token budget.
    #[error("token budget exceeded: {used} of {budget} tokens used, this call needs about {needed} more")]
    BudgetExceeded {
        /// The agent's budget.
        budget: u64,
        /// Tokens used so far.
        used: u64,
        /// What this call needs (estimated input, and the output it may use).
        needed: u64,
    },
    /// The provider still limited the rate after the host's retries.
    #[error("rate limited by the provider after {attempts} attempts: {message}")]
    RateLimited {
        /// Tries made.
        attempts: u32,
        /// The provider's last message.
        message: String,
    },
    /// The provider failed (after retries, for errors worth retrying).
    #[error("{}", provider_failed(*status, message, *attempts))]
    Provider {
        /// The HTTP status; 0 when there was no answer (a broken connection).
        status: u16,
        /// The provider's message.
        message: String,
        /// Tries made.
        attempts: u32,
    },
    /// No answer within the per-call timeout, on every try.
    #[error("no answer within {} after {attempts} attempts", humantime::format_duration(*after))]
    Timeout {
        /// The per-call timeout.
        #[serde(with = "crate::events::secs")]
        after: Duration,
        /// Tries made.
        attempts: u32,
    },
    /// The answer was not what the protocol or the request's schema asks.
    #[error("invalid answer: {0}")]
    InvalidOutput(String),
    /// The request itself cannot be sent (its JSON Schema is not valid).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

fn provider_failed(status: u16, message: &str, attempts: u32) -> String {
    match status {
        0 => format!("no answer from the provider after {attempts} attempts: {message}"),
        _ => format!("the provider answered {status} after {attempts} attempts: {message}"),
    }
}
