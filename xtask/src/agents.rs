//! `cargo xtask build-agents`: build the guest workspace (`agents/`) for
//! wasm32-unknown-unknown, turn each core module into a component and write
//! `agents/dist/` and `tests/fixtures/dist/` with their `MANIFEST.txt`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use wit_component::ComponentEncoder;

use crate::inspect;
use crate::manifest::{self, Entry, Manifest};
use crate::toolchain::{RouteChoice, TARGET, Toolchain};
use crate::wrapper;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Which toolchain to use: route 1 (rustup) if it works, else route 2
    /// (Debian's rustc-web); or force one.
    #[arg(long, value_enum, default_value = "auto")]
    route: RouteChoice,

    /// Rebuild into a temporary directory and compare with the committed dist
    /// directories instead of writing them. Fails only if a component is
    /// missing from a dist directory or is not a valid agent component; bytes
    /// that differ are reported (they are expected when the toolchain differs
    /// from the one in MANIFEST.txt).
    #[arg(long)]
    check: bool,

    /// With --check: fail unless every committed component is byte for byte
    /// the fresh build (a stale dist): also when MANIFEST.txt is missing or
    /// does not match a file, when a dist directory holds a component the
    /// workspace does not build, and when this machine's toolchain is not the
    /// one recorded in MANIFEST.txt (the bytes cannot be compared then: pass
    /// the recorded --route, or rebuild and commit). For CI.
    #[arg(long, requires = "check")]
    strict: bool,

    /// Pass --locked to cargo: fail if agents/Cargo.lock needs an update.
    #[arg(long)]
    locked: bool,

    /// Write the components to DIR/agents and DIR/fixtures instead of
    /// agents/dist and tests/fixtures/dist (with --check: build there and keep it).
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,

    /// Cargo's target directory [default: agents/target/<route>].
    #[arg(long, value_name = "DIR")]
    target_dir: Option<PathBuf>,
}

/// Where a guest's component goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    /// Crates under `agents/` -> `agents/dist/`.
    Agents,
    /// Crates under `tests/fixtures/` -> `tests/fixtures/dist/`.
    Fixtures,
}

impl Group {
    fn dist(self, root: &Path) -> PathBuf {
        match self {
            Self::Agents => root.join("agents/dist"),
            Self::Fixtures => root.join("tests/fixtures/dist"),
        }
    }

    fn out(self, out_dir: &Path) -> PathBuf {
        match self {
            Self::Agents => out_dir.join("agents"),
            Self::Fixtures => out_dir.join("fixtures"),
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Agents => "agents",
            Self::Fixtures => "fixtures",
        })
    }
}

/// A `cdylib` crate of the guest workspace.
#[derive(Debug)]
struct Guest {
    /// The package name: the component is `<name>.wasm`.
    name: String,
    /// The library target's name: the core module is `<lib>.wasm`.
    lib: String,
    group: Group,
    /// It uses the SDK's `http` feature: it may import `wasi:http`.
    http: bool,
}

/// A built component.
#[derive(Debug)]
struct Component {
    guest: Guest,
    module_size: usize,
    bytes: Vec<u8>,
}

impl Component {
    fn file_name(&self) -> String {
        format!("{}.wasm", self.guest.name)
    }
}

pub fn run(root: &Path, args: &BuildArgs) -> Result<()> {
    let started = Instant::now();
    let agents = root.join("agents");

    let tc = Toolchain::select(args.route, root)?;
    let setup_time = started.elapsed();
    eprintln!("build-agents: using {}: {}; {}", tc.route, tc.rustc_version, tc.cargo_version);

    let target_dir = match &args.target_dir {
        Some(dir) => absolute(dir)?,
        None => agents.join("target").join(tc.route.name()),
    };
    let guests = guests(&tc, root, &agents)?;
    if guests.is_empty() {
        bail!("the guest workspace {} has no cdylib crate", agents.display());
    }

    let build_started = Instant::now();
    // Guests using the SDK's `http` feature are built in a cargo invocation
    // of their own: cargo unifies a dependency's features across what one
    // invocation builds, and the others must not get the feature (their bytes
    // would change).
    let http: Vec<&str> = guests.iter().filter(|g| g.http).map(|g| g.name.as_str()).collect();
    let mut rest: Vec<&str> = vec!["--workspace"];
    for name in &http {
        rest.extend(["--exclude", name]);
    }
    build(&tc, root, &agents, &target_dir, args.locked, &rest)?;
    if !http.is_empty() {
        let packages: Vec<&str> = http.iter().flat_map(|name| ["-p", name]).collect();
        build(&tc, root, &agents, &target_dir, args.locked, &packages)?;
    }
    let build_time = build_started.elapsed();

    let componentize_started = Instant::now();
    let release = target_dir.join(TARGET).join("release");
    let mut components = Vec::new();
    for guest in guests {
        let module_path = release.join(format!("{}.wasm", guest.lib));
        let component = componentize(&module_path, guest.http)
            .with_context(|| format!("step `componentize {}` failed", guest.name))?;
        components.push(Component {
            module_size: std::fs::metadata(&module_path)?.len().try_into()?,
            guest,
            bytes: component,
        });
    }
    let componentize_time = componentize_started.elapsed();

    let mut groups: BTreeMap<Group, Vec<&Component>> = BTreeMap::new();
    for c in &components {
        groups.entry(c.guest.group).or_default().push(c);
    }
    let wit_hash = wit_hash(&root.join("wit"))?;
    let manifests: BTreeMap<Group, Manifest> =
        groups.iter().map(|(group, cs)| (*group, manifest_for(&tc, &wit_hash, cs))).collect();

    let temp;
    let out_dir = match (&args.out_dir, args.check) {
        (Some(dir), _) => Some(absolute(dir)?),
        (None, true) => {
            temp = tempfile::Builder::new().prefix("ensemble-agents-check-").tempdir()?;
            Some(temp.path().to_owned())
        }
        (None, false) => None,
    };
    for (group, cs) in &groups {
        let dir = match &out_dir {
            Some(out) => group.out(out),
            None => group.dist(root),
        };
        write_group(&dir, cs, &manifests[group])?;
    }

    for c in &components {
        let dir = match &out_dir {
            Some(out) => c.guest.group.out(out),
            None => c.guest.group.dist(root),
        };
        eprintln!(
            "  {:<48} module {:>7} B -> component {:>7} B  blake3 {}",
            relative(root, &dir.join(c.file_name())),
            c.module_size,
            c.bytes.len(),
            &blake3::hash(&c.bytes).to_hex()[..16]
        );
    }
    eprintln!(
        "build-agents: built {} components with {} ({}) in {} \
         (toolchain {}, cargo build {}, componentize {})",
        components.len(),
        tc.route,
        tc.rustc_version,
        secs(started.elapsed()),
        secs(setup_time),
        secs(build_time),
        secs(componentize_time),
    );

    if args.check {
        let mut failures = Vec::new();
        for (group, cs) in &groups {
            failures.extend(compare(root, *group, cs, &manifests[group], args.strict)?);
        }
        if !failures.is_empty() {
            bail!(
                "--check{}: the committed components are not what the sources build ({}); \
                 rebuild them with `cargo xtask build-agents --route {}` and commit agents/dist and \
                 tests/fixtures/dist",
                if args.strict { " --strict" } else { "" },
                failures.join("; "),
                tc.route.name()
            );
        }
        eprintln!("build-agents --check: ok");
    }
    Ok(())
}

/// The `cdylib` crates of the guest workspace, from `cargo metadata`.
fn guests(tc: &Toolchain, root: &Path, agents: &Path) -> Result<Vec<Guest>> {
    let out = tc
        .cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .dir(agents)
        .output("list the guest workspace's crates (cargo metadata)")?;
    let meta: serde_json::Value =
        serde_json::from_str(&out.stdout).context("parsing `cargo metadata` output")?;
    let fixtures = root.join("tests/fixtures");
    let mut guests = Vec::new();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        let name = pkg["name"].as_str().context("a package without a name")?;
        let manifest =
            PathBuf::from(pkg["manifest_path"].as_str().context("a package without a manifest_path")?);
        let Some(lib) = pkg["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib")))
        else {
            continue; // a library shared by agents, not an agent
        };
        let lib = lib["name"].as_str().context("a target without a name")?.replace('-', "_");
        let group = if manifest.starts_with(&fixtures) {
            Group::Fixtures
        } else if manifest.starts_with(agents) {
            Group::Agents
        } else {
            bail!(
                "guest crate `{name}` ({}) is neither under agents/ nor under tests/fixtures/: \
                 cannot tell where its component goes",
                manifest.display()
            );
        };
        let http = pkg["dependencies"].as_array().into_iter().flatten().any(|d| {
            d["name"] == "ensemble-agent-sdk"
                && d["features"].as_array().is_some_and(|f| f.iter().any(|f| f == "http"))
        });
        guests.push(Guest { name: name.to_owned(), lib, group, http });
    }
    guests.sort_by(|a, b| (a.group, &a.name).cmp(&(b.group, &b.name)));
    Ok(guests)
}

/// `cargo build --release --target wasm32-unknown-unknown` of the guest workspace,
/// with paths remapped so that the bytes do not depend on where things are.
fn build(
    tc: &Toolchain,
    root: &Path,
    agents: &Path,
    target_dir: &Path,
    locked: bool,
    packages: &[&str],
) -> Result<()> {
    let remap = |from: &Path, to: &str| format!("--remap-path-prefix={}={to}", from.display());
    // rustc applies the last matching mapping: most specific last.
    let mut rustflags =
        vec![remap(root, "/ensemble"), remap(target_dir, "/target"), remap(&cargo_home()?, "/cargo")];
    if let Some(src) = tc.std_src() {
        rustflags.push(remap(&src, "/rustc/src"));
    }

    let mut cmd = tc
        .cargo()
        .args(["build", "--release", "--target", TARGET])
        .args(packages)
        .args(tc.build_args())
        .env("CARGO_TARGET_DIR", target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags.join("\x1f"))
        // This executable, as rustc's wrapper, makes `-C metadata` location-independent.
        .env("RUSTC_WRAPPER", std::env::current_exe().context("locating the xtask executable")?)
        .env(wrapper::ENV, "1")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .dir(agents);
    if locked {
        cmd = cmd.arg("--locked");
    }
    if std::io::stderr().is_terminal() {
        cmd = cmd.arg("--color=always");
    }
    eprintln!("build-agents: {}", cmd.display());
    cmd.stream(&format!("build the guest workspace ({})", tc.route))
}

/// Read a core module and encode it as a component; check its world.
fn componentize(module_path: &Path, http: bool) -> Result<Vec<u8>> {
    let module = std::fs::read(module_path)
        .with_context(|| format!("reading the core module {}", module_path.display()))?;
    let component = ComponentEncoder::default()
        .module(&module)
        .with_context(|| {
            format!(
                "{} has no usable component-type section (is it built with the SDK's export_agent!?)",
                module_path.display()
            )
        })?
        .validate(true)
        .encode()
        .with_context(|| format!("encoding {} as a component", module_path.display()))?;
    let summary = inspect::summarize(&component)?;
    inspect::check_agent(&summary, http).context("the component is not an agent")?;
    Ok(component)
}

fn manifest_for(tc: &Toolchain, wit_hash: &str, components: &[&Component]) -> Manifest {
    Manifest {
        fields: vec![
            ("route".into(), tc.route.name().into()),
            ("rustc".into(), tc.rustc_version.clone()),
            ("cargo".into(), tc.cargo_version.clone()),
            ("target".into(), TARGET.into()),
            ("wit".into(), format!("blake3:{wit_hash}")),
        ],
        entries: components.iter().map(|c| (c.file_name(), Entry::of(&c.bytes))).collect(),
    }
}

fn write_group(dir: &Path, components: &[&Component], manifest: &Manifest) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for c in components {
        let path = dir.join(c.file_name());
        std::fs::write(&path, &c.bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let path = dir.join(manifest::FILE_NAME);
    std::fs::write(&path, manifest.render()).with_context(|| format!("writing {}", path.display()))?;
    let known: Vec<_> = components.iter().map(|c| c.file_name()).collect();
    for stray in wasm_files(dir)?.into_iter().filter(|f| !known.contains(f)) {
        eprintln!(
            "build-agents: note: {} is not built by the guest workspace (left alone)",
            dir.join(stray).display()
        );
    }
    Ok(())
}

/// Compare freshly built components with a committed dist directory. Prints
/// every difference; returns the failures, each naming its file and cause.
fn compare(
    root: &Path,
    group: Group,
    fresh: &[&Component],
    fresh_manifest: &Manifest,
    strict: bool,
) -> Result<Vec<String>> {
    let dist = group.dist(root);
    let shown = relative(root, &dist);
    eprintln!("check {group} ({shown}):");
    let mut failures = Vec::new();
    let committed = Manifest::read(&dist)?;
    let same_toolchain = committed.as_ref().is_some_and(|m| m.toolchain() == fresh_manifest.toolchain());
    match &committed {
        None => {
            eprintln!("  no {} in {shown}", manifest::FILE_NAME);
            if strict {
                failures.push(format!("{shown}/{} is missing", manifest::FILE_NAME));
            }
        }
        Some(m) if !same_toolchain => {
            eprintln!(
                "  committed components were built by {}\n  this build used {}",
                m.toolchain(),
                fresh_manifest.toolchain()
            );
            if strict {
                failures.push(format!(
                    "{shown} was built by {}, this machine has {}: the bytes cannot be compared",
                    m.toolchain(),
                    fresh_manifest.toolchain()
                ));
            }
        }
        Some(_) => {}
    }
    if let Some(m) = &committed
        && m.field("wit") != fresh_manifest.field("wit")
    {
        eprintln!("  the WIT changed since the committed components were built");
    }

    for c in fresh {
        let name = c.file_name();
        let file = format!("{shown}/{name}");
        let path = dist.join(&name);
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!("  {name:<24} MISSING: run `cargo xtask build-agents` and commit {shown}");
            failures.push(format!("{file} is missing"));
            continue;
        };
        if let Err(e) = inspect::summarize(&bytes).and_then(|s| inspect::check_agent(&s, c.guest.http)) {
            eprintln!("  {name:<24} INVALID: the committed file is not an agent component: {e:#}");
            failures.push(format!("{file} is not an agent component"));
            continue;
        }
        let recorded = committed.as_ref().and_then(|m| m.entries.get(&name));
        if committed.is_some() && recorded != Some(&Entry::of(&bytes)) {
            eprintln!("  {name:<24} note: {} does not match the file", manifest::FILE_NAME);
            if strict {
                failures.push(format!("{file} does not match {shown}/{}", manifest::FILE_NAME));
            }
        }
        if bytes == c.bytes {
            eprintln!("  {name:<24} identical ({} B)", bytes.len());
        } else if same_toolchain {
            eprintln!(
                "  {name:<24} DIFFERS although built by the same toolchain ({} B committed, {} B now): \
                 the committed component is stale",
                bytes.len(),
                c.bytes.len()
            );
            if strict {
                failures
                    .push(format!("{file} is stale (it differs from a fresh build by the same toolchain)"));
            }
        } else {
            eprintln!(
                "  {name:<24} differs ({} B committed, {} B now): expected with another toolchain",
                bytes.len(),
                c.bytes.len()
            );
        }
    }
    let built: Vec<_> = fresh.iter().map(|c| c.file_name()).collect();
    for extra in wasm_files(&dist)?.into_iter().filter(|f| !built.contains(f)) {
        eprintln!("  {extra:<24} note: in {shown} but not built by the guest workspace");
        if strict {
            failures.push(format!("{shown}/{extra} is not built by the guest workspace"));
        }
    }
    Ok(failures)
}

/// The `*.wasm` file names in `dir` (none if it does not exist).
fn wasm_files(dir: &Path) -> Result<Vec<String>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".wasm") {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// A hash of the `*.wit` files under `dir` (names and contents).
fn wit_hash(dir: &Path) -> Result<String> {
    fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                collect(&path, files)?;
            } else if path.extension().is_some_and(|e| e == "wit") {
                files.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    let mut hasher = blake3::Hasher::new();
    for file in files {
        let name = file.strip_prefix(dir).unwrap_or(&file).to_string_lossy();
        let text = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        hasher.update(&(name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(&(text.len() as u64).to_le_bytes());
        hasher.update(&text);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

fn cargo_home() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return absolute(Path::new(&home));
    }
    let home = std::env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cargo"))
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("making {} absolute", path.display()))
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with `agents/dist/greeter.wasm` (the committed greeter)
    /// and its MANIFEST.txt, recording `rustc`.
    fn repo(rustc: &str) -> (tempfile::TempDir, Vec<u8>, Manifest) {
        let committed = std::fs::read(crate::repo_root().expect("root").join("agents/dist/greeter.wasm"))
            .expect("the committed greeter");
        let root = tempfile::tempdir().expect("tempdir");
        let dist = root.path().join("agents/dist");
        std::fs::create_dir_all(&dist).expect("mkdir");
        std::fs::write(dist.join("greeter.wasm"), &committed).expect("write");
        let manifest = manifest(rustc, &committed);
        std::fs::write(dist.join(manifest::FILE_NAME), manifest.render()).expect("write");
        (root, committed, manifest)
    }

    fn manifest(rustc: &str, greeter: &[u8]) -> Manifest {
        let mut m = Manifest {
            fields: vec![
                ("route".into(), "debian".into()),
                ("rustc".into(), rustc.into()),
                ("cargo".into(), "cargo 1.96.0".into()),
            ],
            ..Manifest::default()
        };
        m.entries.insert("greeter.wasm".into(), Entry::of(greeter));
        m
    }

    fn greeter(bytes: Vec<u8>) -> Component {
        Component {
            guest: Guest { name: "greeter".into(), lib: "greeter".into(), group: Group::Agents, http: false },
            module_size: 0,
            bytes,
        }
    }

    #[test]
    fn strict_fails_on_a_stale_component_naming_it() {
        let (root, committed, m) = repo("rustc 1.96.0");
        // A fresh build that differs (another valid agent's bytes).
        let other = std::fs::read(crate::repo_root().expect("root").join("agents/dist/shouter.wasm"))
            .expect("the committed shouter");
        let fresh = greeter(other.clone());
        let fresh_manifest = manifest("rustc 1.96.0", &other);
        let failures =
            compare(root.path(), Group::Agents, &[&fresh], &fresh_manifest, true).expect("compare");
        assert_eq!(
            failures,
            ["agents/dist/greeter.wasm is stale (it differs from a fresh build by the same toolchain)"]
        );
        // Without --strict it is only reported.
        let failures =
            compare(root.path(), Group::Agents, &[&fresh], &fresh_manifest, false).expect("compare");
        assert!(failures.is_empty(), "{failures:?}");
        // The same bytes pass.
        let same = greeter(committed);
        let failures = compare(root.path(), Group::Agents, &[&same], &m, true).expect("compare");
        assert!(failures.is_empty(), "{failures:?}");
    }

    #[test]
    fn strict_fails_when_the_bytes_cannot_be_compared_or_the_manifest_is_wrong() {
        let (root, committed, _) = repo("rustc 1.96.0");
        let fresh = greeter(committed.clone());
        let failures =
            compare(root.path(), Group::Agents, &[&fresh], &manifest("rustc 1.97.0", &committed), true)
                .expect("compare");
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("the bytes cannot be compared"), "{failures:?}");

        // A committed file that is not the one MANIFEST.txt records.
        let dist = root.path().join("agents/dist");
        std::fs::write(dist.join(manifest::FILE_NAME), manifest("rustc 1.96.0", b"other").render())
            .expect("write");
        let failures =
            compare(root.path(), Group::Agents, &[&fresh], &manifest("rustc 1.96.0", &committed), true)
                .expect("compare");
        assert_eq!(failures, ["agents/dist/greeter.wasm does not match agents/dist/MANIFEST.txt"]);

        // A component the workspace does not build.
        std::fs::write(dist.join(manifest::FILE_NAME), manifest("rustc 1.96.0", &committed).render())
            .expect("write");
        std::fs::write(dist.join("gone.wasm"), &committed).expect("write");
        let failures =
            compare(root.path(), Group::Agents, &[&fresh], &manifest("rustc 1.96.0", &committed), true)
                .expect("compare");
        assert_eq!(failures, ["agents/dist/gone.wasm is not built by the guest workspace"]);
    }
}
