//! The dependency graph: one node per agent, one edge per `needs` entry,
//! weighted by its [`DependencyKind`].

use std::collections::HashMap;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::workflow::{DependencyKind, Workflow};

/// The agents of a workflow and their dependencies, as a petgraph graph.
///
/// Node `i` is `workflow.agents[i]` (its weight is the agent id). An edge runs
/// from the agent that is needed to the agent that needs it, so edges point
/// the way data flows: `analyst → pm` when `pm` needs `analyst`. Edges are
/// added in file order (agents, then each agent's `needs`), so everything
/// derived from the graph is deterministic.
#[derive(Debug, Clone)]
pub struct DependencyGraph<'w> {
    graph: DiGraph<&'w str, DependencyKind>,
    index: HashMap<&'w str, usize>,
    /// Blocking edges by dependent and by needed agent, flattened: the
    /// planner walks them many times, and slices are faster to walk than
    /// petgraph's edge lists.
    needs: Adjacency,
    dependents: Adjacency,
}

/// Neighbours of node `v`: `targets[starts[v]..starts[v + 1]]`.
#[derive(Debug, Clone)]
struct Adjacency {
    starts: Vec<usize>,
    targets: Vec<usize>,
}

impl Adjacency {
    /// From (node, neighbour) pairs, keeping their order per node.
    fn new(nodes: usize, pairs: &[(usize, usize)]) -> Self {
        let mut starts = vec![0usize; nodes + 1];
        for &(v, _) in pairs {
            starts[v + 1] += 1;
        }
        for v in 0..nodes {
            starts[v + 1] += starts[v];
        }
        let mut next = starts.clone();
        let mut targets = vec![0usize; pairs.len()];
        for &(v, w) in pairs {
            targets[next[v]] = w;
            next[v] += 1;
        }
        Self { starts, targets }
    }

    fn of(&self, v: usize) -> &[usize] {
        &self.targets[self.starts[v]..self.starts[v + 1]]
    }
}

impl<'w> DependencyGraph<'w> {
    /// Build the graph of `workflow`; `needs` naming unknown agents are ignored
    /// (validation reports them).
    pub fn new(workflow: &'w Workflow) -> Self {
        let index: HashMap<&str, usize> =
            workflow.agents.iter().enumerate().map(|(i, a)| (a.id.as_str(), i)).collect();
        let edges = workflow.agents.iter().map(|a| a.needs.len()).sum();
        let mut graph = DiGraph::with_capacity(workflow.agents.len(), edges);
        for agent in &workflow.agents {
            graph.add_node(agent.id.as_str());
        }
        for (to, agent) in workflow.agents.iter().enumerate() {
            for need in &agent.needs {
                if let Some(&from) = index.get(need.agent.as_str())
                    && from != to
                {
                    graph.add_edge(NodeIndex::new(from), NodeIndex::new(to), need.kind);
                }
            }
        }
        let blocking: Vec<(usize, usize)> = graph
            .edge_references()
            .filter(|e| e.weight().is_blocking())
            .map(|e| (e.source().index(), e.target().index()))
            .collect();
        let n = graph.node_count();
        let dependents = Adjacency::new(n, &blocking);
        let flipped: Vec<(usize, usize)> = blocking.iter().map(|&(a, b)| (b, a)).collect();
        let needs = Adjacency::new(n, &flipped);
        Self { graph, index, needs, dependents }
    }

    /// The index of agent `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The underlying petgraph graph, for analyses of your own.
    pub fn graph(&self) -> &DiGraph<&'w str, DependencyKind> {
        &self.graph
    }

    /// How many agents the graph has.
    pub fn agent_count(&self) -> usize {
        self.graph.node_count()
    }

    /// Every edge as (needed agent, dependent agent, kind), in file order.
    pub fn edges(&self) -> impl Iterator<Item = (usize, usize, DependencyKind)> + '_ {
        self.graph.edge_references().map(|e| (e.source().index(), e.target().index(), *e.weight()))
    }

    /// The agents `agent` waits for (its `data` needs).
    pub fn blocking_needs(&self, agent: usize) -> impl Iterator<Item = usize> + '_ {
        self.needs.of(agent).iter().copied()
    }

    /// The agents that wait for `agent`.
    pub fn blocking_dependents(&self, agent: usize) -> impl Iterator<Item = usize> + '_ {
        self.dependents.of(agent).iter().copied()
    }

    /// The agents in a topological order over blocking edges: every agent
    /// after the agents it waits for, otherwise in file order as far as
    /// possible (Kahn's algorithm, breadth first). Non-blocking edges may form
    /// cycles and are ignored. Agents on a blocking cycle (which validation
    /// rejects) come last, in file order, so nothing downstream panics.
    pub fn blocking_order(&self) -> Vec<usize> {
        let n = self.agent_count();
        let mut waiting: Vec<usize> = (0..n).map(|v| self.needs.of(v).len()).collect();
        let mut order: Vec<usize> = (0..n).filter(|&v| waiting[v] == 0).collect();
        let mut next = 0;
        while next < order.len() {
            let v = order[next];
            next += 1;
            for &w in self.dependents.of(v) {
                waiting[w] -= 1;
                if waiting[w] == 0 {
                    order.push(w);
                }
            }
        }
        if order.len() < n {
            order.extend((0..n).filter(|&v| waiting[v] > 0));
        }
        order
    }
}
