//! The watermark rules of the ingest, as pure functions of what the worker knows: its
//! partitions' progress and quiet time, the progress the other workers announce, the held
//! capability and the pending checkpoint barrier.
//!
//! - A partition with no data for the idle timeout stops holding the watermark back.
//! - The worker's watermark is the least progress of its active partitions; one that has not
//!   produced yet holds it where it is. Finished partitions do not count.
//! - A worker whose partitions are all idle follows the slowest active worker it hears of, or,
//!   if there is none, the furthest event time it saw itself.
//! - The capability moves in whole progress steps (the granularity), never back, and never past
//!   a pending checkpoint barrier; when every partition has finished it goes.
//! - Alignment: a worker more than [`ALIGN_STEPS`] progress steps (plus the stride of one read)
//!   ahead of the slowest active worker pauses reading; within a worker, so does a partition
//!   that far ahead of its slowest partition that still has records to read.

use std::time::Duration;

/// How far (in progress steps, the granularity) a worker may read ahead of the slowest active
/// worker, beyond what one of its reads moves a partition on.
const ALIGN_STEPS: i64 = 2;

/// The progress granularity: event time is rounded down to a multiple of it, which divides
/// every window deadline, so rounding loses nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Granularity(i64);

impl Granularity {
    /// At least 1 ms.
    pub(super) fn new(ms: i64) -> Self {
        Granularity(ms.max(1))
    }

    pub(super) fn ms(self) -> i64 {
        self.0
    }

    /// Rounds event time `m` down to a whole progress step.
    pub(super) fn floor(self, m: i64) -> i64 {
        m - m.rem_euclid(self.0)
    }

    /// The capability time of progress `m`: its step, not before the epoch, nor before `cap`.
    pub(super) fn time(self, m: i64, cap: u64) -> u64 {
        (self.floor(m).max(0) as u64).max(cap)
    }
}

/// Whether a partition quiet for `quiet` is idle.
pub(super) fn is_idle(quiet: Duration, idle_timeout: Duration) -> bool {
    quiet >= idle_timeout
}

/// One live (not finished) partition as the watermark rules see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Seen {
    /// The progress it holds the watermark at (`None`: not known yet).
    pub(super) progress: Option<i64>,
    /// It is idle ([`is_idle`]).
    pub(super) idle: bool,
}

/// The outcome of one activation's watermark step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Advance {
    /// What the worker announces: the least progress of its active partitions (`None`: every
    /// partition is idle or finished).
    pub(super) mine: Option<i64>,
    /// The capability's next time (it moves only if this is later than the current one).
    pub(super) next: u64,
    /// Every partition has finished: the capabilities go.
    pub(super) finished: bool,
}

/// The watermark step: from the live partitions `live`, the held capability `cap`, the least
/// progress announced by the other active workers, and the pending checkpoint barrier.
pub(super) fn advance(
    live: &[Seen],
    cap: u64,
    slowest_other: Option<i64>,
    barrier: Option<u64>,
    g: Granularity,
) -> Advance {
    let mut active = live.iter().filter(|p| !p.idle).peekable();
    let mine = if active.peek().is_none() {
        None
    } else if live.iter().any(|p| !p.idle && p.progress.is_none()) {
        Some(cap as i64) // a partition that has not produced yet holds the watermark
    } else {
        active.filter_map(|p| p.progress).min()
    };
    // All idle: follow the active workers; if there are none, the furthest event time seen
    // here (nothing else can move the job forward).
    let next = mine
        .or(slowest_other)
        .or_else(|| live.iter().filter_map(|p| p.progress).max());
    let next = next.map_or(cap, |m| g.time(m, cap));
    Advance {
        mine,
        next: barrier.map_or(next, |b| next.min(b)),
        finished: live.is_empty(),
    }
}

/// Alignment: whether a worker that last announced `announced` is too far ahead of the slowest
/// active other worker to read now. Reading on would not close a window sooner (the job's
/// watermark is the least progress) but would open later windows downstream, whose state then
/// grows with the gap (in a catch-up from Kafka, one worker's partitions can run minutes of
/// event time ahead). The `stride`, how far one read moved a partition on, lets workers that
/// move alike read at the same time instead of in turns (one read of a Kafka backlog covers
/// minutes of event time). A worker with `shared` partitions never waits: those move together.
pub(super) fn ahead(
    announced: Option<Option<i64>>,
    shared: bool,
    slowest_other: Option<i64>,
    g: Granularity,
    stride: i64,
) -> bool {
    match (announced, slowest_other) {
        (Some(Some(mine)), Some(slowest)) if !shared => {
            mine > slowest
                .saturating_add(ALIGN_STEPS * g.ms())
                .saturating_add(stride)
        }
        _ => false,
    }
}

/// Alignment within a worker: whether a partition at `progress` is more than [`ALIGN_STEPS`]
/// progress steps ahead of `floor`, the least progress of the worker's partitions that read
/// records in this activation, after those reads (so their stride is in it). For the same
/// reason as [`ahead`]: one consumer's queues fill unevenly, and its partitions would drift
/// minutes of event time apart; every window between the slowest and the fastest stays open,
/// is split between flushes of the pre-aggregation and merged again downstream. A partition
/// with nothing to read sets no floor, so it never holds the others back.
pub(super) fn partition_ahead(progress: Option<i64>, floor: Option<i64>, g: Granularity) -> bool {
    match (progress, floor) {
        (Some(p), Some(f)) => p > f.saturating_add(ALIGN_STEPS * g.ms()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: i64 = 100;

    fn active(progress: i64) -> Seen {
        Seen {
            progress: Some(progress),
            idle: false,
        }
    }

    fn idle(progress: i64) -> Seen {
        Seen {
            progress: Some(progress),
            idle: true,
        }
    }

    /// Active, and has not produced yet.
    const FRESH: Seen = Seen {
        progress: None,
        idle: false,
    };

    /// Idle, and has not produced yet.
    const SILENT: Seen = Seen {
        progress: None,
        idle: true,
    };

    #[test]
    fn idle_after_exactly_the_timeout() {
        let t = Duration::from_secs(5);
        assert!(!is_idle(Duration::ZERO, t));
        assert!(!is_idle(t - Duration::from_millis(1), t));
        assert!(is_idle(t, t));
        assert!(is_idle(t * 2, t));
    }

    #[test]
    fn granularity_rounds_down_and_never_goes_back() {
        let g = Granularity::new(G);
        assert_eq!(g.floor(1_299), 1_200);
        assert_eq!(g.floor(1_200), 1_200);
        assert_eq!(g.floor(-1), -100);
        assert_eq!(g.time(1_299, 0), 1_200);
        assert_eq!(g.time(1_299, 1_500), 1_500);
        assert_eq!(g.time(-1, 0), 0);
        assert_eq!(Granularity::new(0), Granularity::new(1));
        assert_eq!(Granularity::new(-5).floor(7), 7);
    }

    /// (case, live partitions, capability, slowest other worker, barrier) and the expected
    /// (announced progress, next capability, finished).
    type Row<'a> = (
        &'a str,
        &'a [Seen],
        u64,
        Option<i64>,
        Option<u64>,
        (Option<i64>, u64, bool),
    );

    #[test]
    #[rustfmt::skip]
    fn the_watermark_table() {
        let rows: &[Row] = &[
            // The least progress of the active partitions, in whole steps.
            ("least active", &[active(1_299), active(2_050)], 0, None, None, (Some(1_299), 1_200, false)),
            ("granularity", &[active(1_250)], 1_100, None, None, (Some(1_250), 1_200, false)),
            ("never back", &[active(950)], 1_100, None, None, (Some(950), 1_100, false)),
            ("before the epoch", &[active(-50)], 0, None, None, (Some(-50), 0, false)),
            // A partition that has not produced yet holds the capability where it is.
            ("not produced yet", &[active(5_000), FRESH], 300, None, None, (Some(300), 300, false)),
            // An idle partition stops holding the watermark back.
            ("idle", &[active(5_000), idle(1_000)], 0, None, None, (Some(5_000), 5_000, false)),
            ("idle not produced", &[active(5_000), SILENT], 0, None, None, (Some(5_000), 5_000, false)),
            // The board matters only when every partition is idle.
            ("active ignores board", &[active(5_000)], 0, Some(1_000), None, (Some(5_000), 5_000, false)),
            // All idle: follow the slowest active other worker, even when it is behind ...
            ("all idle follow", &[idle(1_000), idle(3_000)], 0, Some(7_777), None, (None, 7_700, false)),
            ("all idle behind", &[idle(9_000)], 8_000, Some(500), None, (None, 8_000, false)),
            // ... or, with no active worker anywhere, the furthest event time seen here.
            ("all idle alone", &[idle(1_000), idle(3_050)], 0, None, None, (None, 3_000, false)),
            ("all idle nothing seen", &[SILENT], 200, None, None, (None, 200, false)),
            // Finished partitions are not live: with none left, the capabilities go.
            ("finished", &[], 700, None, None, (None, 700, true)),
            ("finished, others on", &[], 700, Some(900), None, (None, 900, true)),
            // Never past a pending checkpoint barrier.
            ("barrier", &[active(5_000)], 0, None, Some(4_000), (Some(5_000), 4_000, false)),
            ("barrier later", &[active(5_000)], 0, None, Some(6_000), (Some(5_000), 5_000, false)),
            ("barrier all idle", &[idle(5_000)], 0, Some(9_000), Some(4_000), (None, 4_000, false)),
        ];
        for (case, live, cap, slowest, barrier, (mine, next, finished)) in rows {
            let got = advance(live, *cap, *slowest, *barrier, Granularity::new(G));
            let want = Advance {
                mine: *mine,
                next: *next,
                finished: *finished,
            };
            assert_eq!(got, want, "{case}");
        }
    }

    /// (case, announced, shared, slowest other worker, stride) and whether the worker waits.
    type AlignRow<'a> = (&'a str, Option<Option<i64>>, bool, Option<i64>, i64, bool);

    #[test]
    #[rustfmt::skip]
    fn a_partition_waits_only_for_a_slower_one_that_had_records() {
        let g = Granularity::new(G);
        assert!(!partition_ahead(Some(10_000), None, g), "no floor: read");
        assert!(!partition_ahead(None, Some(0), g), "progress unknown: read");
        assert!(!partition_ahead(Some(200), Some(0), g), "within two steps");
        assert!(partition_ahead(Some(201), Some(0), g), "beyond two steps");
        assert!(!partition_ahead(Some(i64::MAX), Some(i64::MAX - 1), g));
    }

    #[test]
    fn the_alignment_table() {
        let rows: &[AlignRow] = &[
            // More than two steps ahead of the slowest active worker: wait.
            ("ahead", Some(Some(1_201)), false, Some(1_000), 0, true),
            (
                "two steps is not ahead",
                Some(Some(1_200)),
                false,
                Some(1_000),
                0,
                false,
            ),
            ("behind", Some(Some(500)), false, Some(1_000), 0, false),
            // The stride of one read widens the allowance.
            (
                "within a stride",
                Some(Some(1_500)),
                false,
                Some(1_000),
                300,
                false,
            ),
            (
                "beyond a stride",
                Some(Some(1_501)),
                false,
                Some(1_000),
                300,
                true,
            ),
            // No active other worker (all idle or finished announce nothing): no one to wait for.
            (
                "no one to wait for",
                Some(Some(9_999)),
                false,
                None,
                0,
                false,
            ),
            // Nothing announced yet, or all idle here.
            ("not announced", None, false, Some(0), 0, false),
            ("all idle here", Some(None), false, Some(0), 0, false),
            // Shared partitions move together.
            ("shared", Some(Some(9_999)), true, Some(0), 0, false),
            // No overflow at the edges of event time.
            (
                "saturates",
                Some(Some(i64::MAX)),
                false,
                Some(i64::MAX - 1),
                i64::MAX,
                false,
            ),
        ];
        for (case, announced, shared, slowest, stride, want) in rows {
            let got = ahead(*announced, *shared, *slowest, Granularity::new(G), *stride);
            assert_eq!(got, *want, "{case}");
        }
    }
}
