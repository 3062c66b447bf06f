//! The progress board: what each worker last announced about its event-time progress.
//!
//! Every worker broadcasts its progress (see [`ingest`](super::ingest)); each worker keeps the
//! announcements in its board. A worker whose partitions are all idle follows the slowest
//! active worker instead of stalling the job, and a worker that has read too far ahead of the
//! slowest waits for it: the board wakes it when the next announcement comes in.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Shared by a worker's ingest operator and the operator that receives the announcements.
#[derive(Clone, Default)]
pub struct ProgressBoard {
    inner: Rc<RefCell<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// `Some(p)`: the worker's active partitions hold the watermark at `p`; `None`: all of its
    /// partitions are idle or finished.
    progress: HashMap<usize, Option<i64>>,
    /// Called at the next announcement that changes the board.
    waiting: Option<Box<dyn FnOnce()>>,
}

impl ProgressBoard {
    /// Records `worker`'s announcement, and wakes whoever waits for a change.
    pub fn announce(&self, worker: usize, progress: Option<i64>) {
        let wake = {
            let mut inner = self.inner.borrow_mut();
            if inner.progress.insert(worker, progress) == Some(progress) {
                return;
            }
            inner.waiting.take()
        };
        if let Some(wake) = wake {
            wake();
        }
    }

    /// The least progress announced by the active workers other than `me`.
    pub fn slowest_other(&self, me: usize) -> Option<i64> {
        self.inner
            .borrow()
            .progress
            .iter()
            .filter(|(w, _)| **w != me)
            .filter_map(|(_, p)| *p)
            .min()
    }

    /// Calls `wake` once, at the next announcement that changes the board (replacing an
    /// earlier wake not called yet).
    pub fn wake_on_change(&self, wake: Box<dyn FnOnce()>) {
        self.inner.borrow_mut().waiting = Some(wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn the_slowest_other_active_worker_and_a_wake_at_the_next_change() {
        let board = ProgressBoard::default();
        assert_eq!(board.slowest_other(0), None);
        board.announce(0, Some(10));
        board.announce(1, Some(50));
        board.announce(2, None); // idle: not followed
        assert_eq!(board.slowest_other(0), Some(50));
        assert_eq!(board.slowest_other(1), Some(10));

        let woken = Rc::new(Cell::new(0));
        let w = Rc::clone(&woken);
        board.wake_on_change(Box::new(move || w.set(w.get() + 1)));
        board.announce(1, Some(50)); // the same again: no change
        assert_eq!(woken.get(), 0);
        board.announce(1, Some(70));
        assert_eq!(woken.get(), 1);
        board.announce(1, Some(90)); // once only
        assert_eq!(woken.get(), 1);
        assert_eq!(board.slowest_other(0), Some(90));
    }
}
