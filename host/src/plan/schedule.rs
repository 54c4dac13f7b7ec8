//! The makespan estimate: a list-scheduling simulation of the ready queue
//! under the resource pool. `O((agents + edges) · log agents)`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use super::DependencyGraph;

/// What the simulated run may use at once.
pub(super) struct Pool {
    pub max_concurrent: u32,
    pub cpu: u32,
    pub memory: u32,
}

/// Per agent, by index.
pub(super) struct Demands<'a> {
    pub estimates: &'a [Duration],
    pub priorities: &'a [u8],
    pub remaining: &'a [Duration],
    pub cpu: &'a [u32],
    pub memory: &'a [u32],
}

pub(super) struct Schedule {
    /// Per agent: when it starts.
    pub start: Vec<Duration>,
    /// When the last agent finishes.
    pub makespan: Duration,
}

/// Serve ready agents by priority, then longest remaining path, then file
/// order; the head of the queue starts as soon as it fits (a free slot, its
/// cpu and memory units) and no later agent overtakes it. An agent that
/// cannot fit even in an empty pool (validation rejects these) starts when
/// nothing else runs.
pub(super) fn simulate(graph: &DependencyGraph<'_>, pool: &Pool, d: &Demands<'_>) -> Schedule {
    let n = d.estimates.len();
    let mut start = vec![Duration::ZERO; n];
    let mut waiting: Vec<usize> = (0..n).map(|a| graph.blocking_needs(a).count()).collect();
    // Max-heap: highest priority, then longest remaining path, then lowest index.
    let key = |a: usize| (d.priorities[a], d.remaining[a], Reverse(a));
    let mut ready: BinaryHeap<(u8, Duration, Reverse<usize>)> =
        (0..n).filter(|&a| waiting[a] == 0).map(key).collect();
    let mut running: BinaryHeap<Reverse<(Duration, usize)>> = BinaryHeap::new();
    let (mut slots, mut cpu, mut memory) = (0u32, 0u64, 0u64);
    let mut now = Duration::ZERO;
    loop {
        while let Some(&(_, _, Reverse(a))) = ready.peek() {
            let fits = slots < pool.max_concurrent
                && cpu + u64::from(d.cpu[a]) <= u64::from(pool.cpu)
                && memory + u64::from(d.memory[a]) <= u64::from(pool.memory);
            if !fits && slots > 0 {
                break;
            }
            ready.pop();
            start[a] = now;
            running.push(Reverse((now.saturating_add(d.estimates[a]), a)));
            slots += 1;
            cpu += u64::from(d.cpu[a]);
            memory += u64::from(d.memory[a]);
        }
        let Some(&Reverse((finish, _))) = running.peek() else { break };
        now = finish;
        // Release everything finishing now before admitting more.
        while let Some(&Reverse((t, a))) = running.peek() {
            if t != now {
                break;
            }
            running.pop();
            slots -= 1;
            cpu -= u64::from(d.cpu[a]);
            memory -= u64::from(d.memory[a]);
            for b in graph.blocking_dependents(a) {
                waiting[b] -= 1;
                if waiting[b] == 0 {
                    ready.push(key(b));
                }
            }
        }
    }
    Schedule { start, makespan: now }
}
