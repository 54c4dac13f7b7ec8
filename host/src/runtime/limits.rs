//! Per-invocation limits on linear memory and tables.
//!
//! Memory is the resource the workflow budgets in units: an agent's units
//! times the unit size is a hard cap on the total size of its linear
//! memories. A `memory.grow` past the cap fails the way wasm says it fails
//! (it returns -1); the limiter remembers the refusal so that, if the agent
//! then dies, the error says it ran out of memory rather than "unreachable".

use wasmtime::{ResourceLimiter, Result};

/// Table elements one agent may have; far above what real components use.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

#[derive(Debug)]
pub(crate) struct Limiter {
    cap: usize,
    /// Bytes of linear memory in use, over all memories.
    total: usize,
    peak: usize,
    /// The total the agent asked for when it was refused.
    pub(crate) refused: Option<usize>,
}

impl Limiter {
    pub(crate) fn new(cap: u64) -> Self {
        Self { cap: usize::try_from(cap).unwrap_or(usize::MAX), total: 0, peak: 0, refused: None }
    }

    pub(crate) fn peak(&self) -> u64 {
        self.peak as u64
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> Result<bool> {
        let total = self.total.saturating_sub(current).saturating_add(desired);
        if total > self.cap {
            self.refused = Some(total);
            return Ok(false);
        }
        self.total = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
