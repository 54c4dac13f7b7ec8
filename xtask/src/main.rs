//! Repository tasks for Ensemble: `cargo xtask --help`.

mod agents;
mod cmd;
mod inspect;
mod manifest;
mod toolchain;
mod wrapper;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Ensemble's repository tasks",
    after_help = "Run from anywhere in the repository: `cargo xtask <COMMAND>`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the Rust agents and test fixtures into WebAssembly components.
    #[command(
        long_about = "Build the Rust agents and test fixtures into WebAssembly components.\n\n\
            Compiles the guest workspace agents/ (its members include \
            tests/fixtures/rust/*) with `cargo build --release --target \
            wasm32-unknown-unknown`, turns each core module into a component with \
            wit-component, checks that it imports only ensemble:agent interfaces and \
            WASI 0.2 (which the host grants per agent) and exports run and validate, and writes agents/dist/<crate>.wasm, \
            tests/fixtures/dist/<crate>.wasm and a MANIFEST.txt in each (blake3, size, \
            route and toolchain).\n\n\
            Toolchain routes:\n  \
            1 (rustup): rustup's toolchain with its wasm32-unknown-unknown target, \
            added with `rustup target add` if missing.\n  \
            2 (debian): if route 1 fails, Debian's rustc-web/cargo-web/rust-web-src/lld-22 \
            (installed with apt-get when run as root), building std with \
            -Zbuild-std=std,panic_abort.\n\n\
            Paths are remapped (--remap-path-prefix) so the bytes depend only on the \
            sources and the toolchain.",
        after_help = "Examples:\n  \
            cargo xtask build-agents                  # build and update the dist directories\n  \
            cargo xtask build-agents --route debian   # force route 2\n  \
            cargo xtask build-agents --check --locked # rebuild and compare, write nothing\n  \
            cargo xtask build-agents --check --strict --route debian --locked\n    \
            # CI: fail unless the committed components are exactly the fresh build"
    )]
    BuildAgents(agents::BuildArgs),

    /// Print the imports and exports of components or core modules.
    #[command(
        long_about = "Print the imports and exports of WebAssembly components or core \
            modules: for a component, each imported interface's functions, the exported \
            functions' signatures, the producers (compilers and tools) and whether it is \
            a valid Ensemble agent (imports only ensemble:agent interfaces and WASI 0.2, exports \
            exactly run and validate).",
        after_help = "Example:\n  cargo xtask inspect agents/dist/*.wasm"
    )]
    Inspect {
        /// The .wasm files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also print the component's whole WIT (world and interfaces).
        #[arg(long)]
        wit: bool,
    },
}

fn main() -> ExitCode {
    if std::env::var_os(wrapper::ENV).is_some() {
        return wrapper::main(&std::env::args_os().skip(1).collect::<Vec<_>>());
    }
    let cli = Cli::parse();
    let result = match repo_root() {
        Ok(root) => match &cli.command {
            Command::BuildAgents(args) => agents::run(&root, args),
            Command::Inspect { files, wit } => inspect::run(files, *wit),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

/// The repository root: the parent of this crate's directory.
fn repo_root() -> Result<PathBuf> {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = xtask.parent().context("xtask/ has no parent directory")?;
    root.canonicalize().with_context(|| format!("resolving the repository root {}", root.display()))
}
