//! `max_keys`: window aggregation that keeps at most so many group keys per window, the first
//! in key order, whatever the number of workers and processes; every other key is reported
//! (once per window) instead of holding state.
//!
//! Each worker's merge keeps the first `max_keys` keys it owns per window (see
//! [`crate::operators::window_aggregate::merge`]), so its state is bounded; the kept rows of a
//! window, at most `max_keys` per worker, then meet on one worker, which keeps the first
//! `max_keys` of them. A key beyond them on its own worker is beyond them overall too, so the
//! rows kept are those of the first `max_keys` keys of the whole window, exactly aggregated.

use std::rc::Rc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use crate::operators::pre_aggregate::{Partial, PreAggregate};
use crate::operators::window_aggregate::merge;
use crate::record::{Event, Key, Value};
use crate::spec::plan::AggNode;

/// A window's key under `max_keys`: kept with its finished aggregates, or overflowed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limited {
    /// The window's start (event time, ms).
    pub start: i64,
    /// Its end (exclusive).
    pub end: i64,
    /// The group key.
    pub key: Key,
    /// The node's finished aggregates; `None`: the key is beyond the first `max_keys`.
    pub values: Option<Vec<Value>>,
}

/// Windowed aggregation keeping at most `max_keys` keys per window.
pub trait WindowAggregateCapped<'scope> {
    /// [`crate::operators::window_aggregate::WindowAggregate`] for the first `max_keys` keys of
    /// each window (in key order); every other key of the window comes out once, with
    /// `values: None`, as soon as it is known to be beyond them.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use timely::dataflow::operators::{ToStream, Capture, capture::Event as Msg};
    /// use logflow::operators::key_limit::WindowAggregateCapped;
    /// use logflow::record::{Event, Field, Value};
    /// use logflow::spec::plan::{AccSpec, AggFunc, AggNode};
    /// use logflow::time::window::Windows;
    ///
    /// let out = timely::example(move |scope| {
    ///     let node = Rc::new(AggNode {
    ///         windows: Windows::tumbling(60_000),
    ///         hold_ms: 0,
    ///         filter: None,
    ///         keys: vec![Field::Service],
    ///         accs: vec![AccSpec { func: AggFunc::Count, arg: None }],
    ///         analyses: vec![],
    ///         update: false,
    ///         input: Default::default(),
    ///         explode: None,
    ///         complete: None,
    ///     });
    ///     let events: timely::dataflow::StreamVec<u64, Event> = ["c", "a", "b", "a"]
    ///         .map(|s| Event { timestamp: 1_000, service: Some(s.into()), ..Event::default() })
    ///         .to_stream(scope);
    ///     events
    ///         .window_aggregate_capped(node, 2)
    ///         .capture()
    /// });
    /// let mut rows: Vec<_> = out.try_iter()
    ///     .flat_map(|e| match e { Msg::Messages(_, d) => d, _ => vec![] })
    ///     .map(|l| (l.key[0].clone(), l.values))
    ///     .collect();
    /// rows.sort_by(|a, b| a.0.cmp(&b.0));
    /// assert_eq!(rows, vec![
    ///     (Value::Str("a".into()), Some(vec![Value::Int(2)])),
    ///     (Value::Str("b".into()), Some(vec![Value::Int(1)])),
    ///     (Value::Str("c".into()), None),
    /// ]);
    /// ```
    fn window_aggregate_capped(
        self,
        node: Rc<AggNode>,
        max_keys: usize,
    ) -> StreamVec<'scope, u64, Limited>;
}

impl<'scope> WindowAggregateCapped<'scope> for StreamVec<'scope, u64, Event> {
    fn window_aggregate_capped(
        self,
        node: Rc<AggNode>,
        max_keys: usize,
    ) -> StreamVec<'scope, u64, Limited> {
        self.pre_aggregate(Rc::clone(&node))
            .window_aggregate_capped(node, max_keys)
    }
}

impl<'scope> WindowAggregateCapped<'scope> for StreamVec<'scope, u64, Partial> {
    fn window_aggregate_capped(
        self,
        node: Rc<AggNode>,
        max_keys: usize,
    ) -> StreamVec<'scope, u64, Limited> {
        let size = node.windows.size;
        merge(
            self,
            node,
            Some(max_keys),
            |w, out: &mut Vec<Limited>| {
                out.push(Limited {
                    start: w.start,
                    end: w.end,
                    key: w.key,
                    values: Some(std::mem::take(w.values)),
                })
            },
            move |start, key, out: &mut Vec<Limited>| {
                out.push(Limited {
                    start,
                    end: start + size,
                    key,
                    values: None,
                })
            },
        )
        .first_keys(max_keys)
    }
}

/// The global cut: per window, the first `max_keys` kept keys of all workers.
trait FirstKeys<'scope> {
    fn first_keys(self, max_keys: usize) -> StreamVec<'scope, u64, Limited>;
}

impl<'scope> FirstKeys<'scope> for StreamVec<'scope, u64, Limited> {
    fn first_keys(self, max_keys: usize) -> StreamVec<'scope, u64, Limited> {
        // A window's rows meet on one worker (a hash: window starts share factors with the
        // number of workers).
        let route = crate::checkpoint::barrier::key_route(self.scope().peers());
        let exchange = Exchange::new(move |l: &Limited| route.key_worker(&[Value::Int(l.start)]));
        self.unary_frontier(exchange, "FirstKeys", move |_, _| {
            // No checkpointed state: a window's kept rows are all sent at its deadline, and
            // are gone from here once the frontier passes it.
            let mut pending: crate::operators::Pending<Limited> = Default::default();
            let mut passing = Vec::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| {
                    let mut kept = Vec::new();
                    for batch in data {
                        for l in batch.drain(..) {
                            if l.values.is_some() {
                                kept.push(l);
                            } else {
                                passing.push(l);
                            }
                        }
                    }
                    if !passing.is_empty() {
                        output.session(&cap).give_iterator(passing.drain(..));
                    }
                    if !kept.is_empty() {
                        crate::operators::stash(&mut pending, &cap, [&mut kept]);
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (cap, mut rows) = entry.remove();
                    cut(&mut rows, max_keys);
                    output.session(&cap).give_iterator(rows.into_iter());
                }
            }
        })
    }
}

/// Sorts `rows` by window and key and marks every key after a window's first `max_keys` as
/// overflowed.
fn cut(rows: &mut [Limited], max_keys: usize) {
    rows.sort_by(|a, b| (a.start, &a.key).cmp(&(b.start, &b.key)));
    let mut rank = 0;
    let mut window = None;
    for l in rows.iter_mut() {
        if window != Some(l.start) {
            window = Some(l.start);
            rank = 0;
        }
        rank += 1;
        if rank > max_keys {
            l.values = None;
        }
    }
}

#[cfg(test)]
mod tests;
