//! A plan for people: a text table, and the dependency graph as Mermaid or
//! Graphviz DOT. Pure functions of a [`Plan`], so an embedding application
//! renders exactly what `ensemble plan` and `ensemble graph` print.
//!
//! In both graphs agents are boxes inside their group (a Mermaid subgraph, a
//! DOT cluster), labelled with their estimate; `data` edges are solid,
//! `context` dashed, `validation` dotted, `resource` thin, grey and without
//! an arrow head (it implies no order). The critical path's agents and edges
//! are red and thick. In DOT only `data` edges constrain the layout, so the
//! members of a group stay side by side.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use super::{GroupOrigin, Plan};
use crate::workflow::DependencyKind;

/// Colour of the critical path.
const CRITICAL: &str = "#d62728";

/// A duration as people write it: `4m`, `1m 30s`, `250ms`.
pub fn duration(d: Duration) -> String {
    // Below a millisecond is noise for a plan.
    let d = Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    humantime::format_duration(d).to_string()
}

/// The plan as text: summary, groups in order, then one line per agent.
pub fn table(plan: &Plan) -> String {
    let mut s = String::new();
    let m = &plan.makespan;
    let _ = writeln!(
        s,
        "workflow `{}`: {} agents in {} groups",
        plan.workflow,
        plan.agents.len(),
        plan.groups.len()
    );
    let _ = writeln!(
        s,
        "critical path: {} ({})",
        plan.critical_path.agents.join(" → "),
        duration(plan.critical_path.length)
    );
    let _ = writeln!(
        s,
        "estimated makespan: {} with {} agents at once, {} cpu units, {} memory units (one at a time: {})",
        duration(m.estimate),
        m.max_concurrent,
        m.cpu_units,
        m.memory_units,
        duration(m.total_work)
    );

    s.push('\n');
    let mut rows = vec![row(["#", "group", "level", "agents", "after"])];
    for (i, g) in plan.groups.iter().enumerate() {
        let name = match g.origin {
            GroupOrigin::Declared => format!("{} (declared)", g.name),
            GroupOrigin::Derived => g.name.clone(),
        };
        let after = if g.after.is_empty() { "-".to_owned() } else { g.after.join(", ") };
        rows.push(row([&(i + 1).to_string(), &name, &g.level.to_string(), &g.agents.join(", "), &after]));
    }
    columns(&mut s, &rows);

    s.push('\n');
    let mut rows = vec![row([
        "agent",
        "group",
        "priority",
        "why",
        "estimate",
        "earliest",
        "slack",
        "remaining",
        "scheduled",
    ])];
    let mut defaults = false;
    for a in &plan.agents {
        let mut estimate = duration(a.estimate);
        if a.default_estimate {
            estimate.push('*');
            defaults = true;
        }
        rows.push(row([
            &a.id,
            &a.group,
            &a.priority.to_string(),
            a.priority_reason.describe(),
            &estimate,
            &duration(a.earliest_start),
            &duration(a.slack),
            &duration(a.remaining),
            &duration(a.scheduled_start),
        ]));
    }
    columns(&mut s, &rows);
    if defaults {
        let _ = writeln!(s, "* no estimate in the file: {} assumed", duration(plan.default_estimate));
    }
    s
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Left-aligned columns, two spaces apart, no trailing spaces.
fn columns(s: &mut String, rows: &[Vec<String>]) {
    let mut widths = Vec::new();
    for r in rows {
        widths.resize(widths.len().max(r.len()), 0);
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (cell, w) in r.iter().zip(&widths) {
            let _ = write!(line, "{cell:w$}  ");
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
}

/// The pairs of consecutive agents on the critical path.
fn critical_edges(plan: &Plan) -> BTreeSet<(&str, &str)> {
    plan.critical_path.agents.windows(2).map(|w| (w[0].as_str(), w[1].as_str())).collect()
}

/// The dependency graph as a Mermaid flowchart.
pub fn mermaid(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "%% workflow `{}`: {}", plan.workflow, LEGEND);
    s.push_str("flowchart LR\n");
    let index: std::collections::HashMap<&str, usize> =
        plan.agents.iter().enumerate().map(|(i, a)| (a.id.as_str(), i)).collect();
    for (g, group) in plan.groups.iter().enumerate() {
        let _ = writeln!(s, "  subgraph g{g} [\"{}\"]", mermaid_text(&group.name));
        for id in &group.agents {
            let i = index[id.as_str()];
            let a = &plan.agents[i];
            let _ = writeln!(s, "    a{i}[\"{}<br/>{}\"]", mermaid_text(&a.id), duration(a.estimate));
        }
        s.push_str("  end\n");
    }
    let critical = critical_edges(plan);
    let mut styles: [(Vec<usize>, &str); 5] = [
        (Vec::new(), "stroke-dasharray:6 4"),
        (Vec::new(), "stroke-dasharray:2 3"),
        (Vec::new(), "stroke:#999,stroke-width:1px,stroke-dasharray:1 3"),
        (Vec::new(), "stroke:#d62728,stroke-width:3px"),
        (Vec::new(), ""),
    ];
    for (k, e) in plan.edges.iter().enumerate() {
        let (from, to) = (index[e.from.as_str()], index[e.to.as_str()]);
        let (arrow, style) = match e.kind {
            DependencyKind::Data if critical.contains(&(e.from.as_str(), e.to.as_str())) => ("==>", 3),
            DependencyKind::Data => ("-->", 4),
            DependencyKind::Context => ("-.->|context|", 0),
            DependencyKind::Validation => ("-.->|validation|", 1),
            DependencyKind::Resource => ("-.-|resource|", 2),
        };
        let _ = writeln!(s, "  a{from} {arrow} a{to}");
        styles[style].0.push(k);
    }
    for (edges, style) in &styles {
        if !edges.is_empty() && !style.is_empty() {
            let list: Vec<String> = edges.iter().map(usize::to_string).collect();
            let _ = writeln!(s, "  linkStyle {} {style}", list.join(","));
        }
    }
    let critical_nodes: Vec<String> =
        plan.critical_path.agents.iter().map(|id| format!("a{}", index[id.as_str()])).collect();
    if !critical_nodes.is_empty() {
        let _ = writeln!(s, "  classDef critical stroke:{CRITICAL},stroke-width:3px");
        let _ = writeln!(s, "  class {} critical", critical_nodes.join(","));
    }
    s
}

const LEGEND: &str = "data solid, context dashed, validation dotted, resource thin grey; critical path red";

/// Text inside a quoted Mermaid label.
fn mermaid_text(text: &str) -> String {
    text.replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;")
}

/// The dependency graph in Graphviz DOT.
pub fn dot(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "// workflow `{}`: {}", plan.workflow.replace('\n', " "), LEGEND);
    let _ = writeln!(s, "digraph {} {{", dot_id(&plan.workflow));
    s.push_str("  rankdir=LR;\n  compound=true;\n  node [shape=box, style=rounded];\n");
    let on_path: BTreeSet<&str> = plan.critical_path.agents.iter().map(String::as_str).collect();
    let index: std::collections::HashMap<&str, usize> =
        plan.agents.iter().enumerate().map(|(i, a)| (a.id.as_str(), i)).collect();
    for (g, group) in plan.groups.iter().enumerate() {
        let _ = writeln!(s, "  subgraph cluster_{g} {{");
        let _ = writeln!(s, "    label={};", dot_id(&group.name));
        if group.origin == GroupOrigin::Derived {
            s.push_str("    style=dashed;\n");
        }
        for id in &group.agents {
            let a = &plan.agents[index[id.as_str()]];
            let label = dot_id(&format!("{}\n{}", a.id, duration(a.estimate)));
            let critical = if on_path.contains(id.as_str()) {
                format!(", color=\"{CRITICAL}\", penwidth=2.5")
            } else {
                String::new()
            };
            let _ = writeln!(s, "    {} [label={label}{critical}];", dot_id(id));
        }
        s.push_str("  }\n");
    }
    let critical = critical_edges(plan);
    for e in &plan.edges {
        let attrs = match e.kind {
            DependencyKind::Data if critical.contains(&(e.from.as_str(), e.to.as_str())) => {
                format!(" [color=\"{CRITICAL}\", penwidth=2.5]")
            }
            DependencyKind::Data => String::new(),
            DependencyKind::Context => " [style=dashed, label=\"context\", constraint=false]".to_owned(),
            DependencyKind::Validation => " [style=dotted, label=\"validation\", constraint=false]".to_owned(),
            DependencyKind::Resource => {
                " [style=dotted, color=gray60, fontcolor=gray40, penwidth=0.6, arrowhead=none, label=\"resource\", constraint=false]"
                    .to_owned()
            }
        };
        let _ = writeln!(s, "  {} -> {}{attrs};", dot_id(&e.from), dot_id(&e.to));
    }
    s.push_str("}\n");
    s
}

/// A quoted DOT identifier.
fn dot_id(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    format!("\"{escaped}\"")
}
