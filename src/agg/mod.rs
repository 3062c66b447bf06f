//! The accumulator kernel: aggregate state that absorbs events, merges partials from other
//! workers and finishes into SQL results, and the interned keys and sets it is built on.
//! No timely here: the dataflow operators (a floor above) drive it.
//!
//! - [`aggregate`]: the accumulators ([`aggregate::Acc`]) of the spec's aggregate functions.
//! - [`fold`]: per-node folds, each aggregate's way of taking an event decided once.
//! - [`intern`]: dense ids for the values events are grouped and counted by.
//! - [`pair_set`]: the (group, id) pairs of a distinct count between two drains.
//! - [`value_set`]: the small-or-hashed set behind distinct counts and `collect_set`.
//! - [`exact`]: exact, order-independent float sums behind `sum`, `avg` and `stddev`.
//! - [`sketch`]: the quantile sketch behind `percentile`, `percentiles` and `median`.
//! - [`hll`]: the HyperLogLog behind `approx_count_distinct`.
//! - [`top_k`]: the heavy-hitter table behind `top_k`.

pub mod aggregate;
pub mod exact;
pub mod fold;
pub mod hll;
pub mod intern;
pub mod pair_set;
pub mod sketch;
pub mod top_k;
pub mod value_set;

#[cfg(test)]
pub(crate) mod test_util;
