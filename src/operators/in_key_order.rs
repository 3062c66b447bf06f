//! Per-key, in-window-order processing of result rows: the basis of the detectors that look
//! at previous windows (z-score, lag).
//!
//! Rows are exchanged by key, held until the frontier passes their time, and then handed to
//! the logic in (time, key, window) order, so each key sees its windows in order no matter how
//! they were distributed or batched.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::checkpoint::barrier::{self, Slot};
use std::collections::{BTreeMap, HashMap};

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use std::sync::Arc;

use crate::operators::state::StateMeter;
use crate::record::{Key, Row};

/// How far back `history` windows `slide_ms` apart reach: the `forget_ms` of a detector that
/// looks `history` windows back (`None`: windowless rows, kept).
pub(crate) fn span_of(history: usize, slide_ms: i64) -> Option<i64> {
    (slide_ms > 0).then(|| (history as i64).saturating_mul(slide_ms))
}

/// A detector's output row for `row`: its key (the first `key_len` values), then `extra`.
pub(crate) fn keyed_row(
    row: &Row,
    key_len: usize,
    analysis: u32,
    extra: impl IntoIterator<Item = crate::record::Value>,
) -> Row {
    let mut values = row.values[..key_len.min(row.values.len())].to_vec();
    values.extend(extra);
    Row {
        analysis,
        start: row.start,
        end: row.end,
        values,
        retract: false,
    }
}

/// Runs stateful logic over each key's rows in window order.
pub trait InKeyOrder<'scope> {
    /// Calls `logic(state, row, out)` for every row, per key (the first `key_len` columns) in
    /// window order; `state` starts as `S::default()` for each key, and starts again from the
    /// default when the key's previous row started more than `forget_ms` before this one (`None`:
    /// never). The state of such a key is dropped without waiting for it to come back, so a key
    /// seen once costs nothing after `forget_ms` of event time, and results are the same as if
    /// it had been kept.
    ///
    /// ```
    /// use timely::dataflow::operators::{ToStream, Capture, capture::Event};
    /// use logflow::operators::in_key_order::InKeyOrder;
    /// use logflow::record::{Row, Value};
    ///
    /// // Number each key's windows.
    /// let out = timely::example(|scope| {
    ///     let rows = [(120, "a"), (60, "b"), (0, "a")].map(|(start, k)| Row {
    ///         analysis: 0, start, end: start + 60, values: vec![Value::Str(k.into())], retract: false,
    ///     });
    ///     rows.to_stream(scope)
    ///         .in_key_order(1, None, |seen: &mut i64, mut row: Row, out: &mut Vec<Row>| {
    ///             *seen += 1;
    ///             row.values.push(Value::Int(*seen));
    ///             out.push(row);
    ///         })
    ///         .capture()
    /// });
    /// let mut rows: Vec<_> = out.try_iter().flat_map(|e| match e { Event::Messages(_, d) => d, _ => vec![] }).map(|r| (r.start, r.values)).collect();
    /// rows.sort_by_key(|r| r.0);
    /// assert_eq!(rows[0].1[1], Value::Int(1));
    /// assert_eq!(rows[2].1[1], Value::Int(2));
    /// ```
    fn in_key_order<S, F>(
        self,
        key_len: usize,
        forget_ms: Option<i64>,
        logic: F,
    ) -> StreamVec<'scope, u64, Row>
    where
        S: Default + Serialize + DeserializeOwned + 'static,
        F: FnMut(&mut S, Row, &mut Vec<Row>) + 'static;

    /// As [`InKeyOrder::in_key_order`], keeping `meter` at the number of keys with a state
    /// (for the state metrics).
    fn in_key_order_metered<S, F>(
        self,
        key_len: usize,
        forget_ms: Option<i64>,
        meter: Option<Arc<StateMeter>>,
        logic: F,
    ) -> StreamVec<'scope, u64, Row>
    where
        S: Default + Serialize + DeserializeOwned + 'static,
        F: FnMut(&mut S, Row, &mut Vec<Row>) + 'static;
}

impl<'scope> InKeyOrder<'scope> for StreamVec<'scope, u64, Row> {
    fn in_key_order<S, F>(
        self,
        key_len: usize,
        forget_ms: Option<i64>,
        logic: F,
    ) -> StreamVec<'scope, u64, Row>
    where
        S: Default + Serialize + DeserializeOwned + 'static,
        F: FnMut(&mut S, Row, &mut Vec<Row>) + 'static,
    {
        self.in_key_order_metered(key_len, forget_ms, None, logic)
    }

    fn in_key_order_metered<S, F>(
        self,
        key_len: usize,
        forget_ms: Option<i64>,
        meter: Option<Arc<StateMeter>>,
        mut logic: F,
    ) -> StreamVec<'scope, u64, Row>
    where
        S: Default + Serialize + DeserializeOwned + 'static,
        F: FnMut(&mut S, Row, &mut Vec<Row>) + 'static,
    {
        let route = barrier::key_route(self.scope().peers());
        let exchange = Exchange::new(move |r: &Row| route.key_worker(r.key(key_len)));
        let slot = Slot::register("InKeyOrder");
        self.unary_frontier(exchange, "InKeyOrder", move |_, _| {
            // Empty at a checkpoint barrier: every row before it was processed.
            let mut pending: crate::operators::Pending<Row> = BTreeMap::new();
            let mut states: Aging<S> = Aging {
                states: slot
                    .as_ref()
                    .and_then(|s| s.restore_keyed())
                    .unwrap_or_default(),
                forget_ms,
                latest: i64::MIN,
                swept: i64::MIN,
            };
            let mut out = Vec::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| crate::operators::stash(&mut pending, &cap, data));
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (cap, mut rows) = entry.remove();
                    rows.sort_by(|a, b| (a.key(key_len), a.start).cmp(&(b.key(key_len), b.start)));
                    for row in rows {
                        let state = states.state(row.key(key_len), row.start);
                        logic(state, row, &mut out);
                    }
                    states.sweep();
                    if !out.is_empty() {
                        output.session(&cap).give_iterator(out.drain(..));
                    }
                }
                if let Some(m) = &meter {
                    m.set(states.states.len());
                }
                if let Some((slot, epoch)) = barrier::due(&slot, frontier.frontier()) {
                    debug_assert!(pending.is_empty(), "rows at or after the barrier");
                    slot.save(epoch, &states.states);
                }
            }
        })
    }
}

/// A meter for a detector's per-key states of type `S` (of analysis `analysis`, keyed by
/// `key_len` columns), each holding `heap` bytes besides its inline size.
pub fn history_meter<S>(analysis: u32, key_len: usize, heap: usize) -> Arc<StateMeter> {
    let per_key = std::mem::size_of::<(Key, (i64, S))>()
        + key_len * std::mem::size_of::<crate::record::Value>()
        + heap
        + 1;
    StateMeter::register_sized(&[analysis as usize], per_key)
}

/// Per-key states that a key without rows for more than `forget_ms` of event time loses.
struct Aging<S> {
    /// Each key's state with the start of its latest row.
    states: HashMap<Key, (i64, S)>,
    forget_ms: Option<i64>,
    /// The latest row start seen, and the one at which states were last swept.
    latest: i64,
    swept: i64,
}

impl<S: Default> Aging<S> {
    /// The state of `key` for its row starting at `start` (rows come in window order per key):
    /// a fresh one if the key's previous row is more than `forget_ms` back.
    fn state(&mut self, key: &[crate::record::Value], start: i64) -> &mut S {
        self.latest = self.latest.max(start);
        if !self.states.contains_key(key) {
            self.states.insert(key.to_vec(), (start, S::default()));
        }
        let Some((seen, state)) = self.states.get_mut(key) else {
            unreachable!("inserted above")
        };
        if self
            .forget_ms
            .is_some_and(|f| start.saturating_sub(*seen) > f)
        {
            *state = S::default();
        }
        *seen = start;
        state
    }

    /// Drops the states [`Aging::state`] would start afresh anyway, at most once per
    /// `forget_ms` of event time (each sweep is O(keys)).
    fn sweep(&mut self) {
        let Some(f) = self.forget_ms else { return };
        if self.latest.saturating_sub(self.swept) > f {
            let latest = self.latest;
            self.states
                .retain(|_, (seen, _)| latest.saturating_sub(*seen) <= f);
            self.swept = latest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Value;

    fn key(i: u64) -> Vec<Value> {
        vec![Value::Int(i as i64)]
    }

    #[test]
    fn a_key_absent_longer_than_forget_starts_afresh() {
        let mut a: Aging<u32> = Aging {
            states: HashMap::new(),
            forget_ms: Some(120),
            latest: i64::MIN,
            swept: i64::MIN,
        };
        *a.state(&key(1), 0) += 1;
        *a.state(&key(1), 60) += 1;
        assert_eq!(*a.state(&key(1), 180), 2, "120 back: still remembered");
        assert_eq!(*a.state(&key(1), 301), 0, "121 back: forgotten");
    }

    #[test]
    fn a_flood_of_keys_seen_once_is_swept_so_the_states_stay_bounded() {
        let mut a: Aging<u32> = Aging {
            states: HashMap::new(),
            forget_ms: Some(600),
            latest: i64::MIN,
            swept: i64::MIN,
        };
        let mut most = 0;
        // 1,000 new keys per 60 s window, each seen once, for 100 windows.
        for w in 0..100i64 {
            for k in 0..1_000u64 {
                *a.state(&key(w as u64 * 1_000 + k), w * 60) += 1;
            }
            // A key seen in every window is never lost.
            *a.state(&key(u64::MAX), w * 60) += 1;
            a.sweep();
            most = most.max(a.states.len());
        }
        // At most the keys of the 11 windows within 600 ms plus the ones since the last sweep.
        assert!(most <= 22 * 1_000 + 1, "{most} states held");
        assert_eq!(*a.state(&key(u64::MAX), 100 * 60), 100);
        // Without forgetting, every key stays.
        let mut keep: Aging<u32> = Aging {
            states: HashMap::new(),
            forget_ms: None,
            latest: i64::MIN,
            swept: i64::MIN,
        };
        for k in 0..5_000u64 {
            keep.state(&key(k), k as i64 * 60);
            keep.sweep();
        }
        assert_eq!(keep.states.len(), 5_000);
    }
}
