//! The file format, as serde sees it. Field names here are the user's
//! vocabulary; unknown fields are errors.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;

use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::{DependencyKind, Location, Problem};

/// A value with the position it came from. A local wrapper over
/// `serde_saphyr::Spanned`, so the file types can also describe their JSON
/// Schema (the position is not part of the schema).
#[derive(Debug)]
pub(super) struct Spanned<T>(serde_saphyr::Spanned<T>);

impl<T> Deref for Spanned<T> {
    type Target = serde_saphyr::Spanned<T>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_saphyr::Spanned::deserialize(deserializer).map(Spanned)
    }
}

impl<T: JsonSchema> JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// An Ensemble workflow: agents (WebAssembly components), their dependencies,
/// the resources they share, parallel groups with smart barriers, and what the
/// run keeps (cache) and writes (outputs).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Ensemble workflow")]
pub(super) struct WorkflowFile {
    pub name: Option<String>,
    pub resources: Option<Spanned<ResourcesFile>>,
    /// Key prefixes more than one agent may write, with the conflict policy.
    #[serde(default)]
    pub shared: IndexMap<String, Spanned<SharedPolicyFile>>,
    pub agents: Spanned<IndexMap<String, Spanned<AgentFile>>>,
    #[serde(default)]
    pub groups: IndexMap<String, Spanned<GroupFile>>,
    pub cache: Option<Spanned<CacheFile>>,
    pub templates: Option<Spanned<String>>,
    pub outputs: Option<Spanned<OutputsFile>>,
    /// What every agent gets unless it says otherwise.
    pub defaults: Option<Spanned<DefaultsFile>>,
}

/// Settings every agent inherits.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DefaultsFile {
    /// Grants every agent gets; an agent's own `files`, `http` or
    /// `variables` replaces the default one (HTTP limits merge field by field).
    pub grants: Option<Spanned<GrantsFile>>,
}

/// What an agent may touch outside the context. Nothing unless granted.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantsFile {
    /// Host directories mapped into the agent (WASI 0.2 `wasi:filesystem`).
    pub files: Option<Vec<Spanned<FileGrantFile>>>,
    /// Outbound HTTP (`wasi:http/outgoing-handler`) to the listed origins.
    pub http: Option<Spanned<HttpGrantFile>>,
    /// Named values the agent sees as environment variables (`wasi:cli/environment`).
    pub variables: Option<IndexMap<String, Spanned<VariableFile>>>,
}

/// One directory: `{path: docs, mode: read}` (seen as `/docs`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FileGrantFile {
    /// The host directory, relative to the workflow file.
    pub path: Spanned<String>,
    /// Where the agent sees it (an absolute guest path); default `/` and
    /// the directory's name.
    #[serde(rename = "as")]
    pub guest: Option<Spanned<String>>,
    /// `read` (default) or `read_write`.
    pub mode: Option<Spanned<FileModeFile>>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum FileModeFile {
    Read,
    ReadWrite,
}

/// `allow: ["https://api.example.com", "http://127.0.0.1:*"]` and limits.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpGrantFile {
    /// `scheme://host[:port]` patterns: `*.example.com` for subdomains,
    /// `:*` for any port, `*://` for http and https.
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    /// Per request, from connecting to the last byte of the response.
    pub timeout: Option<Spanned<String>>,
    /// Requests one invocation may make.
    pub max_requests: Option<Spanned<u32>>,
    /// Requests one invocation may have in flight at once.
    pub max_concurrent: Option<Spanned<u32>>,
    /// Largest request body sent.
    pub max_request_body: Option<Spanned<Size>>,
    /// Largest response body received.
    pub max_response_body: Option<Spanned<Size>>,
}

/// One variable: exactly one of `env`, `file` or `value`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct VariableFile {
    /// Taken from this host environment variable when the workflow loads.
    pub env: Option<Spanned<String>>,
    /// Taken from this file (relative to the workflow file; one trailing
    /// newline dropped).
    pub file: Option<Spanned<String>>,
    /// Given here (not allowed for a secret).
    pub value: Option<Spanned<String>>,
    /// Never shown: kept out of logs, events, reports, journals and caches.
    pub secret: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ResourcesFile {
    pub cpu: Option<Spanned<u32>>,
    pub memory: Option<Spanned<u32>>,
    /// Bytes per memory unit: an integer, or text such as `4MiB`.
    pub memory_unit: Option<Spanned<Size>>,
    pub max_concurrent: Option<Spanned<u32>>,
    pub cpu_oversubscription: Option<Spanned<f64>>,
    pub memory_strict: Option<Spanned<bool>>,
    /// Outbound HTTP requests in flight at once across the whole run.
    pub http_concurrent: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum SharedPolicyFile {
    FirstWriterWins,
    MergeOrFail,
    Fail,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentFile {
    pub component: Spanned<String>,
    pub owns: Option<Vec<Spanned<String>>>,
    pub reads: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub needs: Vec<Spanned<NeedFile>>,
    pub config: Option<serde_json::Value>,
    pub resources: Option<AgentResourcesFile>,
    pub fuel: Option<Spanned<u64>>,
    /// A duration such as `30s` or `1m 30s`.
    pub timeout: Option<Spanned<String>>,
    pub estimate: Option<Spanned<String>>,
    pub priority: Option<Spanned<u8>>,
    pub retry: Option<Spanned<RetryFile>>,
    /// Values for this agent's keys when a barrier continues without it.
    pub defaults: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
    /// Grant WASI 0.2 (locked down: no files, environment or network; real
    /// clocks and randomness, so the agent is never cached). Python and
    /// JavaScript agents need it.
    pub wasi: Option<bool>,
    /// Files, outbound HTTP and variables this agent may use.
    pub grants: Option<Spanned<GrantsFile>>,
    /// Cache this agent's output even though it has HTTP, read-write files
    /// or real clocks (`true`), or never (`false`). Default: decided by its grants.
    pub cache: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentResourcesFile {
    pub cpu: Option<Spanned<u32>>,
    pub memory: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryFile {
    pub attempts: Option<Spanned<u32>>,
    pub backoff: Option<Spanned<String>>,
    pub max_backoff: Option<Spanned<String>>,
}

/// `needs: [pm]` or `needs: [{agent: architect, kind: context}]`.
#[derive(Debug)]
pub(super) struct NeedFile {
    pub agent: String,
    pub kind: DependencyKind,
}

impl JsonSchema for NeedFile {
    fn schema_name() -> Cow<'static, str> {
        "Need".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let kind = generator.subschema_for::<DependencyKind>();
        json_schema!({
            "description": "An agent this one depends on: its id (a `data` dependency), or `{agent, kind}`.",
            "anyOf": [
                { "type": "string" },
                {
                    "type": "object",
                    "properties": { "agent": { "type": "string" }, "kind": kind },
                    "required": ["agent"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for NeedFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NeedVisitor;
        impl<'de> Visitor<'de> for NeedVisitor {
            type Value = NeedFile;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an agent id, or a map `{agent: ID, kind: data|context|validation|resource}`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<NeedFile, E> {
                Ok(NeedFile { agent: v.to_owned(), kind: DependencyKind::Data })
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NeedFile, A::Error> {
                let (mut agent, mut kind) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "agent" => agent = Some(map.next_value::<String>()?),
                        "kind" => kind = Some(map.next_value::<DependencyKind>()?),
                        other => return Err(de::Error::unknown_field(other, &["agent", "kind"])),
                    }
                }
                let agent = agent.ok_or_else(|| de::Error::missing_field("agent"))?;
                Ok(NeedFile { agent, kind: kind.unwrap_or(DependencyKind::Data) })
            }
        }
        deserializer.deserialize_any(NeedVisitor)
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupFile {
    pub agents: Vec<Spanned<String>>,
    pub barrier: Option<Spanned<BarrierFile>>,
    pub cross_validation: Option<Spanned<CrossValidationFile>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BarrierFile {
    pub timeout: Option<Spanned<String>>,
    pub success: Option<Spanned<SuccessFile>>,
    #[serde(default)]
    pub on_timeout: Vec<Spanned<StrategyFile>>,
    /// How recent a progress report must be for `extend_timeout`.
    pub progress_window: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum SuccessFile {
    All,
    AtLeastOne,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum StrategyFile {
    ContinueWithPartial,
    ExtendTimeout(ExtendFile),
    FallbackSequential,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ExtendFile {
    pub by: String,
    pub count: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CrossValidationFile {
    pub validators: Vec<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub on_failure: Option<Spanned<OnFailureFile>>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum OnFailureFile {
    Warn,
    Fail,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CacheFile {
    pub enabled: Option<bool>,
    pub dir: Option<Spanned<String>>,
    pub max_size: Option<Spanned<Size>>,
    pub compress_above: Option<Spanned<Size>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct OutputsFile {
    pub dir: Spanned<String>,
    #[serde(default)]
    pub files: IndexMap<String, Spanned<OutputFile>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct OutputFile {
    /// The context key whose value (a string) is written to the file.
    pub key: Spanned<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(super) enum Size {
    Bytes(u64),
    Text(String),
}

/// The JSON Schema of the workflow file.
pub(super) fn schema() -> Schema {
    schemars::schema_for!(WorkflowFile)
}

pub(super) fn at<T>(s: &Spanned<T>) -> Location {
    Location { line: s.referenced.line(), column: s.referenced.column() }
}

/// Fields of each section, for "did you mean" hints on unknown fields.
const FIELDS: &[&str] = &[
    "name",
    "resources",
    "shared",
    "agents",
    "groups",
    "cache",
    "templates",
    "outputs",
    "cpu",
    "memory",
    "memory_unit",
    "max_concurrent",
    "cpu_oversubscription",
    "memory_strict",
    "component",
    "owns",
    "reads",
    "needs",
    "config",
    "fuel",
    "timeout",
    "estimate",
    "priority",
    "retry",
    "defaults",
    "wasi",
    "attempts",
    "backoff",
    "max_backoff",
    "agent",
    "kind",
    "barrier",
    "cross_validation",
    "success",
    "on_timeout",
    "progress_window",
    "extend_timeout",
    "by",
    "count",
    "validators",
    "on_failure",
    "enabled",
    "dir",
    "max_size",
    "compress_above",
    "files",
    "key",
    "http_concurrent",
    "grants",
    "http",
    "variables",
    "path",
    "as",
    "mode",
    "allow",
    "max_requests",
    "max_request_body",
    "max_response_body",
    "env",
    "file",
    "value",
    "secret",
];

/// A YAML parser error as one [`Problem`]: its position, and the first line
/// of its text without the parser's own "line L column C" prefix (the
/// position is printed once, as file:line:col).
pub(crate) fn yaml_problem(e: &serde_saphyr::Error) -> Problem {
    let location = e.location().map(|l| Location { line: l.line(), column: l.column() });
    // The error's own text may repeat the position; keep its first line.
    let message = e.to_string();
    let mut message = message.lines().next().unwrap_or("invalid YAML").trim();
    if let Some(rest) = message.strip_prefix("error: line ")
        && let Some((_, text)) = rest.split_once(": ")
    {
        message = text;
    }
    // Say what the parser expected in the file's words.
    let message = match message {
        "expected sequence start" => "expected a list here: `[a, b]`, or one `- item` per line".to_owned(),
        "expected mapping start" => "expected a map here: `key: value` entries".to_owned(),
        other => match other.strip_prefix("duplicate mapping key: ") {
            Some(rest) => {
                let key = rest.split(", set DuplicateKeyPolicy").next().unwrap_or(rest);
                format!("`{key}` appears twice in the same map: keep one (or rename it)")
            }
            None => other.to_owned(),
        },
    };
    Problem { location, message }
}

/// The YAML parser's options: its defaults, but for a node and event budget
/// that lets a file of [`MAX_WORKFLOW_BYTES`](super::MAX_WORKFLOW_BYTES)
/// parse when it has four bytes or more per node (the parser's own 250 000
/// nodes refused a workflow of some 14 000 agents, a few MiB). The budget
/// still bounds what any text, read from a file or not, can make the parser
/// build; aliases, nesting and the rest keep the parser's limits.
fn options() -> serde_saphyr::Options {
    let max_nodes = usize::try_from(super::MAX_WORKFLOW_BYTES / 4).unwrap_or(usize::MAX);
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = budget.max_nodes.max(max_nodes);
    budget.max_events = budget.max_events.max(max_nodes.saturating_mul(2));
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

pub(super) fn parse(text: &str) -> Result<WorkflowFile, Problem> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| {
        let Problem { location, mut message } = yaml_problem(&e);
        if let Some(unknown) = unknown_field(&message)
            && let Some(hint) = super::validate::closest(unknown, FIELDS.iter().copied())
        {
            message.push_str(&format!(" (did you mean `{hint}`?)"));
        }
        Problem { location, message }
    })
}

/// The field named by serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.split("unknown field `").nth(1)?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn property_names(value: &serde_json::Value, names: &mut BTreeSet<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                    names.extend(props.keys().cloned());
                }
                map.values().for_each(|v| property_names(v, names));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| property_names(v, names)),
            _ => {}
        }
    }

    /// The "did you mean" list and the schema both come from the types; keep
    /// them in step.
    #[test]
    fn hint_list_matches_the_schema() {
        let mut names = BTreeSet::new();
        property_names(&schema().to_value(), &mut names);
        let hints: BTreeSet<String> = FIELDS.iter().map(|f| (*f).to_owned()).collect();
        assert_eq!(names, hints);
    }

    #[test]
    fn schema_describes_the_file() {
        let schema = schema().to_value();
        assert_eq!(schema["title"], "Ensemble workflow");
        assert_eq!(schema["required"], serde_json::json!(["agents"]));
        assert!(schema["properties"]["agents"].is_object());
    }
}
