//! A workflow's `outputs`: the documents written from context values after
//! a run, each through the outputs directory opened once
//! ([`crate::confined::Root`]), so no output name, `..` or symbolic link
//! inside it leads a write elsewhere.

use std::path::{Path, PathBuf};

use crate::confined::Root;
use crate::workflow::{Location, OutputsOutside, Workflow};

/// Why the outputs were not written. Each names the workflow file and the
/// line of the output's `key`, or the file that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The key of an output file was never written.
    #[error("{}:{at}: output `{file}`: no agent committed `{key}`, so there is nothing to write", workflow.display())]
    Missing {
        /// The workflow file.
        workflow: PathBuf,
        /// Where the key is declared.
        at: Location,
        /// The output file.
        file: String,
        /// The missing key.
        key: String,
    },
    /// The key's value is not text.
    #[error("{}:{at}: output `{file}`: `{key}` is not a string (documents are MessagePack strings)", workflow.display())]
    NotText {
        /// The workflow file.
        workflow: PathBuf,
        /// Where the key is declared.
        at: Location,
        /// The output file.
        file: String,
        /// The key.
        key: String,
    },
    /// The file could not be written.
    #[error("output {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `outputs.dir` is outside the workflow's folder and that was not confirmed.
    #[error(transparent)]
    Outside(#[from] OutputsOutside),
}

/// Write the workflow's `outputs` from `context`: each file gets the text of
/// its key. If a key is missing or not text, nothing is written (the
/// documents of a run go together) and the errors are returned; otherwise
/// every file that can be written is, atomically (a temporary file renamed
/// into place).
///
/// An `outputs.dir` outside the workflow's folder
/// ([`Workflow::outputs_outside`]) is written only with `allow_outside`
/// (the CLI's `--allow-outputs-outside`); check it before the run too, so a
/// run is not wasted. A file whose path inside the directory leads out of
/// it (a symbolic link `out/etc -> /etc`) is not written; its error says so.
pub fn write_outputs(
    workflow: &Workflow,
    context: &crate::context::Snapshot,
    allow_outside: bool,
) -> (Vec<PathBuf>, Vec<OutputError>) {
    let (mut written, mut errors) = (Vec::new(), Vec::new());
    let Some(outputs) = &workflow.outputs else { return (written, errors) };
    if !allow_outside && let Some(outside) = workflow.outputs_outside() {
        errors.push(outside.into());
        return (written, errors);
    }
    let mut texts = Vec::new();
    for output in &outputs.files {
        let (workflow, at, file, key) =
            (workflow.path.clone(), output.location, output.name.clone(), output.key.clone());
        let Some(entry) = context.get(&output.key) else {
            errors.push(OutputError::Missing { workflow, at, file, key });
            continue;
        };
        let Ok(text) = rmp_serde::from_slice::<String>(&entry.value) else {
            errors.push(OutputError::NotText { workflow, at, file, key });
            continue;
        };
        texts.push((output.name.as_str(), text));
    }
    if !errors.is_empty() {
        return (written, errors);
    }
    let root = match Root::create(&outputs.dir) {
        Ok(root) => root,
        Err(source) => {
            errors.push(OutputError::Write { path: outputs.dir.clone(), source });
            return (written, errors);
        }
    };
    for (name, text) in texts {
        let path = outputs.dir.join(name);
        match root.write_atomic(Path::new(name), text.as_bytes(), false) {
            Ok(()) => written.push(path),
            Err(source) => errors.push(OutputError::Write { path, source }),
        }
    }
    (written, errors)
}

#[cfg(all(test, unix))]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::context::ContextStore;

    /// Every entry under `dir`, links not followed.
    fn entries(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).expect("read dir").map(|e| e.expect("entry")) {
            let path = entry.path();
            if entry.file_type().expect("type").is_dir() {
                found.extend(entries(&path));
            }
            found.push(path);
        }
        found
    }

    /// The file check refuses an output name with `..` or an absolute path;
    /// one set in the crate after parsing still cannot leave `outputs.dir`
    /// (moved here from the integration tests, which can no longer change a
    /// workflow).
    #[test]
    fn an_output_name_with_dotdot_or_an_absolute_path_is_refused_by_the_library() {
        let project = tempfile::tempdir().expect("tempdir");
        let path = project.path().join("workflow.yaml");
        let yaml = "agents:\n  a:\n    component: a.wasm\noutputs:\n  dir: out\n  files:\n    doc.md: {key: a.value}\n";
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let mut store = ContextStore::new();
        store.commit("a", 0, BTreeMap::from([("a.value".to_owned(), b"\xa2ok".to_vec())])).expect("commit");
        let snapshot = store.snapshot();
        for name in ["../escaped.md".to_owned(), elsewhere.path().join("abs.md").display().to_string()] {
            let mut workflow = Workflow::parse_for_planning(yaml, &path).expect("valid");
            workflow.outputs.as_mut().expect("outputs").files[0].name = name.clone();
            let (written, errors) = write_outputs(&workflow, &snapshot, false);
            assert!(written.is_empty(), "{name}: {written:?}");
            let message = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
            assert!(message.contains("leads outside") && message.contains(&name), "{name}: {message}");
        }
        assert!(!project.path().join("escaped.md").exists(), "`..` was not followed");
        assert!(entries(elsewhere.path()).is_empty(), "the absolute path was not followed");
    }
}
