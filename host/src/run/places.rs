//! Where a run keeps what outlives it: the state directory (its journals in
//! `runs/`, compiled components in `compiled/`) and the agent output cache.
//!
//! The state directory defaults to `.ensemble` next to the workflow file.
//! When the workflow's folder cannot be written (its permissions say so, or
//! writing fails: a read-only mount, another user's folder), it is the
//! per-user state directory instead: `$XDG_STATE_HOME/ensemble`, or
//! `~/.local/state/ensemble` when `XDG_STATE_HOME` is not set (or not an
//! absolute path). The output cache a workflow does not place itself
//! (`cache.dir`) is `.ensemble/cache` next to it, shared by runs whatever
//! their state directory, unless the folder cannot be written: then it is
//! `cache/` in the state directory.

use std::path::{Path, PathBuf};

use crate::workflow::Workflow;

/// The compiled-component cache inside a state directory.
pub const COMPILED: &str = "compiled";

/// The state directory's name next to a workflow file.
pub const LOCAL_STATE: &str = ".ensemble";

/// The output cache inside a state directory, for a workflow that does not
/// declare `cache.dir`.
pub const OUTPUT_CACHE: &str = "cache";

/// The default state directory of the workflow file at `workflow`: `.ensemble`
/// next to it if that can be written, else [`user_state_dir`] (see the module
/// docs). Nothing is created.
pub fn default_state_dir(workflow: &Path) -> PathBuf {
    let local = local_state_dir(workflow);
    if writable(&local) { local } else { user_state_dir().unwrap_or(local) }
}

/// The per-user state directory: `$XDG_STATE_HOME/ensemble`, or
/// `$HOME/.local/state/ensemble`; `None` when neither variable is usable.
pub fn user_state_dir() -> Option<PathBuf> {
    let absolute = |name: &str| std::env::var_os(name).map(PathBuf::from).filter(|p| p.is_absolute());
    absolute("XDG_STATE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".local").join("state")))
        .map(|base| base.join("ensemble"))
}

/// The agent output cache of `workflow` in runs keeping their state in
/// `state_dir`: its declared `cache.dir`; if it declares none,
/// `.ensemble/cache` next to it, or `cache/` in the state directory when
/// the workflow's folder cannot be written.
pub fn output_cache_dir(workflow: &Workflow, state_dir: &Path) -> PathBuf {
    let local = local_state_dir(&workflow.path);
    let undeclared = workflow.cache.dir == local.join(OUTPUT_CACHE);
    if undeclared && !writable(&local) { state_dir.join(OUTPUT_CACHE) } else { workflow.cache.dir.clone() }
}

/// Grants of `workflow` that reach the host's own directories: the state
/// directory, the output cache and the compiled-component cache (see
/// [`Workflow::grants_reaching`]), one line each.
pub fn host_dirs_granted(workflow: &Workflow, state_dir: &Path, compiled: Option<&Path>) -> Vec<String> {
    let mut found = workflow.grants_reaching(state_dir, "state directory");
    if workflow.cache.enabled {
        found.extend(workflow.grants_reaching(&output_cache_dir(workflow, state_dir), "output cache"));
    }
    if let Some(dir) = compiled {
        found.extend(workflow.grants_reaching(dir, "compiled-component cache"));
    }
    found
}

fn local_state_dir(workflow: &Path) -> PathBuf {
    workflow.parent().unwrap_or(Path::new(".")).join(LOCAL_STATE)
}

/// Whether `dir` (or, while it does not exist, its nearest existing
/// ancestor) may be written: its permissions allow it and a file can be made
/// in it (an unnamed one, gone at once). Permissions are honoured even for
/// root: a folder marked read-only is not written.
fn writable(dir: &Path) -> bool {
    let Some(existing) = dir.ancestors().find(|a| a.as_os_str().is_empty() || a.exists()) else {
        return false;
    };
    let existing = if existing.as_os_str().is_empty() { Path::new(".") } else { existing };
    match std::fs::metadata(existing) {
        Ok(meta) if meta.is_dir() => {
            !meta.permissions().readonly() && tempfile::tempfile_in(existing).is_ok()
        }
        // Not a directory: the run says why it cannot use it.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_folder_keeps_its_state_next_to_the_workflow() {
        let dir = tempfile::tempdir().expect("tempdir");
        let workflow = dir.path().join("w.yaml");
        assert_eq!(default_state_dir(&workflow), dir.path().join(".ensemble"));
    }

    #[cfg(unix)]
    #[test]
    fn a_read_only_folder_sends_the_state_to_the_user_directory() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("ro");
        std::fs::create_dir(&folder).expect("mkdir");
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        let state = default_state_dir(&folder.join("w.yaml"));
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let user = user_state_dir().expect("HOME or XDG_STATE_HOME is set");
        assert_eq!(state, user, "not {}", folder.join(".ensemble").display());
    }
}
