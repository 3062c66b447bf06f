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
/// Samples kept per partition while acknowledgements lag (about an hour's): later ones wait
/// their turn.
const MAX_SAMPLES: usize = 4096;

/// Where one partition was read to, and how far its records reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Reached {
    /// `Partition::resume`: the position of its next record not yet sent on.
    pub position: u64,
    /// No record before `position` has a time after this: the later of the partition's
    /// largest event time and the worker's capability (dead letters are stamped with it).
    pub progress: u64,
}

/// Sampled positions waiting for their results to be acknowledged, per partition: a partition
/// behind the others in event time commits by its own progress.
pub(super) struct Commits {
    acked: Acked,
    /// When, and at which progress (the largest of any partition), positions were last sampled.
    last: Option<(Instant, u64)>,
    samples: Vec<VecDeque<Reached>>,
    /// Each partition's position when last sampled: a partition read no further since is
    /// not sampled again.
    sampled: Vec<Option<u64>>,
    /// The positions last committed (`None`: none yet for that partition), and when.
    committed: Option<(Instant, Vec<Option<u64>>)>,
}

impl Commits {
    pub(super) fn new(acked: Acked) -> Self {
        Commits {
            acked,
            last: None,
            samples: Vec::new(),
            sampled: Vec::new(),
            committed: None,
        }
    }

    /// Notes each partition's position once every [`EVERY`] or every [`STEPS_PER_HORIZON`]th
    /// of the horizon of progress, whichever comes first (`reached`, one per partition in a
    /// fixed order; `None`: nothing read there yet).
    pub(super) fn sample(
        &mut self,
        now: Instant,
        reached: impl FnOnce() -> Vec<Option<Reached>>,
        progress: u64,
    ) {
        let step = (self.acked.horizon / STEPS_PER_HORIZON).max(1);
        let due = self.last.is_none_or(|(at, from)| {
            now.duration_since(at) >= EVERY || progress >= from.saturating_add(step)
        });
        if !due {
            return;
        }
        self.last = Some((now, progress));
        let reached = reached();
        if self.samples.len() < reached.len() {
            self.samples.resize_with(reached.len(), VecDeque::new);
            self.sampled.resize(reached.len(), None);
        }
        let lanes = self.samples.iter_mut().zip(self.sampled.iter_mut());
        for ((samples, sampled), r) in lanes.zip(reached) {
            let Some(r) = r else { continue };
            if *sampled != Some(r.position) && samples.len() < MAX_SAMPLES {
                *sampled = Some(r.position);
                samples.push_back(r);
            }
        }
    }

    /// The positions to commit now (`None` for a partition: nothing new there): per
    /// partition the latest sampled whose results are all acknowledged, if any became so, else
    /// the last committed ones again every [`AGAIN`].
    pub(super) fn due(&mut self, now: Instant) -> Option<Vec<Option<u64>>> {
        let frontier = self.acked.probe.with_frontier(|f| f.iter().min().copied());
        match self.due_at(frontier) {
            Some(positions) => {
                tracing::debug!(
                    "logflow: positions {positions:?} are acknowledged (frontier {frontier:?})"
                );
                let (at, all) = self
                    .committed
                    .get_or_insert_with(|| (now, vec![None; positions.len()]));
                *at = now;
                for (c, p) in all.iter_mut().zip(&positions) {
                    if p.is_some() {
                        *c = *p;
                    }
                }
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
        let horizon = self.acked.horizon;
        let done = |r: &Reached| frontier.is_none_or(|f| r.progress.saturating_add(horizon) < f);
        let due: Vec<Option<u64>> = self
            .samples
            .iter_mut()
            .map(|samples| {
                let mut due = None;
                while samples.front().is_some_and(done) {
                    due = samples.pop_front().map(|r| r.position);
                }
                due
            })
            .collect();
        due.iter().any(Option::is_some).then_some(due)
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

    fn at(position: u64, progress: u64) -> Option<Reached> {
        Some(Reached { position, progress })
    }

    #[test]
    fn positions_are_due_once_the_frontier_passes_their_progress_plus_the_horizon() {
        let mut c = commits(60_000);
        let t0 = Instant::now();
        c.sample(t0, || vec![at(10, 1_000), None], 1_000);
        c.sample(t0 + EVERY, || vec![at(20, 5_000), at(3, 5_000)], 5_000);
        c.sample(t0 + 2 * EVERY, || vec![at(30, 9_000), at(7, 9_000)], 9_000);
        // A frontier at the horizon itself leaves results at that time unacknowledged.
        assert_eq!(c.due_at(Some(61_000)), None);
        assert_eq!(c.due_at(Some(61_001)), Some(vec![Some(10), None]));
        // Both later samples at once: the latest is what is committed.
        assert_eq!(c.due_at(Some(70_000)), Some(vec![Some(30), Some(7)]));
        assert_eq!(c.due_at(Some(u64::MAX)), None);
    }

    #[test]
    fn a_partition_behind_in_event_time_commits_by_its_own_progress() {
        let mut c = commits(1_000);
        let t0 = Instant::now();
        c.sample(t0, || vec![at(500, 2_000), at(900, 50_000)], 50_000);
        assert_eq!(c.due_at(Some(3_001)), Some(vec![Some(500), None]));
        assert_eq!(c.due_at(Some(51_001)), Some(vec![None, Some(900)]));
    }

    #[test]
    fn the_last_commit_is_made_again_until_a_later_one_is_due() {
        let mut c = commits(0);
        let t0 = Instant::now();
        assert_eq!(c.due(t0), None, "nothing sampled, nothing to commit");
        c.sample(t0, || vec![at(7, 0), None], 0);
        // A probe attached to nothing has an empty frontier: everything is acknowledged.
        assert_eq!(c.due(t0), Some(vec![Some(7), None]));
        assert_eq!(c.due(t0 + AGAIN / 2), None);
        c.sample(t0 + AGAIN / 2 + EVERY, || vec![at(7, 0), at(4, 0)], 0);
        assert_eq!(c.due(t0 + AGAIN / 2 + EVERY), Some(vec![None, Some(4)]));
        let later = t0 + AGAIN * 2;
        assert_eq!(c.due(later), Some(vec![Some(7), Some(4)]), "both again");
        assert_eq!(c.due(later), None, "once a period");
    }

    #[test]
    fn an_empty_frontier_makes_everything_due() {
        let mut c = commits(u64::MAX);
        c.sample(Instant::now(), || vec![at(1, 5)], 5);
        assert_eq!(c.due_at(Some(u64::MAX)), None, "saturates, never wraps");
        assert_eq!(c.due_at(None), Some(vec![Some(1)]));
    }

    #[test]
    fn sampling_is_once_a_period_or_a_step_of_progress_and_skips_unchanged_positions() {
        let mut c = commits(16_000);
        let t0 = Instant::now();
        c.sample(t0, || vec![at(1, 1)], 1);
        c.sample(t0 + EVERY / 2, || panic!("not within the period"), 2);
        c.sample(t0 + EVERY, || vec![at(1, 3)], 3);
        assert_eq!(c.samples[0].len(), 1, "unchanged positions are not sampled");
        c.sample(t0 + 2 * EVERY, || vec![at(2, 4)], 4);
        assert_eq!(c.samples[0].len(), 2);
        // Catching up: a sixteenth of the horizon of progress is a sample, however soon.
        c.sample(t0 + 2 * EVERY, || panic!("less than a step"), 4 + 999);
        c.sample(t0 + 2 * EVERY, || vec![at(3, 1_004)], 4 + 1_000);
        assert_eq!(c.samples[0].len(), 3);
    }

    #[test]
    fn samples_are_bounded_while_acknowledgements_lag() {
        let mut c = commits(u64::MAX);
        let t0 = Instant::now();
        for i in 0..(MAX_SAMPLES as u64 + 10) {
            c.sample(t0 + EVERY * i as u32, || vec![at(i, i)], i);
        }
        assert_eq!(c.samples[0].len(), MAX_SAMPLES);
        assert_eq!(c.due_at(None), Some(vec![Some(MAX_SAMPLES as u64 - 1)]));
    }
}
