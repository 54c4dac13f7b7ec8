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

pub(crate) mod byte_values;
pub mod merge;
pub mod ownership;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use ownership::{Ownership, OwnershipError, ReadPatterns};

/// What happens when two agents commit different values to a shared key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictPolicy {
    /// Merge maps three-way; otherwise keep the first committed value.
    #[default]
    FirstWriterWins,
    /// Merge maps three-way; fail the later commit if they cannot merge.
    MergeOrFail,
    /// Any concurrent change fails the later commit.
    Fail,
}

/// A shared key prefix (the workflow's `shared:`) and its conflict policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPrefix {
    /// The keys it covers: those that start with it.
    pub prefix: String,
    /// What a conflict on one of its keys does.
    pub policy: ConflictPolicy,
}

/// The largest key, in bytes. Keys are names, not data.
pub const MAX_KEY_LEN: usize = 256;

/// An agent's value (MessagePack) as JSON, for showing it and for template
/// data: exactly one value, at most [`merge::MAX_DEPTH`] deep (deeper would
/// risk the stack of whatever thread decodes it) and nothing after it. Map
/// keys that are numbers or booleans become text; others are an error.
pub fn decode_value(bytes: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::to_value(merge::decode_exact(bytes)?).map_err(|e| e.to_string())
}

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

/// An immutable view of the context at one version. A persistent map:
/// taking one is O(1), and a commit while agents hold snapshots copies only
/// the O(log n) nodes it changes, not the whole context.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    version: u64,
    entries: imbl::OrdMap<String, Entry>,
}

impl Snapshot {
    /// The version this snapshot shows; 0 is the empty context.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The entry of `key`, if the snapshot has it.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Entries whose keys start with `prefix`, in key order.
    pub fn range<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a Entry)> {
        self.entries.range(prefix.to_owned()..).take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    /// How many keys the snapshot has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the snapshot has no key.
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
    /// The committing agent.
    pub agent: String,
    /// The context version the commit made.
    pub version: u64,
    /// The keys written, in order.
    pub keys: Vec<String>,
    /// The values written (after conflict resolution), in the order of `keys`.
    pub values: Vec<Arc<[u8]>>,
    /// Conflicts met and resolved.
    pub conflicts: Vec<Conflict>,
}

/// How a write-write conflict was resolved. Serialised as its
/// [`Display`](std::fmt::Display) sentence (what journals and run reports
/// have always held), and read back from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The two writes merged three-way; the merge was committed.
    Merged,
    /// They could not merge (they disagree at `path`); the first committed
    /// value stays and the later write to this key is dropped.
    KeptFirst {
        /// Where they disagree.
        path: String,
    },
    /// The key's policy refused the later commit as a whole.
    Failed {
        /// Where they disagree, when they were compared.
        path: Option<String>,
    },
}

impl std::fmt::Display for Resolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Merged => f.write_str("merged three-way"),
            Self::KeptFirst { path } => {
                write!(f, "kept the first writer's value (they disagree at `{path}`)")
            }
            Self::Failed { path: Some(path) } => write!(f, "commit refused (they disagree at `{path}`)"),
            Self::Failed { path: None } => f.write_str("commit refused (the key's policy is `fail`)"),
        }
    }
}

impl std::str::FromStr for Resolution {
    type Err = String;

    /// The resolution whose [`Display`](std::fmt::Display) sentence `text` is.
    fn from_str(text: &str) -> Result<Self, String> {
        let between = |prefix: &str| {
            text.strip_prefix(prefix).and_then(|rest| rest.strip_suffix("`)")).map(str::to_owned)
        };
        if text == "merged three-way" {
            Ok(Self::Merged)
        } else if text == "commit refused (the key's policy is `fail`)" {
            Ok(Self::Failed { path: None })
        } else if let Some(path) = between("kept the first writer's value (they disagree at `") {
            Ok(Self::KeptFirst { path })
        } else if let Some(path) = between("commit refused (they disagree at `") {
            Ok(Self::Failed { path: Some(path) })
        } else {
            Err(format!("unknown conflict resolution `{text}`"))
        }
    }
}

impl Serialize for Resolution {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Resolution {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Two agents wrote one key: `agent`'s snapshot (version `base_version`)
/// predates `other`'s write. Detected by content hash: equal values are not
/// a conflict. Its serde form is the journal's record and the run report's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The key both wrote.
    pub key: String,
    /// The agent whose commit came second.
    pub agent: String,
    /// The agent whose write came first.
    pub other: String,
    /// The version `agent` read.
    pub base_version: u64,
    /// blake3 (hex) of `agent`'s value and of `other`'s.
    pub ours_hash: String,
    /// blake3 (hex) of `other`'s value.
    pub theirs_hash: String,
    /// How the conflict was resolved.
    pub resolution: Resolution,
}

/// A commit the key's conflict policy refused; nothing of it was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("agent `{}` cannot commit `{}`: agent `{}` changed it since this agent's snapshot (version {}); {}", .0.agent, .0.key, .0.other, .0.base_version, .0.resolution)]
pub struct CommitError(pub Box<Conflict>);

/// The versioned context of one run: the current snapshot, every version of
/// every key, and the conflict policies of shared prefixes.
///
/// Commits are serialised by `&mut self` and atomic: a commit applies all
/// its writes as one new version, or (refused by a policy) none.
#[derive(Debug, Default)]
pub struct ContextStore {
    current: Snapshot,
    history: BTreeMap<String, Vec<Entry>>,
    /// (prefix, policy), longest prefix first.
    policies: Vec<(String, ConflictPolicy)>,
}

impl ContextStore {
    /// An empty context, at version 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose shared prefixes resolve conflicts by their policies
    /// (everything else: first writer wins).
    pub fn with_policies(shared: &[SharedPrefix]) -> Self {
        let mut policies: Vec<(String, ConflictPolicy)> =
            shared.iter().map(|s| (s.prefix.clone(), s.policy)).collect();
        policies.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Self { policies, ..Self::default() }
    }

    /// The current version, for an agent about to start. O(1): no copy.
    pub fn snapshot(&self) -> Snapshot {
        self.current.clone()
    }

    /// Every version of `key`, oldest first.
    pub fn history(&self, key: &str) -> &[Entry] {
        self.history.get(key).map_or(&[], Vec::as_slice)
    }

    fn policy(&self, key: &str) -> ConflictPolicy {
        self.policies
            .iter()
            .find(|(p, _)| ownership::covers(p, key))
            .map(|(_, policy)| *policy)
            .unwrap_or_default()
    }

    /// The entry of `key` as of `version`.
    fn at(&self, key: &str, version: u64) -> Option<&Entry> {
        self.history(key).iter().rev().find(|e| e.version <= version)
    }

    /// Commit `agent`'s `writes`, made against the snapshot of version
    /// `base`, as one new version. A key changed since `base` by another
    /// agent to a different value is a conflict, resolved by the key's
    /// policy: maps merge three-way; what cannot merge keeps the first value
    /// (`first_writer_wins`) or refuses the whole commit (`merge_or_fail`);
    /// `fail` refuses any conflict.
    pub fn commit(&mut self, agent: &str, base: u64, writes: StagedWrites) -> Result<Commit, CommitError> {
        let mut applied: Vec<(String, Vec<u8>)> = Vec::with_capacity(writes.len());
        let mut conflicts = Vec::new();
        for (key, value) in writes {
            let Some(current) = self.current.get(&key).filter(|c| c.version > base && *c.value != value[..])
            else {
                applied.push((key, value));
                continue;
            };
            let policy = self.policy(&key);
            let conflict = |resolution| Conflict {
                key: key.clone(),
                agent: agent.to_owned(),
                other: current.writer.to_string(),
                base_version: base,
                ours_hash: blake3::hash(&value).to_hex().to_string(),
                theirs_hash: blake3::hash(&current.value).to_hex().to_string(),
                resolution,
            };
            if policy == ConflictPolicy::Fail {
                return Err(CommitError(Box::new(conflict(Resolution::Failed { path: None }))));
            }
            let base_value = self.at(&key, base).map(|e| &e.value[..]);
            match merge::three_way(base_value, &value, &current.value) {
                merge::Merge::Merged(merged) => {
                    conflicts.push(conflict(Resolution::Merged));
                    applied.push((key, merged));
                }
                merge::Merge::Conflict { path } => {
                    if policy == ConflictPolicy::MergeOrFail {
                        return Err(CommitError(Box::new(conflict(Resolution::Failed { path: Some(path) }))));
                    }
                    conflicts.push(conflict(Resolution::KeptFirst { path }));
                }
            }
        }
        let version = self.current.version + 1;
        let writer: Arc<str> = Arc::from(agent);
        let entries = &mut self.current.entries;
        let (mut keys, mut values) = (Vec::with_capacity(applied.len()), Vec::with_capacity(applied.len()));
        for (key, value) in applied {
            let entry = Entry { value: value.into(), writer: writer.clone(), version };
            self.history.entry(key.clone()).or_default().push(entry.clone());
            values.push(entry.value.clone());
            entries.insert(key.clone(), entry);
            keys.push(key);
        }
        self.current.version = version;
        Ok(Commit { agent: agent.to_owned(), version, keys, values, conflicts })
    }

    /// Apply a journaled commit as it was (a resumed run rebuilding its
    /// context). `version` must be the next one.
    pub fn replay(
        &mut self,
        agent: &str,
        version: u64,
        writes: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> bool {
        if version != self.current.version + 1 {
            return false;
        }
        let writer: Arc<str> = Arc::from(agent);
        let entries = &mut self.current.entries;
        for (key, value) in writes {
            let entry = Entry { value: value.into(), writer: writer.clone(), version };
            self.history.entry(key.clone()).or_default().push(entry.clone());
            entries.insert(key, entry);
        }
        self.current.version = version;
        true
    }
}

/// Why a string is not a context key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is empty.
    #[error("context key is empty")]
    Empty,
    /// The key is longer than [`MAX_KEY_LEN`] bytes.
    #[error("context key `{key}…` is longer than {MAX_KEY_LEN} bytes")]
    TooLong {
        /// The key's beginning.
        key: String,
    },
    #[error(
        "context key `{key}` is not a dotted name (segments of letters, digits, `_` or `-`, joined by `.`)"
    )]
    /// The key is not a dotted name.
    Malformed {
        /// The key.
        key: String,
    },
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
    // Segments of letters, digits, `_` or `-`, joined by `.`: one pass over
    // the bytes (every agent's `get` and `put` checks its key).
    let mut segment = 0usize;
    for b in key.bytes() {
        match b {
            b'.' if segment > 0 => segment = 0,
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => segment += 1,
            _ => return Err(KeyError::Malformed { key: key.to_owned() }),
        }
    }
    if segment > 0 { Ok(()) } else { Err(KeyError::Malformed { key: key.to_owned() }) }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_values_decode_shallow_and_refuse_deep_nesting_without_overflowing() {
        let value = decode_value(&[0x81, 0xa1, b'a', 0x92, 0x01, 0xa2, b'o', b'k']).unwrap();
        assert_eq!(value, serde_json::json!({"a": [1, "ok"]}));
        // 100 000 nested one-element arrays: refused, not a stack overflow.
        let mut deep = vec![0x91u8; 100_000];
        deep.push(0xc0);
        assert!(decode_value(&deep).is_err());
        assert!(decode_value(&[0x01, 0x02]).unwrap_err().contains("1 bytes follow"));
        assert_eq!(decode_value(&[0x81, 0x01, 0x02]).unwrap(), serde_json::json!({"1": 2}), "keys as text");
    }

    #[test]
    fn snapshots_do_not_see_later_commits() {
        let mut store = ContextStore::new();
        let before = store.snapshot();
        let commit = store.commit("a", 0, BTreeMap::from([("a.x".to_owned(), vec![1])])).unwrap();
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
        store.commit("a", 0, writes).unwrap();
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
