//! The workflow's agents, needs and groups as numbers: interned once per
//! run, so the scheduling core indexes vectors instead of hashing ids.

use crate::workflow::{DependencyKind, Workflow};

/// An agent's number: its place in [`Workflow::agents`].
pub type AgentIx = usize;

/// A need on an agent the workflow does not have (only a workflow built in
/// code can name one): never met.
pub const UNKNOWN: AgentIx = usize::MAX;

/// The workflow's structure by agent number.
#[derive(Debug)]
pub struct Graph {
    /// Per agent, the agents its blocking (`data`) needs name.
    pub needs: Vec<Vec<AgentIx>>,
    /// Per agent, the agents whose blocking needs name it.
    pub dependents: Vec<Vec<AgentIx>>,
    /// Per agent, its declared group.
    pub group_of: Vec<Option<usize>>,
    /// Per group, its members.
    pub members: Vec<Vec<AgentIx>>,
    /// Per group, the validators of its cross-validation.
    pub validators: Vec<Vec<AgentIx>>,
    /// (validator, subject) of every `validation` need, each pair once.
    pub validations: Vec<(AgentIx, AgentIx)>,
}

impl Graph {
    /// The graph of `workflow`'s agents and needs.
    pub fn new(workflow: &Workflow) -> Self {
        let ids: foldhash::HashMap<&str, AgentIx> =
            workflow.agents.iter().enumerate().map(|(i, a)| (a.id.as_str(), i)).collect();
        let ix = |id: &str| ids.get(id).copied().unwrap_or(UNKNOWN);
        let n = workflow.agents.len();
        let needs: Vec<Vec<AgentIx>> =
            workflow.agents.iter().map(|a| a.blocking_needs().map(ix).collect()).collect();
        let mut dependents = vec![Vec::new(); n];
        for (agent, needs) in needs.iter().enumerate() {
            for &need in needs {
                if need != UNKNOWN {
                    dependents[need].push(agent);
                }
            }
        }
        let mut group_of = vec![None; n];
        let members: Vec<Vec<AgentIx>> = workflow
            .groups
            .iter()
            .enumerate()
            .map(|(g, spec)| {
                let members: Vec<AgentIx> =
                    spec.agents.iter().map(|m| ix(m)).filter(|&m| m != UNKNOWN).collect();
                for &m in &members {
                    group_of[m] = Some(g);
                }
                members
            })
            .collect();
        let validators = workflow
            .groups
            .iter()
            .map(|g| {
                let validators = g.cross_validation.iter().flat_map(|cv| cv.validators.iter());
                validators.map(|v| ix(v)).filter(|&v| v != UNKNOWN).collect()
            })
            .collect();
        let mut validations = Vec::new();
        for (v, agent) in workflow.agents.iter().enumerate() {
            for need in agent.needs.iter().filter(|n| n.kind == DependencyKind::Validation) {
                let pair = (v, ix(&need.agent));
                // A workflow built in code may repeat one.
                if pair.1 != UNKNOWN && !validations.contains(&pair) {
                    validations.push(pair);
                }
            }
        }
        Self { needs, dependents, group_of, members, validators, validations }
    }
}
