//! Language models through the host, for an agent whose workflow grants
//! them (`llm:`). Behind the crate's `llm` feature. The host holds the API
//! key, retries, limits calls across the run and charges the agent's token
//! budget; the agent only sees answers and [`LlmError`]s.
//!
//! ```no_run
//! use ensemble_agent_sdk::{AgentError, context, llm};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Story {
//!     title: String,
//!     points: u32,
//! }
//!
//! const STORY: &str = r#"{"type": "object", "required": ["title", "points"],
//!     "properties": {"title": {"type": "string"}, "points": {"type": "integer"}}}"#;
//!
//! fn write() -> Result<(), AgentError> {
//!     let summary = llm::ask("You are a product manager.", "Summarise: a to-do app for teams")?;
//!     context::put("pm.summary", &summary)?;
//!     let story: Story = llm::ask_json("You write user stories.", "One story for the login page", STORY)?;
//!     context::put("pm.story_title", &story.title)?;
//!     context::put("pm.story_points", &story.points)?;
//!     Ok(())
//! }
//! ```

use serde::de::DeserializeOwned;

use crate::AgentError;
pub use crate::bindings::ensemble::agent::llm::{
    Completion, FinishReason, LlmError, Message, ProviderError, Request, Role, Usage,
};

/// Ask the model, as the request says.
///
/// # Errors
///
/// The host's [`LlmError`]: not granted, unknown model, budget exceeded,
/// rate limited, provider error, timeout, invalid output.
pub fn chat(request: &Request) -> Result<Completion, LlmError> {
    crate::bindings::ensemble::agent::llm::chat(request)
}

/// A request of a system and a user message to the agent's default model,
/// at temperature 0.
pub fn request(system: &str, user: &str) -> Request {
    Request {
        messages: vec![
            Message { role: Role::System, content: system.to_owned() },
            Message { role: Role::User, content: user.to_owned() },
        ],
        model: String::new(),
        max_tokens: None,
        temperature: Some(0.0),
        stop: Vec::new(),
        json_schema: None,
    }
}

/// The model's answer to `user`, instructed by `system`.
///
/// # Errors
///
/// [`AgentError::Failed`] with the host's message (the host may retry the
/// agent, per the workflow).
pub fn ask(system: &str, user: &str) -> Result<String, AgentError> {
    chat(&request(system, user)).map(|c| c.text).map_err(failed)
}

/// The model's structured answer to `user`: an instance of the JSON Schema
/// `schema` (checked by the host), decoded as `T`.
///
/// # Errors
///
/// [`AgentError::Failed`] with the host's message, or naming what did not
/// decode.
pub fn ask_json<T: DeserializeOwned>(system: &str, user: &str, schema: &str) -> Result<T, AgentError> {
    let request = Request { json_schema: Some(schema.to_owned()), ..request(system, user) };
    let answer = chat(&request).map_err(failed)?;
    serde_json::from_str(&answer.text)
        .map_err(|e| AgentError::Failed(format!("the model's answer does not decode: {e}")))
}

/// An [`LlmError`] as the agent's failure.
pub fn failed(error: LlmError) -> AgentError {
    AgentError::Failed(match error {
        LlmError::NotGranted => "no language model is granted to this agent".to_owned(),
        LlmError::Provider(ProviderError { status, message }) => {
            format!("the model provider answered {status}: {message}")
        }
        LlmError::UnknownModel(m)
        | LlmError::BudgetExceeded(m)
        | LlmError::RateLimited(m)
        | LlmError::Timeout(m)
        | LlmError::InvalidOutput(m) => m,
    })
}
