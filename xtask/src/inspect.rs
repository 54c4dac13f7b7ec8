//! `cargo xtask inspect`: what a component (or core module) imports and exports,
//! and the check that a component is an Ensemble agent.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use wasmparser::{ExternalKind, KnownCustom, Parser, Payload, TypeRef};
use wit_component::{DecodedWasm, WitPrinter};
use wit_parser::{Function, Resolve, WorldItem, WorldKey};

/// The only interfaces an agent component may import (`types` only if used),
/// besides WASI 0.2 (see [`check_agent`]), at a version from `0.1.0` to
/// [`WIT_VERSION`]: `ensemble:agent/<interface>@<version>`.
pub const ALLOWED_IMPORTS: [&str; 6] = ["types", "context", "progress", "log", "templates", "llm"];

/// The `ensemble:agent` version of `wit/agent.wit`.
pub const WIT_VERSION: &str = "0.1.1";

/// Whether `name` is an allowed `ensemble:agent` interface import.
fn allowed_import(name: &str) -> bool {
    let patch = |v: &str| v.strip_prefix("0.1.").and_then(|p| p.parse::<u32>().ok());
    name.strip_prefix("ensemble:agent/").and_then(|rest| rest.split_once('@')).is_some_and(
        |(interface, version)| {
            ALLOWED_IMPORTS.contains(&interface)
                && patch(version).zip(patch(WIT_VERSION)).is_some_and(|(theirs, ours)| theirs <= ours)
        },
    )
}

/// The functions an agent component must export, and nothing else.
pub const REQUIRED_EXPORTS: [&str; 2] = ["run", "validate"];

/// An import or export: its name and kind ("instance", "type", "func", ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extern {
    /// An interface or function name for a component, `module::name` for a
    /// core module's import.
    pub name: String,
    pub kind: &'static str,
}

/// The top-level imports and exports of a component or core module.
#[derive(Debug, Default)]
pub struct Summary {
    pub component: bool,
    pub imports: Vec<Extern>,
    pub exports: Vec<Extern>,
    /// Tools that produced the file, from every `producers` section in it.
    pub producers: BTreeSet<String>,
}

/// Read the top-level imports and exports of `bytes`.
pub fn summarize(bytes: &[u8]) -> Result<Summary> {
    let mut summary = Summary { component: Parser::is_component(bytes), ..Summary::default() };
    if !summary.component && !Parser::is_core_wasm(bytes) {
        bail!("not a WebAssembly component or module");
    }
    // Nested modules and components come as payloads between their header and
    // `End`: count the depth to keep only the outermost imports and exports.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import?;
                    summary
                        .imports
                        .push(Extern { name: import.name.name.to_owned(), kind: import.ty.kind().desc() });
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    let export = export?;
                    summary
                        .exports
                        .push(Extern { name: export.name.name.to_owned(), kind: export.kind.desc() });
                }
            }
            Payload::ImportSection(reader) if depth == 0 && !summary.component => {
                for import in reader.into_imports() {
                    let import = import?;
                    summary.imports.push(Extern {
                        name: format!("{}::{}", import.module, import.name),
                        kind: match import.ty {
                            TypeRef::Func(_) | TypeRef::FuncExact(_) => "func",
                            TypeRef::Table(_) => "table",
                            TypeRef::Memory(_) => "memory",
                            TypeRef::Global(_) => "global",
                            TypeRef::Tag(_) => "tag",
                        },
                    });
                }
            }
            Payload::ExportSection(reader) if depth == 0 && !summary.component => {
                for export in reader {
                    let export = export?;
                    summary.exports.push(Extern {
                        name: export.name.to_owned(),
                        kind: match export.kind {
                            ExternalKind::Func | ExternalKind::FuncExact => "func",
                            ExternalKind::Table => "table",
                            ExternalKind::Memory => "memory",
                            ExternalKind::Global => "global",
                            ExternalKind::Tag => "tag",
                        },
                    });
                }
            }
            Payload::CustomSection(section) => {
                if let KnownCustom::Producers(reader) = section.as_known() {
                    for field in reader {
                        let field = field?;
                        for value in field.values {
                            let value = value?;
                            summary
                                .producers
                                .insert(format!("{}: {} {}", field.name, value.name, value.version));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(summary)
}

/// Fail unless `summary` is an agent component: the only instances it
/// imports are [`ALLOWED_IMPORTS`] and WASI 0.2 (`wasi:*`, which the host
/// links only for an agent granted it; `wasi:http` only with `http`, for
/// guests using the SDK's `http` feature), and it exports exactly the
/// functions [`REQUIRED_EXPORTS`]. Type imports (the types the world `use`s,
/// bound to the `types` instance's) carry no capability and are allowed.
pub fn check_agent(summary: &Summary, http: bool) -> Result<()> {
    let wasi_import = |name: &str| name.starts_with("wasi:") && (http || !name.starts_with("wasi:http/"));
    if !summary.component {
        bail!("it is a core module, not a component");
    }
    let extra: Vec<_> = summary
        .imports
        .iter()
        .filter(|i| {
            i.kind != "type" && !(i.kind == "instance" && (allowed_import(&i.name) || wasi_import(&i.name)))
        })
        .map(|i| format!("{} {}", i.kind, i.name))
        .collect();
    if !extra.is_empty() {
        bail!(
            "it imports {}; an agent may import only WASI 0.2 (`wasi:*`) and the ensemble:agent@0.1.0..={WIT_VERSION} interfaces {}",
            extra.join(", "),
            ALLOWED_IMPORTS.join(", ")
        );
    }
    let exports: BTreeSet<_> = summary.exports.iter().map(|e| format!("{} {}", e.kind, e.name)).collect();
    let required: BTreeSet<_> = REQUIRED_EXPORTS.into_iter().map(|name| format!("func {name}")).collect();
    if exports != required {
        bail!(
            "it exports {}; an agent exports exactly the functions {}",
            exports.into_iter().collect::<Vec<_>>().join(", "),
            REQUIRED_EXPORTS.join(", ")
        );
    }
    Ok(())
}

/// `cargo xtask inspect FILE...`.
pub fn run(files: &[PathBuf], wit: bool) -> Result<()> {
    let mut out = String::new();
    for (i, file) in files.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&describe(file, wit).with_context(|| format!("inspecting {}", file.display()))?);
    }
    print!("{out}");
    Ok(())
}

fn describe(file: &Path, wit: bool) -> Result<String> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let summary = summarize(&bytes)?;
    let mut s = String::new();
    let kind = if summary.component { "component" } else { "core module" };
    writeln!(
        s,
        "{}: {kind}, {} bytes, blake3 {}",
        file.display(),
        bytes.len(),
        blake3::hash(&bytes).to_hex()
    )?;

    // For a component, the decoded world gives each interface's functions.
    let decoded = if summary.component {
        Some(wit_component::decode(&bytes).context("decoding the component's world")?)
    } else {
        None
    };
    let world = match &decoded {
        Some(DecodedWasm::Component(resolve, world)) => Some((resolve, &resolve.worlds[*world])),
        _ => None,
    };

    writeln!(s, "  imports:")?;
    for import in &summary.imports {
        writeln!(s, "    {} {}", import.kind, import.name)?;
        if let Some((resolve, world)) = world
            && import.kind == "instance"
        {
            for line in item_lines(resolve, world.imports.iter(), &import.name) {
                writeln!(s, "      {line}")?;
            }
        }
    }
    writeln!(s, "  exports:")?;
    for export in &summary.exports {
        let sig = world.and_then(|(resolve, world)| {
            world.exports.iter().find_map(|(key, item)| match item {
                WorldItem::Function(f) if resolve.name_world_key(key) == export.name => {
                    Some(signature(resolve, f))
                }
                _ => None,
            })
        });
        match sig {
            Some(sig) => writeln!(s, "    func {sig}")?,
            None => writeln!(s, "    {} {}", export.kind, export.name)?,
        }
    }
    if !summary.producers.is_empty() {
        writeln!(s, "  producers:")?;
        for p in &summary.producers {
            writeln!(s, "    {p}")?;
        }
    }
    if summary.component {
        let wasi = summary.imports.iter().any(|i| i.name.starts_with("wasi:"));
        match check_agent(&summary, true) {
            Ok(()) if wasi => {
                writeln!(s, "  agent world: ok (imports WASI 0.2: the agent needs the matching grants)")?
            }
            Ok(()) => writeln!(s, "  agent world: ok (no WASI; exports run and validate)")?,
            Err(e) => writeln!(s, "  agent world: NOT an agent: {e}")?,
        }
    }
    if wit && let Some(DecodedWasm::Component(resolve, world)) = &decoded {
        let pkg = resolve.worlds[*world].package.context("the decoded world has no package")?;
        let nested: Vec<_> = resolve.packages.iter().map(|(id, _)| id).filter(|id| *id != pkg).collect();
        let mut printer = WitPrinter::default();
        printer.print(resolve, pkg, &nested)?;
        writeln!(s, "  wit:")?;
        for line in printer.output.to_string().lines() {
            writeln!(s, "    {line}")?;
        }
    }
    Ok(s)
}

/// The functions (or types) of the world item named `name`.
fn item_lines<'a>(
    resolve: &Resolve,
    items: impl Iterator<Item = (&'a WorldKey, &'a WorldItem)>,
    name: &str,
) -> Vec<String> {
    for (key, item) in items {
        if resolve.name_world_key(key) != name {
            continue;
        }
        return match item {
            WorldItem::Interface { id, .. } => {
                let iface = &resolve.interfaces[*id];
                let mut lines: Vec<_> = iface.functions.values().map(|f| signature(resolve, f)).collect();
                if !iface.types.is_empty() {
                    let types: Vec<_> = iface.types.keys().map(String::as_str).collect();
                    lines.push(format!("types: {}", types.join(", ")));
                }
                lines
            }
            WorldItem::Function(f) => vec![signature(resolve, f)],
            WorldItem::Type { .. } => vec!["(a type)".to_owned()],
        };
    }
    Vec::new()
}

/// `name: func(a: t, ...) -> r`, in WIT syntax.
fn signature(resolve: &Resolve, f: &Function) -> String {
    let ty = |t| {
        let mut p = WitPrinter::default();
        match p.print_type_name(resolve, t) {
            Ok(()) => p.output.to_string(),
            Err(_) => "?".to_owned(),
        }
    };
    let params: Vec<_> = f.params.iter().map(|p| format!("{}: {}", p.name, ty(&p.ty))).collect();
    let result = f.result.as_ref().map(|r| format!(" -> {}", ty(r))).unwrap_or_default();
    format!("{}: func({}){result}", f.name, params.join(", "))
}
