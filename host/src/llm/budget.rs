//! One agent's token budget.

use std::sync::Mutex;

use super::{Ask, CallError, Usage};

/// Tokens an agent may spend on model calls (input and output together),
/// across its attempts in one run. Each call is checked before it is made
/// against an estimate of its input and the output it may use, and charged
/// with the usage the provider reports.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: Mutex<u64>,
}

/// What a call may spend, settled before it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// The estimated input tokens.
    pub input: u64,
    /// The output cap sent to the provider.
    pub max_tokens: u32,
    /// Whether the cap was lowered below what the agent asked for, to stay
    /// within the budget: an answer that stops at it is refused rather than
    /// handed back cut short.
    pub capped: bool,
}

impl Budget {
    /// A budget of `limit` tokens, none used.
    pub fn new(limit: u64) -> Self {
        Self { limit, used: Mutex::new(0) }
    }

    /// The budget.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Tokens charged so far.
    pub fn used(&self) -> u64 {
        *self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The allowance of `ask`: refused when its estimated input and at least
    /// some output do not fit in what is left.
    pub fn allow(&self, ask: &Ask) -> Result<Allowance, CallError> {
        let used = self.used();
        let left = self.limit.saturating_sub(used);
        let input = estimate_input(ask);
        let wanted = u64::from(ask.max_tokens.unwrap_or(u32::MAX));
        // The input and at least one token of answer must fit.
        if input + 1 > left {
            let needed = input + u64::from(ask.max_tokens.unwrap_or(1));
            return Err(CallError::BudgetExceeded { budget: self.limit, used, needed });
        }
        let room = left - input;
        let max_tokens = u32::try_from(wanted.min(room)).unwrap_or(u32::MAX);
        Ok(Allowance { input, max_tokens, capped: wanted > room })
    }

    /// Charge `usage`.
    pub fn charge(&self, usage: Usage) {
        let mut used = self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *used = used.saturating_add(usage.total());
    }
}

/// A generous estimate of the input tokens of `ask`: a token per three
/// bytes of text (English runs near four), and a few per message for the
/// protocol's framing; the schema counts as text.
pub fn estimate_input(ask: &Ask) -> u64 {
    let text: usize = ask.messages.iter().map(|m| m.content.len() + 12).sum();
    let schema = ask.schema.as_ref().map_or(0, |s| s.to_string().len());
    ((text + schema) as u64).div_ceil(3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{Message, Role};

    fn ask(chars: usize, max_tokens: Option<u32>) -> Ask {
        Ask { messages: vec![Message::new(Role::User, "x".repeat(chars))], max_tokens, ..Ask::default() }
    }

    #[test]
    fn a_call_is_refused_before_it_is_made_when_its_input_alone_does_not_fit() {
        let budget = Budget::new(100);
        assert!(budget.allow(&ask(30, None)).is_ok());
        match budget.allow(&ask(600, None)) {
            Err(CallError::BudgetExceeded { budget: 100, used: 0, needed }) => assert!(needed > 100),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_output_cap_is_lowered_to_what_is_left_and_says_so() {
        let budget = Budget::new(1000);
        let small = budget.allow(&ask(30, Some(50))).expect("fits");
        assert_eq!((small.max_tokens, small.capped), (50, false));
        budget.charge(Usage { input: 500, output: 400 });
        let big = budget.allow(&ask(30, Some(500))).expect("some room");
        assert!(big.capped && big.max_tokens < 100, "{big:?}");
        assert_eq!(budget.used(), 900);
    }
}
