//! Where the commands that read journals (`runs`, `report`, `context`,
//! `resume`) look when `--state-dir` is not given. `ensemble run` keeps a
//! run's state next to its workflow (`<folder>/.ensemble`), or in the
//! per-user state directory when that folder is read-only; so without the
//! flag they look in `./.ensemble`, then in the `.ensemble` folders below
//! the current directory (three levels down), then in the per-user one.

use std::path::{Path, PathBuf};

/// The default state directory of a command run from here.
pub(crate) const HERE: &str = ".ensemble";

/// How deep below the current directory `.ensemble` folders are looked for.
const DEPTH: usize = 3;

/// The state directories to look in, in order: `given` alone, or the
/// defaults that exist.
pub(crate) fn candidates(given: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = given {
        return vec![dir.to_owned()];
    }
    let mut found = vec![PathBuf::from(HERE)];
    below(Path::new("."), DEPTH, &mut found);
    if let Some(user) = ensemble::run::places::user_state_dir() {
        found.push(user);
    }
    found.retain(|dir| dir.join("runs").is_dir());
    found.dedup();
    found
}

/// The state directory holding run `run`: `given`, or the first candidate
/// with its journal (`./.ensemble` when none has it, for the error).
pub(crate) fn for_run(given: Option<&Path>, run: &str) -> PathBuf {
    if let Some(dir) = given {
        return dir.to_owned();
    }
    candidates(None)
        .into_iter()
        .find(|dir| ensemble::journal::path_of(dir, run).is_file())
        .unwrap_or_else(|| PathBuf::from(HERE))
}

/// `.ensemble` folders below `dir` (not in hidden folders, `target` or
/// `node_modules`), to `depth` levels.
fn below(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut dirs: Vec<PathBuf> =
        entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect();
    dirs.sort();
    for path in dirs {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name == HERE {
            if dir != Path::new(".") {
                found.push(path.strip_prefix("./").map(Path::to_owned).unwrap_or(path));
            }
        } else if !name.starts_with('.') && name != "target" && name != "node_modules" {
            below(&path, depth - 1, found);
        }
    }
}
