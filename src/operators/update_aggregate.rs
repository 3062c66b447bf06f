//! Update output mode: windowed aggregation whose output is a differential collection of result
//! rows, changing as data arrives.
//!
//! Every (window, key) keeps its accumulators until the frontier passes the window's deadline
//! (`end + delay + allowed lateness`). At each timestamp where some of its partials arrived, the
//! rows are recomputed, and the change is a retraction of the rows last emitted and an insertion
//! of the new ones at that time: early results, then corrections, are the same thing. Rows that
//! did not change cancel out (see [`Upserts`]). When the window's deadline passes, its state is
//! dropped and its last rows stand as final: a later event for it is late (decided at ingest).
//! Windowless nodes (`Windows::global`) keep one running state per key for the whole run.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::agg::aggregate::Acc;
use crate::checkpoint::barrier::{self, Slot};
use crate::operators::pre_aggregate::{Partial, PreAggregate};
use crate::operators::state::StateMeter;
use crate::operators::window_aggregate::Closed;
use crate::record::{Event, Key, Row};
use crate::spec::plan::AggNode;

#[derive(Serialize, Deserialize)]
struct WindowState<D> {
    accs: Vec<Acc>,
    /// The rows last emitted, to retract on the next change.
    rows: Vec<D>,
}

/// Windowed aggregation with early results and corrections.
pub trait UpdateAggregate<'scope>: Sized {
    /// Aggregates events over `node`'s windows; whenever a window's aggregates change at a
    /// timestamp, `emit` recomputes its rows and the collection changes by `-old +new` rows.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use timely::container::CapacityContainerBuilder;
    /// use timely::dataflow::InputHandle;
    /// use timely::dataflow::operators::{Input, Capture, capture::Event as Msg};
    /// use logflow::spec::plan::{AccSpec, AggFunc};
    /// use logflow::operators::update_aggregate::UpdateAggregate;
    /// use logflow::time::window::Windows;
    /// use logflow::record::{Event, Value};
    /// use logflow::spec::plan::AggNode;
    ///
    /// let out = timely::execute_directly(|worker| {
    ///     let node = Rc::new(AggNode {
    ///         windows: Windows::tumbling(60_000),
    ///         hold_ms: 60_000,
    ///         filter: None,
    ///         keys: vec![],
    ///         accs: vec![AccSpec { func: AggFunc::Count, arg: None }],
    ///         analyses: vec![],
    ///         update: true,
    ///         input: Default::default(),
    ///         explode: None,
    ///         complete: None,
    ///     });
    ///     let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<Event>>>::new();
    ///     let out = worker.dataflow(|scope| {
    ///         scope.input_from(&mut input)
    ///             .update_aggregate(node, |w, out: &mut Vec<Value>| out.push(w.values[0].clone()))
    ///             .inner
    ///             .capture()
    ///     });
    ///     // Two events read at progress 0, a third for the same window at progress 10 s.
    ///     let event = |ts| Event { timestamp: ts, ..Event::default() };
    ///     input.send(event(1_000));
    ///     input.send(event(2_000));
    ///     input.advance_to(10_000);
    ///     input.send(event(3_000));
    ///     out
    /// });
    /// let mut changes: Vec<_> = out.try_iter().flat_map(|e| match e { Msg::Messages(_, d) => d, _ => vec![] }).collect();
    /// changes.sort_by_key(|(_, t, r)| (*t, *r));
    /// assert_eq!(changes, vec![
    ///     (Value::Int(2), 0, 1),                                   // early result
    ///     (Value::Int(2), 10_000, -1), (Value::Int(3), 10_000, 1), // correction
    /// ]);
    /// ```
    fn update_aggregate<D, F>(self, node: Rc<AggNode>, emit: F) -> VecCollection<'scope, u64, D>
    where
        D: Clone + Serialize + DeserializeOwned + 'static,
        F: FnMut(Closed<'_>, &mut Vec<D>) + 'static,
    {
        self.update_aggregate_gauged(node, Rc::default(), emit)
    }

    /// As [`UpdateAggregate::update_aggregate`], keeping `open` at the number of (window, key)
    /// states this worker holds (it falls as windows pass their deadline).
    fn update_aggregate_gauged<D, F>(
        self,
        node: Rc<AggNode>,
        open: Rc<Cell<usize>>,
        emit: F,
    ) -> VecCollection<'scope, u64, D>
    where
        D: Clone + Serialize + DeserializeOwned + 'static,
        F: FnMut(Closed<'_>, &mut Vec<D>) + 'static;
}

impl<'scope> UpdateAggregate<'scope> for StreamVec<'scope, u64, Event> {
    fn update_aggregate_gauged<D, F>(
        self,
        node: Rc<AggNode>,
        open: Rc<Cell<usize>>,
        emit: F,
    ) -> VecCollection<'scope, u64, D>
    where
        D: Clone + Serialize + DeserializeOwned + 'static,
        F: FnMut(Closed<'_>, &mut Vec<D>) + 'static,
    {
        self.pre_aggregate(Rc::clone(&node))
            .update_aggregate_gauged(node, open, emit)
    }
}

/// Partials already pre-aggregated (by [`PreAggregate`] or at ingest) are exchanged by key and
/// merged.
impl<'scope> UpdateAggregate<'scope> for StreamVec<'scope, u64, Partial> {
    fn update_aggregate_gauged<D, F>(
        self,
        node: Rc<AggNode>,
        open: Rc<Cell<usize>>,
        mut emit: F,
    ) -> VecCollection<'scope, u64, D>
    where
        D: Clone + Serialize + DeserializeOwned + 'static,
        F: FnMut(Closed<'_>, &mut Vec<D>) + 'static,
    {
        let partials = self;
        let route = barrier::key_route(partials.scope().peers());
        let exchange = Exchange::new(move |p: &Partial| route.key_worker(&p.key));
        let slot = Slot::register("UpdateAggregate");
        let meter = StateMeter::register(&node.analyses, node.keys.len(), node.accs.len());
        partials
            .unary_frontier(exchange, "UpdateAggregate", move |_, _| {
                type State<D> = HashMap<(i64, Key), WindowState<D>>;
                // Windows to drop at each deadline.
                type Expiry = BTreeMap<u64, Vec<(i64, Key)>>;
                let (mut state, mut expiry): (State<D>, Expiry) = slot
                    .as_ref()
                    .and_then(|s| s.restore_keyed())
                    .unwrap_or_default();
                // Partials per time, applied in time order once the frontier passes the time
                // (a later time's partials must not show in an earlier time's rows). Empty at
                // a checkpoint barrier: nothing at or after it was sent.
                let mut pending: crate::operators::Pending<Partial> = BTreeMap::new();
                let mut rows = Vec::new();
                let mut values = Vec::new();
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| {
                        crate::operators::stash(&mut pending, &cap, data)
                    });
                    while let Some(entry) = pending.first_entry() {
                        let t = *entry.key();
                        if frontier.less_equal(&t) {
                            break;
                        }
                        let (cap, parts) = entry.remove();
                        let mut changed = HashSet::new();
                        for p in parts {
                            // Sliding: a slice's partial changes each window it feeds.
                            let mut fed = node.windows.starts_from(p.start, p.first).peekable();
                            let Partial {
                                mut key, mut accs, ..
                            } = p;
                            while let Some(start) = fed.next() {
                                let (key, accs) = if fed.peek().is_some() {
                                    (key.clone(), accs.clone())
                                } else {
                                    (std::mem::take(&mut key), std::mem::take(&mut accs))
                                };
                                let p = Partial {
                                    start,
                                    first: start,
                                    key,
                                    accs,
                                };
                                let id = (p.start, p.key);
                                match state.get_mut(&id) {
                                    Some(w) => {
                                        for (a, b) in w.accs.iter_mut().zip(p.accs) {
                                            a.merge(b);
                                        }
                                    }
                                    None => {
                                        if !node.windows.is_global() {
                                            let deadline = node.deadline(id.0).max(0) as u64;
                                            expiry.entry(deadline).or_default().push(id.clone());
                                        }
                                        state.insert(
                                            id.clone(),
                                            WindowState {
                                                accs: p.accs,
                                                rows: Vec::new(),
                                            },
                                        );
                                    }
                                }
                                changed.insert(id);
                            }
                        }
                        let mut updates = Vec::new();
                        for id in changed {
                            let Some(w) = state.get_mut(&id) else {
                                continue;
                            };
                            values.clear();
                            values.extend(w.accs.iter().cloned().map(Acc::finish));
                            emit(
                                Closed {
                                    start: id.0,
                                    end: id.0.saturating_add(node.windows.size),
                                    key: id.1,
                                    values: &mut values,
                                },
                                &mut rows,
                            );
                            updates.extend(w.rows.drain(..).map(|r| (r, t, -1isize)));
                            updates.extend(rows.iter().cloned().map(|r| (r, t, 1isize)));
                            w.rows.append(&mut rows);
                        }
                        if !updates.is_empty() {
                            output.session(&cap).give_iterator(updates.into_iter());
                        }
                    }
                    // State is released once no event can reach the window any more.
                    while let Some(entry) = expiry.first_entry() {
                        if frontier.less_than(entry.key()) {
                            break;
                        }
                        for id in entry.remove() {
                            state.remove(&id);
                        }
                    }
                    open.set(state.len());
                    meter.set(state.len());
                    if let Some((slot, epoch)) = barrier::due(&slot, frontier.frontier()) {
                        debug_assert!(pending.is_empty(), "partials at or after the barrier");
                        slot.save(epoch, &(&state, &expiry));
                    }
                }
            })
            .as_collection()
    }
}

/// Turns a collection of result rows into the rows an update-mode sink writes.
pub trait Upserts<'scope> {
    /// At each time, the rows that changed: a row inserted replaces the previous row with the
    /// same analysis, window and key (`key_len[analysis]` leading columns); a row only retracted
    /// becomes a tombstone (`retract = true`, holding the row it retracts). Rows retracted and
    /// re-inserted unchanged cancel.
    /// The input must hold every change of a (window, key) on one worker at a time, as
    /// [`UpdateAggregate`] produces it.
    fn upserts(self, key_len: Rc<Vec<usize>>) -> StreamVec<'scope, u64, Row>;
}

impl<'scope> Upserts<'scope> for VecCollection<'scope, u64, Row> {
    fn upserts(self, key_len: Rc<Vec<usize>>) -> StreamVec<'scope, u64, Row> {
        self.inner.unary_frontier(Pipeline, "Upserts", move |_, _| {
            // The changes of a time arrive in as many messages as the sender's buffer splits
            // them into: a retraction and its replacement may be in two, so a time's changes
            // are gathered until the frontier has passed it.
            let mut pending: crate::operators::Pending<(Row, u64, isize)> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| crate::operators::stash(&mut pending, &cap, data));
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (cap, batch) = entry.remove();
                    let mut changes: Vec<(Row, isize)> =
                        batch.into_iter().map(|(r, _, d)| (r, d)).collect();
                    differential_dataflow::consolidation::consolidate(&mut changes);
                    // The changes of one (analysis, start, key) adjacent: consolidation sorts
                    // whole rows, and a session's end moves, so another key's row with the
                    // same start can sort between its old row and its new one.
                    let id = |r: &Row| {
                        let k = key_len.get(r.analysis as usize).copied().unwrap_or(0);
                        (
                            r.analysis,
                            r.start,
                            r.values[..k.min(r.values.len())].to_vec(),
                        )
                    };
                    changes.sort_by_cached_key(|(r, _)| id(r));
                    let mut out: Vec<Row> = Vec::new();
                    let same = |a: &Row, b: &Row| {
                        let k = key_len.get(a.analysis as usize).copied().unwrap_or(0);
                        a.analysis == b.analysis && a.start == b.start && a.key(k) == b.key(k)
                    };
                    let mut i = 0;
                    while i < changes.len() {
                        let mut j = i + 1;
                        while j < changes.len() && same(&changes[i].0, &changes[j].0) {
                            j += 1;
                        }
                        let run = &changes[i..j];
                        match run.iter().find(|(_, d)| *d > 0) {
                            Some((r, _)) => out.push(r.clone()),
                            None => {
                                // The values last emitted stay: sinks write only the key of a
                                // tombstone, an alert's `resolved` record reports them.
                                let mut r = run[0].0.clone();
                                r.retract = true;
                                out.push(r);
                            }
                        }
                        i = j;
                    }
                    output.session(&cap).give_iterator(out.into_iter());
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Value;
    use crate::time::window::Windows;
    use timely::container::CapacityContainerBuilder;
    use timely::dataflow::operators::{Input, Inspect, Probe};
    use timely::dataflow::{InputHandle, ProbeHandle};

    /// Feeds `minutes` minutes of events for `keys` keys, one epoch per 10 s of event time, and
    /// returns the largest number of open (window, key) states seen and the number of changes.
    fn run(windows: Windows, hold_ms: i64, minutes: i64, keys: usize) -> (usize, usize) {
        timely::execute_directly(move |worker| {
            let node = Rc::new(AggNode {
                update: true,
                ..AggNode::count_by_service(windows, hold_ms)
            });
            let open: Rc<Cell<usize>> = Rc::default();
            let changes: Rc<Cell<usize>> = Rc::default();
            let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<Event>>>::new();
            let probe = ProbeHandle::new();
            let (o, c) = (Rc::clone(&open), Rc::clone(&changes));
            worker.dataflow(|scope| {
                scope
                    .input_from(&mut input)
                    .update_aggregate_gauged(node, o, |w, out: &mut Vec<Value>| {
                        out.push(w.values[0].clone())
                    })
                    .inner
                    .inspect(move |_| c.set(c.get() + 1))
                    .probe_with(&probe);
            });
            let mut peak = 0;
            for ms in (0..minutes * 60_000).step_by(10_000) {
                for k in 0..keys {
                    input.send(Event {
                        timestamp: ms + 1,
                        service: Some(format!("s{k}").into()),
                        ..Event::default()
                    });
                }
                input.advance_to(ms as u64 + 10_000);
                worker.step_while(|| probe.less_than(input.time()));
                peak = peak.max(open.get());
            }
            (peak, changes.get())
        })
    }

    #[test]
    fn window_state_is_released_after_the_deadline() {
        // 1-min windows held 2 min past their end: at most 4 windows per key are open at once
        // (the current one and those within end + hold), however long the run.
        let (short, _) = run(Windows::tumbling(60_000), 120_000, 10, 5);
        let (long, changes) = run(Windows::tumbling(60_000), 120_000, 200, 5);
        assert!(long <= 5 * 4, "{long} open states");
        assert_eq!(
            short, long,
            "state must not grow with the length of the run"
        );
        // Every epoch changes each key's current window: a retraction and an insertion, except
        // the first epoch of each window.
        assert_eq!(changes, 5 * (200 * 6 * 2 - 200));
    }

    #[test]
    fn open_windows_are_metered_for_the_state_metrics() {
        // Analysis 9202: no other test meters it.
        timely::execute_directly(|worker| {
            let node = Rc::new(AggNode {
                update: true,
                analyses: vec![9202],
                ..AggNode::count_by_service(Windows::tumbling(60_000), 60_000)
            });
            let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<Event>>>::new();
            let probe = ProbeHandle::new();
            worker.dataflow(|scope| {
                scope
                    .input_from(&mut input)
                    .update_aggregate(node, |w, out: &mut Vec<Value>| {
                        out.push(w.values[0].clone())
                    })
                    .inner
                    .probe_with(&probe);
            });
            // Two keys in the first window, one in the second.
            for (ms, s) in [(1, "a"), (2, "b"), (60_001, "a")] {
                input.send(Event {
                    timestamp: ms,
                    service: Some(s.into()),
                    ..Event::default()
                });
            }
            input.advance_to(70_000);
            worker.step_while(|| probe.less_than(input.time()));
            let of = || {
                crate::operators::state::per_analysis()
                    .into_iter()
                    .find(|(a, _, _)| *a == 9202)
            };
            let (_, keys, bytes) = of().expect("metered");
            assert_eq!(keys, 3);
            assert!(bytes > keys);
            // Past the first window's deadline (end + hold = 120 s): its two groups go.
            input.advance_to(130_000);
            worker.step_while(|| probe.less_than(input.time()));
            assert_eq!(of().map(|(_, k, _)| k), Some(1));
        });
    }

    #[test]
    fn windowless_state_is_one_per_key() {
        let (peak, _) = run(Windows::global(), 0, 30, 7);
        assert_eq!(peak, 7);
    }
}
