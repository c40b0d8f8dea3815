//! One bound on the temp space that concurrent decompressions hold together.
//!
//! A batch (`triage --jobs N`) decompresses several cores at once; each is
//! capped by `--max-core-size`, but N of them could hold N times that. A
//! [`TempBudget`] shared by the batch's jobs caps their sum. A job reserves
//! room in chunks before writing them; when the batch is full it gives up
//! what it wrote (dropping its unnamed temp file) and waits to run alone,
//! when no other decompressed core is held, so every core still gets the
//! whole per-core cap and no set of jobs can wait on each other forever:
//! a job waits only while it holds nothing.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The batch's bound on decompressed bytes held at once.
#[derive(Debug)]
pub struct TempBudget {
    limit: u64,
    state: Mutex<State>,
    released: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes reserved by every live hold.
    in_use: u64,
    /// The most ever reserved at once.
    peak: u64,
    /// The hold decompressing alone, if any: others are refused meanwhile.
    alone: Option<u64>,
    /// Jobs waiting to run alone: new holds are refused meanwhile, so the
    /// waiters are not starved by jobs that keep starting.
    waiting_alone: usize,
    next_id: u64,
}

/// Room reserved by one decompression; given back when dropped (the
/// decompressed core is unmapped, its unnamed file freed).
#[derive(Debug)]
pub struct TempHold {
    budget: Arc<TempBudget>,
    id: u64,
    bytes: u64,
}

/// The batch is full: give up the hold and start again with
/// [`TempBudget::hold_alone`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchFull {
    /// Bytes the other decompressions held.
    pub held_by_others: u64,
}

impl TempBudget {
    /// A budget of `limit` bytes for a batch.
    pub fn new(limit: u64) -> Arc<TempBudget> {
        Arc::new(TempBudget {
            limit,
            state: Mutex::new(State::default()),
            released: Condvar::new(),
        })
    }

    /// The bound, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The most bytes held at once so far.
    pub fn peak(&self) -> u64 {
        self.lock().peak
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty hold, sharing the batch with others.
    pub fn hold(self: &Arc<Self>) -> TempHold {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        TempHold {
            budget: Arc::clone(self),
            id,
            bytes: 0,
        }
    }

    /// An empty hold that waits until nothing else is held, then keeps the
    /// batch to itself until [`TempHold::done_writing`].
    pub fn hold_alone(self: &Arc<Self>) -> TempHold {
        let mut state = self.lock();
        state.waiting_alone += 1;
        while state.in_use > 0 || state.alone.is_some() {
            state = self.released.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.waiting_alone -= 1;
        let id = state.next_id;
        state.next_id += 1;
        state.alone = Some(id);
        TempHold {
            budget: Arc::clone(self),
            id,
            bytes: 0,
        }
    }
}

impl TempHold {
    /// Reserve `more` bytes before writing them.
    pub fn grow(&mut self, more: u64) -> Result<(), BatchFull> {
        let budget = Arc::clone(&self.budget);
        let mut state = budget.lock();
        let others = state.in_use - self.bytes;
        let refused_by_alone = state.alone.is_some_and(|id| id != self.id)
            || (state.alone.is_none() && state.waiting_alone > 0 && self.bytes == 0);
        // Alone, a core may use the whole per-core cap even past the budget:
        // the cap, not the batch, bounds it then.
        let fits = state.in_use.saturating_add(more) <= budget.limit || others == 0;
        if refused_by_alone || !fits {
            return Err(BatchFull {
                held_by_others: others,
            });
        }
        self.bytes += more;
        state.in_use += more;
        state.peak = state.peak.max(state.in_use);
        Ok(())
    }

    /// The core is written: others may share the rest of the budget again.
    pub fn done_writing(&self) {
        let mut state = self.budget.lock();
        if state.alone == Some(self.id) {
            state.alone = None;
            self.budget.released.notify_all();
        }
    }
}

impl Drop for TempHold {
    fn drop(&mut self) {
        let mut state = self.budget.lock();
        state.in_use -= self.bytes;
        if state.alone == Some(self.id) {
            state.alone = None;
        }
        self.budget.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_hold_is_refused_past_the_limit_and_a_lone_one_is_not() {
        let budget = TempBudget::new(100);
        let mut a = budget.hold();
        let mut b = budget.hold();
        a.grow(60).unwrap();
        assert_eq!(b.grow(60), Err(BatchFull { held_by_others: 60 }));
        b.grow(40).unwrap();
        drop(b);
        // Alone, `a` may go past the batch's limit (the per-core cap rules).
        a.grow(200).unwrap();
        assert_eq!(budget.peak(), 260);
    }

    #[test]
    fn while_one_runs_alone_others_are_refused() {
        let budget = TempBudget::new(100);
        let lone = budget.hold_alone();
        let mut other = budget.hold();
        assert!(other.grow(1).is_err());
        lone.done_writing();
        other.grow(1).unwrap();
    }

    /// Jobs that retry alone when refused all finish, and the sum of what
    /// several hold at once never passes the limit.
    #[test]
    fn concurrent_jobs_never_exceed_the_limit_and_all_finish() {
        let budget = TempBudget::new(100);
        let finished = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for job in 0..8u64 {
                let budget = &budget;
                let finished = &finished;
                scope.spawn(move || {
                    let size = 30 + job * 10; // 30..100
                    let mut alone = false;
                    let hold = loop {
                        let mut hold = if alone {
                            budget.hold_alone()
                        } else {
                            budget.hold()
                        };
                        let mut ok = true;
                        for _ in 0..size / 10 {
                            if hold.grow(10).is_err() {
                                ok = false;
                                break;
                            }
                            std::thread::yield_now();
                        }
                        if ok {
                            hold.done_writing();
                            break hold;
                        }
                        alone = true;
                    };
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    drop(hold);
                    finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                });
            }
        });
        assert_eq!(finished.into_inner(), 8);
        assert!(budget.peak() <= 100, "peak {}", budget.peak());
    }
}
