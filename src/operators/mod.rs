//! Reusable dataflow operators, each an extension trait on timely streams (as timely's own).
//!
//! - [`pre_aggregate::PreAggregate`]: worker-local partial aggregates per window and key.
//! - [`window_aggregate::WindowAggregate`]: event-time windows, exchange, merge, final rows.
//! - [`update_aggregate::UpdateAggregate`], [`update_aggregate::Upserts`]: update output mode
//!   as a differential collection of rows (early results, corrections).
//! - [`in_key_order::InKeyOrder`]: per-key, in-window-order processing of result rows.
//! - [`zscore::ZScore`], [`lag::Lag`]: detectors over previous windows.
//! - [`aggregate`], [`window`]: the accumulators and window assignment they use.
//! - [`value_set`]: the small-or-hashed set behind distinct counts and `collect_set`.
//! - [`exact`]: exact, order-independent float sums behind `sum`, `avg` and `stddev`.

pub mod aggregate;
pub mod exact;
pub mod in_key_order;
pub mod intersect;
pub mod lag;
pub mod pre_aggregate;
pub mod update_aggregate;
pub mod value_set;
pub mod window;
pub mod window_aggregate;
pub mod zscore;

use timely::dataflow::operators::InputCapability;

/// The time of a message. Our operators always send with one capability, so a stamp is a
/// single time; for a multi-time stamp the least time is the safe reading (the frontier cannot
/// pass it while the message is in flight).
#[inline]
pub(crate) fn time_of(cap: &InputCapability<u64>) -> u64 {
    cap.least().copied().unwrap_or(0)
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
