//! The files and variables the workflow granted an Ensemble agent, through
//! WASI 0.2 (`wasi:filesystem`, `wasi:cli/environment`), for agents written
//! with [`ensemble_agent_sdk`]. Agents that do not depend on this crate import
//! no WASI at all.
//!
//! A workflow grants directories and variables per agent:
//!
//! ```yaml
//! agents:
//!   reader:
//!     component: reader.wasm
//!     grants:
//!       files: [{ path: docs, as: /docs, mode: read }, { path: out, as: /out, mode: read_write }]
//!       variables: { API_URL: { value: "https://example.com" } }
//! ```
//!
//! Paths are the guest paths of the grants (`/docs/notes.md`): the part
//! after the grant's path is opened inside the granted directory, and the
//! host refuses anything that would leave it (`..`, a symbolic link out).
//! A path under no grant fails with [`FileError`] at once.
//!
//! The raw WASI 0.2 bindings are [`wasi`], for what these helpers do not do.

use std::fmt;

pub use wasip2 as wasi;
use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, ErrorCode, OpenFlags, PathFlags,
};

/// A file operation the host or WASI refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// What was tried: `read`, `list` or `write`.
    pub action: &'static str,
    /// The guest path given.
    pub path: String,
    /// Why, in WASI's words (`not-permitted`, `no-entry`, ...) or the SDK's.
    pub reason: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {} `{}`: {}", self.action, self.path, self.reason)
    }
}

impl std::error::Error for FileError {}

impl From<FileError> for ensemble_agent_sdk::AgentError {
    /// [`AgentError::Failed`](ensemble_agent_sdk::AgentError::Failed) with the error's text.
    fn from(error: FileError) -> Self {
        Self::Failed(error.to_string())
    }
}

/// One entry of a listed directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    /// `file`, `directory`, `symlink` or `other`.
    pub kind: &'static str,
}

/// The granted directory holding guest path `path`, and the rest of the
/// path inside it (`.` for the directory itself).
fn resolve(action: &'static str, path: &str) -> Result<(Descriptor, String), FileError> {
    let error = |reason: String| FileError { action, path: path.to_owned(), reason };
    let mut best: Option<(Descriptor, String)> = None;
    for (dir, guest) in get_directories() {
        let root = guest.trim_end_matches('/');
        let rest = match path.strip_prefix(root) {
            Some("") => ".",
            Some(rest) if rest.starts_with('/') || root.is_empty() => rest.trim_start_matches('/'),
            _ => continue,
        };
        if best.as_ref().is_none_or(|(_, r)| rest.len() < r.len()) {
            best = Some((dir, if rest.is_empty() { ".".to_owned() } else { rest.to_owned() }));
        }
    }
    best.ok_or_else(|| error("no granted directory holds it".to_owned()))
}

fn open(
    action: &'static str,
    path: &str,
    open: OpenFlags,
    flags: DescriptorFlags,
) -> Result<Descriptor, FileError> {
    let (dir, rest) = resolve(action, path)?;
    dir.open_at(PathFlags::SYMLINK_FOLLOW, &rest, open, flags).map_err(|e| wasi_error(action, path, e))
}

fn wasi_error(action: &'static str, path: &str, code: ErrorCode) -> FileError {
    FileError { action, path: path.to_owned(), reason: code.name().to_owned() }
}

/// The bytes of the granted file at `path`.
///
/// ```no_run
/// # fn f() -> Result<(), ensemble_agent_sdk::AgentError> {
/// let pdf = ensemble_agent_sdk_wasi::read("/docs/paper.pdf")?;
/// # let _ = pdf; Ok(()) }
/// ```
///
/// # Errors
///
/// [`FileError`] naming the path: under no grant, missing, not readable, or
/// outside its granted directory.
pub fn read(path: &str) -> Result<Vec<u8>, FileError> {
    // The host returns at most 64 KiB a call, and zeroes as much as is asked:
    // ask for what the size says is left, then probe for the end with a few
    // bytes (the file may have grown), then read on in large chunks.
    const PROBE: u64 = 32;
    const CHUNK: u64 = 1 << 16;
    let file = open("read", path, OpenFlags::empty(), DescriptorFlags::READ)?;
    let size = file.stat().map(|s| s.size).unwrap_or(0);
    let mut bytes = Vec::new();
    loop {
        let offset = bytes.len() as u64;
        let want = match offset.cmp(&size) {
            std::cmp::Ordering::Less => size - offset,
            std::cmp::Ordering::Equal => PROBE,
            std::cmp::Ordering::Greater => CHUNK,
        };
        let (chunk, end) = file.read(want, offset).map_err(|e| wasi_error("read", path, e))?;
        let done = end || chunk.is_empty();
        if bytes.is_empty() {
            // The first chunk is kept, not copied: a small file is one chunk.
            bytes = chunk;
            if !done {
                bytes.reserve(usize::try_from(size.saturating_sub(bytes.len() as u64)).unwrap_or(0));
            }
        } else {
            bytes.extend_from_slice(&chunk);
        }
        if done {
            return Ok(bytes);
        }
    }
}

/// The text of the granted file at `path` (UTF-8).
///
/// ```no_run
/// # fn f() -> Result<(), ensemble_agent_sdk::AgentError> {
/// let notes = ensemble_agent_sdk_wasi::read_to_string("/docs/notes.md")?;
/// ensemble_agent_sdk::context::put("reader.notes", &notes)?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`read`], and when the file is not UTF-8.
pub fn read_to_string(path: &str) -> Result<String, FileError> {
    String::from_utf8(read(path)?).map_err(|e| FileError {
        action: "read",
        path: path.to_owned(),
        reason: format!("not UTF-8 text ({e})"),
    })
}

/// The entries of the granted directory at `path`, sorted by name (`.` and
/// `..` are not listed).
///
/// ```no_run
/// # fn f() -> Result<(), ensemble_agent_sdk::AgentError> {
/// for entry in ensemble_agent_sdk_wasi::list("/docs")? {
///     ensemble_agent_sdk::log::info(&format!("{} ({})", entry.name, entry.kind));
/// }
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`FileError`] naming the path, as for [`read`].
pub fn list(path: &str) -> Result<Vec<DirEntry>, FileError> {
    let dir = open("list", path, OpenFlags::DIRECTORY, DescriptorFlags::READ)?;
    let stream = dir.read_directory().map_err(|e| wasi_error("list", path, e))?;
    let mut entries = Vec::new();
    while let Some(entry) = stream.read_directory_entry().map_err(|e| wasi_error("list", path, e))? {
        let kind = match entry.type_ {
            DescriptorType::RegularFile => "file",
            DescriptorType::Directory => "directory",
            DescriptorType::SymbolicLink => "symlink",
            _ => "other",
        };
        entries.push(DirEntry { name: entry.name, kind });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Write `bytes` to the file at `path` in a `read_write` grant, creating or
/// replacing it.
///
/// ```no_run
/// # fn f() -> Result<(), ensemble_agent_sdk::AgentError> {
/// ensemble_agent_sdk_wasi::write("/out/summary.md", b"# Summary\n")?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`FileError`] naming the path: a `read` grant (`not-permitted` or
/// `read-only`), under no grant, outside its granted directory.
pub fn write(path: &str, bytes: &[u8]) -> Result<(), FileError> {
    let file = open("write", path, OpenFlags::CREATE | OpenFlags::TRUNCATE, DescriptorFlags::WRITE)?;
    let mut written = 0;
    while written < bytes.len() {
        let n = file.write(&bytes[written..], written as u64).map_err(|e| wasi_error("write", path, e))?;
        if n == 0 {
            return Err(FileError {
                action: "write",
                path: path.to_owned(),
                reason: "no progress".to_owned(),
            });
        }
        written += usize::try_from(n).unwrap_or(usize::MAX);
    }
    Ok(())
}

/// The value of the granted variable `name`; `None` when it is not granted.
///
/// ```no_run
/// let url = ensemble_agent_sdk_wasi::var("API_URL").unwrap_or_default();
/// # let _ = url;
/// ```
///
/// A secret variable's value is the agent's to use, never to show: the host
/// replaces it with `***` in logs, progress and errors, and fails an agent
/// that writes it to the context.
pub fn var(name: &str) -> Option<String> {
    wasip2::cli::environment::get_environment().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}
