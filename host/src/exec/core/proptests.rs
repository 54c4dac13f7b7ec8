//! The core driven by random workflows and random completion orders,
//! checked against the invariants of ARCHITECTURE.md.

use std::fmt::Write as _;
use std::time::Duration;

use proptest::prelude::*;

use super::tests::{Sim, failure, workflow};

/// A random workflow: a DAG of `data` and `context` needs on earlier
/// agents, random sizes, retries and defaults, and maybe one group (a run
/// of agents that need nothing inside it) with a random barrier.
fn workflows() -> impl Strategy<Value = String> {
    (2usize..10, 1u32..4, any::<u64>(), 0usize..3).prop_map(|(n, slots, seed, group_kind)| {
        let mut bits = seed;
        let mut next = |m: u64| {
            bits = bits.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (bits >> 33) % m
        };
        let group = (n >= 4 && group_kind > 0).then(|| {
            let start = 1 + next(n as u64 - 3) as usize;
            (start, start + 2)
        });
        let mut yaml = format!("resources: {{cpu: 100, memory: 100, max_concurrent: {slots}}}\nagents:\n");
        for i in 0..n {
            let limit = group.map_or(i, |(s, e)| if (s..e).contains(&i) { s } else { i });
            let mut needs: Vec<String> = Vec::new();
            for j in 0..limit {
                if next(3) == 0 {
                    needs.push(if next(4) == 0 { format!("{{agent: a{j}, kind: context}}") } else { format!("a{j}") });
                }
            }
            let _ = writeln!(
                yaml,
                "  a{i}: {{component: a.wasm, needs: [{}], resources: {{cpu: {}, memory: {}}}, retry: {{attempts: {}, backoff: 1s, max_backoff: 2s}}, defaults: {{a{i}.v: 1}}}}",
                needs.join(", "),
                10 + 10 * next(5),
                10 + 10 * next(5),
                1 + next(3),
            );
        }
        if let Some((s, e)) = group {
            let strategies = ["[continue_with_partial]", "[fallback_sequential]", "[continue_with_partial, fallback_sequential]"];
            let success = if next(2) == 0 { "all" } else { "at_least_one" };
            let members: Vec<String> = (s..e).map(|i| format!("a{i}")).collect();
            let _ = write!(
                yaml,
                "groups:\n  g:\n    agents: [{}]\n    barrier: {{timeout: 30s, success: {success}, on_timeout: {}}}\n",
                members.join(", "),
                strategies[group_kind % 3]
            );
        }
        yaml
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_agent_ends_once_after_its_needs_and_within_the_pool(
        yaml in workflows(),
        choices in proptest::collection::vec(any::<u16>(), 400),
    ) {
        let wf = workflow(&yaml);
        let mut sim = Sim::new(&wf);
        let mut choices = choices.into_iter();
        while !sim.core.is_idle() {
            // Once the choices run out, every job succeeds.
            let choice = choices.next().unwrap_or(1);
            if sim.running.is_empty() || choice % 7 == 0 {
                // Nothing to end (a backoff) or time passes: a barrier may time out.
                sim.advance(Duration::from_secs(u64::from(choice % 40) + 1));
                continue;
            }
            let i = usize::from(choice) % sim.running.len();
            let agent = sim.running[i].1;
            let result = if choice % 3 == 0 { Err(failure(&wf.agents[agent].id)) } else { Ok(()) };
            sim.end_job(i, result);
        }
        prop_assert!(sim.running.is_empty());
        prop_assert!(sim.violations.is_empty(), "{:?}\n{yaml}\n{:?}", sim.violations, sim.log);
        // Nothing is left for the end of the run to skip.
        let groups = sim.core.wrap_up(false, sim.now);
        prop_assert!(sim.core.next_action().is_none(), "{yaml}\n{:?}", sim.log);
        prop_assert_eq!(groups.len(), wf.groups.len());
        for (agent, spec) in wf.agents.iter().enumerate() {
            prop_assert!(sim.status[agent].is_some(), "{} never ended\n{yaml}\n{:?}", spec.id, sim.log);
            let member = sim.core.graph.group_of[agent].is_some();
            if !member {
                prop_assert_eq!(sim.finishes[agent], 1, "{} ended more than once\n{}\n{:?}", spec.id, yaml, sim.log);
                prop_assert!(!sim.started_after_finish[agent], "{} ran after it ended", spec.id);
            }
        }
    }

    #[test]
    fn halting_at_any_point_ends_every_agent_and_every_job(
        yaml in workflows(),
        ends in 0usize..12,
    ) {
        let wf = workflow(&yaml);
        let mut sim = Sim::new(&wf);
        for _ in 0..ends {
            if sim.running.is_empty() {
                break;
            }
            sim.end_job(0, Ok(()));
        }
        sim.core.halt();
        sim.drive();
        prop_assert!(sim.running.iter().all(|r| r.3), "every running job is aborted");
        while !sim.running.is_empty() {
            sim.end_job(0, Ok(()));
        }
        prop_assert!(sim.core.is_idle());
        prop_assert!(sim.status.iter().all(Option::is_some), "{:?}", sim.log);
        prop_assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    }
}
