//! The dispatch seam: the run loop hands jobs to a [`Dispatcher`] and takes
//! their results back in batches.
//!
//! A [`Job`] is a plain value (what to run, for whom, against which context
//! version, under which limits); what a worker needs besides it (the
//! component, the snapshot, the event sink) travels in a [`JobEnv`], which a
//! remote dispatcher rebuilds on its side from the workflow and the version.
//!
//! [`LocalDispatcher`] runs jobs in this process: a lone job (a chain has
//! nothing else to run) on the run loop's own task, with no task spawned and
//! no thread woken; otherwise on a few long-lived worker tasks, one per
//! runtime thread (each job dealt to the least loaded), each polling many
//! jobs (no task spawned per job); the loop takes every result that has
//! arrived in one wake-up.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::{AbortHandle, Abortable};
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use crate::runtime::{AgentCall, AgentComponent, AgentError, AgentOutput, Runtime, Validation};

pub use super::core::JobId;

/// One job: run an agent, or have it validate another's outputs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    /// The job's id.
    pub id: JobId,
    /// The agent's name.
    pub agent: String,
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// The agent whose outputs it validates, for a validation job.
    pub validating: Option<String>,
    /// The context version the job reads.
    pub base: u64,
    /// Linear memory cap, bytes.
    pub memory_bytes: u64,
    /// Instruction budget; `None` means unmetered.
    pub fuel: Option<u64>,
    /// Wall-clock limit of the attempt; `None` means none.
    pub timeout: Option<Duration>,
}

/// What a job returned: its validation (for a validation job) and output.
/// A plain serialisable value, like [`Job`]: a remote dispatcher sends it
/// back as it is.
pub type JobOutcome = Result<(Option<Validation>, AgentOutput), AgentError>;

/// A job that ended, and when (stamped where the result arrives: a remote
/// dispatcher sends the [`JobId`] and [`JobOutcome`] and stamps `ended` on
/// receipt, as the host's clocks are the run's clocks).
#[derive(Debug)]
pub struct Done {
    /// The job's id.
    pub id: JobId,
    /// What it returned.
    pub outcome: JobOutcome,
    /// When it ended.
    pub ended: Instant,
}

/// What a local worker needs besides the [`Job`]: the loaded component and
/// the call (snapshot, limits, event sink, capabilities).
#[derive(Debug)]
pub struct JobEnv {
    /// The agent's loaded component.
    pub component: AgentComponent,
    /// What the call needs.
    pub call: AgentCall,
}

/// Where jobs run.
pub trait Dispatcher: Send {
    /// Start `job`.
    fn dispatch(&mut self, job: Job, env: JobEnv);
    /// Stop job `id`: it still comes back from [`next`](Self::next), as
    /// stopped.
    fn abort(&mut self, id: JobId);
    /// Jobs started and not yet returned by [`next`](Self::next).
    fn in_flight(&self) -> usize;
    /// Wait for at least one job to end and append every job that has
    /// ended to `done`. Never returns while nothing is in flight.
    fn next<'a>(&'a mut self, done: &'a mut Vec<Done>) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
    /// Append the jobs that have already ended, without waiting.
    fn ready(&mut self, done: &mut Vec<Done>);
}

type JobFuture = Pin<Box<dyn Future<Output = Done> + Send>>;

/// The jobs of one run, in this process.
pub struct LocalDispatcher {
    runtime: Runtime,
    /// The job the loop polls itself.
    inline: Option<(JobId, CatchPanic)>,
    /// Jobs started but not yet handed to anyone: started together at the
    /// next [`Dispatcher::next`], so a lone one can run inline.
    starting: Vec<(JobId, JobFuture)>,
    workers: Vec<Worker>,
    /// Which worker each job on a worker was dealt to.
    dealt: Vec<(JobId, usize)>,
    done_tx: mpsc::UnboundedSender<Vec<Done>>,
    done_rx: mpsc::UnboundedReceiver<Vec<Done>>,
    /// Abort handles of the jobs on workers.
    aborts: Vec<(JobId, AbortHandle)>,
    in_flight: usize,
}

impl std::fmt::Debug for LocalDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDispatcher").field("in_flight", &self.in_flight).finish_non_exhaustive()
    }
}

struct Worker {
    tx: mpsc::UnboundedSender<Vec<(JobId, JobFuture)>>,
    /// Its jobs not yet returned.
    load: usize,
    _task: AbortOnDropHandle<()>,
}

impl LocalDispatcher {
    /// A dispatcher running jobs on `runtime`.
    pub fn new(runtime: Runtime) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            runtime,
            inline: None,
            starting: Vec::new(),
            workers: Vec::new(),
            dealt: Vec::new(),
            done_tx,
            done_rx,
            aborts: Vec::new(),
            in_flight: 0,
        }
    }

    /// Hand the jobs started since the last wait to the loop's own task (a
    /// lone job, nothing else running) or to the workers.
    fn launch(&mut self) {
        if self.starting.is_empty() {
            return;
        }
        if self.starting.len() == 1 && self.in_flight == 1 {
            if let Some((id, future)) = self.starting.pop() {
                self.inline = Some((id, CatchPanic { id, future }));
            }
            return;
        }
        if self.workers.is_empty() {
            let threads = tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers());
            for _ in 0..threads.max(1) {
                let (tx, rx) = mpsc::unbounded_channel();
                let task = tokio::spawn(work(rx, self.done_tx.clone()));
                self.workers.push(Worker { tx, load: 0, _task: AbortOnDropHandle::new(task) });
            }
        }
        // Deal each job to the least loaded worker, one message per worker.
        let n = self.workers.len();
        let mut batches: Vec<Vec<(JobId, JobFuture)>> = (0..n).map(|_| Vec::new()).collect();
        for (id, future) in self.starting.drain(..) {
            let (abort, registration) = AbortHandle::new_pair();
            self.aborts.push((id, abort));
            let future: JobFuture = Box::pin(async move {
                match Abortable::new(future, registration).await {
                    Ok(done) => done,
                    Err(_) => Done { id, outcome: Err(stopped()), ended: Instant::now() },
                }
            });
            let w = (0..n).min_by_key(|&w| self.workers[w].load + batches[w].len()).unwrap_or(0);
            self.dealt.push((id, w));
            batches[w].push((id, future));
        }
        for (worker, batch) in self.workers.iter_mut().zip(batches) {
            worker.load += batch.len();
            if !batch.is_empty() {
                // A worker outlives the dispatcher's use of it; a closed one
                // means the runtime is shutting down, and the run with it.
                let _ = worker.tx.send(batch);
            }
        }
    }

    /// Account for the jobs in `done[before..]`, just returned.
    fn returned(&mut self, before: usize, done: &[Done]) {
        let returned = &done[before..];
        self.in_flight = self.in_flight.saturating_sub(returned.len());
        if !self.aborts.is_empty() {
            self.aborts.retain(|(id, _)| !returned.iter().any(|d| d.id == *id));
        }
        for ended in returned {
            if let Some(i) = self.dealt.iter().position(|(id, _)| *id == ended.id) {
                let (_, w) = self.dealt.swap_remove(i);
                self.workers[w].load = self.workers[w].load.saturating_sub(1);
            }
        }
    }
}

fn stopped() -> AgentError {
    AgentError::Host { agent: String::new(), message: "stopped".into() }
}

impl Dispatcher for LocalDispatcher {
    fn dispatch(&mut self, job: Job, env: JobEnv) {
        let runtime = self.runtime.clone();
        let id = job.id;
        let JobEnv { component, call } = env;
        let future: JobFuture = match job.validating {
            None => Box::pin(async move {
                let outcome = runtime.run_agent(&component, call).await.map(|output| (None, output));
                Done { id, outcome, ended: Instant::now() }
            }),
            Some(subject) => Box::pin(async move {
                let outcome = runtime
                    .validate_agent(&component, call, &subject)
                    .await
                    .map(|(v, output)| (Some(v), output));
                Done { id, outcome, ended: Instant::now() }
            }),
        };
        self.in_flight += 1;
        self.starting.push((id, future));
    }

    fn abort(&mut self, id: JobId) {
        if let Some(i) = self.starting.iter().position(|(j, _)| *j == id) {
            self.starting[i].1 =
                Box::pin(std::future::ready(Done { id, outcome: Err(stopped()), ended: Instant::now() }));
        } else if let Some((_, inline)) = self.inline.as_mut().filter(|(j, _)| *j == id) {
            inline.future =
                Box::pin(std::future::ready(Done { id, outcome: Err(stopped()), ended: Instant::now() }));
        } else if let Some((_, abort)) = self.aborts.iter().find(|(j, _)| *j == id) {
            abort.abort();
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn next<'a>(&'a mut self, done: &'a mut Vec<Done>) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        self.launch();
        Box::pin(async move {
            if self.in_flight == 0 {
                return std::future::pending().await;
            }
            let before = done.len();
            tokio::select! {
                biased;
                ended = poll_inline(&mut self.inline) => {
                    self.inline = None;
                    done.push(ended);
                }
                Some(batch) = self.done_rx.recv() => done.extend(batch),
            }
            while let Ok(batch) = self.done_rx.try_recv() {
                done.extend(batch);
            }
            self.returned(before, done);
        })
    }

    fn ready(&mut self, done: &mut Vec<Done>) {
        self.launch();
        let before = done.len();
        while let Ok(batch) = self.done_rx.try_recv() {
            done.extend(batch);
        }
        self.returned(before, done);
    }
}

/// The inline job's end; never, without one.
async fn poll_inline(inline: &mut Option<(JobId, CatchPanic)>) -> Done {
    match inline {
        Some((_, future)) => future.await,
        None => std::future::pending().await,
    }
}

/// A worker: polls every job it was given, and sends back whatever ended
/// in one batch per wake-up.
async fn work(
    mut jobs: mpsc::UnboundedReceiver<Vec<(JobId, JobFuture)>>,
    done: mpsc::UnboundedSender<Vec<Done>>,
) {
    let mut running = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            batch = jobs.recv(), if open => match batch {
                Some(batch) => running.extend(batch.into_iter().map(|(id, future)| CatchPanic { id, future })),
                None => open = false,
            },
            Some(ended) = running.next(), if !running.is_empty() => {
                // Sent at once: polling for more would run the worker's other
                // jobs for a time slice each first. The loop takes whatever
                // has arrived in one wake-up.
                if done.send(vec![ended]).is_err() {
                    return;
                }
            }
            else => return,
        }
    }
}

/// A job's future with its panics caught, as a task's are by tokio: a
/// panic fails that job, not the whole run.
struct CatchPanic {
    id: JobId,
    future: JobFuture,
}

impl Future for CatchPanic {
    type Output = Done;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Done> {
        let this = &mut *self;
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| this.future.as_mut().poll(cx)));
        polled.unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let message = format!("agent task failed: it panicked: {why}");
            let error = AgentError::Host { agent: String::new(), message };
            std::task::Poll::Ready(Done { id: this.id, outcome: Err(error), ended: Instant::now() })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{CommitError, Conflict, Resolution};
    use crate::runtime::{Finding, MissingNeed, Reads, ReturnedKind, Severity};

    /// Through MessagePack and back, compared by their full debug form.
    fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug>(value: &T) {
        let packed = rmp_serde::to_vec(value).expect("serialises");
        let back: T = rmp_serde::from_slice(&packed).expect("deserialises");
        assert_eq!(format!("{back:?}"), format!("{value:?}"));
    }

    #[test]
    fn jobs_and_their_results_are_plain_values() {
        round_trip(&Job {
            id: 7,
            agent: "qa".into(),
            attempt: 2,
            validating: Some("developer".into()),
            base: 41,
            memory_bytes: 64 << 20,
            fuel: Some(1_000_000),
            timeout: Some(Duration::from_millis(1500)),
        });
        let mut reads = Reads::default();
        reads.values.insert("pm.prd".into(), Some([7; 32]));
        reads.values.insert("brief".into(), None);
        reads.listings.insert("story.".into(), [9; 32]);
        let output = AgentOutput {
            writes: [("qa.report".to_owned(), b"\xff\x00ok".to_vec())].into(),
            fuel_used: Some(12_345),
            peak_memory: 1 << 20,
            reads,
        };
        let validation = Validation {
            passed: false,
            findings: vec![Finding {
                severity: Severity::Error,
                key: Some("developer.code".into()),
                message: "no tests".into(),
            }],
        };
        round_trip::<JobOutcome>(&Ok((Some(validation), output)));
        let missing = Some(Box::new(MissingNeed { key: "pm.prd".into(), owner: "pm".into() }));
        let errors = [
            AgentError::Trap {
                agent: "dev".into(),
                message: "unreachable".into(),
                backtrace: Some("0: run".into()),
                said: None,
                missing_need: missing.clone(),
            },
            AgentError::Returned {
                agent: "dev".into(),
                kind: ReturnedKind::InvalidInput,
                message: "bad".into(),
                missing_need: missing,
            },
            AgentError::Timeout { agent: "dev".into(), after: Duration::from_secs(3) },
            AgentError::Conflict(CommitError(Box::new(Conflict {
                key: "shared.x".into(),
                agent: "a".into(),
                other: "b".into(),
                base_version: 3,
                ours_hash: "00".into(),
                theirs_hash: "11".into(),
                resolution: Resolution::KeptFirst { path: "/title".into() },
            }))),
        ];
        for error in errors {
            round_trip::<JobOutcome>(&Err(error));
        }
    }
}
