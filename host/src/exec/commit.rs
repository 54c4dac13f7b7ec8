//! Committing: an agent's writes go into the context store and the journal
//! in one step, before anything that depends on them can start; and the
//! output cache, which answers for an agent whose inputs are unchanged.

use std::time::Duration;

use super::core::AgentIx;
use super::run::Execution;
use crate::cache::Family;
use crate::context::{CommitError, StagedWrites};
use crate::events::{AgentOutcome, EventKind};
use crate::journal::{AgentRecord, CommitRecord};
use crate::runtime::AgentOutput;

impl Execution<'_> {
    /// Commit `agent`'s writes (made against version `base`) and journal
    /// them with `record` (the agent's outcome) in one durable transaction.
    /// `Ok(None)`: the journal failed and the run is stopping.
    pub(super) fn commit(
        &mut self,
        agent: &str,
        base: u64,
        writes: StagedWrites,
        mut record: AgentRecord,
    ) -> Result<Option<(u64, Vec<String>)>, CommitError> {
        if self.error.is_some() {
            // The journal failed: nothing more is committed, in memory or on disk.
            return Ok(None);
        }
        let commit = self.store.commit(agent, base, writes)?;
        for conflict in &commit.conflicts {
            self.emit(EventKind::Conflict {
                key: conflict.key.clone(),
                agent: conflict.agent.clone(),
                other: conflict.other.clone(),
                resolution: conflict.resolution.to_string(),
            });
        }
        if let Some(journal) = &self.journal {
            record.version = Some(commit.version);
            let entry = CommitRecord {
                version: commit.version,
                agent: agent.to_owned(),
                at_ms: self.started.elapsed().as_millis() as u64,
                writes: commit.keys.iter().cloned().zip(commit.values.iter().map(|v| v.to_vec())).collect(),
                conflicts: commit.conflicts.clone(),
            };
            if let Err(e) = journal.record_commit(&entry, Some(&record)) {
                self.error = Some(format!("cannot journal the commit of agent `{agent}`: {e}"));
                return Ok(None);
            }
        }
        self.emit(EventKind::Committed {
            agent: agent.to_owned(),
            version: commit.version,
            keys: commit.keys.clone(),
        });
        self.conflicts.extend(commit.conflicts);
        Ok(Some((commit.version, commit.keys)))
    }

    /// Journal how an agent finished, when no commit carried it.
    pub(super) fn journal_agent(&mut self, agent: &str, record: &AgentRecord) {
        if let Some(journal) = &self.journal
            && let Err(e) = journal.record_agent(agent, record)
        {
            self.error.get_or_insert(format!("cannot journal the outcome of agent `{agent}`: {e}"));
        }
    }

    fn family<'a>(&'a self, agent: AgentIx, grants: Option<&'a str>) -> Option<Family<'a>> {
        let Some(Some(Ok(component))) = self.components.get(agent) else { return None };
        let spec = &self.wf.agents[agent];
        Some(Family {
            agent: &spec.id,
            component: &component.content_hash,
            config: &spec.config,
            templates: self.templates_hash.as_deref(),
            reads: spec.reads.as_deref(),
            grants,
        })
    }

    /// What of `agent`'s grants its cache family holds; `None` (and, once
    /// per run, a `cache_skipped` event) if it is not cached in this run.
    fn cacheable(&mut self, agent: AgentIx) -> Option<Option<String>> {
        let spec = &self.wf.agents[agent];
        match self.cache.as_ref()?.grants_hash(spec) {
            Ok(grants) => Some(grants),
            Err(because) => {
                if !std::mem::replace(&mut self.agents[agent].uncached, true) {
                    self.emit(EventKind::CacheSkipped { agent: spec.id.clone(), because });
                }
                None
            }
        }
    }

    /// Commit `agent`'s cached output if its inputs are unchanged: the
    /// version and keys committed, if it did.
    pub(super) fn commit_cached(&mut self, agent: AgentIx) -> Option<(u64, Vec<String>)> {
        let cache = self.cache.clone()?;
        let grants = self.cacheable(agent)?;
        // Its output is stored only if its grants hash the same when it ends.
        self.agents[agent].grants_hash = Some(grants);
        let grants = self.agents[agent].grants_hash.as_ref().and_then(|g| g.as_deref());
        let family = self.family(agent, grants)?;
        let hit = cache.lookup(&family, &self.store.snapshot())?;
        let id = self.wf.agents[agent].id.as_str();
        // Ownership may have changed since the entry was made: the agent
        // runs rather than commit keys it no longer owns.
        if hit.writes.keys().any(|key| self.ownership.check(id, key).is_err()) {
            return None;
        }
        let attempts = self.core.attempts(agent);
        let record = AgentRecord { outcome: AgentOutcome::Succeeded, version: None, attempts, message: None };
        let base = self.store.snapshot().version();
        match self.commit(id, base, hit.writes, record) {
            Ok(Some(committed)) => {
                self.emit(EventKind::CacheHit { agent: id.to_owned(), saved: hit.saved });
                self.agents[agent].cached = true;
                Some(committed)
            }
            // The journal failed (the run stops) or a policy refused the
            // cached writes: run the agent instead.
            _ => None,
        }
    }

    /// Keep `agent`'s output in the cache, if what it was granted did not
    /// change while it ran.
    pub(super) fn store_cached(&self, agent: AgentIx, output: &AgentOutput, took: Duration) {
        let (Some(cache), Some(before)) = (&self.cache, &self.agents[agent].grants_hash) else { return };
        let spec = &self.wf.agents[agent];
        match cache.grants_hash(spec) {
            Ok(after) if after == *before => {
                if let Some(family) = self.family(agent, before.as_deref()) {
                    cache.store(&family, &output.reads, &output.writes, took);
                }
            }
            _ => tracing::info!(
                "`{}`: its granted files changed while it ran; its output is not cached",
                spec.id
            ),
        }
    }
}
