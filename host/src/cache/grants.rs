//! Caching an agent that has grants: whether it may be cached at all, and
//! what of its grants goes into its cache family, so that an entry changes
//! whenever anything the agent could read outside the context changes.
//!
//! - **Not cached unless the workflow opts in** (`cache: true` on the agent):
//!   an `http` grant (a server's answers can change), a `read_write` file
//!   grant (the agent changes what it reads), real clocks and randomness
//!   (`wasi: true`). `cache: false` never caches. An agent with other grants
//!   and no `wasi: true` sees a fixed clock and seeded randomness, so it is
//!   cached like any other.
//! - **File grants**: the guest path, the mode and a content hash of the
//!   whole granted tree as the run starts (not only what the agent opened):
//!   every entry's path relative to the grant, its type, a regular file's
//!   contents, a symbolic link's target text (never followed). A tree of
//!   more than [`TreeLimits::entries`] entries or [`TreeLimits::bytes`] bytes
//!   of file contents, or one that cannot be read whole, makes the agent
//!   uncacheable for that run, with the reason in the run report. The tree
//!   is hashed again when the agent ends; if it changed meanwhile, nothing
//!   is stored.
//! - **Variables**: each name and value; a secret's value only as a keyed
//!   blake3 hash, keyed by a random key kept in the cache directory
//!   (`secret.key`, made on first use, readable by its owner only), so the
//!   cache holds nothing from which a secret can be checked by guessing
//!   without that key.
//! - **HTTP** (when opted in): the allow-list and limits.

use std::io::{Read, Write};
use std::path::Path;

use crate::workflow::AgentSpec;

/// The file in the cache directory that keys the hashes of secrets.
pub const SECRET_KEY: &str = "secret.key";

/// Bounds of the walk that hashes a granted tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLimits {
    /// Entries (files, directories, links) in all the agent's file grants.
    pub entries: u64,
    /// Bytes of file contents in all the agent's file grants.
    pub bytes: u64,
}

impl Default for TreeLimits {
    /// 20 000 entries and 256 MiB: hashing that takes well under a second.
    fn default() -> Self {
        Self { entries: 20_000, bytes: 256 << 20 }
    }
}

/// Why `agent` is never cached by its declaration alone (before anything is
/// hashed), or `None` if it may be.
pub fn uncacheable(agent: &AgentSpec) -> Option<&'static str> {
    match agent.cache {
        Some(false) => Some("cache: false"),
        Some(true) => None,
        None if agent.grants.http.is_some() => Some("http grant"),
        None if agent.grants.writes_files() => Some("read_write files"),
        None if agent.wasi => Some("real clocks (wasi: true)"),
        None => None,
    }
}

/// What of `agent`'s grants goes into its cache family (hex), `None` if it
/// has none and no real clocks (its family is then what it always was), or
/// why it cannot be cached in this run. `key` gives the key of secrets'
/// hashes (asked for only if the agent has a secret).
pub(crate) fn grants_hash(
    agent: &AgentSpec,
    limits: TreeLimits,
    key: impl FnOnce() -> Result<[u8; 32], String>,
) -> Result<Option<String>, String> {
    if let Some(because) = uncacheable(agent) {
        return Err(because.to_owned());
    }
    let grants = &agent.grants;
    if grants.is_empty() && !agent.wasi {
        return Ok(None);
    }
    let mut h = Hasher(blake3::Hasher::new());
    h.part(b"grants v1");
    h.part(&[u8::from(agent.wasi)]);
    let mut budget = limits;
    for file in &grants.files {
        h.part(b"file");
        h.part(file.guest.as_bytes());
        h.part(file.mode.name().as_bytes());
        let tree = tree_hash(&file.host, &mut budget).map_err(|why| match why {
            TreeError::TooLarge => format!(
                "granted tree too large to hash (its file grants hold more than {} entries or {} bytes; at {})",
                limits.entries, limits.bytes, file.guest
            ),
            TreeError::Unreadable(why) => format!("granted tree {} cannot be hashed: {why}", file.guest),
        })?;
        h.part(&tree);
    }
    if let Some(http) = &grants.http {
        h.part(b"http");
        for pattern in &http.allow {
            h.part(pattern.text.as_bytes());
        }
        let l = &http.limits;
        for n in [
            l.timeout.as_nanos() as u64,
            u64::from(l.max_requests),
            u64::from(l.max_concurrent),
            l.max_request_body,
            l.max_response_body,
        ] {
            h.part(&n.to_le_bytes());
        }
    }
    let mut key = Some(key);
    let mut secret_key = None;
    for variable in &grants.variables {
        h.part(b"variable");
        h.part(variable.name.as_bytes());
        if variable.value.secret {
            if secret_key.is_none() {
                let make = key.take().ok_or("the secret key was asked for twice")?;
                secret_key =
                    Some(make().map_err(|why| format!("secret variables need the cache key: {why}"))?);
            }
            let k = secret_key.as_ref().ok_or("no secret key")?;
            h.part(b"secret");
            h.part(blake3::keyed_hash(k, variable.value.text.as_bytes()).as_bytes());
        } else {
            h.part(b"value");
            h.part(variable.value.text.as_bytes());
        }
    }
    Ok(Some(h.0.finalize().to_hex()[..32].to_owned()))
}

/// Length-prefixed parts, so no two different sequences hash alike.
struct Hasher(blake3::Hasher);

impl Hasher {
    fn part(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }
}

/// Why a tree was not hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TreeError {
    /// Over the limits (what is left of them is in the budget).
    TooLarge,
    Unreadable(String),
}

/// blake3 of the tree at `root`: per entry, in path order, its path relative
/// to `root`, its type, and a file's contents or a symbolic link's target
/// (never followed; other kinds of file by type alone, never opened).
/// Counts against `budget`.
pub(crate) fn tree_hash(root: &Path, budget: &mut TreeLimits) -> Result<[u8; 32], TreeError> {
    let unreadable = |path: &Path, e: std::io::Error| {
        let rel = path.strip_prefix(root).unwrap_or(path);
        TreeError::Unreadable(format!(
            "{}: {e}",
            if rel.as_os_str().is_empty() { Path::new(".") } else { rel }.display()
        ))
    };
    let meta = std::fs::metadata(root).map_err(|e| unreadable(root, e))?;
    if !meta.is_dir() {
        return Err(TreeError::Unreadable("not a directory".into()));
    }
    let mut h = Hasher(blake3::Hasher::new());
    // Depth first, each directory's entries sorted by name.
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut names: Vec<std::ffi::OsString> = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| unreadable(&dir, e))? {
            let entry = entry.map_err(|e| unreadable(&dir, e))?;
            budget.entries = budget.entries.checked_sub(1).ok_or(TreeError::TooLarge)?;
            names.push(entry.file_name());
        }
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let path = dir.join(&name);
            let rel = path.strip_prefix(root).unwrap_or(&path);
            h.part(rel.as_os_str().as_encoded_bytes());
            let meta = std::fs::symlink_metadata(&path).map_err(|e| unreadable(&path, e))?;
            let kind = meta.file_type();
            if kind.is_symlink() {
                h.part(b"link");
                let target = std::fs::read_link(&path).map_err(|e| unreadable(&path, e))?;
                h.part(target.as_os_str().as_encoded_bytes());
            } else if kind.is_dir() {
                h.part(b"dir");
                subdirs.push(path);
            } else if kind.is_file() {
                h.part(b"file");
                budget.bytes = budget.bytes.checked_sub(meta.len()).ok_or(TreeError::TooLarge)?;
                h.part(&file_hash(&path, meta.len(), budget).map_err(|e| unreadable(&path, e))?);
            } else {
                h.part(b"other");
            }
        }
        // Popped in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(*h.0.finalize().as_bytes())
}

/// blake3 of a file's contents, reading no more than its length said plus
/// what is left of the budget (a file that grows while it is read).
fn file_hash(path: &Path, len: u64, budget: &mut TreeLimits) -> std::io::Result<[u8; 32]> {
    let file = std::fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let allowed = len.saturating_add(budget.bytes);
    let read = std::io::copy(&mut file.take(allowed.saturating_add(1)), &mut h)?;
    if read > allowed {
        return Err(std::io::Error::other("it grew past the hashing limit while it was read"));
    }
    budget.bytes = allowed - read;
    Ok(*h.finalize().as_bytes())
}

/// The key in `dir`'s [`SECRET_KEY`] file, made (32 random bytes, readable
/// by its owner only) if there is none.
pub(crate) fn secret_key(dir: &Path) -> Result<[u8; 32], String> {
    let path = dir.join(SECRET_KEY);
    let read = |path: &Path| -> Result<[u8; 32], String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        bytes.try_into().map_err(|_| format!("{} is not a 32-byte key", path.display()))
    };
    if path.exists() {
        return read(&path);
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| format!("no randomness for a new key: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    // Another process may make it at the same time: then theirs is the key.
    let tmp = dir.join(format!(".{SECRET_KEY}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = options.open(&tmp).and_then(|mut f| f.write_all(&key).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("cannot write {}: {e}", path.display()));
    }
    // Never replaces a key another process made first.
    match std::fs::hard_link(&tmp, &path) {
        Ok(()) => {
            let _ = std::fs::remove_file(&tmp);
            Ok(key)
        }
        Err(_) => {
            let _ = std::fs::remove_file(&tmp);
            read(&path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(root: &Path) -> Result<[u8; 32], TreeError> {
        tree_hash(root, &mut TreeLimits::default())
    }

    #[test]
    fn a_tree_hash_sees_contents_names_types_and_link_targets() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/x.txt"), "one").unwrap();
        std::fs::write(root.join("y.txt"), "two").unwrap();
        let first = hash(root).unwrap();
        assert_eq!(hash(root).unwrap(), first, "stable");

        std::fs::write(root.join("a/b/x.txt"), "One").unwrap();
        let changed = hash(root).unwrap();
        assert_ne!(changed, first, "contents");
        std::fs::write(root.join("a/b/x.txt"), "one").unwrap();
        assert_eq!(hash(root).unwrap(), first, "back");

        std::fs::rename(root.join("y.txt"), root.join("z.txt")).unwrap();
        assert_ne!(hash(root).unwrap(), first, "names");
        std::fs::rename(root.join("z.txt"), root.join("y.txt")).unwrap();

        std::fs::create_dir(root.join("empty")).unwrap();
        let with_dir = hash(root).unwrap();
        assert_ne!(with_dir, first, "an empty directory");
        std::fs::remove_dir(root.join("empty")).unwrap();
        std::fs::write(root.join("empty"), "").unwrap();
        assert_ne!(hash(root).unwrap(), with_dir, "a file where a directory was");
        std::fs::remove_file(root.join("empty")).unwrap();

        #[cfg(unix)]
        {
            let outside = tempfile::tempdir().unwrap();
            std::fs::write(outside.path().join("t"), "outside").unwrap();
            std::os::unix::fs::symlink(outside.path().join("t"), root.join("link")).unwrap();
            let linked = hash(root).unwrap();
            std::fs::write(outside.path().join("t"), "changed outside").unwrap();
            assert_eq!(hash(root).unwrap(), linked, "a link is its target's text, not followed");
            std::fs::remove_file(root.join("link")).unwrap();
            std::os::unix::fs::symlink(outside.path().join("u"), root.join("link")).unwrap();
            assert_ne!(hash(root).unwrap(), linked, "another target");
        }
    }

    #[test]
    fn a_tree_over_its_limits_is_not_hashed() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            std::fs::write(dir.path().join(format!("{i}")), [0u8; 100]).unwrap();
        }
        let hash = |entries, bytes| tree_hash(dir.path(), &mut TreeLimits { entries, bytes });
        assert!(hash(5, 500).is_ok());
        assert_eq!(hash(4, 500), Err(TreeError::TooLarge));
        assert_eq!(hash(5, 499), Err(TreeError::TooLarge));
        assert!(matches!(
            tree_hash(&dir.path().join("absent"), &mut TreeLimits::default()),
            Err(TreeError::Unreadable(_))
        ));
    }

    #[test]
    fn the_secret_key_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let key = secret_key(dir.path()).unwrap();
        assert_eq!(secret_key(dir.path()).unwrap(), key, "kept");
        assert_ne!(key, [0; 32]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_KEY)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "not readable by others: {mode:o}");
        }
        let other = tempfile::tempdir().unwrap();
        assert_ne!(secret_key(other.path()).unwrap(), key, "random");
        std::fs::write(other.path().join(SECRET_KEY), b"short").unwrap();
        assert!(secret_key(other.path()).unwrap_err().contains("not a 32-byte key"));
    }
}
