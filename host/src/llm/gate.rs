//! The run's shared limits on model calls: calls in flight, requests and
//! tokens per minute. Calls that queue are let through by priority (the
//! critical path's first), then in the order they came.

use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::oneshot;

/// Limits on a run's (or an engine's) model calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Calls in flight at once (at least 1).
    pub concurrent: u32,
    /// Calls begun in any minute; `None`: no limit.
    pub requests_per_minute: Option<u32>,
    /// Tokens (estimated input and output cap) of the calls begun in any
    /// minute; `None`: no limit.
    pub tokens_per_minute: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self { concurrent: 4, requests_per_minute: None, tokens_per_minute: None }
    }
}

const WINDOW: Duration = Duration::from_secs(60);

/// Slots for calls, shared by every agent of a run; cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Gate(Arc<Mutex<State>>);

#[derive(Debug)]
struct State {
    limits: Limits,
    in_flight: u32,
    /// Calls begun in the last minute: when, and their tokens.
    window: VecDeque<(Instant, u64)>,
    waiting: BinaryHeap<Waiter>,
    next_seq: u64,
}

#[derive(Debug)]
struct Waiter {
    priority: i64,
    seq: u64,
    tokens: u64,
    wake: oneshot::Sender<Slot>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        (self.priority, self.seq) == (other.priority, other.seq)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    /// Higher priority first, then earlier.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.priority.cmp(&other.priority).then(other.seq.cmp(&self.seq))
    }
}

/// A call's slot: given back when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    gate: Gate,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.gate.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.in_flight -= 1;
        state.wake_next(&self.gate, Instant::now());
    }
}

impl Gate {
    pub(super) fn new(limits: Limits) -> Self {
        let limits = Limits { concurrent: limits.concurrent.max(1), ..limits };
        Self(Arc::new(Mutex::new(State {
            limits,
            in_flight: 0,
            window: VecDeque::new(),
            waiting: BinaryHeap::new(),
            next_seq: 0,
        })))
    }

    /// Wait for a slot for a call of about `tokens` tokens; higher
    /// `priority` goes first. The slot is handed over as a value, so one
    /// handed to a call that stopped waiting comes back when dropped.
    pub(super) async fn acquire(&self, priority: i64, tokens: u64) -> Slot {
        let mut seq = None;
        loop {
            let (rx, opens) = {
                let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                state.expire(now);
                if state.waiting.is_empty() && state.admits(tokens) {
                    state.take(tokens, now);
                    return Slot { gate: self.clone() };
                }
                let (tx, rx) = oneshot::channel();
                // A waiter that queues again keeps its place among its priority.
                let seq = *seq.get_or_insert_with(|| {
                    state.next_seq += 1;
                    state.next_seq
                });
                state.waiting.push(Waiter { priority, seq, tokens, wake: tx });
                state.wake_next(self, now);
                // While a per-minute limit is set, every waiter watches for
                // the window to open, whatever holds it now: no wake-up is
                // owed to it when the window, not a slot, frees the way.
                (rx, state.window_opens())
            };
            match opens {
                Some(at) => {
                    tokio::select! {
                        biased;
                        slot = rx => if let Ok(slot) = slot { return slot },
                        () = tokio::time::sleep_until(at) => {}
                    }
                    // Dropping `rx` here gives back a slot sent meanwhile.
                    self.forget_closed();
                }
                None => {
                    if let Ok(slot) = rx.await {
                        return slot;
                    }
                }
            }
        }
    }

    /// Drop waiters whose call stopped waiting.
    fn forget_closed(&self) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let waiting = std::mem::take(&mut state.waiting);
        state.waiting = waiting.into_iter().filter(|w| !w.wake.is_closed()).collect();
    }
}

impl State {
    fn expire(&mut self, now: Instant) {
        while self.window.front().is_some_and(|(at, _)| now.duration_since(*at) >= WINDOW) {
            self.window.pop_front();
        }
    }

    /// Whether a call of `tokens` may begin now (the window expired).
    fn admits(&self, tokens: u64) -> bool {
        if self.in_flight >= self.limits.concurrent {
            return false;
        }
        if let Some(rpm) = self.limits.requests_per_minute
            && self.window.len() as u64 >= u64::from(rpm.max(1))
        {
            return false;
        }
        if let Some(tpm) = self.limits.tokens_per_minute {
            let used: u64 = self.window.iter().map(|(_, t)| t).sum();
            // A call larger than the whole limit goes alone in its minute.
            if used > 0 && used + tokens > tpm {
                return false;
            }
        }
        true
    }

    fn take(&mut self, tokens: u64, now: Instant) {
        self.in_flight += 1;
        self.window.push_back((now, tokens));
    }

    /// When the oldest call of the window leaves it, if a per-minute limit
    /// is set.
    fn window_opens(&self) -> Option<Instant> {
        let limited = self.limits.requests_per_minute.is_some() || self.limits.tokens_per_minute.is_some();
        limited.then(|| self.window.front().map(|(at, _)| *at + WINDOW)).flatten()
    }

    /// Hand slots to the first waiters while the limits allow.
    fn wake_next(&mut self, gate: &Gate, now: Instant) {
        self.expire(now);
        while let Some(first) = self.waiting.peek() {
            if first.wake.is_closed() {
                self.waiting.pop();
                continue;
            }
            if !self.admits(first.tokens) {
                return;
            }
            let Some(waiter) = self.waiting.pop() else { return };
            self.take(waiter.tokens, now);
            if let Err(slot) = waiter.wake.send(Slot { gate: gate.clone() }) {
                // It stopped waiting just now: undo by hand (dropping the
                // slot would take the lock held here).
                std::mem::forget(slot);
                self.in_flight -= 1;
                self.window.pop_back();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn queued_calls_go_by_priority_then_in_order() {
        let gate = Gate::new(Limits { concurrent: 1, ..Limits::default() });
        let first = gate.acquire(0, 10).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [("low", 0), ("high", 5), ("low2", 0), ("mid", 2)] {
            let (gate, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = gate.acquire(priority, 10).await;
                order.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }));
            tokio::task::yield_now().await;
        }
        drop(first);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["high", "mid", "low", "low2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_per_minute_hold_the_next_call_until_the_window_moves() {
        let gate = Gate::new(Limits { concurrent: 8, requests_per_minute: Some(2), tokens_per_minute: None });
        let began = Instant::now();
        for _ in 0..3 {
            drop(gate.acquire(0, 1).await);
        }
        assert!(began.elapsed() >= WINDOW, "the third call waited a minute: {:?}", began.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_per_minute_count_what_calls_may_use() {
        let gate =
            Gate::new(Limits { concurrent: 8, requests_per_minute: None, tokens_per_minute: Some(100) });
        let began = Instant::now();
        drop(gate.acquire(0, 60).await);
        drop(gate.acquire(0, 30).await);
        assert!(began.elapsed() < Duration::from_secs(1));
        drop(gate.acquire(0, 30).await);
        assert!(began.elapsed() >= WINDOW);
    }

    /// Both limits at once: the slot frees while the window is full; the
    /// waiter must still go when the window opens.
    #[tokio::test(start_paused = true)]
    async fn a_waiter_goes_when_the_window_opens_after_the_slot_freed() {
        let gate = Gate::new(Limits { concurrent: 1, requests_per_minute: Some(1), tokens_per_minute: None });
        let first = gate.acquire(0, 1).await;
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { drop(gate.acquire(0, 1).await) }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(first);
        tokio::time::timeout(Duration::from_secs(120), waiter)
            .await
            .expect("went within the window")
            .unwrap();
    }

    /// A slot handed to a call that then stopped waiting comes back.
    #[tokio::test(start_paused = true)]
    async fn a_slot_handed_to_a_call_that_left_is_given_back() {
        let gate = Gate::new(Limits { concurrent: 1, ..Limits::default() });
        let first = gate.acquire(0, 1).await;
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(0, 1).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(first); // handed to the waiter, which has not run yet
        waiter.abort();
        let _ = waiter.await;
        let again = tokio::time::timeout(Duration::from_secs(5), gate.acquire(0, 1)).await;
        assert!(again.is_ok(), "the slot came back");
    }
}
