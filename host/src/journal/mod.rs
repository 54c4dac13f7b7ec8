//! The journal: one redb file per run, written as the run goes, so a run
//! that was killed can resume without re-running what it committed.
//!
//! A run's file (`<state dir>/runs/<run id>.redb`) holds:
//! - `meta["run"]`: the run record (workflow, its hash and its components'
//!   hashes, start time, status);
//! - `commits[version]`: every context version: the agent, the values it
//!   committed (after conflict resolution), the conflicts it met;
//! - `agents[id]`: each agent that finished for good, with its outcome, written
//!   in the same transaction as its commit;
//! - `decisions[n]`: barrier decisions.
//!
//! Every write is one durable transaction (redb fsyncs on commit), made
//! before anything that depends on it starts. Values are MessagePack.
//!
//! Its records are the domain's own types ([`Conflict`], [`DecisionRecord`],
//! [`AgentOutcome`]), serialised with the names journals have always used,
//! so journals of earlier versions open (`tests/all/journal_v0.rs`).
//!
//! Architecture invariant: this module knows nothing of wasmtime or tokio.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::backends::FileBackend;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

pub use crate::context::Conflict;
pub use crate::events::DecisionRecord;

use crate::confined::Root;
use crate::events::AgentOutcome;

const META: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("meta");
const COMMITS: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("commits");
const AGENTS: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("agents");
const DECISIONS: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("decisions");

/// The directory of the journals in a state directory.
const RUNS: &str = "runs";

/// The journal file of run `run_id` under `state_dir`.
pub fn path_of(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join(RUNS).join(file_name(run_id))
}

fn file_name(run_id: &str) -> String {
    format!("{run_id}.redb")
}

/// A path's directory (`.` when it has none) and its file name.
fn split(path: &Path) -> (&Path, &Path) {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    (dir, path.file_name().map_or(path, Path::new))
}

/// A redb database in `file` (opened through a confined directory).
fn database(file: std::fs::File, check: bool) -> Result<Database, redb::DatabaseError> {
    Database::builder().set_check_integrity_on_open(check).create_with_backend(FileBackend::new(file)?)
}

/// Why a journal could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The journal file could not be opened, read or written.
    #[error("journal {}: {cause}", path.display())]
    Storage {
        /// The journal file.
        path: PathBuf,
        /// Why.
        cause: String,
    },
    /// A record could not be decoded.
    #[error("journal {}: {what} is damaged ({cause}); the file was truncated or edited", path.display())]
    Damaged {
        /// The journal file.
        path: PathBuf,
        /// Which record.
        what: String,
        /// Why it could not be decoded.
        cause: String,
    },
    /// There is no journal at `path`.
    #[error("journal {}: no such run journal", path.display())]
    Missing {
        /// The journal file.
        path: PathBuf,
    },
}

/// How a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started and not finished: still running, or killed.
    Running,
    /// Every agent succeeded.
    Succeeded,
    /// The run failed.
    Failed,
    /// The run was cancelled.
    Cancelled,
}

impl RunStatus {
    /// The status in snake case (`running`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running or interrupted",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A run as the journal keeps it: what ran, from which files, and how it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id.
    pub run_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The workflow file.
    pub workflow_path: PathBuf,
    /// blake3 of the workflow file's bytes.
    pub workflow_hash: String,
    /// blake3 of each agent's component bytes, by agent.
    pub components: BTreeMap<String, String>,
    /// Unix time in milliseconds.
    pub started_unix_ms: u64,
    /// How the run stands.
    pub status: RunStatus,
    /// How many times it was resumed.
    pub resumed: u32,
    /// The run's inputs (MessagePack by name), so a run killed before it
    /// committed them can still resume.
    #[serde(default)]
    pub inputs: BTreeMap<String, serde_bytes::ByteBuf>,
}

/// One context version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    /// The context version.
    pub version: u64,
    /// The committing agent.
    pub agent: String,
    /// Milliseconds since the run started.
    pub at_ms: u64,
    /// Keys and MessagePack values, as committed.
    pub writes: Vec<(String, Vec<u8>)>,
    /// Conflicts met and resolved.
    pub conflicts: Vec<Conflict>,
}

/// How an agent finished, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// How it ended.
    pub outcome: AgentOutcome,
    /// The context version of its commit, if it committed.
    pub version: Option<u64>,
    /// Attempts started.
    pub attempts: u32,
    /// Why, for anything but success.
    pub message: Option<String>,
}

impl AgentRecord {
    /// Whether a resumed run keeps this agent's result instead of running it again.
    pub fn is_final(&self) -> bool {
        self.outcome.is_final()
    }
}

/// An open run journal.
#[derive(Debug)]
pub struct Journal {
    db: Database,
    path: PathBuf,
}

impl Journal {
    /// Create the journal of a new run at `path` (the file must not exist
    /// yet), confined to `path`'s directory (see [`Journal::create_in`]).
    pub fn create(path: &Path, run: &RunRecord) -> Result<Self, JournalError> {
        let (dir, name) = split(path);
        let root = Root::create(dir).map_err(|e| storage(path, e))?;
        Self::create_at(&root, name, run)
    }

    /// Create the journal of a new run in `state_dir` (at [`path_of`]),
    /// every file reached through `state_dir` opened once: a run id with
    /// `..` or `/`, or a symbolic link inside the state directory (`runs`,
    /// a planted `<run id>.redb.partial`) cannot lead the journal outside.
    ///
    /// The file appears complete or not at all: it is written as
    /// `<run id>.redb.partial`, then renamed, so a process killed while
    /// creating it leaves no journal (nothing had run), never one without
    /// its run record.
    pub fn create_in(state_dir: &Path, run: &RunRecord) -> Result<Self, JournalError> {
        let path = path_of(state_dir, &run.run_id);
        let runs = Root::create(state_dir)
            .and_then(|state| state.subdir(Path::new(RUNS), true))
            .map_err(|e| storage(&path, e))?;
        Self::create_at(&runs, Path::new(&file_name(&run.run_id)), run)
    }

    fn create_at(runs: &Root, name: &Path, run: &RunRecord) -> Result<Self, JournalError> {
        let path = runs.display(name);
        // Any entry, even a link to nowhere, is in the way.
        if runs.dir().symlink_metadata(name).is_ok() {
            return Err(JournalError::Storage {
                path,
                cause: format!("run `{}` already has a journal; resume it instead", run.run_id),
            });
        }
        let mut partial = name.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let partial_path = runs.display(&partial);
        // Left by a process killed while creating this run's journal (a
        // link there is removed, never followed).
        let _ = runs.remove_file(&partial);
        {
            let file = runs.create_new(&partial).map_err(|e| storage(&partial_path, e))?;
            let db = database(file, false).map_err(|e| storage(&partial_path, e))?;
            let journal = Self { db, path: partial_path };
            journal.write(|txn| {
                txn.open_table(COMMITS)?;
                txn.open_table(AGENTS)?;
                txn.open_table(DECISIONS)?;
                Ok(())
            })?;
            journal.set_run(run)?;
        }
        runs.rename(&partial, name).map_err(|e| storage(&path, e))?;
        // The rename is durable once the directory is.
        runs.sync().map_err(|e| storage(&path, e))?;
        let file = runs.open_rw(name).map_err(|e| storage(&path, e))?;
        let db = database(file, false).map_err(|e| storage(&path, e))?;
        Ok(Self { db, path })
    }

    /// Open an existing run journal (to inspect or resume it), confined to
    /// `path`'s directory.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let (dir, name) = split(path);
        match Root::open(dir) {
            Ok(root) => Self::open_at(&root, name),
            Err(_) => Err(JournalError::Missing { path: path.to_owned() }),
        }
    }

    /// Open the journal of run `run_id` in `state_dir` (at [`path_of`]),
    /// confined to `state_dir` as [`Journal::create_in`] is.
    pub fn open_in(state_dir: &Path, run_id: &str) -> Result<Self, JournalError> {
        let path = path_of(state_dir, run_id);
        let runs = match Root::open(state_dir).and_then(|state| state.subdir(Path::new(RUNS), false)) {
            Ok(runs) => runs,
            Err(e) if crate::confined::is_escape(&e) => return Err(storage(&path, e)),
            Err(_) => return Err(JournalError::Missing { path }),
        };
        Self::open_at(&runs, Path::new(&file_name(run_id)))
    }

    fn open_at(runs: &Root, name: &Path) -> Result<Self, JournalError> {
        let path = runs.display(name);
        match runs.dir().metadata(name) {
            Ok(meta) if meta.is_file() => {}
            Err(e) if crate::confined::is_escape(&e) => {
                return Err(storage(&path, runs.open_rw(name).err().unwrap_or(e)));
            }
            _ => return Err(JournalError::Missing { path }),
        }
        let file = runs.open_rw(name).map_err(|e| storage(&path, e))?;
        if file.metadata().map_err(|e| storage(&path, e))?.len() == 0 {
            return Err(damaged(&path, "the file", "it is empty"));
        }
        let db = database(file, true).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => JournalError::Storage {
                path: path.clone(),
                cause: "it is in use by another ensemble process (a run still going?)".into(),
            },
            e => damaged(&path, "the file", e),
        })?;
        let journal = Self { db, path };
        journal.run()?;
        Ok(journal)
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run record.
    pub fn run(&self) -> Result<RunRecord, JournalError> {
        let txn = self.db.begin_read().map_err(|e| damaged(&self.path, "the file", e))?;
        let table = txn.open_table(META).map_err(|e| damaged(&self.path, "the run record", e))?;
        let bytes = table
            .get("run")
            .map_err(|e| damaged(&self.path, "the run record", e))?
            .ok_or_else(|| damaged(&self.path, "the run record", "it is missing"))?;
        decode(&self.path, "the run record", bytes.value())
    }

    /// Replace the run record.
    pub fn set_run(&self, run: &RunRecord) -> Result<(), JournalError> {
        let bytes = encode(run);
        self.write(|txn| {
            txn.open_table(META)?.insert("run", bytes.as_slice())?;
            Ok(())
        })
    }

    /// Record the run's inputs in its run record.
    pub fn set_inputs(&self, inputs: &BTreeMap<String, Vec<u8>>) -> Result<(), JournalError> {
        let mut run = self.run()?;
        run.inputs = inputs.iter().map(|(k, v)| (k.clone(), serde_bytes::ByteBuf::from(v.clone()))).collect();
        self.set_run(&run)
    }

    /// Set the run's status.
    pub fn set_status(&self, status: RunStatus) -> Result<(), JournalError> {
        let mut run = self.run()?;
        run.status = status;
        self.set_run(&run)
    }

    /// Record a resumed run's record (status running again) and drop the
    /// report of its previous part, in one transaction.
    pub fn set_resumed(&self, run: &RunRecord) -> Result<(), JournalError> {
        let bytes = encode(run);
        self.write(|txn| {
            let mut meta = txn.open_table(META)?;
            meta.insert("run", bytes.as_slice())?;
            meta.remove("report")?;
            Ok(())
        })
    }

    /// Record how the run ended and its report (the run's metrics,
    /// [`crate::report::RunMetrics`], kept for `ensemble report`), in one
    /// transaction.
    pub fn finish<R: Serialize>(&self, status: RunStatus, report: &R) -> Result<(), JournalError> {
        let mut run = self.run()?;
        run.status = status;
        let (run, report) = (encode(&run), encode(report));
        self.write(|txn| {
            let mut meta = txn.open_table(META)?;
            meta.insert("run", run.as_slice())?;
            meta.insert("report", report.as_slice())?;
            Ok(())
        })
    }

    /// The report of the run's last (resumed) part, once it has ended; `None`
    /// while it runs, if it was killed or its journal failed, or if an
    /// ensemble older than run reports journaled it. `R` is the type it was
    /// [`finish`](Self::finish)ed with ([`crate::report::RunMetrics`]).
    pub fn report<R: serde::de::DeserializeOwned>(&self) -> Result<Option<R>, JournalError> {
        let what = "the run report";
        let txn = self.db.begin_read().map_err(|e| damaged(&self.path, "the file", e))?;
        let table = txn.open_table(META).map_err(|e| damaged(&self.path, what, e))?;
        match table.get("report").map_err(|e| damaged(&self.path, what, e))? {
            Some(bytes) => decode(&self.path, what, bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Record a commit and, when the agent is done with it, the agent's
    /// outcome: one durable transaction.
    pub fn record_commit(
        &self,
        commit: &CommitRecord,
        agent: Option<&AgentRecord>,
    ) -> Result<(), JournalError> {
        let bytes = encode(commit);
        let agent_bytes = agent.map(encode);
        self.write(|txn| {
            txn.open_table(COMMITS)?.insert(commit.version, bytes.as_slice())?;
            if let Some(agent_bytes) = &agent_bytes {
                txn.open_table(AGENTS)?.insert(commit.agent.as_str(), agent_bytes.as_slice())?;
            }
            Ok(())
        })
    }

    /// Record how an agent finished without committing (failed, skipped, cancelled).
    pub fn record_agent(&self, agent: &str, record: &AgentRecord) -> Result<(), JournalError> {
        let bytes = encode(record);
        self.write(|txn| {
            txn.open_table(AGENTS)?.insert(agent, bytes.as_slice())?;
            Ok(())
        })
    }

    /// Record a barrier decision.
    pub fn record_decision(&self, decision: &DecisionRecord) -> Result<(), JournalError> {
        let bytes = encode(decision);
        self.write(|txn| {
            let mut table = txn.open_table(DECISIONS)?;
            let next = table.last()?.map_or(0, |(k, _)| k.value() + 1);
            table.insert(next, bytes.as_slice())?;
            Ok(())
        })
    }

    /// Every context version, oldest first.
    pub fn commits(&self) -> Result<Vec<CommitRecord>, JournalError> {
        self.read_all(COMMITS, "a commit record")
    }

    /// Every barrier decision, in the order recorded.
    pub fn decisions(&self) -> Result<Vec<DecisionRecord>, JournalError> {
        self.read_all(DECISIONS, "a barrier decision")
    }

    /// Each finished agent's record.
    pub fn agents(&self) -> Result<BTreeMap<String, AgentRecord>, JournalError> {
        let txn = self.db.begin_read().map_err(|e| damaged(&self.path, "the file", e))?;
        let table = txn.open_table(AGENTS).map_err(|e| damaged(&self.path, "the agent records", e))?;
        let mut agents = BTreeMap::new();
        for row in table.iter().map_err(|e| damaged(&self.path, "the agent records", e))? {
            let (k, v) = row.map_err(|e| damaged(&self.path, "an agent record", e))?;
            agents.insert(k.value().to_owned(), decode(&self.path, "an agent record", v.value())?);
        }
        Ok(agents)
    }

    /// The context as the journal has it: each key's last committed value.
    pub fn context(&self) -> Result<BTreeMap<String, Vec<u8>>, JournalError> {
        let mut context = BTreeMap::new();
        for commit in self.commits()? {
            context.extend(commit.writes);
        }
        Ok(context)
    }

    fn read_all<T: serde::de::DeserializeOwned>(
        &self,
        table: TableDefinition<'_, u64, &[u8]>,
        what: &str,
    ) -> Result<Vec<T>, JournalError> {
        let txn = self.db.begin_read().map_err(|e| damaged(&self.path, "the file", e))?;
        let table = txn.open_table(table).map_err(|e| damaged(&self.path, what, e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| damaged(&self.path, what, e))? {
            let (_, v) = row.map_err(|e| damaged(&self.path, what, e))?;
            out.push(decode(&self.path, what, v.value())?);
        }
        Ok(out)
    }

    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), JournalError> {
        let txn = self.db.begin_write().map_err(|e| storage(&self.path, e))?;
        f(&txn).map_err(|e| storage(&self.path, e))?;
        txn.commit().map_err(|e| storage(&self.path, e))
    }
}

/// Every run journal under `state_dir`, newest first, each with its record
/// or the reason it cannot be read.
pub fn list_runs(state_dir: &Path) -> Vec<(PathBuf, Result<RunRecord, JournalError>)> {
    let Ok(dir) = Root::open(state_dir).and_then(|state| state.subdir(Path::new(RUNS), false)) else {
        return Vec::new();
    };
    let Ok(entries) = dir.dir().entries() else { return Vec::new() };
    let mut runs: Vec<(PathBuf, Result<RunRecord, JournalError>)> = entries
        .filter_map(Result::ok)
        .map(|e| PathBuf::from(e.file_name()))
        .filter(|name| name.extension().is_some_and(|x| x == "redb"))
        .map(|name| {
            let record = Journal::open_at(&dir, &name).and_then(|j| j.run());
            (dir.display(&name), record)
        })
        .collect();
    runs.sort_by_key(|(p, r)| (std::cmp::Reverse(r.as_ref().map_or(0, |r| r.started_unix_ms)), p.clone()));
    runs
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own plain records always encode.
    rmp_serde::to_vec_named(value).unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(path: &Path, what: &str, bytes: &[u8]) -> Result<T, JournalError> {
    rmp_serde::from_slice(bytes).map_err(|e| damaged(path, what, e))
}

fn storage(path: &Path, cause: impl std::fmt::Display) -> JournalError {
    JournalError::Storage { path: path.to_owned(), cause: cause.to_string() }
}

fn damaged(path: &Path, what: &str, cause: impl std::fmt::Display) -> JournalError {
    JournalError::Damaged { path: path.to_owned(), what: what.to_owned(), cause: cause.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RunRecord {
        RunRecord {
            run_id: "r1".into(),
            workflow: "w".into(),
            workflow_path: "w.yaml".into(),
            workflow_hash: "h".into(),
            components: BTreeMap::from([("a".into(), "ha".into())]),
            started_unix_ms: 1,
            status: RunStatus::Running,
            resumed: 0,
            inputs: BTreeMap::new(),
        }
    }

    #[test]
    fn commits_agents_and_decisions_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_of(dir.path(), "r1");
        let journal = Journal::create(&path, &record()).unwrap();
        let commit = CommitRecord {
            version: 1,
            agent: "a".into(),
            at_ms: 3,
            writes: vec![("a.x".into(), vec![1, 2])],
            conflicts: Vec::new(),
        };
        let done =
            AgentRecord { outcome: AgentOutcome::Succeeded, version: Some(1), attempts: 1, message: None };
        journal.record_commit(&commit, Some(&done)).unwrap();
        journal
            .record_decision(&DecisionRecord {
                group: "g".into(),
                decision: crate::events::Decision::CriterionMet,
                reason: "r".into(),
                at: std::time::Duration::from_millis(4),
            })
            .unwrap();
        journal.set_status(RunStatus::Succeeded).unwrap();
        drop(journal);

        let journal = Journal::open(&path).unwrap();
        assert_eq!(journal.run().unwrap().status, RunStatus::Succeeded);
        assert_eq!(journal.commits().unwrap(), [commit]);
        assert_eq!(journal.agents().unwrap().get("a"), Some(&done));
        assert_eq!(journal.decisions().unwrap().len(), 1);
        assert_eq!(journal.context().unwrap().get("a.x"), Some(&vec![1, 2]));
        assert!(Journal::create(&path, &record()).is_err(), "a run id is journaled once");
        assert_eq!(list_runs(dir.path()).len(), 1);
    }

    #[test]
    fn a_journal_is_created_whole_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_of(dir.path(), "r1");
        let partial = path.with_extension("redb.partial");
        // What a process killed while creating the journal leaves behind.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&partial, b"half a redb header").unwrap();
        assert!(list_runs(dir.path()).is_empty(), "a partial journal is not a run");
        let journal = Journal::create(&path, &record()).unwrap();
        assert!(!partial.exists(), "renamed into place");
        assert_eq!(journal.run().unwrap(), record());
        drop(journal);
        assert_eq!(Journal::open(&path).unwrap().run().unwrap(), record());
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_of(dir.path(), "r1");
        let journal = Journal::create(&path, &record()).unwrap();
        for v in 1..50 {
            let commit = CommitRecord {
                version: v,
                agent: "a".into(),
                at_ms: v,
                writes: vec![(format!("a.k{v}"), vec![7; 100])],
                conflicts: Vec::new(),
            };
            journal.record_commit(&commit, None).unwrap();
        }
        drop(journal);
        let bytes = std::fs::read(&path).unwrap();
        // Truncated at many points, and with bytes flipped: each open (and
        // read) is either fine or a clear error.
        for cut in (0..bytes.len()).step_by(bytes.len() / 23 + 1) {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            if let Ok(j) = Journal::open(&path) {
                let _ = j.commits();
            }
        }
        for at in (0..bytes.len()).step_by(bytes.len() / 31 + 1) {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0xff;
            std::fs::write(&path, &flipped).unwrap();
            match Journal::open(&path) {
                Ok(j) => {
                    let _ = j.commits();
                    let _ = j.agents();
                }
                Err(e) => assert!(e.to_string().contains("journal"), "{e}"),
            }
        }
        assert!(matches!(Journal::open(&dir.path().join("nope.redb")), Err(JournalError::Missing { .. })));
    }
}
