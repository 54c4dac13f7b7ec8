//! From the file's shape to a checked [`Workflow`], collecting every problem.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_saphyr::Spanned;

use super::file::{AgentFile, Size, WorkflowFile, at};
use super::{AgentSpec, DEFAULT_AGENT_CPU, DEFAULT_AGENT_MEMORY, Location, Problem, Resources, Workflow};
use crate::context::{ownership, validate_key};

/// The smallest memory unit: one WebAssembly page.
pub const MIN_MEMORY_UNIT: u64 = 64 << 10;

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn at(&mut self, location: Location, message: impl Into<String>) {
        self.0.push(Problem { location: Some(location), message: message.into() });
    }
}

pub(super) fn validate(file: &WorkflowFile, path: &Path, base: &Path) -> Result<Workflow, Vec<Problem>> {
    let mut problems = Problems::default();
    let resources = resources(file, &mut problems);
    let name = file.name.clone().unwrap_or_else(|| {
        path.file_stem().map_or_else(|| "workflow".to_owned(), |s| s.to_string_lossy().into_owned())
    });
    if file.agents.value.is_empty() {
        problems.at(at(&file.agents), "`agents` is empty: declare at least one agent");
    }
    let ids: HashMap<&str, Location> = file.agents.value.iter().map(|(id, a)| (id.as_str(), at(a))).collect();
    let mut agents = Vec::new();
    for (id, agent) in &file.agents.value {
        if let Some(spec) = agent_spec(id, agent, &ids, &resources, base, &mut problems) {
            agents.push(spec);
        }
    }
    check_ownership_overlaps(file, &agents, &mut problems);
    check_cycles(&agents, &mut problems);
    if problems.0.is_empty() {
        Ok(Workflow { name, path: path.to_owned(), resources, agents })
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
    if let Some(unit) = &r.memory_unit {
        match parse_size(&unit.value) {
            Ok(bytes) if bytes >= MIN_MEMORY_UNIT => res.memory_unit = bytes,
            Ok(_) => problems.at(at(unit), "resources.memory_unit must be at least 64KiB (one wasm page)"),
            Err(e) => problems.at(at(unit), e),
        }
    }
    res
}

fn parse_size(size: &Size) -> Result<u64, String> {
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

fn agent_spec(
    id: &str,
    spanned: &Spanned<AgentFile>,
    ids: &HashMap<&str, Location>,
    resources: &Resources,
    base: &Path,
    problems: &mut Problems,
) -> Option<AgentSpec> {
    let a = &spanned.value;
    let location = at(spanned);
    let before = problems.0.len();
    if validate_key(id).is_err() || id.contains('.') {
        problems.at(location, format!("agent id `{id}` must be letters, digits, `_` or `-`"));
    }

    let component = base.join(&a.component.value);
    if !component.is_file() {
        problems.at(
            at(&a.component),
            format!("agent `{id}`: component file {} does not exist", component.display()),
        );
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

    for need in &a.needs {
        if need.value == id {
            problems.at(at(need), format!("agent `{id}` needs itself: remove it from `needs`"));
        } else if !ids.contains_key(need.value.as_str()) {
            let hint = closest(&need.value, ids.keys().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            problems.at(at(need), format!("agent `{id}` needs unknown agent `{}`{hint}", need.value));
        }
    }

    let (mut cpu, mut memory) = (DEFAULT_AGENT_CPU, DEFAULT_AGENT_MEMORY);
    if let Some(r) = &a.resources {
        for (field, name, pool, slot) in
            [(&r.cpu, "cpu", resources.cpu, &mut cpu), (&r.memory, "memory", resources.memory, &mut memory)]
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
    let timeout = a.timeout.as_ref().and_then(|t| match humantime::parse_duration(&t.value) {
        Ok(d) if d.is_zero() => {
            problems.at(at(t), format!("agent `{id}`: timeout must be longer than zero"));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            problems.at(
                at(t),
                format!(
                    "agent `{id}`: timeout `{}` is not a duration ({e}); write e.g. `30s` or `2m`",
                    t.value
                ),
            );
            None
        }
    });

    let config = a.config.clone().unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()));
    let config = rmp_serde::to_vec_named(&config).unwrap_or_else(|e| {
        problems.at(location, format!("agent `{id}`: config cannot be encoded: {e}"));
        Vec::new()
    });

    (problems.0.len() == before).then(|| AgentSpec {
        id: id.to_owned(),
        component,
        owns,
        needs: a.needs.iter().map(|n| n.value.clone()).collect(),
        config,
        cpu,
        memory,
        fuel: a.fuel.as_ref().map(|f| f.value),
        timeout,
        location,
    })
}

fn check_ownership_overlaps(file: &WorkflowFile, agents: &[AgentSpec], problems: &mut Problems) {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for agent in agents {
        for prefix in &agent.owns {
            for (other_prefix, other) in &seen {
                if *other != agent.id && ownership::overlap(prefix, other_prefix) {
                    let location = file.agents.value.get(&agent.id).map(at).unwrap_or_default();
                    problems.at(
                        location,
                        format!(
                            "agent `{}` owns `{prefix}`, which overlaps `{other_prefix}` owned by agent `{other}`: give each agent its own prefix",
                            agent.id
                        ),
                    );
                }
            }
        }
        seen.extend(agent.owns.iter().map(|p| (p.as_str(), agent.id.as_str())));
    }
}

/// Report each cycle through `needs`, naming every agent on it.
fn check_cycles(agents: &[AgentSpec], problems: &mut Problems) {
    let index: BTreeMap<&str, usize> = agents.iter().enumerate().map(|(i, a)| (a.id.as_str(), i)).collect();
    // 0 = unvisited, 1 = on the stack, 2 = done
    let mut state = vec![0u8; agents.len()];
    let mut stack: Vec<usize> = Vec::new();
    fn visit(
        i: usize,
        agents: &[AgentSpec],
        index: &BTreeMap<&str, usize>,
        state: &mut [u8],
        stack: &mut Vec<usize>,
        problems: &mut Problems,
    ) {
        state[i] = 1;
        stack.push(i);
        for need in &agents[i].needs {
            let Some(&j) = index.get(need.as_str()) else { continue };
            match state[j] {
                0 => visit(j, agents, index, state, stack, problems),
                1 => {
                    let start = stack.iter().position(|&k| k == j).unwrap_or(0);
                    let mut names: Vec<&str> =
                        stack[start..].iter().map(|&k| agents[k].id.as_str()).collect();
                    names.push(agents[j].id.as_str());
                    problems.at(
                        agents[j].location,
                        format!(
                            "dependency cycle: {} (each needs the next): remove one of these needs",
                            names.join(" → ")
                        ),
                    );
                }
                _ => {}
            }
        }
        stack.pop();
        state[i] = 2;
    }
    for i in 0..agents.len() {
        if state[i] == 0 {
            visit(i, agents, &index, &mut state, &mut stack, problems);
        }
    }
}

/// The candidate nearest to `word`, if it is near enough to be a typo.
pub(crate) fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
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
