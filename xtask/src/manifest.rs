//! `MANIFEST.txt`: what is in a dist directory and what built it.
//!
//! ```text
//! # ...comments...
//! route: debian
//! rustc: rustc 1.96.0 (ac68faa20 2026-05-25) (built from a source tarball)
//! cargo: cargo 1.96.0 (30a34c682 2026-05-25) (built from a source tarball)
//! target: wasm32-unknown-unknown
//! wit: blake3:<hash of the wit/ directory>
//!
//! <blake3 hex>  <size in bytes>  greeter.wasm
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

pub const FILE_NAME: &str = "MANIFEST.txt";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub blake3: String,
    pub size: u64,
}

impl Entry {
    pub fn of(bytes: &[u8]) -> Self {
        Self { blake3: blake3::hash(bytes).to_hex().to_string(), size: bytes.len() as u64 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// `key: value` lines, in order: route, rustc, cargo, target, wit.
    pub fields: Vec<(String, String)>,
    /// By file name.
    pub entries: BTreeMap<String, Entry>,
}

impl Manifest {
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The toolchain that built the components: route, rustc and cargo.
    pub fn toolchain(&self) -> String {
        format!(
            "route {}, {}, {}",
            self.field("route").unwrap_or("?"),
            self.field("rustc").unwrap_or("rustc ?"),
            self.field("cargo").unwrap_or("cargo ?")
        )
    }

    pub fn render(&self) -> String {
        let mut s = String::from(
            "# WebAssembly components built by `cargo xtask build-agents`; do not edit.\n\
             # `cargo xtask build-agents --check` rebuilds them and compares.\n",
        );
        for (k, v) in &self.fields {
            let _ = writeln!(s, "{k}: {v}");
        }
        s.push_str("\n# blake3                                                           bytes  file\n");
        for (name, e) in &self.entries {
            let _ = writeln!(s, "{}  {:>6}  {name}", e.blake3, e.size);
        }
        s
    }

    pub fn parse(text: &str) -> Result<Self> {
        let mut m = Self::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parts: Vec<_> = line.split_whitespace().collect();
            if let [hash, size, name] = parts[..]
                && hash.len() == 64
                && hash.bytes().all(|b| b.is_ascii_hexdigit())
            {
                let size = size.parse().with_context(|| format!("line {}: bad size `{size}`", n + 1))?;
                m.entries.insert(name.to_owned(), Entry { blake3: hash.to_owned(), size });
            } else if let Some((k, v)) = line.split_once(": ") {
                m.fields.push((k.trim().to_owned(), v.trim().to_owned()));
            } else {
                bail!("line {}: cannot parse `{line}`", n + 1);
            }
        }
        Ok(m)
    }

    /// Read `dir/MANIFEST.txt`; `None` if there is none.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text).with_context(|| format!("parsing {}", path.display())).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut m = Manifest {
            fields: vec![
                ("route".into(), "debian".into()),
                ("rustc".into(), "rustc 1.96.0 (ac68faa20 2026-05-25)".into()),
            ],
            ..Manifest::default()
        };
        m.entries.insert("greeter.wasm".into(), Entry::of(b"abc"));
        let parsed = Manifest::parse(&m.render()).expect("parse");
        assert_eq!(parsed, m);
        assert_eq!(parsed.field("route"), Some("debian"));
    }
}
