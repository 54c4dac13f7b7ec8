//! The on-disk cache of compiled components.
//!
//! Compiling a component is the slowest thing the host does (tens of
//! milliseconds for a small Rust agent, tens of seconds for a Python one), so
//! compiled artifacts are kept on disk, keyed by the component's content hash
//! and the engine's compatibility hash: a different wasmtime version or
//! configuration never loads an artifact it did not make.
//!
//! A compiled artifact is native code that wasmtime maps and runs without
//! validation, so the cache must never hand it a file that is not exactly what
//! this engine wrote. Each file carries a header with a checksum of the
//! artifact; a file that fails the check is deleted and compiled again.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::confined::Root;

const MAGIC: &[u8; 8] = b"ENSCWASM";
const HEADER_LEN: usize = MAGIC.len() + blake3::OUT_LEN;

/// Feeds `std::hash::Hash` into blake3, for the engine's compatibility hash.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let bytes = self.0.finalize();
        u64::from_le_bytes(bytes.as_bytes()[..8].try_into().unwrap_or_default())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// A stable hex digest of the engine's compatibility hash.
pub(crate) fn engine_fingerprint(engine: &wasmtime::Engine) -> String {
    let mut hasher = Blake3Hasher(blake3::Hasher::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.finalize().to_hex()[..16].to_owned()
}

/// Each read or write opens the cache's directory ([`Root`]) and reaches
/// the file through it: a symbolic link inside it never leads a read or
/// write outside. (Opened per use, not kept: a directory removed while the
/// engine lives is made again, not written into after its removal.)
#[derive(Debug)]
pub(crate) struct CompiledCache {
    dir: PathBuf,
}

impl CompiledCache {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn name(content_hash: &str, fingerprint: &str) -> PathBuf {
        PathBuf::from(format!("{content_hash}-{fingerprint}.cwasm"))
    }

    /// The open directory; made first if `create`.
    fn root(&self, create: bool) -> std::io::Result<Root> {
        if create { Root::create(&self.dir) } else { Root::open(&self.dir) }
    }

    /// The artifact stored for this key, if present and intact. A damaged
    /// file is removed, and `None` returned so the caller compiles again.
    pub(crate) fn get(&self, content_hash: &str, fingerprint: &str) -> Option<Vec<u8>> {
        let root = self.root(false).ok()?;
        let name = Self::name(content_hash, fingerprint);
        let mut bytes = match root.read(&name) {
            Ok(bytes) => bytes,
            Err(e) => {
                if crate::confined::is_escape(&e) {
                    tracing::warn!("compiled-component cache: {e}; recompiling");
                }
                return None;
            }
        };
        let intact = bytes.len() >= HEADER_LEN
            && &bytes[..MAGIC.len()] == MAGIC
            && bytes[MAGIC.len()..HEADER_LEN] == *blake3::hash(&bytes[HEADER_LEN..]).as_bytes();
        if !intact {
            let path = root.display(&name);
            tracing::warn!(path = %path.display(), "compiled-component cache entry is damaged; recompiling");
            let _ = root.remove_file(&name);
            return None;
        }
        bytes.drain(..HEADER_LEN);
        Some(bytes)
    }

    /// Store an artifact. Written to a temporary file and renamed, so readers
    /// never see half a file. Failure to write is logged, not fatal: the
    /// cache is an optimisation.
    pub(crate) fn put(&self, content_hash: &str, fingerprint: &str, artifact: &[u8]) {
        if let Err(e) = self.try_put(&Self::name(content_hash, fingerprint), artifact) {
            tracing::warn!(dir = %self.dir.display(), "cannot write the compiled-component cache: {e}");
        }
    }

    fn try_put(&self, name: &Path, artifact: &[u8]) -> std::io::Result<()> {
        self.root(true)?.write_atomic_with(name, false, |file| {
            file.write_all(MAGIC)?;
            file.write_all(blake3::hash(artifact).as_bytes())?;
            file.write_all(artifact)
        })
    }
}
