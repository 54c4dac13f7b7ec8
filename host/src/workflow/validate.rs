//! From the file's shape to a checked [`Workflow`], collecting every problem.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use super::file::{
    AgentFile, GroupFile, OnFailureFile, SharedPolicyFile, Size, Spanned, StrategyFile, SuccessFile,
    WorkflowFile, at,
};
use super::{
    AgentSpec, Barrier, CacheSpec, ConflictPolicy, CrossValidation, DEFAULT_AGENT_CPU, DEFAULT_AGENT_MEMORY,
    GroupSpec, Location, Need, OnFailure, OutputFile, OutputsSpec, Problem, Resources, Retry, SharedPrefix,
    Success, TimeoutStrategy, Workflow,
};
use crate::context::{ownership, validate_key};

mod owners;
use owners::{check_ownership_overlaps, check_reads_against_needs};

/// The smallest memory unit: one WebAssembly page.
pub const MIN_MEMORY_UNIT: u64 = 64 << 10;
/// Default size bound of the agent output cache.
pub const DEFAULT_CACHE_SIZE: u64 = 100 << 20;
/// Default threshold above which cache entries are compressed.
pub const DEFAULT_COMPRESS_ABOVE: u64 = 10 << 10;

#[derive(Default)]
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    pub(super) fn at(&mut self, location: Location, message: impl Into<String>) {
        self.0.push(Problem { location: Some(location), message: message.into() });
    }

    /// A positive duration, or a problem naming `what`.
    pub(super) fn duration(&mut self, d: &Spanned<String>, what: &str) -> Option<Duration> {
        match humantime::parse_duration(&d.value) {
            Ok(v) if v.is_zero() => {
                self.at(at(d), format!("{what} must be longer than zero"));
                None
            }
            Ok(v) => Some(v),
            Err(e) => {
                self.at(
                    at(d),
                    format!("{what} `{}` is not a duration ({e}); write e.g. `30s` or `2m`", d.value),
                );
                None
            }
        }
    }

    fn duration_opt(&mut self, d: Option<&Spanned<String>>, what: &str) -> Option<Duration> {
        d.and_then(|d| self.duration(d, what))
    }

    /// `name` must be one of `ids`; says which one was probably meant.
    fn known_agent(&mut self, name: &Spanned<String>, ids: &HashMap<&str, Location>, context: &str) -> bool {
        if ids.contains_key(name.value.as_str()) {
            return true;
        }
        let hint = closest(&name.value, ids.keys().copied())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        self.at(at(name), format!("{context} unknown agent `{}`{hint}", name.value));
        false
    }
}

pub(super) fn validate(
    file: &WorkflowFile,
    path: &Path,
    base: &Path,
    check_components: bool,
) -> Result<Workflow, Vec<Problem>> {
    let mut problems = Problems::default();
    let resources = resources(file, &mut problems);
    let name = file.name.clone().unwrap_or_else(|| {
        path.file_stem().map_or_else(|| "workflow".to_owned(), |s| s.to_string_lossy().into_owned())
    });
    if file.agents.value.is_empty() {
        problems.at(at(&file.agents), "`agents` is empty: declare at least one agent");
    }
    let shared = shared(file, &mut problems);
    let ids: HashMap<&str, Location> = file.agents.value.iter().map(|(id, a)| (id.as_str(), at(a))).collect();
    let mut agents = Vec::new();
    for (id, agent) in &file.agents.value {
        let defaults = file.defaults.as_ref().and_then(|d| d.value.grants.as_ref());
        let grants = super::grants::validate(id, agent.value.grants.as_ref(), defaults, base, &mut problems);
        if let Some(mut spec) =
            agent_spec(id, agent, &ids, &resources, (base, check_components), &mut problems)
        {
            spec.grants = std::sync::Arc::new(grants);
            agents.push(spec);
        }
    }
    check_ownership_overlaps(file, &agents, &shared, &mut problems);
    check_cycles(&agents, &mut problems);
    check_reads_against_needs(file, &agents, &shared, &mut problems);
    let groups = groups(file, &ids, &mut problems);
    check_groups_against_needs(&groups, &agents, &mut problems);
    let cache = cache(file, base, &mut problems);
    let templates = file.templates.as_ref().map(|t| {
        let dir = base.join(&t.value);
        if !dir.is_dir() {
            problems.at(at(t), format!("templates directory {} does not exist", dir.display()));
        }
        dir
    });
    let outputs = outputs(file, base, &mut problems);
    if problems.0.is_empty() {
        Ok(Workflow {
            name,
            path: path.to_owned(),
            resources,
            agents,
            shared,
            groups,
            cache,
            templates,
            outputs,
            ready_order: std::sync::OnceLock::new(),
        })
    } else {
        problems.0.sort_by_key(|p| p.location);
        Err(problems.0)
    }
}

fn resources(file: &WorkflowFile, problems: &mut Problems) -> Resources {
    let mut res = Resources::default();
    let Some(spanned) = &file.resources else { return res };
    let r = &spanned.value;
    let mut positive = |field: &Option<Spanned<u32>>, name: &str, slot: &mut u32| {
        if let Some(v) = field {
            if v.value == 0 {
                problems.at(at(v), format!("resources.{name} must be at least 1"));
            } else {
                *slot = v.value;
            }
        }
    };
    positive(&r.cpu, "cpu", &mut res.cpu);
    positive(&r.memory, "memory", &mut res.memory);
    positive(&r.max_concurrent, "max_concurrent", &mut res.max_concurrent);
    positive(&r.http_concurrent, "http_concurrent", &mut res.http_concurrent);
    if let Some(unit) = &r.memory_unit {
        match parse_size(&unit.value) {
            Ok(bytes) if bytes >= MIN_MEMORY_UNIT => res.memory_unit = bytes,
            Ok(_) => problems.at(at(unit), "resources.memory_unit must be at least 64KiB (one wasm page)"),
            Err(e) => problems.at(at(unit), e),
        }
    }
    if let Some(o) = &r.cpu_oversubscription {
        if (1.0..=10.0).contains(&o.value) {
            res.cpu_oversubscription = o.value;
        } else {
            problems.at(at(o), "resources.cpu_oversubscription must be between 1.0 (none) and 10.0");
        }
    }
    if let Some(strict) = &r.memory_strict {
        res.memory_strict = strict.value;
    }
    res
}

fn shared(file: &WorkflowFile, problems: &mut Problems) -> Vec<SharedPrefix> {
    file.shared
        .iter()
        .filter_map(|(prefix, policy)| {
            if let Err(e) = validate_key(prefix) {
                problems.at(at(policy), format!("shared prefix: {e}"));
                return None;
            }
            let policy = match policy.value {
                SharedPolicyFile::FirstWriterWins => ConflictPolicy::FirstWriterWins,
                SharedPolicyFile::MergeOrFail => ConflictPolicy::MergeOrFail,
                SharedPolicyFile::Fail => ConflictPolicy::Fail,
            };
            Some(SharedPrefix { prefix: prefix.clone(), policy })
        })
        .collect()
}

pub(super) fn parse_size(size: &Size) -> Result<u64, String> {
    let text = match size {
        Size::Bytes(n) => return Ok(*n),
        Size::Text(t) => t.trim(),
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(format!("`{text}` is not a size: write bytes, or a number with KiB, MiB or GiB")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("`{text}` is not a size: write bytes, or a number with KiB, MiB or GiB"))
}

/// A read pattern is a dotted key, optionally ending in `.*` or `*`.
fn validate_pattern(pattern: &str) -> Result<(), String> {
    let stem = pattern.strip_suffix(".*").or_else(|| pattern.strip_suffix('*')).unwrap_or(pattern);
    if stem.is_empty() && pattern == "*" {
        return Ok(());
    }
    validate_key(stem).map_err(|e| format!("read pattern `{pattern}`: {e}"))
}

fn agent_spec(
    id: &str,
    spanned: &Spanned<AgentFile>,
    ids: &HashMap<&str, Location>,
    resources: &Resources,
    (base, check_components): (&Path, bool),
    problems: &mut Problems,
) -> Option<AgentSpec> {
    let a = &spanned.value;
    let location = at(spanned);
    let before = problems.0.len();
    if validate_key(id).is_err() || id.contains('.') {
        problems.at(location, format!("agent id `{id}` must be letters, digits, `_` or `-`"));
    }

    let component = base.join(&a.component.value);
    if check_components && let Some(why) = crate::files::not_a_file(&component) {
        problems.at(at(&a.component), format!("agent `{id}`: component file {} {why}", component.display()));
    }

    let owns: Vec<String> = match &a.owns {
        None => vec![id.to_owned()],
        Some(prefixes) => {
            for p in prefixes {
                if let Err(e) = validate_key(&p.value) {
                    problems.at(at(p), format!("agent `{id}`: owned prefix: {e}"));
                }
            }
            prefixes.iter().map(|p| p.value.clone()).collect()
        }
    };
    if let Some(p) = owns.iter().find(|p| ownership::overlap(p, "input")) {
        problems.at(
            location,
            format!("agent `{id}` owns `{p}`, but `input` is reserved for the run's inputs (`--input NAME=FILE`): rename it"),
        );
    }
    let reads = a.reads.as_ref().map(|patterns| {
        for p in patterns {
            if let Err(e) = validate_pattern(&p.value) {
                problems.at(at(p), format!("agent `{id}`: {e}"));
            }
        }
        patterns.iter().map(|p| p.value.clone()).collect()
    });

    let mut seen = HashSet::new();
    let mut needs = Vec::new();
    for need in &a.needs {
        let other = &need.value.agent;
        if other == id {
            problems.at(at(need), format!("agent `{id}` needs itself: remove it from `needs`"));
        } else if !ids.contains_key(other.as_str()) {
            let hint = closest(other, ids.keys().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            problems.at(at(need), format!("agent `{id}` needs unknown agent `{other}`{hint}"));
        } else if !seen.insert((other.clone(), need.value.kind)) {
            let kind = need.value.kind.name();
            problems.at(at(need), format!("agent `{id}` needs `{other}` as `{kind}` twice: keep one entry"));
        } else {
            needs.push(Need { agent: other.clone(), kind: need.value.kind, location: at(need) });
        }
    }

    let (mut cpu, mut memory) = (DEFAULT_AGENT_CPU, DEFAULT_AGENT_MEMORY);
    if let Some(r) = &a.resources {
        let cpu_pool = (f64::from(resources.cpu) * resources.cpu_oversubscription).floor() as u32;
        for (field, name, pool, slot) in
            [(&r.cpu, "cpu", cpu_pool, &mut cpu), (&r.memory, "memory", resources.memory, &mut memory)]
        {
            let Some(v) = field else { continue };
            if v.value == 0 {
                problems.at(at(v), format!("agent `{id}`: resources.{name} must be at least 1"));
            } else if v.value > pool {
                problems.at(
                    at(v),
                    format!(
                        "agent `{id}` asks for {} {name} units but the pool has {pool}: lower it or raise resources.{name}",
                        v.value
                    ),
                );
            } else {
                *slot = v.value;
            }
        }
    }
    // Defaults that do not fit a small pool shrink to the pool.
    cpu = cpu.min(resources.cpu);
    memory = memory.min(resources.memory);

    if let Some(f) = &a.fuel
        && f.value == 0
    {
        problems.at(at(f), format!("agent `{id}`: fuel must be at least 1 (omit it for no limit)"));
    }
    let timeout = problems.duration_opt(a.timeout.as_ref(), &format!("agent `{id}`: timeout"));
    let estimate = problems.duration_opt(a.estimate.as_ref(), &format!("agent `{id}`: estimate"));
    if let Some(p) = &a.priority
        && !(1..=10).contains(&p.value)
    {
        problems.at(at(p), format!("agent `{id}`: priority must be between 1 and 10"));
    }
    let retry = retry(id, a, problems);

    let mut defaults = BTreeMap::new();
    if let Some(d) = &a.defaults {
        for (key, value) in &d.value {
            if let Err(e) = validate_key(key) {
                problems.at(at(d), format!("agent `{id}`: default for {e}"));
            } else if !owns.iter().any(|p| ownership::covers(p, key)) {
                problems.at(at(d), format!("agent `{id}` has a default for `{key}`, which it does not own"));
            } else if let Ok(bytes) = rmp_serde::to_vec_named(value) {
                defaults.insert(key.clone(), bytes);
            }
        }
    }

    let config = a.config.clone().unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()));
    let config = rmp_serde::to_vec_named(&config).unwrap_or_else(|e| {
        problems.at(location, format!("agent `{id}`: config cannot be encoded: {e}"));
        Vec::new()
    });

    (problems.0.len() == before).then(|| AgentSpec {
        id: id.to_owned(),
        component,
        owns,
        reads,
        needs,
        config,
        cpu,
        memory,
        fuel: a.fuel.as_ref().map(|f| f.value),
        timeout,
        estimate,
        priority: a.priority.as_ref().map(|p| p.value),
        retry,
        defaults,
        wasi: a.wasi.unwrap_or(false),
        grants: std::sync::Arc::default(),
        cache: a.cache.as_ref().map(|c| c.value),
        location,
    })
}

fn retry(id: &str, a: &AgentFile, problems: &mut Problems) -> Retry {
    let mut retry = Retry::default();
    let Some(r) = &a.retry else { return retry };
    if let Some(n) = &r.value.attempts {
        if n.value == 0 {
            problems.at(
                at(n),
                format!("agent `{id}`: retry.attempts counts the first attempt, so it is at least 1"),
            );
        } else {
            retry.attempts = n.value;
        }
    }
    if let Some(b) = problems.duration_opt(r.value.backoff.as_ref(), &format!("agent `{id}`: retry.backoff"))
    {
        retry.backoff = b;
    }
    if let Some(m) =
        problems.duration_opt(r.value.max_backoff.as_ref(), &format!("agent `{id}`: retry.max_backoff"))
    {
        retry.max_backoff = m;
    }
    if retry.max_backoff < retry.backoff {
        problems.at(at(r), format!("agent `{id}`: retry.max_backoff is shorter than retry.backoff"));
    }
    retry
}

/// Report each cycle through blocking `needs`, naming every agent on it.
fn check_cycles(agents: &[AgentSpec], problems: &mut Problems) {
    let index: HashMap<&str, usize> = agents.iter().enumerate().map(|(i, a)| (a.id.as_str(), i)).collect();
    let edges: Vec<Vec<usize>> =
        agents.iter().map(|a| a.blocking_needs().filter_map(|n| index.get(n).copied()).collect()).collect();
    for cycle in find_cycles(&edges) {
        let mut names: Vec<&str> = cycle.iter().map(|&k| agents[k].id.as_str()).collect();
        names.push(names[0]);
        problems.at(
            agents[cycle[0]].location,
            format!(
                "dependency cycle: {} (each needs the next): remove one of these needs",
                names.join(" → ")
            ),
        );
    }
}

/// One cycle per back edge found by a depth-first search, as node lists.
fn find_cycles(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    // 0 = unvisited, 1 = on the stack, 2 = done. Iterative, so a long chain
    // of agents cannot overflow the stack.
    let mut state = vec![0u8; edges.len()];
    let mut cycles = Vec::new();
    for root in 0..edges.len() {
        if state[root] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        state[root] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&to) = edges[node].get(*next) {
                *next += 1;
                match state[to] {
                    0 => {
                        state[to] = 1;
                        stack.push((to, 0));
                    }
                    1 => {
                        let start = stack.iter().position(|&(k, _)| k == to).unwrap_or(0);
                        cycles.push(stack[start..].iter().map(|&(k, _)| k).collect());
                    }
                    _ => {}
                }
            } else {
                state[node] = 2;
                stack.pop();
            }
        }
    }
    cycles
}

fn groups(file: &WorkflowFile, ids: &HashMap<&str, Location>, problems: &mut Problems) -> Vec<GroupSpec> {
    let mut member_of: HashMap<String, String> = HashMap::new();
    let mut groups = Vec::new();
    for (name, spanned) in &file.groups {
        let g: &GroupFile = &spanned.value;
        if g.agents.is_empty() {
            problems.at(at(spanned), format!("group `{name}` has no agents"));
        }
        let mut agents = Vec::new();
        for member in &g.agents {
            if !problems.known_agent(member, ids, &format!("group `{name}` lists")) {
                continue;
            }
            if let Some(other) = member_of.insert(member.value.clone(), name.clone()) {
                problems.at(at(member), format!("agent `{}` is in group `{other}` and in group `{name}`: an agent belongs to one group", member.value));
                continue;
            }
            agents.push(member.value.clone());
        }
        let barrier = barrier(name, g, problems);
        let cross_validation = g.cross_validation.as_ref().map(|cv| {
            for v in &cv.value.validators {
                if problems.known_agent(v, ids, &format!("group `{name}`: cross_validation names"))
                    && !agents.contains(&v.value)
                {
                    problems.at(
                        at(v),
                        format!("group `{name}`: validator `{}` is not a member of the group", v.value),
                    );
                }
            }
            CrossValidation {
                validators: cv.value.validators.iter().map(|v| v.value.clone()).collect(),
                timeout: problems.duration_opt(
                    cv.value.timeout.as_ref(),
                    &format!("group `{name}`: cross_validation.timeout"),
                ),
                on_failure: match cv.value.on_failure.as_ref().map(|o| o.value) {
                    Some(OnFailureFile::Fail) => OnFailure::Fail,
                    _ => OnFailure::Warn,
                },
            }
        });
        groups.push(GroupSpec {
            name: name.clone(),
            agents,
            barrier,
            cross_validation,
            location: at(spanned),
        });
    }
    groups
}

fn barrier(name: &str, g: &GroupFile, problems: &mut Problems) -> Barrier {
    let mut barrier = Barrier::default();
    let Some(b) = &g.barrier else { return barrier };
    let b = &b.value;
    barrier.timeout = problems.duration_opt(b.timeout.as_ref(), &format!("group `{name}`: barrier.timeout"));
    if let Some(s) = &b.success {
        barrier.success = match s.value {
            SuccessFile::All => Success::All,
            SuccessFile::AtLeastOne => Success::AtLeastOne,
        };
    }
    if let Some(w) =
        problems.duration_opt(b.progress_window.as_ref(), &format!("group `{name}`: barrier.progress_window"))
    {
        barrier.progress_window = w;
    }
    if !b.on_timeout.is_empty() {
        barrier.on_timeout = b
            .on_timeout
            .iter()
            .filter_map(|s| match &s.value {
                StrategyFile::ContinueWithPartial => Some(TimeoutStrategy::ContinueWithPartial),
                StrategyFile::FallbackSequential => Some(TimeoutStrategy::FallbackSequential),
                StrategyFile::ExtendTimeout(e) => {
                    let by = match humantime::parse_duration(&e.by) {
                        Ok(by) if !by.is_zero() => by,
                        _ => {
                            problems.at(at(s), format!("group `{name}`: extend_timeout.by `{}` must be a duration longer than zero", e.by));
                            return None;
                        }
                    };
                    let count = e.count.unwrap_or(1);
                    if count == 0 {
                        problems.at(at(s), format!("group `{name}`: extend_timeout.count must be at least 1"));
                    }
                    Some(TimeoutStrategy::ExtendTimeout { by, count })
                }
            })
            .collect();
        // The other strategies also decide when members fail; extending a
        // timeout that does not exist cannot.
        if barrier.timeout.is_none() && b.timeout.is_none() {
            for s in &b.on_timeout {
                if matches!(s.value, StrategyFile::ExtendTimeout(_)) {
                    problems.at(
                        at(s),
                        format!("group `{name}`: extend_timeout needs a barrier.timeout to extend"),
                    );
                }
            }
        }
    }
    barrier
}

/// A group runs its members side by side, so none may wait for another, and
/// groups must be orderable: no group may need a later one that needs it.
fn check_groups_against_needs(groups: &[GroupSpec], agents: &[AgentSpec], problems: &mut Problems) {
    let group_of: HashMap<&str, usize> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, spec)| spec.agents.iter().map(move |a| (a.as_str(), g)))
        .collect();
    for agent in agents {
        let Some(&g) = group_of.get(agent.id.as_str()) else { continue };
        for need in agent.needs.iter().filter(|n| n.kind.is_blocking()) {
            if group_of.get(need.agent.as_str()) == Some(&g) {
                problems.at(
                    need.location,
                    format!(
                        "group `{}` runs `{}` and `{}` in parallel, but `{}` needs `{}`: make it a `context` need or move one out of the group",
                        groups[g].name, agent.id, need.agent, agent.id, need.agent
                    ),
                );
            }
        }
    }
    // Contract each group to one node; ungrouped agents are nodes of their own.
    let mut node_of: HashMap<&str, usize> = HashMap::new();
    let mut names: Vec<String> = groups.iter().map(|g| format!("group `{}`", g.name)).collect();
    for agent in agents {
        let node = match group_of.get(agent.id.as_str()) {
            Some(&g) => g,
            None => {
                names.push(format!("agent `{}`", agent.id));
                names.len() - 1
            }
        };
        node_of.insert(agent.id.as_str(), node);
    }
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    for agent in agents {
        let from = node_of[agent.id.as_str()];
        for need in agent.blocking_needs() {
            if let Some(&to) = node_of.get(need)
                && to != from
                && !edges[from].contains(&to)
            {
                edges[from].push(to);
            }
        }
    }
    for cycle in find_cycles(&edges) {
        if cycle.iter().all(|&n| n >= groups.len()) {
            continue; // an agent-only cycle, reported already
        }
        let mut path: Vec<&str> = cycle.iter().map(|&n| names[n].as_str()).collect();
        path.push(path[0]);
        let location =
            cycle.iter().find(|&&n| n < groups.len()).map(|&n| groups[n].location).unwrap_or_default();
        problems.at(
            location,
            format!("groups contradict the dependencies: {} (each needs the next)", path.join(" → ")),
        );
    }
}

fn cache(file: &WorkflowFile, base: &Path, problems: &mut Problems) -> CacheSpec {
    let mut spec = CacheSpec {
        enabled: true,
        dir: base.join(".ensemble").join("cache"),
        max_size: DEFAULT_CACHE_SIZE,
        compress_above: DEFAULT_COMPRESS_ABOVE,
    };
    let Some(c) = &file.cache else { return spec };
    let c = &c.value;
    spec.enabled = c.enabled.unwrap_or(true);
    if let Some(dir) = &c.dir {
        spec.dir = base.join(&dir.value);
    }
    for (field, name, slot) in [
        (&c.max_size, "max_size", &mut spec.max_size),
        (&c.compress_above, "compress_above", &mut spec.compress_above),
    ] {
        if let Some(v) = field {
            match parse_size(&v.value) {
                Ok(n) => *slot = n,
                Err(e) => problems.at(at(v), format!("cache.{name}: {e}")),
            }
        }
    }
    spec
}

/// Every owned prefix the file declares, including those of agents that have
/// problems of their own (so one mistake is not reported twice).
fn declared_owners(file: &WorkflowFile) -> impl Iterator<Item = &str> {
    file.agents.value.iter().flat_map(|(id, a)| match &a.value.owns {
        Some(owns) => owns.iter().map(|p| p.value.as_str()).collect::<Vec<_>>(),
        None => vec![id.as_str()],
    })
}

fn outputs(file: &WorkflowFile, base: &Path, problems: &mut Problems) -> Option<OutputsSpec> {
    let o = &file.outputs.as_ref()?.value;
    let mut files = Vec::new();
    for (name, spec) in &o.files {
        if name.contains("..") || Path::new(name).is_absolute() {
            problems.at(at(spec), format!("output file `{name}` must be a relative path inside outputs.dir"));
            continue;
        }
        let key = &spec.value.key;
        if let Err(e) = validate_key(&key.value) {
            problems.at(at(key), format!("output `{name}`: {e}"));
        } else if !declared_owners(file).any(|p| ownership::covers(p, &key.value)) {
            problems.at(
                at(key),
                format!("output `{name}`: no agent owns `{}`, so nothing can write it", key.value),
            );
        }
        files.push(OutputFile { name: name.clone(), key: key.value.clone(), location: at(key) });
    }
    let dir = base.join(&o.dir.value);
    if let Some(why) = crate::files::dir_unusable(&dir) {
        problems.at(at(&o.dir), format!("outputs.dir {} cannot be made: {why}", dir.display()));
    }
    Some(OutputsSpec { dir, dir_location: at(&o.dir), files })
}

/// The candidate nearest to `word`, if it is near enough to be a typo (for
/// "did you mean" hints).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb { prev } else { 1 + prev.min(row[j]).min(cur) };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size(&Size::Text("4MiB".into())), Ok(4 << 20));
        assert_eq!(parse_size(&Size::Text("64 KiB".into())), Ok(64 << 10));
        assert_eq!(parse_size(&Size::Bytes(12)), Ok(12));
        assert!(parse_size(&Size::Text("4MB".into())).is_err());
    }

    #[test]
    fn typos_get_hints() {
        assert_eq!(closest("archtect", ["architect", "pm"]), Some("architect"));
        assert_eq!(closest("zzz", ["architect", "pm"]), None);
    }
}
