//! The agent output cache: an agent whose component, configuration and the
//! values it actually read are unchanged is not run again; its cached writes
//! are committed instead.
//!
//! Entries are grouped by a *family*: blake3 of the agent id, its component's
//! content hash, its configuration and the templates it may render. Each
//! entry records every key the agent read with the hash of the value it saw
//! (and every prefix it listed with the hash of the listing); a lookup hits
//! only if all of them still hold in the agent's snapshot. Declared inputs
//! are not enough: an agent may read any key it is allowed to.
//!
//! On disk (`<dir>/<family>/<entry>.bin`): a magic, a flag byte (lz4 or
//! plain), the blake3 of the payload, then the payload: MessagePack, lz4-
//! compressed above a threshold. An entry whose checksum or encoding is
//! wrong is deleted and counted, never trusted. `<dir>/index.msgpack` keeps
//! per-entry size, last use, hits and compute cost for eviction, and
//! lifetime lookup counters; it is rebuilt from the files if missing or
//! damaged. Eviction keeps the total under `max_size`, least valuable first:
//! least recently used, boosted by hit count and by the compute time an
//! entry saves (see [`score`]).
//!
//! Every file is reached through the cache directory, opened at each use
//! ([`Root`]): a symbolic link inside it (a family directory, an entry, the
//! index) never leads a read or write outside it.
//!
//! An agent's grants (files, HTTP, variables, real clocks) decide whether
//! it is cached and are part of its family: see [`grants`].
//!
//! Architecture invariant: this module knows nothing of wasmtime or tokio.

pub mod grants;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::confined::Root;
use crate::context::{Snapshot, StagedWrites};
use crate::runtime::{Reads, listing_hash, value_hash};
use crate::workflow::AgentSpec;
pub use grants::{TreeLimits, uncacheable};

const MAGIC: &[u8; 8] = b"ENSCACH1";
const HEADER: usize = 8 + 1 + 32;
const INDEX: &str = "index.msgpack";

/// What makes an agent's behaviour, besides what it reads.
#[derive(Debug, Clone)]
pub struct Family<'a> {
    /// The agent whose outputs these are.
    pub agent: &'a str,
    /// blake3 of the component's bytes.
    pub component: &'a str,
    /// The agent's MessagePack configuration.
    pub config: &'a [u8],
    /// blake3 of the templates directory, if the workflow has one.
    pub templates: Option<&'a str>,
    /// Its `reads` patterns, if declared (narrowing them can change what it
    /// may see).
    pub reads: Option<&'a [String]>,
    /// What it may read outside the context ([`AgentCache::grants_hash`]).
    pub grants: Option<&'a str>,
}

impl Family<'_> {
    fn id(&self) -> String {
        let mut h = blake3::Hasher::new();
        for part in [
            self.agent.as_bytes(),
            self.component.as_bytes(),
            self.config,
            self.templates.unwrap_or("").as_bytes(),
        ] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        if let Some(reads) = self.reads {
            h.update(b"reads");
            for pattern in reads {
                h.update(&(pattern.len() as u64).to_le_bytes());
                h.update(pattern.as_bytes());
            }
        }
        if let Some(grants) = self.grants {
            h.update(b"grants");
            h.update(grants.as_bytes());
        }
        h.finalize().to_hex()[..32].to_owned()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    values: Vec<(String, Option<[u8; 32]>)>,
    listings: Vec<(String, [u8; 32])>,
    writes: Vec<(String, serde_bytes::ByteBuf)>,
    cost_ms: u64,
}

/// Bookkeeping of one entry, for eviction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The entry's size on disk, in bytes.
    pub size: u64,
    /// Unix seconds.
    pub last_used: u64,
    /// Lookups it answered.
    pub hits: u64,
    /// The run time the entry saves, in milliseconds.
    pub cost_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    /// Entry path relative to the cache dir → meta.
    entries: BTreeMap<String, Meta>,
    lookups: u64,
    hits: u64,
}

/// The cache's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Entries in the cache.
    pub entries: u64,
    /// Their size on disk, in bytes.
    pub bytes: u64,
    /// Lifetime lookups and hits (all runs using this directory).
    pub lookups: u64,
    /// Lifetime hits.
    pub hits: u64,
    /// Damaged entries found and dropped since this cache was opened.
    pub dropped: u64,
}

/// How valuable an entry is to keep: the later it was used, the more it was
/// hit and the more compute it saves, the higher. Evicted lowest first.
///
/// One hit is worth an hour of recency, each doubling of hits another hour;
/// each doubling of the compute saved (from 100 ms) ten minutes.
pub fn score(meta: &Meta) -> f64 {
    meta.last_used as f64
        + 3600.0 * (1.0 + meta.hits as f64).log2()
        + 600.0 * (1.0 + meta.cost_ms as f64 / 100.0).log2()
}

/// An agent output cache in a directory. Safe to share between the runs of
/// one process; several processes may share a directory (the index is
/// rewritten whole, last writer wins; the entries stay valid).
#[derive(Debug)]
pub struct AgentCache {
    dir: PathBuf,
    max_size: u64,
    compress_above: u64,
    state: Mutex<(Index, u64)>,
    tree_limits: TreeLimits,
    /// The key of secrets' hashes, read or made at the first secret.
    secret_key: OnceLock<Result<[u8; 32], String>>,
}

/// A cache hit: the writes to commit.
#[derive(Debug)]
pub struct Hit {
    /// The writes to commit in the agent's place.
    pub writes: StagedWrites,
    /// What running the agent took when the entry was made.
    pub saved: Duration,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl AgentCache {
    /// Open (or start) the cache in `dir`.
    pub fn open(dir: &Path, max_size: u64, compress_above: u64) -> Self {
        let path = dir.join(INDEX);
        let read = Root::open(dir).and_then(|root| root.read(Path::new(INDEX)));
        let index = match read.map(|b| rmp_serde::from_slice::<Index>(&b)) {
            Ok(Ok(index)) => index,
            Ok(Err(e)) => {
                // A cache, not input: rebuilt, never trusted, never fatal.
                tracing::warn!("cache index {} is damaged ({e}); rebuilt from the entries", path.display());
                Self::rebuild(dir)
            }
            Err(_) => Self::rebuild(dir),
        };
        Self {
            dir: dir.to_owned(),
            max_size,
            compress_above,
            state: Mutex::new((index, 0)),
            tree_limits: TreeLimits::default(),
            secret_key: OnceLock::new(),
        }
    }

    /// Bound the walk that hashes granted trees differently.
    pub fn with_tree_limits(mut self, limits: TreeLimits) -> Self {
        self.tree_limits = limits;
        self
    }

    /// What of `agent`'s grants goes into its [`Family`] (`None`: it has
    /// none), or why it is not cached in this run: see [`grants`]. Hashes
    /// its granted trees (bounded by the tree limits) each time.
    pub fn grants_hash(&self, agent: &AgentSpec) -> Result<Option<String>, String> {
        grants::grants_hash(agent, self.tree_limits, || {
            self.secret_key.get_or_init(|| grants::secret_key(&self.dir)).clone()
        })
    }

    fn rebuild(dir: &Path) -> Index {
        let mut index = Index::default();
        let Ok(root) = Root::open(dir) else { return index };
        let Ok(families) = root.dir().entries() else { return index };
        // Family directories themselves, not links to one.
        for family in families.filter_map(Result::ok).filter(|f| f.file_type().is_ok_and(|t| t.is_dir())) {
            let name = family.file_name();
            let Ok(family) = root.subdir(Path::new(&name), false) else { continue };
            let Ok(files) = family.dir().entries() else { continue };
            for file in files.filter_map(Result::ok) {
                let rel = format!("{}/{}", name.to_string_lossy(), file.file_name().to_string_lossy());
                let Ok(meta) = file.metadata() else { continue };
                let last_used = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.into_std().duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                index.entries.insert(rel, Meta { size: meta.len(), last_used, hits: 0, cost_ms: 0 });
            }
        }
        index
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Index, u64)> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached writes of `family` whose recorded reads all hold in `snapshot`.
    pub fn lookup(&self, family: &Family<'_>, snapshot: &Snapshot) -> Option<Hit> {
        let id = family.id();
        let mut state = self.lock();
        state.0.lookups += 1;
        let family_dir = match Root::open(&self.dir).and_then(|root| root.subdir(Path::new(&id), false)) {
            Ok(dir) => dir,
            Err(e) => {
                if crate::confined::is_escape(&e) {
                    tracing::warn!("cache {}: {e}", self.dir.display());
                }
                return None;
            }
        };
        let Ok(files) = family_dir.dir().entries() else { return None };
        // Names starting with `.` are another writer's files being written.
        let mut names: Vec<PathBuf> = files
            .filter_map(Result::ok)
            .map(|f| PathBuf::from(f.file_name()))
            .filter(|n| !n.to_string_lossy().starts_with('.'))
            .collect();
        names.sort();
        for name in names {
            let path = family_dir.display(&name);
            let rel = format!("{id}/{}", name.to_string_lossy());
            let entry = match family_dir.read(&name).ok().and_then(|bytes| decode(&bytes)) {
                Some(entry) => entry,
                None => {
                    // Damaged (or a link out): never trusted; dropped, and the agent runs.
                    tracing::warn!("dropping damaged cache entry {}", path.display());
                    let _ = family_dir.remove_file(&name);
                    state.0.entries.remove(&rel);
                    state.1 += 1;
                    continue;
                }
            };
            let holds = entry
                .values
                .iter()
                .all(|(key, hash)| value_hash(snapshot.get(key).map(|e| &e.value[..])) == *hash)
                && entry.listings.iter().all(|(prefix, hash)| {
                    listing_hash(snapshot.range(prefix).map(|(k, _)| k.as_str())) == *hash
                });
            if holds {
                state.0.hits += 1;
                let size = family_dir.dir().metadata(&name).map_or(0, |m| m.len());
                let meta = state.0.entries.entry(rel).or_insert(Meta {
                    size,
                    last_used: 0,
                    hits: 0,
                    cost_ms: entry.cost_ms,
                });
                meta.hits += 1;
                meta.last_used = now();
                let writes = entry.writes.into_iter().map(|(k, v)| (k, v.into_vec())).collect();
                return Some(Hit { writes, saved: Duration::from_millis(entry.cost_ms) });
            }
        }
        None
    }

    /// Remember that `family`, reading `reads`, wrote `writes` in `cost`.
    pub fn store(&self, family: &Family<'_>, reads: &Reads, writes: &StagedWrites, cost: Duration) {
        let entry = Entry {
            values: reads.values.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            listings: reads.listings.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            writes: writes.iter().map(|(k, v)| (k.clone(), serde_bytes::ByteBuf::from(v.clone()))).collect(),
            cost_ms: cost.as_millis() as u64,
        };
        let Ok(payload) = rmp_serde::to_vec(&entry) else { return };
        let (flag, payload) = if payload.len() as u64 > self.compress_above {
            (1u8, lz4_flex::compress_prepend_size(&payload))
        } else {
            (0u8, payload)
        };
        let mut bytes = Vec::with_capacity(HEADER + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.push(flag);
        bytes.extend_from_slice(blake3::hash(&payload).as_bytes());
        bytes.extend_from_slice(&payload);

        let mut inputs = blake3::Hasher::new();
        for (k, v) in &entry.values {
            inputs.update(k.as_bytes());
            inputs.update(v.as_ref().map_or(&[0u8; 32][..], |h| &h[..]));
        }
        for (k, v) in &entry.listings {
            inputs.update(k.as_bytes());
            inputs.update(v);
        }
        let id = family.id();
        let name = format!("{}.bin", &inputs.finalize().to_hex()[..32]);
        let written = Root::create(&self.dir)
            .and_then(|root| root.write_atomic(&Path::new(&id).join(&name), &bytes, false));
        if let Err(e) = written {
            tracing::warn!("cannot store a cache entry in {}: {e}", self.dir.join(&id).display());
            return;
        }
        let meta = Meta { size: bytes.len() as u64, last_used: now(), hits: 0, cost_ms: entry.cost_ms };
        self.lock().0.entries.insert(format!("{id}/{name}"), meta);
    }

    /// Evict until the total size fits `max_size`, lowest [`score`] first;
    /// then save the index. Returns the evicted entries, in order.
    pub fn gc(&self) -> Vec<String> {
        let mut state = self.lock();
        let mut total: u64 = state.0.entries.values().map(|m| m.size).sum();
        let mut order: Vec<(String, Meta)> = state.0.entries.iter().map(|(k, m)| (k.clone(), *m)).collect();
        order.sort_by(|a, b| score(&a.1).total_cmp(&score(&b.1)).then_with(|| a.0.cmp(&b.0)));
        let mut evicted = Vec::new();
        let root = Root::open(&self.dir).ok();
        for (rel, meta) in order {
            if total <= self.max_size {
                break;
            }
            if let Some(root) = &root {
                let _ = root.remove_file(Path::new(&rel));
            }
            state.0.entries.remove(&rel);
            total = total.saturating_sub(meta.size);
            evicted.push(rel);
        }
        self.save(&state.0);
        evicted
    }

    /// Save the bookkeeping (after evicting what does not fit).
    pub fn flush(&self) {
        self.gc();
    }

    fn save(&self, index: &Index) {
        let Ok(bytes) = rmp_serde::to_vec(index) else { return };
        let saved =
            Root::create(&self.dir).and_then(|root| root.write_atomic(Path::new(INDEX), &bytes, false));
        if let Err(e) = saved {
            tracing::warn!("cannot save the cache index in {}: {e}", self.dir.display());
        }
    }

    /// The cache's counters.
    pub fn stats(&self) -> Stats {
        let state = self.lock();
        Stats {
            entries: state.0.entries.len() as u64,
            bytes: state.0.entries.values().map(|m| m.size).sum(),
            lookups: state.0.lookups,
            hits: state.0.hits,
            dropped: state.1,
        }
    }

    /// Remove every entry (and nothing else that lives in the directory).
    pub fn clear(&self) -> std::io::Result<()> {
        let mut state = self.lock();
        state.0 = Index::default();
        let root = match Root::open(&self.dir) {
            Ok(root) => root,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in root.dir().entries()?.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let family = name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit());
            // A link is never followed: not a family directory, removed as a link at most.
            if family && entry.file_type()?.is_dir() {
                root.dir().remove_dir_all(&name)?;
            } else if name == INDEX {
                root.remove_file(Path::new(&name))?;
            }
        }
        Ok(())
    }
}

/// blake3 (hex) of a directory's files: their relative paths and contents,
/// in path order. An unreadable directory hashes as empty. Read as the
/// template loader reads them: a symbolic link that leads outside `dir`
/// is not followed (nor one nested deeper than [`MAX_DEPTH`], a loop).
pub fn dir_hash(dir: &Path) -> String {
    fn walk(root: &Root, rel: &Path, depth: usize, files: &mut Vec<(String, PathBuf)>) {
        let entries =
            if rel.as_os_str().is_empty() { root.dir().entries() } else { root.dir().read_dir(rel) };
        let Ok(entries) = entries else { return };
        for entry in entries.filter_map(Result::ok) {
            let path = rel.join(entry.file_name());
            match root.dir().metadata(&path) {
                Ok(meta) if meta.is_dir() => {
                    if depth < MAX_DEPTH {
                        walk(root, &path, depth + 1, files);
                    }
                }
                Ok(_) => files.push((path.to_string_lossy().into_owned(), path)),
                Err(_) => {}
            }
        }
    }
    let mut files = Vec::new();
    if let Ok(root) = Root::open(dir) {
        walk(&root, Path::new(""), 0, &mut files);
        files.sort();
        let mut h = blake3::Hasher::new();
        for (rel, path) in files {
            h.update(rel.as_bytes());
            h.update(&[0]);
            h.update(blake3::hash(&root.read(&path).unwrap_or_default()).as_bytes());
        }
        return h.finalize().to_hex().to_string();
    }
    blake3::Hasher::new().finalize().to_hex().to_string()
}

/// How deep [`dir_hash`] goes into a templates directory.
pub const MAX_DEPTH: usize = 16;

fn decode(bytes: &[u8]) -> Option<Entry> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return None;
    }
    let (flag, sum, payload) = (bytes[8], &bytes[9..HEADER], &bytes[HEADER..]);
    if blake3::hash(payload).as_bytes() != sum {
        return None;
    }
    let plain = match flag {
        0 => payload.to_vec(),
        1 => lz4_flex::decompress_size_prepended(payload).ok()?,
        _ => return None,
    };
    rmp_serde::from_slice(&plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::ContextStore;

    fn family(agent: &str) -> Family<'_> {
        Family { agent, component: "c", config: &[], templates: None, reads: None, grants: None }
    }

    fn reads_of(snapshot: &Snapshot, keys: &[&str]) -> Reads {
        let mut reads = Reads::default();
        for key in keys {
            reads.values.insert((*key).into(), value_hash(snapshot.get(key).map(|e| &e.value[..])));
        }
        reads
    }

    #[test]
    fn a_hit_needs_every_read_value_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let cache = AgentCache::open(dir.path(), 1 << 20, 10);
        let mut store = ContextStore::new();
        store.commit("in", 0, BTreeMap::from([("in.x".into(), vec![1]), ("in.y".into(), vec![2])])).unwrap();
        let snap = store.snapshot();
        let writes = BTreeMap::from([("a.out".to_owned(), vec![9u8; 100])]);
        cache.store(
            &family("a"),
            &reads_of(&snap, &["in.x", "in.absent"]),
            &writes,
            Duration::from_millis(5),
        );

        let hit = cache.lookup(&family("a"), &snap).expect("hit");
        assert_eq!(hit.writes, writes, "compressed (100 > 10 bytes) and back");
        assert!(cache.lookup(&family("b"), &snap).is_none(), "another family");
        store.commit("in", 1, BTreeMap::from([("in.y".into(), vec![3])])).unwrap();
        assert!(cache.lookup(&family("a"), &store.snapshot()).is_some(), "in.y was not read");
        store.commit("in", 2, BTreeMap::from([("in.absent".into(), vec![0])])).unwrap();
        assert!(
            cache.lookup(&family("a"), &store.snapshot()).is_none(),
            "a key that appeared was read as absent"
        );
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.lookups, stats.hits), (1, 4, 2));
    }

    #[test]
    fn damaged_entries_are_dropped_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = AgentCache::open(dir.path(), 1 << 20, 1 << 20);
        let snap = ContextStore::new().snapshot();
        cache.store(&family("a"), &Reads::default(), &BTreeMap::new(), Duration::ZERO);
        let file =
            std::fs::read_dir(dir.path().join(family("a").id())).unwrap().next().unwrap().unwrap().path();
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&file, bytes).unwrap();
        assert!(cache.lookup(&family("a"), &snap).is_none());
        assert!(!file.exists(), "dropped");
        assert_eq!(cache.stats().dropped, 1);
    }

    #[test]
    fn eviction_goes_by_recency_boosted_by_hits_and_cost() {
        let old = Meta { size: 10, last_used: 1_000_000, hits: 0, cost_ms: 0 };
        let newer = Meta { last_used: 1_000_000 + 1800, ..old };
        let old_but_hit = Meta { hits: 1, ..old };
        let old_but_costly = Meta { cost_ms: 100 * 63, ..old }; // 6 doublings: one hour
        assert!(score(&old) < score(&newer));
        assert!(score(&newer) < score(&old_but_hit), "one hit outweighs half an hour");
        assert!((score(&old_but_costly) - score(&old_but_hit)).abs() < 1.0);

        let dir = tempfile::tempdir().unwrap();
        let cache = AgentCache::open(dir.path(), 15, 1 << 20);
        {
            let mut state = cache.lock();
            for (name, meta) in [("f/old", old), ("f/newer", newer), ("f/hit", old_but_hit)] {
                state.0.entries.insert(name.into(), meta);
            }
        }
        assert_eq!(cache.gc(), ["f/old", "f/newer"], "30 bytes over a 15-byte bound: lowest scores first");
        let reopened = AgentCache::open(dir.path(), 15, 1 << 20);
        assert_eq!(reopened.stats().entries, 1, "the index was saved");
    }
}
