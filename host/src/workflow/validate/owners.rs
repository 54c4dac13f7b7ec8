//! Checks of who owns what: owned prefixes that overlap, and `reads` of
//! another agent's keys without a need on it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use super::{AgentSpec, Problems, SharedPrefix, WorkflowFile, at, ownership};

pub(super) fn check_ownership_overlaps(
    file: &WorkflowFile,
    agents: &[AgentSpec],
    shared: &[SharedPrefix],
    problems: &mut Problems,
) {
    // Every prefix owned so far, in declaration order, and where each is in
    // it. The earlier prefixes overlapping one are those covering it (its
    // segment-prefixes and itself) and those it covers (a range in sorted
    // order): found by lookups, not by comparing every pair.
    let mut seen: Vec<(&str, &str)> = Vec::new();
    let mut by_prefix: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for agent in agents {
        for prefix in &agent.owns {
            let mut earlier: Vec<usize> = Vec::new();
            for end in prefix.match_indices('.').map(|(i, _)| i).chain([prefix.len()]) {
                earlier.extend(by_prefix.get(&prefix[..end]).into_iter().flatten());
            }
            let below = format!("{prefix}.");
            let under = by_prefix.range::<str, _>((Bound::Included(below.as_str()), Bound::Unbounded));
            earlier.extend(under.take_while(|(p, _)| p.starts_with(&below)).flat_map(|(_, at)| at));
            earlier.sort_unstable();
            for &(other_prefix, other) in earlier.iter().map(|&i| &seen[i]) {
                if other == agent.id || !ownership::overlap(prefix, other_prefix) {
                    continue;
                }
                let inner = if prefix.len() >= other_prefix.len() { prefix.as_str() } else { other_prefix };
                if shared.iter().any(|s| ownership::covers(&s.prefix, inner)) {
                    continue;
                }
                let location = file.agents.value.get(&agent.id).map(at).unwrap_or_default();
                problems.at(
                    location,
                    format!(
                        "agent `{}` owns `{prefix}`, which overlaps `{other_prefix}` owned by agent `{other}`: give each agent its own prefix, or declare `{inner}` under `shared` with a conflict policy",
                        agent.id
                    ),
                );
            }
        }
        for prefix in &agent.owns {
            by_prefix.entry(prefix.as_str()).or_default().push(seen.len());
            seen.push((prefix.as_str(), agent.id.as_str()));
        }
    }
}

/// An agent whose `reads` name another agent's keys must need that agent
/// (directly or through others, any kind of need): otherwise whether it
/// sees them depends on timing.
pub(super) fn check_reads_against_needs(
    file: &WorkflowFile,
    agents: &[AgentSpec],
    shared: &[SharedPrefix],
    problems: &mut Problems,
) {
    let by_id: HashMap<&str, &AgentSpec> = agents.iter().map(|a| (a.id.as_str(), a)).collect();
    for agent in agents {
        let Some(patterns) = file.agents.value.get(&agent.id).and_then(|a| a.value.reads.as_ref()) else {
            continue;
        };
        let mut reached: HashSet<&str> = HashSet::new();
        let mut stack: Vec<&str> = agent.needs.iter().map(|n| n.agent.as_str()).collect();
        while let Some(id) = stack.pop() {
            if reached.insert(id)
                && let Some(spec) = by_id.get(id)
            {
                stack.extend(spec.needs.iter().map(|n| n.agent.as_str()));
            }
        }
        for pattern in patterns {
            let stem = pattern.value.strip_suffix(".*").or_else(|| pattern.value.strip_suffix('*'));
            let stem = stem.unwrap_or(&pattern.value);
            if stem.is_empty()
                || ownership::covers("input", stem)
                || shared.iter().any(|s| ownership::overlap(&s.prefix, stem))
            {
                continue;
            }
            let mut named = HashSet::new();
            for other in agents.iter().filter(|o| o.id != agent.id && !reached.contains(o.id.as_str())) {
                if other.owns.iter().any(|p| ownership::overlap(p, stem)) && named.insert(other.id.as_str()) {
                    problems.at(
                        at(pattern),
                        format!(
                            "agent `{}` reads `{}`, which agent `{}` owns, without a need on it, so whether it sees them depends on timing: add `needs: [{}]` (or `{{agent: {}, kind: context}}` to read what is there when it starts)",
                            agent.id, pattern.value, other.id, other.id, other.id
                        ),
                    );
                }
            }
        }
    }
}
