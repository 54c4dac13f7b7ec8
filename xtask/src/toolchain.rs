//! Finding a Rust toolchain that can build `wasm32-unknown-unknown`.
//!
//! Route 1 (`rustup`): the rustup toolchain with its `wasm32-unknown-unknown`
//! target (added with `rustup target add` if missing).
//! Route 2 (`debian`): Debian's `rustc-web`/`cargo-web` with `rust-web-src`,
//! rebuilding std for the target (`-Zbuild-std`), installed with apt-get if
//! missing and we are root.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::ValueEnum;

use crate::cmd::Cmd;

pub const TARGET: &str = "wasm32-unknown-unknown";

/// The oldest rustc that builds the guests (the workspaces' `rust-version`).
const MIN_RUSTC: (u32, u32) = (1, 95);

/// Debian's toolchain: called by path, because rustup's proxies come first on PATH.
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_RUSTDOC: &str = "/usr/bin/rustdoc";
const DEBIAN_LLD: &str = "/usr/bin/rust-lld";
const DEBIAN_PACKAGES: [&str; 4] = ["rustc-web", "cargo-web", "rust-web-src", "lld-22"];

/// Which route the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RouteChoice {
    /// Route 1 if it works, else route 2.
    Auto,
    /// Route 1 only: rustup's toolchain and its wasm32-unknown-unknown target.
    Rustup,
    /// Route 2 only: Debian's rustc-web with -Zbuild-std.
    Debian,
}

/// The route taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Rustup,
    Debian,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Self::Rustup => "rustup",
            Self::Debian => "debian",
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rustup => write!(f, "route 1 (rustup)"),
            Self::Debian => write!(f, "route 2 (debian)"),
        }
    }
}

/// A toolchain ready to build for [`TARGET`].
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub route: Route,
    pub cargo: PathBuf,
    pub rustc: PathBuf,
    rustdoc: Option<PathBuf>,
    /// `rustc --print sysroot`.
    pub sysroot: PathBuf,
    /// `rustc -V`, e.g. "rustc 1.95.0 (59807616e 2026-04-14)".
    pub rustc_version: String,
    /// `cargo -V`.
    pub cargo_version: String,
}

impl Toolchain {
    /// Set up the toolchain for `choice`, printing what it does.
    pub fn select(choice: RouteChoice, root: &Path) -> Result<Self> {
        match choice {
            RouteChoice::Rustup => Self::rustup(root).context("route 1 (rustup) is not usable"),
            RouteChoice::Debian => Self::debian().context("route 2 (debian) is not usable"),
            RouteChoice::Auto => match Self::rustup(root) {
                Ok(tc) => Ok(tc),
                Err(e1) => {
                    eprintln!("build-agents: route 1 (rustup) is not usable: {e1:#}");
                    eprintln!("build-agents: falling back to route 2 (debian)");
                    Self::debian().map_err(|e2| {
                        anyhow!(
                            "no toolchain can build {TARGET}:\n\
                             - route 1 (rustup): {e1:#}\n\
                             - route 2 (debian): {e2:#}"
                        )
                    })
                }
            },
        }
    }

    /// Route 1: rustup's active toolchain (for the repository) and its target.
    fn rustup(root: &Path) -> Result<Self> {
        let which = |tool: &str| -> Result<PathBuf> {
            let out = Cmd::new("rustup")
                .args(["which", tool])
                .dir(root)
                .output(&format!("find rustup's {tool}"))?;
            Ok(PathBuf::from(out.stdout.trim()))
        };
        let rustc = which("rustc")?;
        let cargo = which("cargo")?;
        let sysroot = sysroot(&rustc)?;
        let rustc_version = version(&rustc)?;
        check_min_version(&rustc_version)?;

        if target_installed(&sysroot) {
            eprintln!("build-agents: rustup target {TARGET} is installed");
        } else {
            eprintln!("build-agents: rustup target {TARGET} is missing; adding it");
            Cmd::new("rustup")
                .args(["target", "add", TARGET])
                .dir(root)
                // Do not hang a CI job on a refused or unreachable download.
                .env("RUSTUP_MAX_RETRIES", "1")
                .timeout(Duration::from_secs(120))
                .output(&format!("rustup target add {TARGET}"))?;
            if !target_installed(&sysroot) {
                bail!(
                    "`rustup target add {TARGET}` succeeded but {} is still missing",
                    target_dir(&sysroot).display()
                );
            }
        }
        Ok(Self {
            route: Route::Rustup,
            cargo_version: version(&cargo)?,
            cargo,
            rustc,
            rustdoc: None,
            sysroot,
            rustc_version,
        })
    }

    /// Route 2: Debian's rustc-web, installing it with apt-get if needed.
    fn debian() -> Result<Self> {
        let missing = debian_missing();
        if !missing.is_empty() {
            eprintln!("build-agents: Debian's toolchain is incomplete (missing {})", missing.join(", "));
            let can_install = Path::new("/usr/bin/apt-get").exists()
                && Cmd::new("id").arg("-u").probe().as_deref() == Some("0");
            if !can_install {
                bail!(
                    "missing {}; install them with `sudo apt-get install -y {}` \
                     (this tool installs them itself only when run as root on Debian)",
                    missing.join(", "),
                    DEBIAN_PACKAGES.join(" ")
                );
            }
            eprintln!("build-agents: installing {} with apt-get", DEBIAN_PACKAGES.join(" "));
            let apt = |args: &[&str]| {
                Cmd::new("apt-get")
                    .args(args)
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .timeout(Duration::from_secs(1200))
            };
            apt(&["update"]).stream("apt-get update")?;
            apt(&["install", "-y"])
                .args(DEBIAN_PACKAGES)
                .stream("apt-get install Debian's Rust toolchain")?;
            let missing = debian_missing();
            if !missing.is_empty() {
                bail!("after apt-get install, still missing {}", missing.join(", "));
            }
        }
        let rustc = PathBuf::from(DEBIAN_RUSTC);
        let cargo = PathBuf::from(DEBIAN_CARGO);
        let rustc_version = version(&rustc)?;
        check_min_version(&rustc_version)?;
        Ok(Self {
            route: Route::Debian,
            cargo_version: version(&cargo)?,
            sysroot: sysroot(&rustc)?,
            cargo,
            rustc,
            rustdoc: Some(PathBuf::from(DEBIAN_RUSTDOC)),
            rustc_version,
        })
    }

    /// A `cargo` command for this toolchain, with the environment it needs and
    /// none of the caller's that would change the output.
    pub fn cargo(&self) -> Cmd {
        let mut cmd = Cmd::new(&self.cargo).env("RUSTC", &self.rustc);
        // Flags, profile and target settings from the caller's environment would
        // change the bytes; the build passes its own.
        for (var, _) in std::env::vars_os() {
            let name = var.to_string_lossy();
            if ["CARGO_PROFILE_", "CARGO_BUILD_", "CARGO_TARGET_"].iter().any(|p| name.starts_with(p))
                || ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_INCREMENTAL", "RUSTUP_TOOLCHAIN"]
                    .contains(&name.as_ref())
            {
                cmd = cmd.env_remove(&var);
            }
        }
        match (self.route, &self.rustdoc) {
            (Route::Debian, Some(rustdoc)) => cmd
                .env("RUSTDOC", rustdoc)
                // -Zbuild-std is unstable; Debian's compiler is a stable release.
                .env("RUSTC_BOOTSTRAP", "1"),
            _ => cmd.env_remove("RUSTDOC").env_remove("RUSTC_BOOTSTRAP"),
        }
    }

    /// Extra `cargo build` arguments of this route.
    pub fn build_args(&self) -> &'static [&'static str] {
        match self.route {
            Route::Rustup => &[],
            // Debian ships no std for wasm32: rebuild it from rust-web-src.
            Route::Debian => &["-Zbuild-std=std,panic_abort"],
        }
    }

    /// The path prefix of the standard library's sources in panic locations, to
    /// remap; `None` when std comes prebuilt (already remapped by rustup's build).
    pub fn std_src(&self) -> Option<PathBuf> {
        (self.route == Route::Debian).then(|| self.sysroot.join("lib/rustlib/src/rust"))
    }
}

/// What route 2 lacks on this machine.
fn debian_missing() -> Vec<String> {
    let mut missing = Vec::new();
    for (path, what) in [
        (DEBIAN_CARGO, "cargo-web"),
        (DEBIAN_RUSTC, "rustc-web"),
        (DEBIAN_RUSTDOC, "rustc-web"),
        (DEBIAN_LLD, "lld-22"),
    ] {
        // `exists` follows symlinks: /usr/bin/rust-lld dangles without lld-22.
        if !Path::new(path).exists() {
            missing.push(format!("{path} ({what})"));
        }
    }
    if Path::new(DEBIAN_RUSTC).exists() {
        match sysroot(Path::new(DEBIAN_RUSTC)) {
            Ok(sysroot) => {
                let src = sysroot.join("lib/rustlib/src/rust/library/std/Cargo.toml");
                if !src.exists() {
                    missing.push(format!("{} (rust-web-src)", src.display()));
                }
            }
            Err(e) => missing.push(format!("a working {DEBIAN_RUSTC} ({e:#})")),
        }
    }
    missing
}

fn target_dir(sysroot: &Path) -> PathBuf {
    sysroot.join("lib/rustlib").join(TARGET).join("lib")
}

fn target_installed(sysroot: &Path) -> bool {
    std::fs::read_dir(target_dir(sysroot)).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libstd-") && name.ends_with(".rlib")
        })
    })
}

fn sysroot(rustc: &Path) -> Result<PathBuf> {
    let out = Cmd::new(rustc)
        .args(["--print", "sysroot"])
        .output(&format!("ask {} for its sysroot", rustc.display()))?;
    Ok(PathBuf::from(out.stdout.trim()))
}

fn version(tool: &Path) -> Result<String> {
    let out = Cmd::new(tool).arg("-V").output(&format!("ask {} for its version", tool.display()))?;
    Ok(out.stdout.trim().to_owned())
}

/// Fail if `rustc -V` output is older than [`MIN_RUSTC`].
fn check_min_version(rustc_version: &str) -> Result<()> {
    let parsed = rustc_version
        .split_whitespace()
        .nth(1)
        .and_then(|v| {
            let mut parts = v.split(['.', '-']);
            let major = parts.next()?.parse::<u32>().ok()?;
            let minor = parts.next()?.parse::<u32>().ok()?;
            Some((major, minor))
        })
        .with_context(|| format!("cannot parse the rustc version `{rustc_version}`"))?;
    if parsed < MIN_RUSTC {
        bail!("{rustc_version} is too old: the guests need rustc {}.{} or newer", MIN_RUSTC.0, MIN_RUSTC.1);
    }
    Ok(())
}
