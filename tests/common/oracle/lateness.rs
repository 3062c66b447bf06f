//! Lateness decided by the oracle (DESIGN.md section 3), from the input order alone.
//!
//! A source partition's watermark for an analysis is the largest event time read from it
//! before the event, minus the analysis's `delay`; a window closes when that watermark reaches
//! its end plus `allowed_lateness`, and an event all of whose windows have closed is late for
//! that analysis. One file is one partition, so the order of its lines fixes every event's
//! watermark, whatever the number of workers.

use super::expected::{open, window_starts};
use super::input::Ev;

/// The event-time rule of one windowed analysis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Win {
    pub size: i64,
    pub slide: i64,
    pub delay: i64,
    pub allowed: i64,
    /// Session windows of gap `size`, with the job's granularity (ms): an event's progress is
    /// rounded down to it (DESIGN.md section 3), which windows' deadlines are multiples of but
    /// a session's (`last + gap + delay + allowed`) is not.
    pub session: Option<i64>,
}

impl Win {
    pub const fn new(size: i64, slide: i64, delay: i64, allowed: i64) -> Win {
        Win {
            size,
            slide,
            delay,
            allowed,
            session: None,
        }
    }

    /// Sessions of `gap` in a job of `granularity`.
    pub const fn session(gap: i64, delay: i64, allowed: i64, granularity: i64) -> Win {
        Win {
            size: gap,
            slide: gap,
            delay,
            allowed,
            session: Some(granularity),
        }
    }

    /// For sessions: the event is late when its own session `[ts, ts + gap)` has closed at
    /// its progress (rounded down to the granularity). `None` for windows.
    pub fn session_late(&self, ev: &Ev) -> Option<bool> {
        let g = self.session?;
        Some(stamp(ev, g).is_some_and(|p| ev.ts + self.size + self.delay + self.allowed <= p))
    }
}

/// An event's time in a job of granularity `g`: the largest event time before it rounded
/// down to `g` (`None` for the first event).
pub fn stamp(ev: &Ev, g: i64) -> Option<i64> {
    ev.seen.map(|m| m - m.rem_euclid(g))
}

/// What one event missed: (analysis, the watermark it missed), sorted by analysis.
pub type Missed = Vec<(&'static str, i64)>;

/// For every event (in input order), the analyses it is late for: every window of the
/// analysis containing it has closed (see [`open`]). Empty when on time everywhere.
pub fn decide(events: &[Ev], analyses: &[(&'static str, Win)]) -> Vec<Missed> {
    events
        .iter()
        .map(|ev| {
            let mut missed: Missed = analyses
                .iter()
                .filter(|(_, w)| {
                    w.session_late(ev).unwrap_or_else(|| {
                        window_starts(ev.ts, w.size, w.slide)
                            .iter()
                            .all(|&s| !open(ev, s, w.size, w.delay + w.allowed))
                    })
                })
                .filter_map(|&(name, w)| Some((name, ev.seen? - w.delay)))
                .collect();
            missed.sort();
            missed
        })
        .collect()
}

/// Update mode's trigger when the spec sets none (README, "Output modes": a row "every
/// `trigger` of event-time progress, default 10 s").
pub const DEFAULT_TRIGGER: i64 = 10_000;

/// An event's update-mode step: the event-time progress when it arrives (the largest event
/// time before it) floored to the trigger (`None` for the first event, before every step).
pub fn step(ev: &Ev, trigger: i64) -> Option<i64> {
    stamp(ev, trigger)
}
