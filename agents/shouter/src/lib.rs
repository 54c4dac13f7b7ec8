//! Hello example, step 2: shouts the greeter's message.
//!
//! Reads `greeter.message` (an `InvalidInput` error naming the key if it is
//! missing) and writes `shouter.message`: the message uppercased, plus "!".

use ensemble_agent_sdk::{Agent, AgentError, Invocation, context, export_agent, progress};

struct Shouter;

impl Agent for Shouter {
    fn run(_inv: &Invocation) -> Result<(), AgentError> {
        let message: String = context::require("greeter.message")?;
        progress::report(0.5, "shouting");
        context::put("shouter.message", &format!("{}!", message.to_uppercase()))?;
        progress::report(1.0, "done");
        Ok(())
    }
}

export_agent!(Shouter);
