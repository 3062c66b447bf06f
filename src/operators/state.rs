//! How much state the stateful operators hold, for the `logflow_state_keys` and
//! `logflow_state_bytes` metrics: each window merge (append, update and complete mode,
//! sessions), each detector's per-key history and each intersection publishes, after every activation, how many
//! (window, key) groups or keys it holds and an estimate of their bytes; the metrics sum the
//! meters of this process per analysis. A meter counts while its operator lives; an analysis
//! whose operators have all ended (the job finished or stopped) holds no state and reports 0,
//! so its series stays until the process ends instead of vanishing from the last scrapes.
//!
//! The byte figure is an estimate from sizes known without walking the state: per group, the
//! map entry (window start, key vector, accumulator vector), the key's values and the
//! accumulators' inline size, and the map's control byte. Heap parts that vary (long strings
//! in keys, the sets of `count_distinct`, top-k lists, sketches) are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::agg::aggregate::Acc;
use crate::record::{Key, Value};

/// The state of one operator instance (one worker's share of one aggregation node).
#[derive(Debug)]
pub struct StateMeter {
    /// The plan's indices of the analyses computed from this state.
    pub analyses: Vec<usize>,
    groups: AtomicU64,
    bytes: AtomicU64,
    /// Bytes of one group (see the module's documentation).
    per_group: u64,
}

static METERS: Mutex<Vec<Weak<StateMeter>>> = Mutex::new(Vec::new());
/// Analyses that have had a meter in this process (bounded by the plan's analyses).
static SEEN: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

impl StateMeter {
    /// A meter for the state of a node computing `analyses` with `keys` group keys and
    /// `accs` accumulators, registered for [`per_analysis`].
    pub fn register(analyses: &[usize], keys: usize, accs: usize) -> Arc<StateMeter> {
        let per_group = std::mem::size_of::<(i64, Key)>()
            + keys * std::mem::size_of::<Value>()
            + std::mem::size_of::<Vec<Acc>>()
            + accs * std::mem::size_of::<Acc>()
            + 1;
        StateMeter::register_sized(analyses, per_group)
    }

    /// A meter for per-key state of `per_group` bytes each (a detector's history: the key, its
    /// state and what the state holds on the heap), registered for [`per_analysis`].
    pub fn register_sized(analyses: &[usize], per_group: usize) -> Arc<StateMeter> {
        let meter = Arc::new(StateMeter {
            analyses: analyses.to_vec(),
            groups: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            per_group: per_group as u64,
        });
        if let Ok(mut m) = METERS.lock() {
            m.retain(|w| w.strong_count() > 0);
            m.push(Arc::downgrade(&meter));
        }
        if let Ok(mut seen) = SEEN.lock() {
            seen.extend(analyses);
        }
        meter
    }

    /// The operator now holds `groups` open groups.
    pub fn set(&self, groups: usize) {
        let groups = groups as u64;
        self.groups.store(groups, Ordering::Relaxed);
        self.bytes
            .store(groups.saturating_mul(self.per_group), Ordering::Relaxed);
    }
}

/// (open groups, estimated bytes) per analysis index, summed over this process's live
/// meters; an analysis that never had a meter is absent, one whose meters all ended is 0.
pub fn per_analysis() -> Vec<(usize, u64, u64)> {
    let mut sums: BTreeMap<usize, (u64, u64)> = match SEEN.lock() {
        Ok(seen) => seen.iter().map(|&a| (a, (0, 0))).collect(),
        Err(_) => BTreeMap::new(),
    };
    if let Ok(m) = METERS.lock() {
        for meter in m.iter().filter_map(Weak::upgrade) {
            let (g, b) = (
                meter.groups.load(Ordering::Relaxed),
                meter.bytes.load(Ordering::Relaxed),
            );
            for &a in &meter.analyses {
                let s = sums.entry(a).or_default();
                s.0 += g;
                s.1 = s.1.saturating_add(b);
            }
        }
    }
    sums.into_iter().map(|(a, (g, b))| (a, g, b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meters_add_up_per_analysis_while_they_live_then_report_zero() {
        // Analyses 9001.. are used by no other test of this process.
        let a = StateMeter::register(&[9001, 9002], 1, 2);
        let b = StateMeter::register(&[9001], 1, 2);
        a.set(3);
        b.set(4);
        let of = |i: usize| per_analysis().into_iter().find(|(x, _, _)| *x == i);
        let per_group = a.per_group;
        assert!(per_group > 0);
        assert_eq!(of(9001), Some((9001, 7, 7 * per_group)));
        assert_eq!(of(9002), Some((9002, 3, 3 * per_group)));
        drop(b);
        assert_eq!(of(9001), Some((9001, 3, 3 * per_group)));
        drop(a);
        assert_eq!(
            of(9001),
            Some((9001, 0, 0)),
            "ended: no state, still a series"
        );
        assert_eq!(of(9002), Some((9002, 0, 0)));
        assert_eq!(of(9003), None, "never metered");

        let sized = StateMeter::register_sized(&[9004], 100);
        sized.set(5);
        assert_eq!(of(9004), Some((9004, 5, 500)));
    }
}
