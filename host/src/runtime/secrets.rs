//! Keeping secret variables inside the host: their values are replaced by
//! `***` in what an agent logs, reports and fails with, and a write that
//! holds one is refused (the invocation fails; nothing is committed).
//!
//! Only the exact value is recognised: a secret the agent transforms
//! (encodes, splits, reverses) is not (SECURITY.md, "What is not defended").

use std::fmt;

use memchr::memmem;

use super::AgentError;
use crate::workflow::Grants;

/// What a redacted secret is replaced by.
pub const REDACTED: &str = "***";

/// The secret variables of one invocation: (name, value), longest value
/// first, so that a secret containing another is replaced whole.
#[derive(Clone, Default)]
pub(crate) struct Secrets(Vec<(String, String)>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(name, _)| name)).finish()
    }
}

impl Secrets {
    pub(crate) fn of(grants: &Grants) -> Self {
        let mut secrets: Vec<(String, String)> = grants
            .variables
            .iter()
            .filter(|v| v.value.secret && !v.value.text.is_empty())
            .map(|v| (v.name.clone(), v.value.text.clone()))
            .collect();
        secrets.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
        Self(secrets)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every secret value replaced by [`REDACTED`].
    pub(crate) fn redact(&self, mut text: String) -> String {
        for (_, value) in &self.0 {
            if text.contains(value.as_str()) {
                text = text.replace(value.as_str(), REDACTED);
            }
        }
        text
    }

    /// `text` with every secret value replaced by [`REDACTED`], matched
    /// whatever its case (host names are lower-cased on their way).
    pub(crate) fn redact_any_case(&self, text: &str) -> String {
        let mut text = self.redact(text.to_owned());
        for (_, value) in &self.0 {
            let lower = value.to_lowercase();
            if text.to_lowercase().contains(&lower) {
                // Case-insensitive: cut it out of the lower-cased text
                // (the original case of a host name is gone anyway).
                text = text.to_lowercase().replace(&lower, REDACTED);
            }
        }
        text
    }

    /// The name of the first secret whose value `bytes` hold.
    pub(crate) fn found_in(&self, bytes: &[u8]) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, value)| memmem::find(bytes, value.as_bytes()).is_some())
            .map(|(n, _)| n.as_str())
    }

    /// `error` with every secret value in its text replaced by [`REDACTED`].
    pub(crate) fn redact_error(&self, error: AgentError) -> AgentError {
        if self.is_empty() {
            return error;
        }
        let r = |s: String| self.redact(s);
        match error {
            AgentError::Load { agent, path, reason } => AgentError::Load { agent, path, reason: r(reason) },
            AgentError::Trap { agent, message, backtrace, said, missing_need } => AgentError::Trap {
                agent,
                message: r(message),
                backtrace: backtrace.map(r),
                said: said.map(r),
                missing_need,
            },
            AgentError::ReadRefused { agent, key, patterns } => {
                AgentError::ReadRefused { agent, key: r(key), patterns }
            }
            AgentError::LimitExceeded { agent, message } => {
                AgentError::LimitExceeded { agent, message: r(message) }
            }
            AgentError::Returned { agent, kind, message, missing_need } => {
                AgentError::Returned { agent, kind, message: r(message), missing_need }
            }
            AgentError::Host { agent, message } => AgentError::Host { agent, message: r(message) },
            AgentError::Stopped { agent, reason } => AgentError::Stopped { agent, reason: r(reason) },
            AgentError::Ownership(mut e) => {
                e.key = r(e.key);
                AgentError::Ownership(e)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::{Location, Variable, VariableValue};

    #[test]
    fn host_names_are_redacted_whatever_their_case() {
        let grants = Grants {
            variables: vec![Variable {
                name: "TOKEN".into(),
                source: "env T".into(),
                value: VariableValue { text: "AbC123xyz".into(), secret: true },
                location: Location::default(),
            }],
            ..Grants::default()
        };
        let secrets = Secrets::of(&grants);
        assert_eq!(secrets.redact_any_case("http://abc123xyz.evil.example:80"), "http://***.evil.example:80");
        assert_eq!(secrets.redact("say AbC123xyz".into()), "say ***");
    }
}
