//! Who may write which keys.
//!
//! An agent owns key prefixes: owning `pm` means owning `pm` and every key
//! under `pm.`. Prefixes overlap between agents only under a prefix the
//! workflow declares `shared` (the workflow check refuses anything else);
//! there several agents may write, and the context store resolves conflicts.

use std::collections::HashMap;
use std::sync::Arc;

/// A write outside the writer's prefixes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("agent `{agent}` may not write `{key}`: {}", match owner {
    Some(owner) => format!("it is owned by agent `{owner}`"),
    None => "no agent owns it".to_owned(),
})]
pub struct OwnershipError {
    /// The writing agent.
    pub agent: String,
    /// The key it wrote.
    pub key: String,
    /// The agent that owns the key, if any.
    pub owner: Option<String>,
}

/// The owned prefixes of every agent of a workflow.
#[derive(Debug, Clone, Default)]
pub struct Ownership {
    /// Prefix → its owners, in the order given (several only under a
    /// shared prefix). A key is looked up by its own segment prefixes, so a
    /// check costs the key's depth, not the workflow's size.
    owners: Arc<HashMap<String, Vec<String>, foldhash::fast::RandomState>>,
}

impl Ownership {
    /// Ownership from (prefix, agent) pairs; a prefix may have several owners.
    pub fn new<'a>(owned: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut owners: HashMap<String, Vec<String>, _> = HashMap::default();
        for (prefix, agent) in owned {
            let agents = owners.entry(prefix.to_owned()).or_default();
            if !agents.iter().any(|a| a == agent) {
                agents.push(agent.to_owned());
            }
        }
        Self { owners: Arc::new(owners) }
    }

    /// The owners of each prefix covering `key`, longest prefix first.
    fn covering<'s, 'k>(&'s self, key: &'k str) -> impl Iterator<Item = &'s Vec<String>> + use<'s, 'k> {
        std::iter::successors(Some(key.len()), |&end| key[..end].rfind('.'))
            .filter_map(move |end| self.owners.get(&key[..end]))
    }

    /// The agent owning `key`, if any (under a shared prefix, the first
    /// agent given).
    pub fn owner_of(&self, key: &str) -> Option<&str> {
        self.covering(key).next().and_then(|agents| agents.first()).map(String::as_str)
    }

    /// Whether one of `agent`'s prefixes covers `key`.
    pub fn owns(&self, agent: &str, key: &str) -> bool {
        self.covering(key).any(|agents| agents.iter().any(|a| a == agent))
    }

    /// Whether `agent` may write `key`: one of its prefixes covers it.
    pub fn check(&self, agent: &str, key: &str) -> Result<(), OwnershipError> {
        if self.owns(agent, key) {
            return Ok(());
        }
        Err(OwnershipError {
            agent: agent.to_owned(),
            key: key.to_owned(),
            owner: self.owner_of(key).map(str::to_owned),
        })
    }
}

/// The keys an agent may read: its workflow `reads` patterns, plus the
/// keys it owns. `x` reads `x` and everything under it, `x.*` everything
/// under `x`, `x*` every key starting with `x`, `*` everything.
#[derive(Debug, Clone)]
pub struct ReadPatterns {
    patterns: Arc<[String]>,
}

impl ReadPatterns {
    /// Read patterns (`pm.stories`, `analyst.*`).
    pub fn new(patterns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { patterns: patterns.into_iter().map(Into::into).collect() }
    }

    /// Whether a pattern admits `key` (ownership is checked apart).
    pub fn admits(&self, key: &str) -> bool {
        self.patterns.iter().any(|pattern| {
            if pattern == "*" {
                true
            } else if let Some(stem) = pattern.strip_suffix(".*") {
                key.strip_prefix(stem).is_some_and(|rest| rest.starts_with('.'))
            } else if let Some(stem) = pattern.strip_suffix('*') {
                key.starts_with(stem)
            } else {
                covers(pattern, key)
            }
        })
    }

    /// The patterns, as the workflow gives them.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
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
    fn read_patterns_admit_what_they_say() {
        let reads = ReadPatterns::new(["pm.*", "analyst", "arch*"]);
        assert!(reads.admits("pm.stories") && reads.admits("pm.a.b"));
        assert!(!reads.admits("pm") && !reads.admits("pmx.a"));
        assert!(reads.admits("analyst") && reads.admits("analyst.users"));
        assert!(!reads.admits("analystx"));
        assert!(reads.admits("architect.stack") && reads.admits("arch"));
        assert!(!reads.admits("qa.report"));
        assert!(ReadPatterns::new(["*"]).admits("anything.at.all"));
        assert!(!ReadPatterns::new(Vec::<String>::new()).admits("a"));
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
        let err = own.check("pm", "pm").and(own.check("pm", "pmx")).unwrap_err();
        assert_eq!(err.owner, None);
        let nested = Ownership::new([("a", "outer"), ("a.b", "inner")]);
        assert_eq!(nested.owner_of("a.b.c"), Some("inner"));
        assert_eq!(nested.owner_of("a.c"), Some("outer"));
        assert!(nested.check("outer", "a.b.c").is_ok(), "the outer prefix covers it too");
        let err = own.check("pm", "qa.report").unwrap_err();
        assert_eq!(err.to_string(), "agent `pm` may not write `qa.report`: no agent owns it");
    }
}
