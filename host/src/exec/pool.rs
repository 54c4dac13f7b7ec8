//! The resource pool: cpu units, memory units and agent slots.
//!
//! An agent is admitted only when all three fit: its cpu units under the
//! total × oversubscription, its memory units under the total (memory is
//! never oversubscribed: the units become the agent's hard linear-memory cap,
//! so their sum bounds what the agents can take), and a free slot under the
//! concurrent-agent limit.

use crate::events::PoolUsage;
use crate::workflow::{AgentSpec, Resources};

/// The cpu and memory units and agent slots a run's agents share: an agent runs once its units are taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePool {
    cpu_capacity: u32,
    memory_capacity: u32,
    slots: u32,
    cpu_used: u32,
    memory_used: u32,
    running: u32,
}

impl ResourcePool {
    /// An empty pool of `resources` (cpu oversubscribed as they say).
    pub fn new(resources: &Resources) -> Self {
        let cpu_capacity = (f64::from(resources.cpu) * resources.cpu_oversubscription).floor() as u32;
        Self {
            cpu_capacity: cpu_capacity.max(resources.cpu),
            memory_capacity: resources.memory,
            slots: resources.max_concurrent.max(1),
            cpu_used: 0,
            memory_used: 0,
            running: 0,
        }
    }

    /// Whether `agent` can start now.
    pub fn fits(&self, agent: &AgentSpec) -> bool {
        self.running < self.slots
            && self.cpu_used + agent.cpu <= self.cpu_capacity
            && self.memory_used + agent.memory <= self.memory_capacity
    }

    /// Whether nothing holds resources (so an agent that does not fit now never will).
    pub fn is_idle(&self) -> bool {
        self.running == 0
    }

    /// Take `agent`'s units. Call only when [`ResourcePool::fits`] says so.
    pub fn acquire(&mut self, agent: &AgentSpec) {
        self.running += 1;
        self.cpu_used += agent.cpu;
        self.memory_used += agent.memory;
    }

    /// Give back `agent`'s units.
    pub fn release(&mut self, agent: &AgentSpec) {
        self.running = self.running.saturating_sub(1);
        self.cpu_used = self.cpu_used.saturating_sub(agent.cpu);
        self.memory_used = self.memory_used.saturating_sub(agent.memory);
    }

    /// Take the whole pool for one agent (a sequential fallback). Call only
    /// when [`ResourcePool::is_idle`].
    pub fn acquire_all(&mut self) {
        self.running = 1;
        self.cpu_used = self.cpu_capacity;
        self.memory_used = self.memory_capacity;
    }

    /// Give the whole pool back.
    pub fn release_all(&mut self) {
        self.running = 0;
        self.cpu_used = 0;
        self.memory_used = 0;
    }

    /// The memory units of the whole pool.
    pub fn memory_capacity(&self) -> u32 {
        self.memory_capacity
    }

    /// What is handed out now.
    pub fn usage(&self) -> PoolUsage {
        PoolUsage { cpu: self.cpu_used, memory: self.memory_used, running: self.running }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::{Location, Retry};

    fn agent(cpu: u32, memory: u32) -> AgentSpec {
        AgentSpec {
            id: "a".into(),
            component: "a.wasm".into(),
            owns: vec!["a".into()],
            reads: None,
            needs: Vec::new(),
            config: Vec::new(),
            cpu,
            memory,
            fuel: None,
            timeout: None,
            estimate: None,
            priority: None,
            retry: Retry::default(),
            defaults: Default::default(),
            wasi: false,
            grants: Default::default(),
            cache: None,
            location: Location::default(),
        }
    }

    #[test]
    fn cpu_may_be_oversubscribed_memory_may_not() {
        let mut pool = ResourcePool::new(&Resources { max_concurrent: 10, ..Resources::default() });
        let (cpu_heavy, memory_heavy) = (agent(60, 1), agent(1, 60));
        pool.acquire(&cpu_heavy);
        assert!(pool.fits(&cpu_heavy), "120 of 100 cpu units is within ×1.2");
        pool.acquire(&cpu_heavy);
        assert!(!pool.fits(&agent(1, 1)), "121 is not");
        pool.release(&cpu_heavy);
        pool.acquire(&memory_heavy);
        assert!(!pool.fits(&memory_heavy), "memory is strict");
        pool.release(&memory_heavy);
        pool.release(&cpu_heavy);
        assert!(pool.is_idle());
        pool.acquire_all();
        assert!(!pool.fits(&agent(1, 1)), "the whole pool is taken");
        pool.release_all();
        assert_eq!(pool.usage(), PoolUsage::default());
    }

    #[test]
    fn slots_limit_concurrency() {
        let mut pool = ResourcePool::new(&Resources { max_concurrent: 2, ..Resources::default() });
        let small = agent(1, 1);
        pool.acquire(&small);
        pool.acquire(&small);
        assert!(!pool.fits(&small));
        pool.release(&small);
        assert!(pool.fits(&small));
    }
}
