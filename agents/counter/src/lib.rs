//! Hello example, step 2 (in parallel with the shouter): counts the greeter's
//! message.
//!
//! Reads `greeter.message` (an `InvalidInput` error naming the key if it is
//! missing) and writes `counter.stats`: a map `{ words, letters, vowels }`.

use ensemble_agent_sdk::{Agent, AgentError, Invocation, context, export_agent, progress};
use serde::Serialize;

#[derive(Debug, Default, PartialEq, Eq, Serialize)]
struct Stats {
    words: u32,
    letters: u32,
    vowels: u32,
}

fn count(text: &str) -> Stats {
    let n = |c: usize| u32::try_from(c).unwrap_or(u32::MAX);
    Stats {
        words: n(text.split_whitespace().count()),
        letters: n(text.chars().filter(|c| c.is_alphabetic()).count()),
        vowels: n(text.chars().filter(|c| "aeiouAEIOU".contains(*c)).count()),
    }
}

struct Counter;

impl Agent for Counter {
    fn run(_inv: &Invocation) -> Result<(), AgentError> {
        let message: String = context::require("greeter.message")?;
        progress::report(0.5, "counting");
        context::put("counter.stats", &count(&message))?;
        progress::report(1.0, "done");
        Ok(())
    }
}

export_agent!(Counter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_a_greeting() {
        assert_eq!(count("Hello, Ada!"), Stats { words: 2, letters: 8, vowels: 4 });
    }
}
