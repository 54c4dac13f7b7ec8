//! The shared, versioned context that agents read and write.
//!
//! Every commit creates a new version. An agent reads the [`Snapshot`] of the
//! version current when it started, so it never sees another agent's
//! uncommitted writes, and readers never take a lock: a snapshot is an `Arc`
//! of an immutable map. Writes are staged by the runtime and committed here
//! atomically, one agent at a time.
//!
//! Ownership is pre-allocated: each agent owns key prefixes, and [`Ownership`]
//! is the one place that decides who may write a key.
//!
//! Architecture invariant: this module knows nothing of wasmtime or tokio.

pub mod ownership;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use ownership::{Ownership, OwnershipError};

/// The largest key, in bytes. Keys are names, not data.
pub const MAX_KEY_LEN: usize = 256;

/// A committed value and who wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// MessagePack bytes.
    pub value: Arc<[u8]>,
    /// The agent whose commit wrote this value.
    pub writer: Arc<str>,
    /// The context version this value was committed in.
    pub version: u64,
}

/// An immutable view of the context at one version.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    version: u64,
    entries: Arc<BTreeMap<String, Entry>>,
}

impl Snapshot {
    /// The version this snapshot shows; 0 is the empty context.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Entries whose keys start with `prefix`, in key order.
    pub fn range<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a Entry)> {
        self.entries.range(prefix.to_owned()..).take_while(move |(k, _)| k.starts_with(prefix))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Writes an agent staged during one invocation, in key order. Later writes to
/// the same key replace earlier ones.
pub type StagedWrites = BTreeMap<String, Vec<u8>>;

/// The record of one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub agent: String,
    pub version: u64,
    pub keys: Vec<String>,
}

/// The versioned store. Callers serialise commits (it takes `&mut self`).
#[derive(Debug, Default)]
pub struct ContextStore {
    current: Snapshot,
}

impl ContextStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current version, cheap to clone and safe to read from any thread.
    pub fn snapshot(&self) -> Snapshot {
        self.current.clone()
    }

    /// Commit `writes` by `agent` atomically as one new version. An empty set
    /// of writes still creates a version, so every successful agent has one.
    pub fn commit(&mut self, agent: &str, writes: StagedWrites) -> Commit {
        let version = self.current.version + 1;
        let writer: Arc<str> = Arc::from(agent);
        let entries = Arc::make_mut(&mut self.current.entries);
        let mut keys = Vec::with_capacity(writes.len());
        for (key, value) in writes {
            keys.push(key.clone());
            let entry = Entry { value: value.into(), writer: writer.clone(), version };
            entries.insert(key, entry);
        }
        self.current.version = version;
        Commit { agent: agent.to_owned(), version, keys }
    }
}

/// Why a key is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("context key is empty")]
    Empty,
    #[error("context key `{key}…` is longer than {MAX_KEY_LEN} bytes")]
    TooLong { key: String },
    #[error(
        "context key `{key}` is not a dotted name (segments of letters, digits, `_` or `-`, joined by `.`)"
    )]
    Malformed { key: String },
}

/// Check that `key` is a dotted name such as `pm.user_stories`.
pub fn validate_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        let cut = key.char_indices().take_while(|(i, _)| *i < 40).last().map_or(0, |(i, c)| i + c.len_utf8());
        return Err(KeyError::TooLong { key: key[..cut].to_owned() });
    }
    let segment_ok =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if key.split('.').all(segment_ok) { Ok(()) } else { Err(KeyError::Malformed { key: key.to_owned() }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_do_not_see_later_commits() {
        let mut store = ContextStore::new();
        let before = store.snapshot();
        let commit = store.commit("a", BTreeMap::from([("a.x".to_owned(), vec![1])]));
        assert_eq!(commit.version, 1);
        assert!(before.get("a.x").is_none());
        let after = store.snapshot();
        assert_eq!(&*after.get("a.x").map(|e| e.value.clone()).unwrap_or_default(), &[1]);
        assert_eq!(after.get("a.x").map(|e| &*e.writer), Some("a"));
    }

    #[test]
    fn range_lists_a_prefix_only() {
        let mut store = ContextStore::new();
        let writes = ["a.x", "a.y", "ab.z", "b.x"].map(|k| (k.to_owned(), vec![0])).into_iter().collect();
        store.commit("a", writes);
        let snap = store.snapshot();
        let keys: Vec<_> = snap.range("a.").map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a.x", "a.y"]);
    }

    #[test]
    fn keys_are_dotted_names() {
        assert!(validate_key("pm.user_stories").is_ok());
        assert!(validate_key("analyst.project-brief.v2").is_ok());
        assert_eq!(validate_key(""), Err(KeyError::Empty));
        assert!(matches!(validate_key("a..b"), Err(KeyError::Malformed { .. })));
        assert!(matches!(validate_key("a b"), Err(KeyError::Malformed { .. })));
        assert!(matches!(validate_key(&"x".repeat(300)), Err(KeyError::TooLong { .. })));
    }
}
