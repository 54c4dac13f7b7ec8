//! Capability grants: what an agent may touch outside the context (host
//! directories, outbound HTTP, named variables), checked when the workflow
//! loads and summarised for `ensemble check` and the run header.
//!
//! Nothing is granted by default. The host enforces each grant (`runtime`);
//! this module only says what was asked for, and whether it makes sense.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Location;
use super::file::{FileGrantFile, FileModeFile, GrantsFile, HttpGrantFile, Spanned, VariableFile, at};
use super::validate::{Problems, parse_size};

/// Default per-request timeout of an HTTP grant.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest per-request timeout a workflow may set.
pub const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default requests per invocation.
pub const DEFAULT_HTTP_MAX_REQUESTS: u32 = 100;
/// Default requests in flight per invocation.
pub const DEFAULT_HTTP_MAX_CONCURRENT: u32 = 4;
/// Default largest request body.
pub const DEFAULT_HTTP_MAX_REQUEST_BODY: u64 = 1 << 20;
/// Default largest response body.
pub const DEFAULT_HTTP_MAX_RESPONSE_BODY: u64 = 10 << 20;
/// Default requests in flight across a run.
pub const DEFAULT_HTTP_CONCURRENT_PER_RUN: u32 = 16;

/// The largest file a variable is read from.
pub const MAX_VARIABLE_FILE_BYTES: u64 = 64 << 10;

/// Everything one agent was granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Host directories mapped into the agent, in file order.
    pub files: Vec<FileGrant>,
    /// Outbound HTTP, if granted.
    pub http: Option<HttpGrant>,
    /// Named values it sees as environment variables, in file order.
    pub variables: Vec<Variable>,
}

impl Grants {
    /// Nothing granted.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.http.is_none() && self.variables.is_empty()
    }

    /// Some directory is granted `read_write`.
    pub fn writes_files(&self) -> bool {
        self.files.iter().any(|f| f.mode == FileMode::ReadWrite)
    }

    /// The values of its secret variables (to keep out of every artefact).
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.variables.iter().filter(|v| v.value.secret).map(|v| v.value.text.as_str())
    }
}

/// A host directory mapped into an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileGrant {
    /// The host directory, resolved against the workflow's directory.
    pub host: PathBuf,
    /// The absolute path the agent opens it by (`/docs`).
    pub guest: String,
    /// What the agent may do there.
    pub mode: FileMode,
    /// Where the grant is declared.
    pub location: Location,
}

/// What an agent may do in a granted directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileMode {
    /// Open and list files; nothing is created, changed or removed.
    Read,
    /// Also create, write, rename and remove inside the directory.
    ReadWrite,
}

impl FileMode {
    /// The mode as the file writes it (`read`, `read_write`).
    pub fn name(self) -> &'static str {
        match self {
            FileMode::Read => "read",
            FileMode::ReadWrite => "read_write",
        }
    }
}

/// Outbound HTTP to an allow-list, under limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    /// The origins it may reach.
    pub allow: Vec<HostPattern>,
    /// Its limits.
    pub limits: HttpLimits,
    /// Where the grant is declared.
    pub location: Location,
}

/// Limits of an HTTP grant, per invocation of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Per step of a request: resolving, connecting (each address), the TLS
    /// handshake, the first byte of the response and each gap between bytes.
    pub timeout: Duration,
    /// Requests one invocation may make.
    pub max_requests: u32,
    /// Requests one invocation may have in flight.
    pub max_concurrent: u32,
    /// Largest request body, bytes.
    pub max_request_body: u64,
    /// Largest response body, bytes.
    pub max_response_body: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_HTTP_TIMEOUT,
            max_requests: DEFAULT_HTTP_MAX_REQUESTS,
            max_concurrent: DEFAULT_HTTP_MAX_CONCURRENT,
            max_request_body: DEFAULT_HTTP_MAX_REQUEST_BODY,
            max_response_body: DEFAULT_HTTP_MAX_RESPONSE_BODY,
        }
    }
}

/// A named value an agent sees in its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The environment variable's name in the agent.
    pub name: String,
    /// Where the value came from (`env RESEARCH_TOKEN`, `file token.txt`, `value`).
    pub source: String,
    /// Its value.
    pub value: VariableValue,
    /// Where the variable is declared.
    pub location: Location,
}

/// A variable's value; a secret's never shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct VariableValue {
    /// The value.
    pub text: String,
    /// Whether it is secret.
    pub secret: bool,
}

impl fmt::Debug for VariableValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret { f.write_str("<secret>") } else { fmt::Debug::fmt(&self.text, f) }
    }
}

/// Which schemes a pattern admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeMatch {
    /// `http://`.
    Http,
    /// `https://`.
    Https,
    /// `*://`: either.
    Any,
}

/// Which hosts a pattern admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Exactly this name (lower case).
    Name(String),
    /// `*.example.com`: any subdomain of `example.com` (not itself).
    Subdomains(String),
    /// An IP address, written as one (`127.0.0.1`, `[::1]`).
    Ip(IpAddr),
    /// `*`: any host (but never a loopback or private address).
    Any,
}

/// Which ports a pattern admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortMatch {
    /// None written: the scheme's default (80, 443).
    Default,
    /// This port.
    Exact(u16),
    /// `:*`.
    Any,
}

/// One `scheme://host[:port]` entry of an HTTP allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// The schemes it admits.
    pub scheme: SchemeMatch,
    /// The hosts it admits.
    pub host: HostMatch,
    /// The ports it admits.
    pub port: PortMatch,
    /// As written.
    pub text: String,
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl HostPattern {
    /// Parse `scheme://host[:port]`, saying what is wrong in the user's words.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "HTTP pattern `{text}` {why}; write e.g. `https://api.example.com`, `https://*.example.com` or `http://127.0.0.1:*`"
            )
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("has no scheme"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => SchemeMatch::Http,
            "https" => SchemeMatch::Https,
            "*" => SchemeMatch::Any,
            _ => return Err(bad("names a scheme other than http, https or *")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(bad("has a path: a pattern names a scheme, host and port only"));
        }
        if rest.contains('@') {
            return Err(bad("has user information"));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| bad("has an unclosed `[`"))?;
        let port = match port {
            None => PortMatch::Default,
            Some("*") => PortMatch::Any,
            Some(p) => {
                PortMatch::Exact(p.parse().map_err(|_| bad("has a port that is not a number or `*`"))?)
            }
        };
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostMatch::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            check_name(domain).map_err(|why| bad(&why))?;
            HostMatch::Subdomains(domain.to_owned())
        } else if let Some(ip) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            HostMatch::Ip(ip.parse().map_err(|_| bad("has an IPv6 address that does not parse"))?)
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            HostMatch::Ip(ip)
        } else {
            check_name(&host).map_err(|why| bad(&why))?;
            HostMatch::Name(host)
        };
        Ok(Self { scheme, host, port, text: text.to_owned() })
    }

    /// Whether a request to `scheme://host:port` is admitted by name
    /// (before any address is resolved). `host` is the URL's host, an IPv6
    /// address without brackets; `scheme` is `http` or `https`.
    pub fn admits(&self, scheme: &str, host: &str, port: u16) -> bool {
        let https = match (self.scheme, scheme) {
            (SchemeMatch::Http | SchemeMatch::Any, "http") => false,
            (SchemeMatch::Https | SchemeMatch::Any, "https") => true,
            _ => return false,
        };
        let port_ok = match self.port {
            PortMatch::Any => true,
            PortMatch::Exact(p) => p == port,
            PortMatch::Default => port == if https { 443 } else { 80 },
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host_ok = match &self.host {
            HostMatch::Any => true,
            HostMatch::Name(name) => *name == host,
            HostMatch::Subdomains(domain) => {
                host.strip_suffix(domain.as_str()).is_some_and(|rest| rest.ends_with('.') && rest.len() > 1)
            }
            HostMatch::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
        };
        port_ok && host_ok
    }

    /// Whether this pattern names `address` explicitly (an IP pattern of that
    /// address, or `localhost` for a loopback one): only then may a request
    /// reach a loopback, private or link-local address.
    pub fn names_address(&self, address: IpAddr) -> bool {
        match &self.host {
            HostMatch::Ip(ip) => *ip == address || ip.to_canonical() == address.to_canonical(),
            HostMatch::Name(name) => name == "localhost" && address.is_loopback(),
            HostMatch::Subdomains(_) | HostMatch::Any => false,
        }
    }
}

/// Split `host[:port]` (with `[v6]` hosts); `None` for an unclosed bracket.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if s.starts_with('[') {
        let end = s.find(']')?;
        let (host, rest) = s.split_at(end + 1);
        return Some((host, rest.strip_prefix(':')));
    }
    Some(match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    })
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
        });
    if ok { Ok(()) } else { Err(format!("has a host `{name}` that is not a DNS name")) }
}

/// Whether `address` is one a name may resolve to without the allow-list
/// naming it: not loopback, private, link-local, unspecified or otherwise
/// local.
pub fn is_public(address: IpAddr) -> bool {
    match address.to_canonical() {
        IpAddr::V4(a) => {
            let [o0, o1, o2, _] = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_documentation()
                || a.is_multicast()
                || o0 == 0
                || o0 >= 240 // reserved
                || (o0 == 100 && (o1 & 0xc0) == 64) // 100.64.0.0/10, carrier-grade NAT
                || (o0 == 198 && (o1 & 0xfe) == 18) // 198.18.0.0/15, benchmarking
                || (o0 == 192 && o1 == 0 && o2 == 0)) // 192.0.0.0/24, protocol assignments
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            // IPv4 carried in IPv6 (NAT64, 6to4, IPv4-compatible): judged by that address.
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)))
            };
            if s[0] == 0x64 && s[1] == 0xff9b {
                return s[2..6] == [0, 0, 0, 0] && is_public(embedded(s[6], s[7]));
            }
            if s[0] == 0x2002 {
                return is_public(embedded(s[1], s[2]));
            }
            // Global unicast is 2000::/3; Teredo (2001::/32) tunnels to anywhere.
            (s[0] & 0xe000) == 0x2000 && !(s[0] == 0x2001 && s[1] == 0) && !(s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

/// A guest path for a granted directory: absolute, no `.` or `..` segments.
pub(super) fn check_guest_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("`as: {path}` must be an absolute path in the agent, such as `/docs`"));
    }
    if path.trim_end_matches('/').is_empty() {
        return Err(
            "`as: /` would hide the agent's whole file system view: give a directory such as `/docs`"
                .to_owned(),
        );
    }
    if path.split('/').any(|s| s == "." || s == "..") {
        return Err(format!("`as: {path}` must not contain `.` or `..`"));
    }
    Ok(())
}

/// The default guest path of a host directory: `/` and its name.
pub(super) fn default_guest_path(host: &Path) -> String {
    match host.file_name() {
        Some(name) => format!("/{}", name.to_string_lossy()),
        None => "/data".to_owned(),
    }
}

/// A variable name the agent's environment can hold.
pub(super) fn check_variable_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("variable name `{name}` must be letters, digits or `_`, not starting with a digit"))
    }
}

/// One line of a workflow's grant summary: an agent, what it may use, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantLine {
    /// The agent's name.
    pub agent: String,
    /// `files`, `http`, `variable`, `secret` or `clocks`.
    pub what: &'static str,
    /// Which: a directory and its guest path, origins, a variable and its source.
    pub detail: String,
    /// How: `read`, `read_write`, the HTTP limits, `not cached`.
    pub mode: String,
}

impl super::Workflow {
    /// Every grant the workflow asks for, agent by agent in file order.
    pub fn grant_summary(&self) -> Vec<GrantLine> {
        let mut lines = Vec::new();
        for agent in &self.agents {
            let mut line = |what, detail: String, mode: String| {
                lines.push(GrantLine { agent: agent.id.clone(), what, detail, mode });
            };
            for f in &agent.grants.files {
                let host = std::path::absolute(&f.host).unwrap_or_else(|_| f.host.clone());
                line("files", format!("{} as {}", host.display(), f.guest), f.mode.name().to_owned());
            }
            if let Some(http) = &agent.grants.http {
                let allow: Vec<&str> = http.allow.iter().map(|p| p.text.as_str()).collect();
                let l = &http.limits;
                line(
                    "http",
                    allow.join(", "),
                    format!(
                        "{} requests, {} at once, {} each, bodies {} out / {} in",
                        l.max_requests,
                        l.max_concurrent,
                        humantime::format_duration(l.timeout),
                        size(l.max_request_body),
                        size(l.max_response_body)
                    ),
                );
            }
            for v in &agent.grants.variables {
                let what = if v.value.secret { "secret" } else { "variable" };
                line(what, format!("{} from {}", v.name, v.source), String::new());
            }
            if agent.wasi {
                line("clocks", "real clocks and randomness (wasi: true)".to_owned(), String::new());
            }
        }
        lines
    }
}

impl super::Workflow {
    /// One error line per file grant that holds `dir` or lies inside it.
    /// `dir` is one of the host's own (the state directory with its journals
    /// and compiled code, a cache): an agent granted it could forge what the
    /// host later trusts, so `run` refuses such a grant before anything runs.
    pub fn grants_reaching(&self, dir: &Path, what: &str) -> Vec<String> {
        let dir = crate::confined::resolve(dir).unwrap_or_else(|_| dir.to_owned());
        let mut found = Vec::new();
        for agent in &self.agents {
            for grant in &agent.grants.files {
                let host = crate::confined::resolve(&grant.host).unwrap_or_else(|_| grant.host.clone());
                let how = if dir.starts_with(&host) {
                    "holds"
                } else if host.starts_with(&dir) {
                    "is inside"
                } else {
                    continue;
                };
                found.push(format!(
                    "{}:{}: agent `{}`: the granted directory {} {how} the {what} {}: an agent must not reach the host's journals, caches or compiled code; grant a directory beside it",
                    self.path.display(),
                    grant.location,
                    agent.id,
                    host.display(),
                    dir.display()
                ));
            }
        }
        found
    }
}

/// A byte count in the largest unit that divides it.
fn size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{}GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => format!("{n}B"),
    }
}

/// Check an agent's grants (its own over the workflow's `defaults`),
/// reporting each problem at its place in the file.
pub(super) fn validate(
    id: &str,
    own: Option<&Spanned<GrantsFile>>,
    defaults: Option<&Spanned<GrantsFile>>,
    base: &Path,
    problems: &mut Problems,
) -> Grants {
    let own = own.map(|g| &g.value);
    let defaults = defaults.map(|g| &g.value);
    let pick = |f: fn(&GrantsFile) -> bool| own.filter(|g| f(g)).or(defaults.filter(|g| f(g)));
    let mut grants = Grants::default();
    if let Some(g) = pick(|g| g.files.is_some()) {
        for f in g.files.iter().flatten() {
            if let Some(grant) = file_grant(id, f, base, problems) {
                if let Some(other) = grants.files.iter().find(|o| o.guest == grant.guest) {
                    problems.at(
                        at(f),
                        format!(
                            "agent `{id}`: two directories are granted as `{}` (the other at {}): give one `as: /another-path`",
                            grant.guest, other.location
                        ),
                    );
                    continue;
                }
                grants.files.push(grant);
            }
        }
    }
    let own_http = own.and_then(|g| g.http.as_ref());
    let default_http = defaults.and_then(|g| g.http.as_ref());
    if let Some(http) = own_http.or(default_http) {
        grants.http = http_grant(id, own_http, default_http, problems).filter(|_| {
            // Limits alone (in `defaults`) grant nothing.
            !http.value.allow.is_empty() || own_http.is_some()
        });
    }
    if let Some(g) = pick(|g| g.variables.is_some()) {
        for (name, v) in g.variables.iter().flatten() {
            if let Some(variable) = variable(id, name, v, base, problems) {
                grants.variables.push(variable);
            }
        }
    }
    grants
}

fn file_grant(
    id: &str,
    f: &Spanned<FileGrantFile>,
    base: &Path,
    problems: &mut Problems,
) -> Option<FileGrant> {
    let host = base.join(&f.value.path.value);
    if !host.is_dir() {
        let why = if host.exists() { "is not a directory" } else { "does not exist" };
        problems.at(
            at(&f.value.path),
            format!(
                "agent `{id}`: granted directory {} {why} (paths are relative to the workflow file)",
                host.display()
            ),
        );
        return None;
    }
    let guest = match &f.value.guest {
        Some(g) => {
            if let Err(e) = check_guest_path(&g.value) {
                problems.at(at(g), format!("agent `{id}`: {e}"));
                return None;
            }
            g.value.trim_end_matches('/').to_owned()
        }
        None => default_guest_path(&host),
    };
    let mode = match f.value.mode.as_ref().map(|m| m.value) {
        None | Some(FileModeFile::Read) => FileMode::Read,
        Some(FileModeFile::ReadWrite) => FileMode::ReadWrite,
    };
    Some(FileGrant { host, guest, mode, location: at(f) })
}

fn http_grant(
    id: &str,
    own: Option<&Spanned<HttpGrantFile>>,
    defaults: Option<&Spanned<HttpGrantFile>>,
    problems: &mut Problems,
) -> Option<HttpGrant> {
    let chosen = own.or(defaults)?;
    let location = at(chosen);
    let field = |f: fn(&HttpGrantFile) -> bool| {
        own.map(|s| &s.value).filter(|h| f(h)).or(defaults.map(|s| &s.value).filter(|h| f(h)))
    };
    let mut allow = Vec::new();
    for pattern in &chosen.value.allow {
        match HostPattern::parse(&pattern.value) {
            Ok(p) => allow.push(p),
            Err(e) => problems.at(at(pattern), format!("agent `{id}`: {e}")),
        }
    }
    if chosen.value.allow.is_empty() && own.is_some() {
        problems.at(
            location,
            format!("agent `{id}`: an `http` grant needs `allow: [...]`, the origins it may call (e.g. `https://api.example.com`)"),
        );
    }
    let mut limits = HttpLimits::default();
    if let Some(t) = field(|h| h.timeout.is_some()).and_then(|h| h.timeout.as_ref()) {
        match problems.duration(t, "http.timeout") {
            Some(d) if d > MAX_HTTP_TIMEOUT => problems.at(at(t), "http.timeout must be at most 1h"),
            Some(d) => limits.timeout = d,
            None => {}
        }
    }
    for (value, name, slot) in [
        (
            field(|h| h.max_requests.is_some()).and_then(|h| h.max_requests.as_ref()),
            "max_requests",
            &mut limits.max_requests,
        ),
        (
            field(|h| h.max_concurrent.is_some()).and_then(|h| h.max_concurrent.as_ref()),
            "max_concurrent",
            &mut limits.max_concurrent,
        ),
    ] {
        if let Some(v) = value {
            if v.value == 0 {
                problems.at(at(v), format!("http.{name} must be at least 1"));
            } else {
                *slot = v.value;
            }
        }
    }
    for (value, name, slot) in [
        (
            field(|h| h.max_request_body.is_some()).and_then(|h| h.max_request_body.as_ref()),
            "max_request_body",
            &mut limits.max_request_body,
        ),
        (
            field(|h| h.max_response_body.is_some()).and_then(|h| h.max_response_body.as_ref()),
            "max_response_body",
            &mut limits.max_response_body,
        ),
    ] {
        if let Some(v) = value {
            match parse_size(&v.value) {
                Ok(n) => *slot = n,
                Err(e) => problems.at(at(v), format!("http.{name}: {e}")),
            }
        }
    }
    Some(HttpGrant { allow, limits, location })
}

fn variable(
    id: &str,
    name: &str,
    v: &Spanned<VariableFile>,
    base: &Path,
    problems: &mut Problems,
) -> Option<Variable> {
    let location = at(v);
    if let Err(e) = check_variable_name(name) {
        problems.at(location, format!("agent `{id}`: {e}"));
        return None;
    }
    let secret = v.value.secret.unwrap_or(false);
    let (source, text) = match (&v.value.env, &v.value.file, &v.value.value) {
        (Some(env), None, None) => match std::env::var(&env.value) {
            Ok(text) => (format!("env {}", env.value), text),
            Err(std::env::VarError::NotPresent) => {
                problems.at(
                    at(env),
                    format!("agent `{id}`: variable `{name}` comes from the environment variable `{}`, which is not set", env.value),
                );
                return None;
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                problems
                    .at(at(env), format!("agent `{id}`: environment variable `{}` is not UTF-8", env.value));
                return None;
            }
        },
        (None, Some(file), None) => {
            let path = base.join(&file.value);
            match crate::files::read_text(&path, MAX_VARIABLE_FILE_BYTES) {
                Ok(text) => {
                    let text =
                        text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
                    (format!("file {}", file.value), text.to_owned())
                }
                Err(why) => {
                    let path = path.display();
                    problems.at(
                        at(file),
                        format!("agent `{id}`: variable `{name}` cannot be read from {path}: {why}"),
                    );
                    return None;
                }
            }
        }
        (None, None, Some(value)) if secret => {
            problems.at(
                at(value),
                format!("agent `{id}`: secret `{name}` is written in the workflow file: take it from `env:` or `file:` instead"),
            );
            return None;
        }
        (None, None, Some(value)) => ("value".to_owned(), value.value.clone()),
        _ => {
            problems.at(
                location,
                format!("agent `{id}`: variable `{name}` needs exactly one of `env`, `file` or `value`"),
            );
            return None;
        }
    };
    Some(Variable { name: name.to_owned(), source, value: VariableValue { text, secret }, location })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn patterns_parse_and_match() {
        assert!(p("https://api.example.com").admits("https", "api.example.com", 443));
        assert!(p("https://api.example.com/").admits("https", "API.example.com.", 443));
        assert!(!p("https://api.example.com").admits("https", "api.example.com", 8443));
        assert!(!p("https://api.example.com").admits("http", "api.example.com", 80));
        assert!(p("*://api.example.com").admits("http", "api.example.com", 80));
        assert!(p("https://*.example.com").admits("https", "a.b.example.com", 443));
        assert!(!p("https://*.example.com").admits("https", "example.com", 443));
        assert!(!p("https://*.example.com").admits("https", "badexample.com", 443));
        assert!(p("http://127.0.0.1:*").admits("http", "127.0.0.1", 9000));
        assert!(p("http://[::1]:8080").admits("http", "::1", 8080));
        assert!(p("http://*:8080").admits("http", "anything.org", 8080));
    }

    #[test]
    fn bad_patterns_say_why() {
        for (text, why) in [
            ("api.example.com", "no scheme"),
            ("ftp://x.org", "scheme other"),
            ("https://x.org/v1", "has a path"),
            ("https://x.org:http", "port"),
            ("https://[::1", "unclosed"),
            ("https://bad_host", "not a DNS name"),
            ("https://u@x.org", "user information"),
        ] {
            let e = HostPattern::parse(text).expect_err(text);
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn only_explicit_patterns_name_local_addresses() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(p("http://127.0.0.1:*").names_address(loopback));
        assert!(p("http://localhost:*").names_address(loopback));
        assert!(!p("http://*:*").names_address(loopback));
        assert!(!p("https://*.example.com").names_address(loopback));
        assert!(!is_public(loopback));
        assert!(!is_public("10.1.2.3".parse().unwrap()));
        assert!(!is_public("169.254.169.254".parse().unwrap()));
        assert!(!is_public("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_public("fd00::1".parse().unwrap()));
        assert!(is_public("93.184.216.34".parse().unwrap()));
        for local in [
            "64:ff9b::a00:5",
            "2002:a00:1::",
            "::10.0.0.1",
            "2001::1",
            "fec0::1",
            "ff02::1",
            "224.0.0.1",
            "240.0.0.1",
            "198.18.0.1",
        ] {
            assert!(!is_public(local.parse().unwrap()), "{local}");
        }
        assert!(is_public("64:ff9b::5db8:d822".parse().unwrap()), "NAT64 of a public address");
        assert!(is_public("2606:4700::1111".parse().unwrap()));
    }

    #[test]
    fn guest_paths_and_names() {
        assert!(check_guest_path("/docs").is_ok());
        assert!(check_guest_path("docs").is_err());
        assert!(check_guest_path("/a/../b").is_err());
        assert_eq!(default_guest_path(Path::new("/x/papers")), "/papers");
        assert!(check_variable_name("API_TOKEN").is_ok());
        assert!(check_variable_name("1X").is_err());
        assert!(check_variable_name("A-B").is_err());
    }
}
