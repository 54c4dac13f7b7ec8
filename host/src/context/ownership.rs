//! Who may write which keys.
//!
//! An agent owns key prefixes: owning `pm` means owning `pm` and every key
//! under `pm.`. Prefixes overlap between agents only under a prefix the
//! workflow declares `shared` (the workflow check refuses anything else);
//! there several agents may write, and the context store resolves conflicts.

use std::sync::Arc;

/// A write outside the writer's prefixes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("agent `{agent}` may not write `{key}`: {}", match owner {
    Some(owner) => format!("it is owned by agent `{owner}`"),
    None => "no agent owns it".to_owned(),
})]
pub struct OwnershipError {
    pub agent: String,
    pub key: String,
    /// The agent that owns the key, if any.
    pub owner: Option<String>,
}

/// The owned prefixes of every agent of a workflow.
#[derive(Debug, Clone, Default)]
pub struct Ownership {
    /// (prefix, agent), longest prefix first.
    prefixes: Arc<Vec<(String, String)>>,
}

impl Ownership {
    pub fn new<'a>(owned: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut prefixes: Vec<(String, String)> =
            owned.into_iter().map(|(prefix, agent)| (prefix.to_owned(), agent.to_owned())).collect();
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Self { prefixes: Arc::new(prefixes) }
    }

    /// The agent owning `key`, if any.
    pub fn owner_of(&self, key: &str) -> Option<&str> {
        self.prefixes.iter().find(|(prefix, _)| covers(prefix, key)).map(|(_, agent)| agent.as_str())
    }

    /// Whether `agent` may write `key`: one of its prefixes covers it.
    pub fn check(&self, agent: &str, key: &str) -> Result<(), OwnershipError> {
        if self.prefixes.iter().any(|(prefix, owner)| owner == agent && covers(prefix, key)) {
            return Ok(());
        }
        Err(OwnershipError {
            agent: agent.to_owned(),
            key: key.to_owned(),
            owner: self.owner_of(key).map(str::to_owned),
        })
    }
}

/// Whether prefix `prefix` covers `key`: equal, or `key` continues with `.`.
pub fn covers(prefix: &str, key: &str) -> bool {
    key.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// Whether two prefixes share any key.
pub fn overlap(a: &str, b: &str) -> bool {
    covers(a, b) || covers(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_cover_whole_segments() {
        assert!(covers("pm", "pm"));
        assert!(covers("pm", "pm.stories"));
        assert!(!covers("pm", "pmx.stories"));
        assert!(overlap("a.b", "a"));
        assert!(!overlap("a.b", "a.c"));
    }

    #[test]
    fn check_names_the_owner() {
        let own = Ownership::new([("pm", "pm"), ("architect", "architect")]);
        assert!(own.check("pm", "pm.requirements").is_ok());
        let err = own.check("pm", "architect.stack").unwrap_err();
        assert_eq!(err.owner.as_deref(), Some("architect"));
        assert_eq!(
            err.to_string(),
            "agent `pm` may not write `architect.stack`: it is owned by agent `architect`"
        );
        let err = own.check("pm", "qa.report").unwrap_err();
        assert_eq!(err.to_string(), "agent `pm` may not write `qa.report`: no agent owns it");
    }
}
