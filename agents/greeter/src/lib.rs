//! Hello example, step 1: greets the configured name.
//!
//! Config: `{ name: String, greeting: Option<String> }` (greeting defaults to
//! "Hello"). Writes `greeter.message` (a string, "Hello, Ada!") and
//! `greeter.meta` (a map `{ name, length }`, `length` being the number of
//! characters of the message).

use ensemble_agent_sdk::{Agent, AgentError, Invocation, context, export_agent, log, progress};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
struct Config {
    name: String,
    greeting: Option<String>,
}

#[derive(Debug, Serialize)]
struct Meta<'a> {
    name: &'a str,
    length: u32,
}

struct Greeter;

impl Agent for Greeter {
    fn run(inv: &Invocation) -> Result<(), AgentError> {
        progress::report(0.0, "reading config");
        let cfg: Config = inv.config()?;
        if cfg.name.trim().is_empty() {
            return Err(AgentError::invalid_input("config `name` is empty"));
        }

        progress::report(0.5, "greeting");
        let greeting = cfg.greeting.as_deref().unwrap_or("Hello");
        let message = format!("{greeting}, {}!", cfg.name);
        log::info(&format!("greeting {}", cfg.name));
        context::put("greeter.message", &message)?;

        let length = u32::try_from(message.chars().count()).unwrap_or(u32::MAX);
        context::put("greeter.meta", &Meta { name: &cfg.name, length })?;
        progress::report(1.0, "done");
        Ok(())
    }
}

export_agent!(Greeter);
