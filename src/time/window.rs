//! Event-time window assignment, aligned to the Unix epoch (like Spark's `window()`).
//!
//! A window is `[start, start + size)`; tumbling windows have `slide == size`. An event at `t`
//! belongs to every window whose start is a multiple of `slide` in `(t - size, t]`.
//!
//! Session windows (`Windows::session`) are not assigned here: an event goes to the
//! gap-wide, epoch-aligned cell containing it (two events of one cell are less than a gap
//! apart, so always in one session), and `operators::session_aggregate` joins the cells of a
//! key into sessions. Only lateness differs: an event is late for sessions when its own
//! session `[t, t + gap)` has closed.

use serde::{Deserialize, Serialize};

const GLOBAL_SPAN: i64 = 1 << 62;
const GLOBAL_START: i64 = -(1 << 61);

/// Tumbling or sliding windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Windows {
    /// Window length (ms).
    pub size: i64,
    /// A new window starts every `slide` ms (`size`: tumbling).
    pub slide: i64,
    /// Session windows with gap `size` (= `slide`): windows are the gap-wide cells events are
    /// pre-aggregated in, and an event is late when `t + gap + hold` has passed.
    #[serde(default)]
    pub session: bool,
}

impl Windows {
    /// Tumbling windows of `size` ms.
    pub fn tumbling(size: i64) -> Self {
        Windows {
            size,
            slide: size,
            session: false,
        }
    }

    /// Session windows: a key's events less than `gap` ms apart are one session.
    pub fn session(gap: i64) -> Self {
        Windows {
            size: gap,
            slide: gap,
            session: true,
        }
    }

    /// Windows of `size` ms starting every `slide` ms.
    pub fn sliding(size: i64, slide: i64) -> Self {
        Windows {
            size,
            slide,
            session: false,
        }
    }

    /// The one window of an analysis without `window` (running state per key, as Spark's
    /// `updateStateByKey`): it holds every event time within ±73 million years of the epoch,
    /// so it never closes and no event is late for it.
    pub fn global() -> Self {
        Windows {
            size: GLOBAL_SPAN,
            slide: GLOBAL_SPAN,
            session: false,
        }
    }

    /// One window over all time (analyses without `window`).
    pub fn is_global(&self) -> bool {
        self.slide == GLOBAL_SPAN
    }

    /// The latest window start containing `t`.
    #[inline]
    pub fn last_start(&self, t: i64) -> i64 {
        if self.is_global() {
            return GLOBAL_START;
        }
        t - t.rem_euclid(self.slide)
    }

    /// Starts of every window containing `t`, latest first.
    #[inline]
    pub fn starts(&self, t: i64) -> impl Iterator<Item = i64> {
        let last = self.last_start(t);
        let (size, slide) = (self.size, self.slide);
        (0..)
            .map(move |k| last - k * slide)
            .take_while(move |s| s + size > t)
    }

    /// Starts of the windows containing `t` whose deadline (end + `hold`) is after `progress`,
    /// i.e. windows that are still open at that event-time progress.
    #[inline]
    pub fn open_starts(&self, t: i64, hold: i64, progress: i64) -> impl Iterator<Item = i64> {
        let w = *self;
        self.starts(t)
            .take_while(move |s| w.end_of(t, *s) + hold > progress)
    }

    /// True when every window containing `t` has closed at `progress` (sessions: the
    /// session of `t` alone, `[t, t + gap)`, has).
    #[inline]
    pub fn is_late(&self, t: i64, hold: i64, progress: i64) -> bool {
        self.end_of(t, self.last_start(t)) + hold <= progress
    }

    /// The end that decides whether the window `start` is still open for an event at `t`:
    /// the window's, or for sessions the end of the event's own session.
    #[inline]
    pub fn end_of(&self, t: i64, start: i64) -> i64 {
        if self.session {
            t.saturating_add(self.size)
        } else {
            start + self.size
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_window_holds_everything_and_never_closes() {
        let w = Windows::global();
        for t in [i64::MIN / 8, -1, 0, 1_764_000_000_000, i64::MAX / 8] {
            assert_eq!(w.starts(t).collect::<Vec<_>>(), vec![GLOBAL_START]);
            assert!(!w.is_late(t, 600_000, i64::MAX / 4));
        }
        assert!(w.is_global() && !Windows::tumbling(60_000).is_global());
    }

    #[test]
    fn session_cells_are_gap_wide_and_lateness_is_the_events_own_session() {
        let w = Windows::session(60_000);
        assert_eq!(w.starts(119_999).collect::<Vec<_>>(), vec![60_000]);
        // [119.999 s, 179.999 s) closes at 179.999 s, not at the cell's end (120 s).
        assert!(!w.is_late(119_999, 0, 179_998));
        assert!(w.is_late(119_999, 0, 179_999));
        assert!(!w.is_late(119_999, 5_000, 184_998));
        assert_eq!(
            w.open_starts(119_999, 0, 150_000).collect::<Vec<_>>(),
            vec![60_000]
        );
        assert_eq!(w.open_starts(119_999, 0, 179_999).count(), 0);
    }

    #[test]
    fn tumbling_assigns_one_window() {
        let w = Windows::tumbling(60_000);
        assert_eq!(w.starts(0).collect::<Vec<_>>(), vec![0]);
        assert_eq!(w.starts(59_999).collect::<Vec<_>>(), vec![0]);
        assert_eq!(w.starts(60_000).collect::<Vec<_>>(), vec![60_000]);
        assert_eq!(w.starts(125_000).collect::<Vec<_>>(), vec![120_000]);
    }

    #[test]
    fn sliding_assigns_every_overlapping_window() {
        // 1 min sliding 30 s: two windows each.
        let w = Windows::sliding(60_000, 30_000);
        assert_eq!(w.starts(45_000).collect::<Vec<_>>(), vec![30_000, 0]);
        assert_eq!(w.starts(60_000).collect::<Vec<_>>(), vec![60_000, 30_000]);
        // 5 min sliding 2 min: 2 or 3 windows.
        let w = Windows::sliding(300_000, 120_000);
        assert_eq!(
            w.starts(250_000).collect::<Vec<_>>(),
            vec![240_000, 120_000, 0]
        );
        assert_eq!(
            w.starts(350_000).collect::<Vec<_>>(),
            vec![240_000, 120_000]
        );
        for t in (0..1_000_000).step_by(7_919) {
            for s in w.starts(t) {
                assert!(s <= t && t < s + 300_000 && s % 120_000 == 0);
            }
            let brute = (-10..=t / 120_000)
                .map(|k| k * 120_000)
                .filter(|s| *s <= t && t < s + 300_000)
                .count();
            assert_eq!(w.starts(t).count(), brute, "t={t}");
        }
    }

    #[test]
    fn open_windows_and_lateness() {
        let w = Windows::sliding(60_000, 30_000);
        // Event at 45 s is in [0,60) and [30,90); with hold 0, progress 60 s closes the first.
        assert_eq!(
            w.open_starts(45_000, 0, 59_999).collect::<Vec<_>>(),
            vec![30_000, 0]
        );
        assert_eq!(
            w.open_starts(45_000, 0, 60_000).collect::<Vec<_>>(),
            vec![30_000]
        );
        assert!(!w.is_late(45_000, 0, 89_999));
        assert!(w.is_late(45_000, 0, 90_000));
        assert!(!w.is_late(45_000, 300_000, 90_000));
    }
}
