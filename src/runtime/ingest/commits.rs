//! Consumer-group commits while a job without checkpoints runs: each worker commits its Kafka
//! partitions' positions once every result of the records before them is acknowledged by the
//! sinks, so lag tools see the job's progress and a `start = "stored"` run goes on from there
//! (at least once: what came after is read again).
//!
//! A record read when the worker's progress (the capability, or a partition's largest event
//! time, whichever is later) was `p` is stamped at most `p`, and every result it contributes
//! to is emitted at most the job's commit horizon after it (`JobPlan::commit_horizon`: window
//! size plus delay plus allowed lateness, the largest over the analyses). So the positions
//! sampled at progress `p` are done once the acknowledged frontier of every worker's outputs
//! (a probe on `runtime::output::write_outputs`' stream) is past `p + horizon`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use timely::dataflow::ProbeHandle;

/// What a worker needs to commit positions as their results are acknowledged.
#[derive(Clone)]
pub struct Acked {
    /// Its frontier: every output below it is acknowledged, on every worker.
    pub probe: ProbeHandle<u64>,
    /// `JobPlan::commit_horizon`.
    pub horizon: u64,
}

/// How often positions are sampled as time passes.
const EVERY: Duration = Duration::from_secs(1);
/// Positions are also sampled each time progress moves by this part of the horizon, so that a
/// job catching up (an hour of the topic read in seconds) commits as it goes.
const STEPS_PER_HORIZON: u64 = 16;
/// How often the latest due positions are committed again: a commit is asynchronous and
/// fails unseen while the group's coordinator moves or loads (a broker just started).
const AGAIN: Duration = Duration::from_secs(5);
/// Samples kept while acknowledgements lag (about an hour's): later ones wait their turn.
const MAX_SAMPLES: usize = 4096;

/// Sampled positions waiting for their results to be acknowledged.
pub(super) struct Commits {
    acked: Acked,
    /// When, and at which progress, positions were last sampled.
    last: Option<(Instant, u64)>,
    samples: VecDeque<Sample>,
    /// The positions last committed, and when.
    committed: Option<(Instant, Vec<Option<u64>>)>,
}

struct Sample {
    /// No record read before `positions` has a time after this.
    progress: u64,
    /// Each partition's position (`PartitionReader::resume_point`).
    positions: Vec<Option<u64>>,
}

impl Commits {
    pub(super) fn new(acked: Acked) -> Self {
        Commits {
            acked,
            last: None,
            samples: VecDeque::new(),
            committed: None,
        }
    }

    /// Notes the partitions' positions once every [`EVERY`] or every [`STEPS_PER_HORIZON`]th
    /// of the horizon of progress, whichever comes first; `progress` bounds the time of every
    /// record read before them.
    pub(super) fn sample(
        &mut self,
        now: Instant,
        progress: u64,
        positions: impl FnOnce() -> Vec<Option<u64>>,
    ) {
        let step = (self.acked.horizon / STEPS_PER_HORIZON).max(1);
        let due = self.last.is_none_or(|(at, from)| {
            now.duration_since(at) >= EVERY || progress >= from.saturating_add(step)
        });
        if !due || self.samples.len() >= MAX_SAMPLES {
            return;
        }
        self.last = Some((now, progress));
        let positions = positions();
        if self
            .samples
            .back()
            .is_some_and(|s| s.positions == positions)
        {
            return; // nothing read since
        }
        self.samples.push_back(Sample {
            progress,
            positions,
        });
    }

    /// The positions to commit now: the latest sampled whose results are all acknowledged,
    /// if any became so, else the last committed ones again every [`AGAIN`].
    pub(super) fn due(&mut self, now: Instant) -> Option<Vec<Option<u64>>> {
        let frontier = self.acked.probe.with_frontier(|f| f.iter().min().copied());
        match self.due_at(frontier) {
            Some(positions) => {
                self.committed = Some((now, positions.clone()));
                Some(positions)
            }
            None => {
                let (at, positions) = self.committed.as_mut()?;
                if now.duration_since(*at) < AGAIN {
                    return None;
                }
                *at = now;
                Some(positions.clone())
            }
        }
    }

    /// [`due`](Self::due) at acknowledged frontier `frontier` (`None`: everything).
    fn due_at(&mut self, frontier: Option<u64>) -> Option<Vec<Option<u64>>> {
        let mut due = None;
        while let Some(s) = self.samples.front() {
            let done = frontier.is_none_or(|f| s.progress.saturating_add(self.acked.horizon) < f);
            if !done {
                break;
            }
            due = self.samples.pop_front().map(|s| s.positions);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commits(horizon: u64) -> Commits {
        Commits::new(Acked {
            probe: ProbeHandle::new(),
            horizon,
        })
    }

    #[test]
    fn positions_are_due_once_the_frontier_passes_their_progress_plus_the_horizon() {
        let mut c = commits(60_000);
        let t0 = Instant::now();
        c.sample(t0, 1_000, || vec![Some(10), None]);
        c.sample(t0 + EVERY, 5_000, || vec![Some(20), Some(3)]);
        c.sample(t0 + 2 * EVERY, 9_000, || vec![Some(30), Some(7)]);
        // A frontier at the horizon itself leaves results at that time unacknowledged.
        assert_eq!(c.due_at(Some(61_000)), None);
        assert_eq!(c.due_at(Some(61_001)), Some(vec![Some(10), None]));
        // Both later samples at once: the latest is what is committed.
        assert_eq!(c.due_at(Some(70_000)), Some(vec![Some(30), Some(7)]));
        assert_eq!(c.due_at(Some(u64::MAX)), None);
    }

    #[test]
    fn the_last_commit_is_made_again_until_a_later_one_is_due() {
        let mut c = commits(0);
        let t0 = Instant::now();
        assert_eq!(c.due(t0), None, "nothing sampled, nothing to commit");
        c.sample(t0, 0, || vec![Some(7)]);
        // A probe attached to nothing has an empty frontier: everything is acknowledged.
        assert_eq!(c.due(t0), Some(vec![Some(7)]));
        assert_eq!(c.due(t0 + AGAIN / 2), None);
        assert_eq!(c.due(t0 + AGAIN), Some(vec![Some(7)]), "again");
        assert_eq!(c.due(t0 + AGAIN), None, "once a period");
    }

    #[test]
    fn an_empty_frontier_makes_everything_due() {
        let mut c = commits(u64::MAX);
        c.sample(Instant::now(), 5, || vec![Some(1)]);
        assert_eq!(c.due_at(Some(u64::MAX)), None, "saturates, never wraps");
        assert_eq!(c.due_at(None), Some(vec![Some(1)]));
    }

    #[test]
    fn sampling_is_once_a_period_or_a_step_of_progress_and_skips_unchanged_positions() {
        let mut c = commits(16_000);
        let t0 = Instant::now();
        c.sample(t0, 1, || vec![Some(1)]);
        c.sample(t0 + EVERY / 2, 2, || panic!("not within the period"));
        c.sample(t0 + EVERY, 3, || vec![Some(1)]);
        assert_eq!(c.samples.len(), 1, "unchanged positions are not sampled");
        c.sample(t0 + 2 * EVERY, 4, || vec![Some(2)]);
        assert_eq!(c.samples.len(), 2);
        // Catching up: a sixteenth of the horizon of progress is a sample, however soon.
        c.sample(t0 + 2 * EVERY, 4 + 999, || panic!("less than a step"));
        c.sample(t0 + 2 * EVERY, 4 + 1_000, || vec![Some(3)]);
        assert_eq!(c.samples.len(), 3);
    }

    #[test]
    fn samples_are_bounded_while_acknowledgements_lag() {
        let mut c = commits(u64::MAX);
        let t0 = Instant::now();
        for i in 0..(MAX_SAMPLES as u64 + 10) {
            c.sample(t0 + EVERY * i as u32, i, || vec![Some(i)]);
        }
        assert_eq!(c.samples.len(), MAX_SAMPLES);
        assert_eq!(c.due_at(None), Some(vec![Some(MAX_SAMPLES as u64 - 1)]));
    }
}
