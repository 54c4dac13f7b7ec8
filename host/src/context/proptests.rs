//! Property tests of [`ContextStore`]: random concurrent agents against a
//! simple reference model.
//!
//! A case is 2–5 agents and a schedule interleaving their starts and commits
//! (each agent appears twice in the schedule: first it starts, then it
//! commits). Starting takes `store.snapshot()`, whose version is the agent's
//! base. Committing stages the agent's writes, computed from its own snapshot:
//! 1–3 owned keys `a{i}.k{j}` with small ints, and optionally the shared map
//! `s.doc`.
//!
//! The shared map is written read-modify-write: the agent's snapshot of the
//! map with only its own sub-key `a{i}` set. (A blind write of `{"a{i}": v}`
//! alone would, by design, delete the sub-keys the agent saw in its snapshot,
//! three-way or not, so "no lost update" could not hold for it.) The `Fail`
//! property also has blind writes of `{"c": v}`, so that two agents can write
//! equal bytes, which is not a conflict.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::{
    Commit, CommitError, ConflictPolicy, ContextStore, Resolution, SharedPrefix, Snapshot, StagedWrites,
};

const DOC: &str = "s.doc";

/// What an agent writes to `s.doc`.
#[derive(Debug, Clone)]
enum DocWrite {
    /// The agent's snapshot of the map with its own sub-key `a{i}` set to the int.
    Own(i64),
    /// A blind write of `{"c": v}`: agents writing the same `v` write the same bytes.
    Common(i64),
}

#[derive(Debug, Clone)]
struct AgentSpec {
    /// The value of `a{i}.k{j}`, by `j`.
    owned: Vec<i64>,
    doc: Option<DocWrite>,
}

#[derive(Debug, Clone)]
struct Case {
    agents: Vec<AgentSpec>,
    /// Agent indices, each twice: its first occurrence starts it, the second commits it.
    schedule: Vec<usize>,
}

fn agent_spec(doc: impl Strategy<Value = DocWrite>) -> impl Strategy<Value = AgentSpec> {
    (prop::collection::vec(-3i64..=3, 1..=3), prop::option::of(doc))
        .prop_map(|(owned, doc)| AgentSpec { owned, doc })
}

fn case(doc: impl Strategy<Value = DocWrite> + Clone) -> impl Strategy<Value = Case> {
    prop::collection::vec(agent_spec(doc), 2..=5).prop_flat_map(|agents| {
        let slots: Vec<usize> = (0..agents.len()).flat_map(|i| [i, i]).collect();
        (Just(agents), Just(slots).prop_shuffle()).prop_map(|(agents, schedule)| Case { agents, schedule })
    })
}

fn name(agent: usize) -> String {
    format!("a{agent}")
}

fn enc(value: i64) -> Vec<u8> {
    rmp_serde::to_vec(&value).unwrap()
}

fn decode_doc(bytes: &[u8]) -> BTreeMap<String, i64> {
    rmp_serde::from_slice(bytes).unwrap()
}

/// The writes agent `i` commits, computed from its snapshot `base`.
fn writes(i: usize, spec: &AgentSpec, base: &Snapshot) -> StagedWrites {
    let mut writes: StagedWrites =
        spec.owned.iter().enumerate().map(|(j, &v)| (format!("a{i}.k{j}"), enc(v))).collect();
    let doc = match spec.doc {
        None => return writes,
        Some(DocWrite::Own(v)) => {
            let mut map = base.get(DOC).map(|e| decode_doc(&e.value)).unwrap_or_default();
            map.insert(name(i), v);
            map
        }
        Some(DocWrite::Common(v)) => BTreeMap::from([("c".to_owned(), v)]),
    };
    writes.insert(DOC.to_owned(), rmp_serde::to_vec(&doc).unwrap());
    writes
}

/// A snapshot's contents, copied out: (key, value bytes, writer, version).
type Contents = Vec<(String, Vec<u8>, String, u64)>;

fn contents(snapshot: &Snapshot) -> Contents {
    snapshot.iter().map(|(k, e)| (k.clone(), e.value.to_vec(), e.writer.to_string(), e.version)).collect()
}

/// Every key's history, copied out: (value bytes, writer, version), oldest first.
fn histories(
    store: &ContextStore,
    keys: impl IntoIterator<Item = String>,
) -> BTreeMap<String, Vec<(Vec<u8>, String, u64)>> {
    keys.into_iter()
        .map(|k| {
            let h = store
                .history(&k)
                .iter()
                .map(|e| (e.value.to_vec(), e.writer.to_string(), e.version))
                .collect();
            (k, h)
        })
        .collect()
}

/// One commit call and the store around it.
struct Step {
    agent: usize,
    base: u64,
    writes: StagedWrites,
    before: Contents,
    before_version: u64,
    before_history: BTreeMap<String, Vec<(Vec<u8>, String, u64)>>,
    result: Result<Commit, CommitError>,
    after: Contents,
    after_version: u64,
    after_history: BTreeMap<String, Vec<(Vec<u8>, String, u64)>>,
}

struct Run {
    store: ContextStore,
    /// Every snapshot taken (agents' starts and after every commit), with its contents when taken.
    taken: Vec<(Snapshot, u64, Contents)>,
    steps: Vec<Step>,
}

impl Run {
    fn all_keys(&self) -> Vec<String> {
        self.store.snapshot().iter().map(|(k, _)| k.clone()).collect()
    }
}

fn execute(policy: ConflictPolicy, case: &Case) -> Run {
    enum State {
        Idle,
        Started(Snapshot),
        Done,
    }
    let mut store = ContextStore::with_policies(&[SharedPrefix { prefix: "s".to_owned(), policy }]);
    let mut states: Vec<State> = case.agents.iter().map(|_| State::Idle).collect();
    let mut taken = Vec::new();
    let mut steps = Vec::new();
    for &i in &case.schedule {
        match std::mem::replace(&mut states[i], State::Done) {
            State::Idle => {
                let snapshot = store.snapshot();
                taken.push((snapshot.clone(), snapshot.version(), contents(&snapshot)));
                states[i] = State::Started(snapshot);
            }
            State::Started(snapshot) => {
                let writes = writes(i, &case.agents[i], &snapshot);
                let before_snapshot = store.snapshot();
                let keys: Vec<String> =
                    before_snapshot.iter().map(|(k, _)| k.clone()).chain(writes.keys().cloned()).collect();
                let before_history = histories(&store, keys.clone());
                let result = store.commit(&name(i), snapshot.version(), writes.clone());
                let after_snapshot = store.snapshot();
                taken.push((after_snapshot.clone(), after_snapshot.version(), contents(&after_snapshot)));
                steps.push(Step {
                    agent: i,
                    base: snapshot.version(),
                    writes,
                    before: contents(&before_snapshot),
                    before_version: before_snapshot.version(),
                    before_history,
                    result,
                    after: contents(&after_snapshot),
                    after_version: after_snapshot.version(),
                    after_history: histories(&store, keys),
                });
            }
            State::Done => panic!("agent {i} scheduled more than twice"),
        }
    }
    Run { store, taken, steps }
}

/// Properties of every run, whatever the policy: snapshot isolation, version
/// numbering, histories, atomic refusal, and determinism.
fn check_common(policy: ConflictPolicy, case: &Case, run: &Run) -> Result<(), TestCaseError> {
    // 1. Snapshot isolation: every snapshot still shows what it showed when
    // taken, and agrees with the history as of its version.
    for (snapshot, version, when_taken) in &run.taken {
        prop_assert_eq!(snapshot.version(), *version);
        prop_assert_eq!(&contents(snapshot), when_taken, "snapshot of version {} changed", version);
        for key in run.all_keys() {
            let as_of = run.store.history(&key).iter().rev().find(|e| e.version <= *version);
            prop_assert_eq!(snapshot.get(&key), as_of, "snapshot {} of `{}` vs its history", version, &key);
        }
    }

    // 4. Versions: a successful commit makes exactly the next version; a
    // refused one leaves the store as it was.
    let mut version = 0;
    let mut wrote: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for step in &run.steps {
        prop_assert_eq!(step.before_version, version);
        match &step.result {
            Ok(commit) => {
                version += 1;
                prop_assert_eq!(commit.version, version);
                prop_assert_eq!(step.after_version, version);
                prop_assert_eq!(&commit.agent, &name(step.agent));
                prop_assert_eq!(commit.keys.len(), commit.values.len());
                for (key, value) in commit.keys.iter().zip(&commit.values) {
                    prop_assert!(step.writes.contains_key(key), "commit wrote unstaged `{}`", key);
                    wrote.entry(key.clone()).or_default().push((version, name(step.agent)));
                    let entry = step.after.iter().find(|(k, ..)| k == key);
                    prop_assert_eq!(
                        entry,
                        Some(&(key.clone(), value.to_vec(), name(step.agent), version)),
                        "`{}` after commit {}",
                        key,
                        version
                    );
                }
            }
            Err(_) => {
                prop_assert_eq!(
                    step.after_version,
                    step.before_version,
                    "a refused commit changed the version"
                );
                prop_assert_eq!(&step.after, &step.before, "a refused commit changed values");
                prop_assert_eq!(
                    &step.after_history,
                    &step.before_history,
                    "a refused commit changed history"
                );
            }
        }
    }
    let last = run.store.snapshot();
    prop_assert_eq!(last.version(), version);
    // history(key) lists exactly the versions whose commits wrote key, increasing.
    for key in run.all_keys() {
        let history: Vec<(u64, String)> =
            run.store.history(&key).iter().map(|e| (e.version, e.writer.to_string())).collect();
        prop_assert_eq!(Some(&history), wrote.get(&key), "history of `{}`", &key);
        prop_assert!(history.windows(2).all(|w| w[0].0 < w[1].0));
        prop_assert_eq!(run.store.history(&key).last(), last.get(&key));
    }

    // 5. Determinism: the same schedule on a fresh store gives the same bytes.
    let again = execute(policy, case);
    prop_assert_eq!(contents(&again.store.snapshot()), contents(&run.store.snapshot()));
    prop_assert_eq!(histories(&again.store, again.all_keys()), histories(&run.store, run.all_keys()));
    let results = |r: &Run| r.steps.iter().map(|s| s.result.clone()).collect::<Vec<_>>();
    prop_assert_eq!(results(&again), results(run));
    Ok(())
}

/// The `Fail` reference model: the refusals it predicts, after checking the
/// store against it step by step and at the end.
fn check_fail_model(run: &Run) -> Result<Vec<usize>, TestCaseError> {
    // key -> (value, writer, version)
    let mut model: BTreeMap<String, (Vec<u8>, String, u64)> = BTreeMap::new();
    let mut version = 0;
    let mut refused = Vec::new();
    for step in &run.steps {
        // Refused iff `s.doc` was last written, by a commit inside this
        // agent's window (after its base), with bytes other than ours.
        let clash = step.writes.get(DOC).and_then(|ours| {
            model
                .get(DOC)
                .filter(|(theirs, _, at)| *at > step.base && theirs != ours)
                .map(|(_, writer, _)| writer)
        });
        match (&step.result, clash) {
            (Err(CommitError(conflict)), Some(other)) => {
                refused.push(step.agent);
                prop_assert_eq!(&conflict.key, DOC);
                prop_assert_eq!(&conflict.agent, &name(step.agent));
                prop_assert_eq!(&conflict.other, other);
                prop_assert_eq!(conflict.base_version, step.base);
                prop_assert_eq!(&conflict.resolution, &Resolution::Failed { path: None });
            }
            (Ok(commit), None) => {
                version += 1;
                prop_assert_eq!(commit.version, version);
                prop_assert!(commit.conflicts.is_empty(), "unexpected conflicts {:?}", commit.conflicts);
                prop_assert_eq!(
                    commit.keys.iter().collect::<Vec<_>>(),
                    step.writes.keys().collect::<Vec<_>>()
                );
                for (key, value) in &step.writes {
                    model.insert(key.clone(), (value.clone(), name(step.agent), version));
                }
            }
            (result, clash) => {
                return Err(TestCaseError::fail(format!(
                    "agent {} (base {}): store gave {result:?}, model expected {}",
                    step.agent,
                    step.base,
                    if clash.is_some() { "a refusal" } else { "a commit" }
                )));
            }
        }
    }
    let expected: Contents = model.into_iter().map(|(k, (v, w, ver))| (k, v, w, ver)).collect();
    prop_assert_eq!(contents(&run.store.snapshot()), expected);
    Ok(refused)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// First-writer-wins on `s`: snapshot isolation, no lost update on owned
    /// keys or on the shared map, versions and histories, determinism.
    #[test]
    fn first_writer_wins_loses_no_update(case in case((-3i64..=3).prop_map(DocWrite::Own))) {
        let run = execute(ConflictPolicy::FirstWriterWins, &case);
        check_common(ConflictPolicy::FirstWriterWins, &case, &run)?;

        // Every commit succeeds; the only conflicts are merges of `s.doc`.
        for step in &run.steps {
            let commit = step.result.as_ref().map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
            prop_assert_eq!(commit.keys.iter().collect::<Vec<_>>(), step.writes.keys().collect::<Vec<_>>());
            for conflict in &commit.conflicts {
                prop_assert_eq!(&conflict.key, DOC);
                prop_assert_eq!(&conflict.resolution, &Resolution::Merged);
            }
        }

        let last = run.store.snapshot();
        // 2. Owned keys hold what their agent committed.
        for (i, spec) in case.agents.iter().enumerate() {
            for (j, &v) in spec.owned.iter().enumerate() {
                let entry = last.get(&format!("a{i}.k{j}"));
                prop_assert_eq!(entry.map(|e| e.value.to_vec()), Some(enc(v)), "a{}.k{}", i, j);
                prop_assert_eq!(entry.map(|e| e.writer.to_string()), Some(name(i)));
            }
        }
        // 3. The shared map holds every writer's sub-key, and nothing else.
        let expected: BTreeMap<String, i64> = case
            .agents
            .iter()
            .enumerate()
            .filter_map(|(i, spec)| match spec.doc {
                Some(DocWrite::Own(v)) => Some((name(i), v)),
                _ => None,
            })
            .collect();
        let doc = last.get(DOC).map(|e| decode_doc(&e.value));
        if expected.is_empty() {
            prop_assert_eq!(doc, None);
        } else {
            prop_assert_eq!(doc, Some(expected));
        }
        prop_assert_eq!(last.len(), case.agents.iter().map(|a| a.owned.len()).sum::<usize>() + usize::from(last.get(DOC).is_some()));
    }

    /// `Fail` on `s`: a commit whose `s.doc` differs from a value committed
    /// inside its snapshot window is refused and changes nothing; the model
    /// predicts exactly which commits are refused.
    #[test]
    fn fail_refuses_exactly_the_concurrent_writes(
        case in case(prop_oneof![
            (0i64..4).prop_map(DocWrite::Own),
            (0i64..2).prop_map(DocWrite::Common),
        ])
    ) {
        let run = execute(ConflictPolicy::Fail, &case);
        check_common(ConflictPolicy::Fail, &case, &run)?;
        check_fail_model(&run)?;
    }
}

/// The model is not vacuous: a known interleaving is refused, another is not.
#[test]
fn fail_model_examples() {
    let agent = |doc| AgentSpec { owned: vec![1], doc: Some(doc) };
    // Both start, then both commit: the second is refused.
    let overlapping =
        Case { agents: vec![agent(DocWrite::Own(1)), agent(DocWrite::Own(2))], schedule: vec![0, 1, 0, 1] };
    let run = execute(ConflictPolicy::Fail, &overlapping);
    assert_eq!(check_fail_model(&run).unwrap(), [1]);
    // The same bytes are not a conflict.
    let equal = Case {
        agents: vec![agent(DocWrite::Common(1)), agent(DocWrite::Common(1))],
        schedule: vec![0, 1, 0, 1],
    };
    assert!(check_fail_model(&execute(ConflictPolicy::Fail, &equal)).unwrap().is_empty());
    // One after the other: no overlap, no refusal.
    let sequential =
        Case { agents: vec![agent(DocWrite::Own(1)), agent(DocWrite::Own(2))], schedule: vec![0, 0, 1, 1] };
    let run = execute(ConflictPolicy::Fail, &sequential);
    assert!(check_fail_model(&run).unwrap().is_empty());
    assert_eq!(
        run.store.snapshot().get(DOC).map(|e| decode_doc(&e.value)),
        Some(BTreeMap::from([(name(0), 1), (name(1), 2)]))
    );
}

proptest! {
    /// Journals and run reports hold a resolution as its sentence: every
    /// resolution, whatever its path, reads back from it.
    #[test]
    fn a_resolution_reads_back_from_its_sentence(path in proptest::option::of(".{0,12}"), kind in 0..3u8) {
        let resolution = match (kind, path) {
            (0, _) => Resolution::Merged,
            (1, path) => Resolution::KeptFirst { path: path.unwrap_or_default() },
            (_, path) => Resolution::Failed { path },
        };
        let json = serde_json::to_string(&resolution).expect("encodes");
        prop_assert_eq!(&json, &serde_json::to_string(&resolution.to_string()).expect("a string"));
        prop_assert_eq!(serde_json::from_str::<Resolution>(&json).expect("decodes"), resolution);
    }
}
