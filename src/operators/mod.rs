//! Reusable dataflow operators, each an extension trait on timely streams (as timely's own).
//!
//! - [`pre_aggregate::PreAggregate`]: worker-local partial aggregates per window and key.
//! - [`window_aggregate::WindowAggregate`]: event-time windows, exchange, merge, final rows.
//! - [`update_aggregate::UpdateAggregate`], [`update_aggregate::Upserts`]: update output mode
//!   as a differential collection of rows (early results, corrections).
//! - [`session_aggregate::SessionAggregate`]: session windows per key (append or update mode).
//! - [`complete_aggregate::CompleteAggregate`]: complete output mode (the whole result table
//!   at each trigger).
//! - [`in_key_order::InKeyOrder`]: per-key, in-window-order processing of result rows.
//! - [`key_limit::WindowAggregateCapped`]: window aggregation keeping at most `max_keys` keys
//!   per window.
//! - [`zscore::ZScore`], [`lag::Lag`]: detectors over previous windows.
//! - [`state::StateMeter`]: how much state the window merges hold (for metrics).
//!
//! They drive the accumulator kernel of [`crate::agg`] over windows of [`crate::time::window`].

pub mod complete_aggregate;
pub mod in_key_order;
pub mod intersect;
pub mod key_limit;
pub mod lag;
pub mod pre_aggregate;
pub mod session_aggregate;
pub mod state;
pub mod update_aggregate;
pub mod window_aggregate;
pub mod zscore;

use std::collections::BTreeMap;

use timely::dataflow::operators::{Capability, InputCapability};

/// The time of a message. Our operators always send with one capability, so a stamp is a
/// single time; for a multi-time stamp the least time is the safe reading (the frontier cannot
/// pass it while the message is in flight).
#[inline]
pub(crate) fn time_of(cap: &InputCapability<u64>) -> u64 {
    cap.least().copied().unwrap_or(0)
}

/// Batches waiting for the frontier to pass their time, with a capability for that time.
pub(crate) type Pending<D> = BTreeMap<u64, (Capability<u64>, Vec<D>)>;

/// Adds a stamped message's batches to `pending` under its time.
pub(crate) fn stash<'a, D: 'a>(
    pending: &mut Pending<D>,
    cap: &InputCapability<u64>,
    data: impl IntoIterator<Item = &'a mut Vec<D>>,
) {
    let t = time_of(cap);
    let (_, items) = pending
        .entry(t)
        .or_insert_with(|| (cap.delayed(&t, 0), Vec::new()));
    for batch in data {
        items.append(batch);
    }
}

/// The time at which results released once the frontier reaches `release` are sent: the time
/// just before it, so that the next operator (and the sink) can finish them at the same
/// frontier step instead of waiting for the frontier to pass `release` itself, which with a
/// coarse progress granularity is one whole step (e.g. a minute of event time) later. Never
/// before the input's own time, which a capability cannot go back to.
#[inline]
pub(crate) fn closing(release: u64, cap: &InputCapability<u64>) -> u64 {
    release.saturating_sub(1).max(time_of(cap))
}

/// Data held with a capability per key (windows by deadline, rows by release time), as a
/// checkpoint saves it: `(key, the capability's time, data)`.
pub(crate) fn held<K: Copy, V>(map: &BTreeMap<K, (Capability<u64>, V)>) -> Vec<(K, u64, &V)> {
    map.iter()
        .map(|(k, (cap, v))| (*k, *cap.time(), v))
        .collect()
}

/// The inverse of [`held`] for a restored operator: each capability made again from the
/// operator's initial one (at the least time, so any saved time can be held).
pub(crate) fn rehold<K: Ord, V>(
    initial: &Capability<u64>,
    saved: Vec<(K, u64, V)>,
) -> BTreeMap<K, (Capability<u64>, V)> {
    saved
        .into_iter()
        .map(|(k, t, v)| (k, (initial.delayed(&t), v)))
        .collect()
}
