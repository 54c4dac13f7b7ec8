//! The crate's layering, checked: each top-level module may name (by
//! `crate::<module>`, in code, not in comments) only the modules below it.
//! A new module, or a new edge, is added here on purpose, or not at all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each module and the modules it may import. Bottom first.
const ALLOWED: &[(&str, &[&str])] = &[
    ("confined", &[]),
    ("files", &[]),
    ("events", &[]),
    ("tls", &[]),
    ("llm", &["events", "tls"]),
    ("context", &["events"]),
    ("workflow", &["context", "files", "confined"]),
    ("plan", &["workflow"]),
    ("inputs", &["workflow", "files"]),
    ("outputs", &["context", "workflow", "confined"]),
    ("runtime", &["events", "context", "workflow", "files", "confined", "tls", "llm"]),
    ("templates", &["events", "context", "runtime", "confined"]),
    ("journal", &["events", "context", "confined"]),
    ("cache", &["events", "context", "workflow", "runtime", "files", "confined"]),
    (
        "exec",
        &[
            "events",
            "context",
            "workflow",
            "plan",
            "runtime",
            "templates",
            "journal",
            "cache",
            "files",
            "confined",
        ],
    ),
    (
        "report",
        &[
            "exec",
            "events",
            "context",
            "workflow",
            "plan",
            "runtime",
            "templates",
            "journal",
            "cache",
            "files",
            "confined",
        ],
    ),
    (
        "run",
        &[
            "report",
            "exec",
            "events",
            "context",
            "workflow",
            "plan",
            "runtime",
            "templates",
            "journal",
            "cache",
            "files",
            "confined",
            "inputs",
            "outputs",
        ],
    ),
];

/// What `crate::Item`, a re-export at the root, counts as.
const ROOT: &str = "(the crate root)";

/// Not library layers: the command line (its own crate-to-be) and the crate root.
const OUTSIDE: &[&str] = &["cli", "lib", "main", "layering"];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(path).expect("readable").map(|e| e.expect("entry").path()).collect();
        entries.sort();
        for entry in entries {
            rust_files(&entry, out);
        }
    } else if path.extension().is_some_and(|x| x == "rs") {
        out.push(path.to_owned());
    }
}

/// The modules `source` names as `crate::<module>`, outside comments; an
/// error for a grouped `crate::{...}` import (write one `use` per module).
fn imports(source: &str) -> Result<BTreeSet<String>, String> {
    let mut found = BTreeSet::new();
    for line in source.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let code = code.split(" //").next().unwrap_or(code);
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            if rest.starts_with('{') {
                return Err(format!("grouped import `{}`", line.trim()));
            }
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // An item re-exported at the root (`crate::RunMetrics`) hides
            // the module it comes from: never allowed.
            let module =
                if name.starts_with(|c: char| c.is_ascii_uppercase()) { ROOT.to_owned() } else { name };
            if !module.is_empty() {
                found.insert(module);
            }
        }
    }
    Ok(found)
}

/// Each top-level module of `src` and what it names, with the files that do.
fn edges(src: &Path) -> BTreeMap<String, BTreeMap<String, Vec<PathBuf>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut edges: BTreeMap<String, BTreeMap<String, Vec<PathBuf>>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(src).expect("under src");
        let first = relative.components().next().expect("a component").as_os_str().to_string_lossy();
        let module = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
        if OUTSIDE.contains(&module.as_str()) {
            continue;
        }
        let source = std::fs::read_to_string(&file).expect("readable");
        let names = imports(&source).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let entry = edges.entry(module.clone()).or_default();
        for name in names.into_iter().filter(|n| *n != module) {
            entry.entry(name).or_default().push(relative.to_owned());
        }
    }
    edges
}

/// What is wrong with the modules under `src`: each import the layering does
/// not allow, and each module it does not know.
fn violations(src: &Path) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (module, names) in edges(src) {
        let Some(may) = allowed.get(module.as_str()) else {
            wrong.push(format!("module `{module}` is not in the layering (host/src/layering.rs)"));
            continue;
        };
        for (name, files) in names {
            if !may.contains(&name.as_str()) {
                let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                wrong.push(format!("`{module}` imports `crate::{name}` ({})", files.join(", ")));
            }
        }
    }
    wrong
}

#[test]
fn each_module_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let wrong = violations(&src);
    assert!(wrong.is_empty(), "the layering is broken:\n{}", wrong.join("\n"));
}

#[test]
fn an_upward_import_is_caught() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let exec = dir.path().join("exec");
    std::fs::create_dir_all(&exec).expect("mkdir");
    std::fs::write(
        exec.join("mod.rs"),
        "// crate::report in a comment is fine\nuse crate::journal::Journal;\n",
    )
    .expect("write");
    assert!(violations(dir.path()).is_empty());
    std::fs::write(exec.join("core.rs"), "use crate::report::RunMetrics;\n").expect("write");
    assert_eq!(violations(dir.path()), ["`exec` imports `crate::report` (exec/core.rs)"]);
    std::fs::write(dir.path().join("extra.rs"), "").expect("write");
    assert_eq!(violations(dir.path()).len(), 2, "an unknown module is reported");
    assert!(imports("use crate::{exec, report};").is_err(), "grouped imports hide edges");
    assert_eq!(imports("use crate::RunMetrics;"), Ok([ROOT.to_owned()].into()), "so do root re-exports");
}
