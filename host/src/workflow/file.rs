//! The file format, as serde sees it. Field names here are the user's
//! vocabulary; unknown fields are errors.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Location, Problem};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WorkflowFile {
    pub name: Option<String>,
    #[serde(default)]
    pub resources: Option<Spanned<ResourcesFile>>,
    pub agents: Spanned<IndexMap<String, Spanned<AgentFile>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResourcesFile {
    pub cpu: Option<Spanned<u32>>,
    pub memory: Option<Spanned<u32>>,
    /// Bytes per memory unit: an integer, or text such as `4MiB`.
    pub memory_unit: Option<Spanned<Size>>,
    pub max_concurrent: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentFile {
    pub component: Spanned<String>,
    pub owns: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub needs: Vec<Spanned<String>>,
    pub config: Option<serde_json::Value>,
    pub resources: Option<AgentResourcesFile>,
    pub fuel: Option<Spanned<u64>>,
    /// A duration such as `30s` or `1m 30s`.
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentResourcesFile {
    pub cpu: Option<Spanned<u32>>,
    pub memory: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Size {
    Bytes(u64),
    Text(String),
}

pub(super) fn at<T>(s: &Spanned<T>) -> Location {
    Location { line: s.referenced.line(), column: s.referenced.column() }
}

pub(super) fn parse(text: &str) -> Result<WorkflowFile, Problem> {
    serde_saphyr::from_str(text).map_err(|e| {
        let location = e.location().map(|l| Location { line: l.line(), column: l.column() });
        // The error's own text may repeat the position; keep its first line.
        let message = e.to_string();
        let message = message.lines().next().unwrap_or("invalid YAML").trim().to_owned();
        Problem { location, message }
    })
}
