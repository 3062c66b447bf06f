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

use crate::record::{key_hash, Key, Row};

/// Runs stateful logic over each key's rows in window order.
pub trait InKeyOrder<'scope> {
    /// Calls `logic(state, row, out)` for every row, per key (the first `key_len` columns) in
    /// window order; `state` starts as `S::default()` for each key.
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
    ///         .in_key_order(1, |seen: &mut i64, mut row: Row, out: &mut Vec<Row>| {
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
    fn in_key_order<S, F>(self, key_len: usize, logic: F) -> StreamVec<'scope, u64, Row>
    where
        S: Default + Serialize + DeserializeOwned + 'static,
        F: FnMut(&mut S, Row, &mut Vec<Row>) + 'static;
}

impl<'scope> InKeyOrder<'scope> for StreamVec<'scope, u64, Row> {
    fn in_key_order<S, F>(self, key_len: usize, mut logic: F) -> StreamVec<'scope, u64, Row>
    where
        S: Default + Serialize + DeserializeOwned + 'static,
        F: FnMut(&mut S, Row, &mut Vec<Row>) + 'static,
    {
        let exchange = Exchange::new(move |r: &Row| key_hash(r.key(key_len)));
        let slot = Slot::register("InKeyOrder");
        self.unary_frontier(exchange, "InKeyOrder", move |_, _| {
            // Empty at a checkpoint barrier: every row before it was processed.
            let mut pending: crate::operators::Pending<Row> = BTreeMap::new();
            let mut states: HashMap<Key, S> =
                slot.as_ref().and_then(|s| s.restore()).unwrap_or_default();
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
                        let key = row.key(key_len);
                        let state = match states.get_mut(key) {
                            Some(s) => s,
                            None => states.entry(key.to_vec()).or_default(),
                        };
                        logic(state, row, &mut out);
                    }
                    if !out.is_empty() {
                        output.session(&cap).give_iterator(out.drain(..));
                    }
                }
                if let Some((slot, epoch)) = barrier::due(&slot, frontier.frontier()) {
                    debug_assert!(pending.is_empty(), "rows at or after the barrier");
                    slot.save(epoch, &states);
                }
            }
        })
    }
}
