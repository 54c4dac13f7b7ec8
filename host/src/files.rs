//! The files a user names (workflows, components, inputs, state and report
//! paths): what a path is when it is not what was expected, reading only
//! regular files (a FIFO would block, `/dev/zero` never ends), and whether a
//! file or directory can be written at a path, checked before anything is.
//!
//! Architecture invariant: this module knows nothing of wasmtime or tokio.

use std::fs::FileType;
use std::io::{self, Read};
use std::path::Path;

/// What a file is, for messages: "a directory", "a FIFO (named pipe)", ...
pub fn kind_of(ty: FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ty.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ty.is_char_device() {
            return "a character device";
        }
        if ty.is_block_device() {
            return "a block device";
        }
        if ty.is_socket() {
            return "a socket";
        }
    }
    if ty.is_dir() {
        "a directory"
    } else if ty.is_file() {
        "a file"
    } else if ty.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Why `path` cannot be read as a regular file ("does not exist", "is a
/// directory, not a file", ...), or `None` if it is one. Nothing is opened.
pub fn not_a_file(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => None,
        Ok(meta) => Some(format!("is {}, not a file", kind_of(meta.file_type()))),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
            Some("does not exist".to_owned())
        }
        Err(e) => Some(format!("cannot be read: {e}")),
    }
}

/// Read the regular file at `path`, refusing anything else before opening
/// it, and refusing more than `limit` bytes. Errors say what the path is;
/// they do not repeat it.
pub fn read_file(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    if let Some(why) = not_a_file(path) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("it {why}")));
    }
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is larger than {limit} bytes, the most read from such a file"),
        ));
    }
    Ok(bytes)
}

/// [`read_file`] as UTF-8 text.
pub fn read_text(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_file(path, limit)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("it is not UTF-8 text ({e})")))
}

/// Why no directory can be made (or used) at `dir`: it, or the nearest of
/// its ancestors that exists, is not a directory. `None` when the nearest
/// existing one is a directory (whether it is writable shows when writing).
pub fn dir_unusable(dir: &Path) -> Option<String> {
    for ancestor in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        match std::fs::metadata(ancestor) {
            Ok(meta) if meta.is_dir() => return None,
            Ok(meta) => {
                return Some(format!(
                    "{} is {}, not a directory",
                    ancestor.display(),
                    kind_of(meta.file_type())
                ));
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {}
            Err(e) => return Some(format!("{}: {e}", ancestor.display())),
        }
    }
    None
}

/// Why the file `path` cannot be written: it is a directory, or its
/// directory does not exist or is not one. `None` when it looks writable.
pub fn file_unwritable(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Some(format!("{} is a directory", path.display())),
        // An existing file is overwritten; a FIFO or device (`/dev/stdout`) is written to.
        Ok(_) => return None,
        Err(_) => {}
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty())?;
    match std::fs::metadata(parent) {
        Ok(meta) if meta.is_dir() => None,
        Ok(_) => dir_unusable(parent),
        Err(_) => Some(
            dir_unusable(parent).unwrap_or_else(|| format!("directory {} does not exist", parent.display())),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_are_not_files_say_what_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(not_a_file(&file), None);
        assert_eq!(not_a_file(dir.path()).as_deref(), Some("is a directory, not a file"));
        assert_eq!(not_a_file(&file.join("x")).as_deref(), Some("does not exist"));
        #[cfg(target_os = "linux")]
        {
            assert_eq!(
                not_a_file(Path::new("/dev/zero")).as_deref(),
                Some("is a character device, not a file")
            );
            let err = read_file(Path::new("/dev/zero"), 10).unwrap_err();
            assert!(err.to_string().contains("character device"), "{err}");
        }
        assert!(read_file(&file, 0).unwrap_err().to_string().contains("larger than 0 bytes"));
        assert_eq!(read_file(&file, 1).unwrap(), b"x");
    }

    #[test]
    fn unwritable_paths_name_the_culprit() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let under = file.join("a/b");
        assert_eq!(dir_unusable(&under), Some(format!("{} is a file, not a directory", file.display())));
        assert_eq!(dir_unusable(&dir.path().join("new/deeper")), None);
        assert_eq!(file_unwritable(&file), None);
        assert_eq!(file_unwritable(&dir.path().join("new.json")), None);
        assert_eq!(file_unwritable(dir.path()), Some(format!("{} is a directory", dir.path().display())));
        assert_eq!(
            file_unwritable(&file.join("r.json")),
            Some(format!("{} is a file, not a directory", file.display()))
        );
        let missing = dir.path().join("no/r.json");
        assert_eq!(
            file_unwritable(&missing),
            Some(format!("directory {} does not exist", dir.path().join("no").display()))
        );
    }
}
