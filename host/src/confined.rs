//! The host's own files, confined to their directories: outputs, the state
//! directory (journals, compiled components), the agent output cache and the
//! templates are each reached through a [`cap_std::fs::Dir`] opened once at
//! their root, so no `..`, absolute path or symbolic link met *inside* the
//! root can lead a read or write outside it. The root itself is opened with
//! the process's authority: a symbolic link in the path the user chose (a
//! `--state-dir` through a link) is theirs to choose.
//!
//! Architecture invariant: this module knows nothing of wasmtime or tokio.

use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};

/// A directory everything under which is reached without leaving it.
#[derive(Debug)]
pub struct Root {
    dir: Dir,
    path: PathBuf,
}

impl Root {
    /// Open the existing directory `path` (with the process's authority).
    pub fn open(path: &Path) -> io::Result<Self> {
        let dir = Dir::open_ambient_dir(non_empty(path), ambient_authority())?;
        Ok(Self { dir, path: path.to_owned() })
    }

    /// Make the directory `path` (and its parents) if need be, and open it.
    pub fn create(path: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(non_empty(path))?;
        Self::open(path)
    }

    /// The directory `rel` inside this one, made if `create`; it must not
    /// lead outside this one.
    pub fn subdir(&self, rel: &Path, create: bool) -> io::Result<Self> {
        // A link in the way makes `create_dir_all` say only "exists":
        // opening says why it is refused.
        let made = if create { self.dir.create_dir_all(rel) } else { Ok(()) };
        let dir = match (made, self.dir.open_dir(rel)) {
            (_, Ok(dir)) => dir,
            (Err(e), Err(open)) if !is_escape(&open) => return Err(self.explain(rel, e)),
            (_, Err(open)) => return Err(self.explain(rel, open)),
        };
        Ok(Self { dir, path: self.path.join(rel) })
    }

    /// The path the root was opened at (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open directory.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// `rel` under the root's path (for messages).
    pub fn display(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    /// The bytes of the file `rel`.
    pub fn read(&self, rel: &Path) -> io::Result<Vec<u8>> {
        self.dir.read(rel).map_err(|e| self.explain(rel, e))
    }

    /// Open the existing file `rel` for reading and writing.
    pub fn open_rw(&self, rel: &Path) -> io::Result<std::fs::File> {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        self.dir.open_with(rel, &options).map(cap_std::fs::File::into_std).map_err(|e| self.explain(rel, e))
    }

    /// Create the file `rel` for reading and writing; it must not exist
    /// (not even as a symbolic link).
    pub fn create_new(&self, rel: &Path) -> io::Result<std::fs::File> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(true);
        self.dir.open_with(rel, &options).map(cap_std::fs::File::into_std).map_err(|e| self.explain(rel, e))
    }

    /// Remove the file (or symbolic link: never its target) `rel`.
    pub fn remove_file(&self, rel: &Path) -> io::Result<()> {
        self.dir.remove_file(rel).map_err(|e| self.explain(rel, e))
    }

    /// Rename `from` to `to`, both inside the root.
    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.dir.rename(from, &self.dir, to).map_err(|e| self.explain(to, e))
    }

    /// Make the root's entries (a rename, a new file's name) durable.
    pub fn sync(&self) -> io::Result<()> {
        // Through a descriptor opened for reading (the root's may not sync).
        #[cfg(unix)]
        self.dir.open(".")?.sync_all()?;
        Ok(())
    }

    /// Write `bytes` to `rel` atomically: to a new temporary file beside it
    /// (never through an existing file or link), then renamed over it, so a
    /// reader sees the old file or the new one, never half of one. Missing
    /// directories inside the root are made. With `durable`, the file and
    /// the rename are synced to disk.
    pub fn write_atomic(&self, rel: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
        self.write_atomic_with(rel, durable, |file| file.write_all(bytes))
    }

    /// [`Root::write_atomic`] of what `write` writes to the file.
    pub fn write_atomic_with(
        &self,
        rel: &Path,
        durable: bool,
        write: impl FnOnce(&mut std::fs::File) -> io::Result<()>,
    ) -> io::Result<()> {
        let name =
            rel.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "it names no file"))?;
        let parent = rel.parent().filter(|p| !p.as_os_str().is_empty());
        let owned;
        let at = match parent {
            Some(parent) => {
                owned = self.subdir(parent, true)?;
                &owned
            }
            None => self,
        };
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let (tmp, mut file) = loop {
            let tmp = PathBuf::from(format!(
                ".{}.{}.{}.tmp",
                name.to_string_lossy(),
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            match at.create_new(&tmp) {
                Ok(file) => break (tmp, file),
                // Another writer's, or left by a killed process: another name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(self.explain(rel, e)),
            }
        };
        let written = write(&mut file)
            .and_then(|()| if durable { file.sync_all() } else { Ok(()) })
            .and_then(|()| at.dir.rename(&tmp, &at.dir, Path::new(name)))
            .and_then(|()| if durable { at.sync() } else { Ok(()) });
        if let Err(e) = written {
            let _ = at.dir.remove_file(&tmp);
            return Err(self.explain(rel, e));
        }
        Ok(())
    }

    /// `e` met at `rel`, said plainly when it is an attempt to leave the root.
    fn explain(&self, rel: &Path, e: io::Error) -> io::Error {
        if is_escape(&e) {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} leads outside {} (through `..`, an absolute path or a symbolic link), so it is not followed",
                    rel.display(),
                    self.path.display()
                ),
            )
        } else {
            e
        }
    }
}

/// Whether `e` is cap-std refusing a path that leads outside its directory.
pub fn is_escape(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied && e.to_string().contains("outside")
}

fn non_empty(path: &Path) -> &Path {
    if path.as_os_str().is_empty() { Path::new(".") } else { path }
}

/// `path` made absolute with every symbolic link in it resolved, as far as
/// it exists (the rest, which cannot hold a link yet, appended as written;
/// `..` after a resolved part goes up from where the link led).
pub fn resolve(path: &Path) -> io::Result<PathBuf> {
    let mut resolved = if path.is_absolute() { PathBuf::new() } else { std::env::current_dir()? };
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => resolved.push(component.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                resolved.pop();
            }
            Component::Normal(part) => {
                resolved.push(part);
                match std::fs::canonicalize(&resolved) {
                    Ok(real) => resolved = real,
                    // Not there (yet): nothing to resolve.
                    Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_stay_inside_and_are_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = Root::create(&dir.path().join("root")).unwrap();
        root.write_atomic(Path::new("a/b.txt"), b"one", true).unwrap();
        root.write_atomic(Path::new("a/b.txt"), b"two", false).unwrap();
        assert_eq!(std::fs::read(dir.path().join("root/a/b.txt")).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path().join("root/a")).unwrap().count(), 1, "no temporary left");
        #[cfg(unix)]
        std::os::unix::fs::symlink(outside.path(), dir.path().join("root/out")).unwrap();
        for rel in ["../x.txt", "/tmp/x.txt", "out/x.txt"] {
            let e = root.write_atomic(Path::new(rel), b"x", false).unwrap_err();
            assert!(e.to_string().contains("leads outside"), "{rel}: {e}");
        }
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn resolve_follows_links_as_far_as_the_path_exists() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::fs::create_dir(real.join("a")).unwrap();
        assert_eq!(resolve(&real.join("a/../b/c")).unwrap(), real.join("b/c"));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/", real.join("a/up")).unwrap();
            assert_eq!(resolve(&real.join("a/up/etc/new/x")).unwrap(), Path::new("/etc/new/x"));
        }
    }
}
