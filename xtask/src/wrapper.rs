//! The xtask as cargo's `RUSTC_WRAPPER` during `build-agents`, to make the
//! guests' bytes independent of where the repository is checked out.
//!
//! `--remap-path-prefix` takes the paths out of the code, but not out of
//! `-C metadata`: cargo hashes the absolute path of every path package outside
//! the workspace root into it (the SDK, the fixtures; rust-lang/cargo#13586,
//! #7645), and through the crates' stable ids it changes symbol hashes and so the
//! order of functions in the module. For the units built for the wasm target,
//! the wrapper replaces `-C metadata` with a hash of the unit's inputs that do
//! not depend on the location: rustc's arguments minus output paths and
//! search paths, with paths remapped as `--remap-path-prefix` says, and the
//! package's name and version.

use std::ffi::OsString;
use std::process::{Command, ExitCode};

/// Set (to "1") in the environment of the guest build, with `RUSTC_WRAPPER`
/// pointing to this executable.
pub const ENV: &str = "ENSEMBLE_XTASK_RUSTC_WRAPPER";

/// Run rustc (`args[0]`) with the rest of `args`, `-C metadata` made stable.
pub fn main(args: &[OsString]) -> ExitCode {
    let Some((rustc, args)) = args.split_first() else {
        eprintln!("xtask as RUSTC_WRAPPER: no rustc to run");
        return ExitCode::FAILURE;
    };
    let args: Vec<OsString> = match args.iter().map(|a| a.clone().into_string()).collect() {
        Ok(args) => stable_metadata(args).into_iter().map(OsString::from).collect(),
        // A non-UTF-8 argument: leave the invocation as it is.
        Err(_) => args.to_vec(),
    };
    let mut cmd = Command::new(rustc);
    cmd.args(&args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        let e = cmd.exec();
        eprintln!("xtask as RUSTC_WRAPPER: cannot run {}: {e}", rustc.to_string_lossy());
        ExitCode::FAILURE
    }
    #[cfg(not(unix))]
    match cmd.status() {
        Ok(status) => ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("xtask as RUSTC_WRAPPER: cannot run {}: {e}", rustc.to_string_lossy());
            ExitCode::FAILURE
        }
    }
}

/// `args` with `-C metadata=...` replaced by a location-independent hash, for
/// target units (with `--target`); other invocations are left alone.
fn stable_metadata(mut args: Vec<String>) -> Vec<String> {
    let metadata_at: Vec<usize> = (0..args.len())
        .filter(|&i| {
            args[i].starts_with("-Cmetadata=")
                || (args[i].starts_with("metadata=") && i > 0 && args[i - 1] == "-C")
        })
        .collect();
    let has_target = args.iter().any(|a| a == "--target" || a.starts_with("--target="));
    if metadata_at.is_empty() || !has_target {
        return args;
    }

    // rustc applies the last matching mapping.
    let remaps: Vec<(String, String)> = args
        .iter()
        .filter_map(|a| a.strip_prefix("--remap-path-prefix="))
        .filter_map(|m| m.rsplit_once('='))
        .map(|(from, to)| (from.to_owned(), to.to_owned()))
        .collect();
    let remap = |s: &str| -> String {
        for (from, to) in remaps.iter().rev() {
            if let Some(rest) = s.strip_prefix(from.as_str()) {
                return format!("{to}{rest}");
            }
        }
        s.to_owned()
    };

    let mut hasher = blake3::Hasher::new();
    let mut feed = |s: &str| {
        hasher.update(&(s.len() as u64).to_le_bytes());
        hasher.update(s.as_bytes());
    };
    feed("ensemble-stable-metadata-v1");
    for var in ["CARGO_PKG_NAME", "CARGO_PKG_VERSION"] {
        feed(&std::env::var(var).unwrap_or_default());
    }
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let next = args.get(i + 1).map(String::as_str);
        i += 1;
        match a {
            // Output and search paths, and how diagnostics look.
            "--out-dir" | "-L" | "--color" => i += 1,
            "-C" if next.is_some_and(|n| n.starts_with("metadata=") || n.starts_with("extra-filename=")) => {
                i += 1;
            }
            // A dependency by name: its own identity is in its crate's stable id.
            "--extern" => {
                if let Some(n) = next {
                    feed("--extern");
                    feed(n.split_once('=').map_or(n, |(name, _)| name));
                }
                i += 1;
            }
            _ if a.starts_with("-Cmetadata=")
                || a.starts_with("-Cextra-filename=")
                || a.starts_with("--out-dir=")
                || a.starts_with("-L")
                || a.starts_with("--remap-path-prefix=")
                || a.starts_with("--error-format=")
                || a.starts_with("--json=")
                || a.starts_with("--diagnostic-width=")
                || a.starts_with("--color=") => {}
            _ => feed(&remap(a)),
        }
    }
    let stable = format!("metadata={}", &hasher.finalize().to_hex()[..16]);
    for at in metadata_at {
        args[at] = if args[at].starts_with("-C") { format!("-C{stable}") } else { stable.clone() };
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn metadata(args: &[String]) -> Option<&str> {
        args.iter().find_map(|a| a.strip_prefix("metadata="))
    }

    #[test]
    fn metadata_ignores_locations() {
        let a = stable_metadata(args(
            "--crate-name sdk /a/repo/sdk/src/lib.rs -C metadata=1111 -C extra-filename=-1111 \
             --out-dir /a/t/deps --target wasm32-unknown-unknown -L dependency=/a/t/deps \
             --extern serde=/a/t/deps/libserde-1111.rlib --diagnostic-width=80 \
             --remap-path-prefix=/a/repo=/ensemble --remap-path-prefix=/a/t=/target",
        ));
        let b = stable_metadata(args(
            "--crate-name sdk /b/x/sdk/src/lib.rs -C metadata=2222 -C extra-filename=-2222 \
             --out-dir /b/tt/deps --target wasm32-unknown-unknown -L dependency=/b/tt/deps \
             --extern serde=/b/tt/deps/libserde-2222.rlib --diagnostic-width=120 \
             --remap-path-prefix=/b/x=/ensemble --remap-path-prefix=/b/tt=/target",
        ));
        assert_eq!(metadata(&a), metadata(&b));
        assert_ne!(metadata(&a), Some("1111"));
        // Only -C metadata changes.
        assert!(a.contains(&"extra-filename=-1111".to_owned()));
    }

    #[test]
    fn metadata_depends_on_inputs() {
        let a =
            stable_metadata(args("--crate-name x src/lib.rs -C metadata=1 --target wasm32-unknown-unknown"));
        let b = stable_metadata(args(
            "--crate-name x src/lib.rs -C metadata=1 --target wasm32-unknown-unknown --cfg feature=\"std\"",
        ));
        assert_ne!(metadata(&a), metadata(&b));
    }

    #[test]
    fn host_units_are_left_alone() {
        let a = args("--crate-name build_script_build build.rs -C metadata=1234");
        assert_eq!(stable_metadata(a.clone()), a);
    }
}
