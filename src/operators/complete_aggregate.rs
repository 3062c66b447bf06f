//! Complete output mode: a running aggregate per key (no window), and at each trigger the
//! whole result table, as Spark's `outputMode("complete")`.
//!
//! Partials stamped before a trigger instant `T` (a multiple of the trigger interval of
//! event-time, or with format `text` processing-time, progress) are merged once the frontier
//! reaches `T`; then every key's row is emitted at time `T` (its `as_of`). A trigger without
//! new data emits nothing, as Spark skips empty micro-batches. The table lives on one worker
//! (worker 0), so each emission is the whole table, consistently: complete mode is for small
//! result tables, which it rewrites in full at every trigger.

use std::collections::HashMap;
use std::rc::Rc;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use crate::agg::aggregate::Acc;
use crate::checkpoint::barrier::{self, Slot};
use crate::operators::pre_aggregate::{Partial, PreAggregate};
use crate::operators::state::StateMeter;
use crate::operators::window_aggregate::Closed;
use crate::record::{Event, Key};
use crate::spec::plan::AggNode;

/// The next trigger instant strictly after time `t`.
pub fn next_trigger(t: u64, trigger: u64) -> u64 {
    let trigger = trigger.max(1);
    (t / trigger).saturating_add(1).saturating_mul(trigger)
}

/// Running aggregates per key, emitted in full at each trigger.
pub trait CompleteAggregate<'scope> {
    /// Aggregates events per key of `node` (whose windows must be global), and at each trigger
    /// instant `T` after which new data arrived calls `emit` for every key with `start = end =
    /// T`; the items `emit` pushes are sent at time `T - 1` (so a sink writes them once
    /// the frontier reaches `T`).
    ///
    /// ```
    /// use std::rc::Rc;
    /// use timely::dataflow::operators::{ToStream, Capture, capture::Event as Msg};
    /// use timely::dataflow::StreamVec;
    /// use logflow::spec::plan::{AccSpec, AggFunc};
    /// use logflow::operators::complete_aggregate::CompleteAggregate;
    /// use logflow::time::window::Windows;
    /// use logflow::record::{Event, Field, Value};
    /// use logflow::spec::plan::AggNode;
    ///
    /// let out = timely::example(move |scope| {
    ///     let node = Rc::new(AggNode {
    ///         windows: Windows::global(),
    ///         hold_ms: 0,
    ///         filter: None,
    ///         keys: vec![Field::Service],
    ///         accs: vec![AccSpec { func: AggFunc::Count, arg: None }],
    ///         analyses: vec![],
    ///         update: false,
    ///         input: Default::default(),
    ///         explode: None,
    ///         complete: Some(10),
    ///     });
    ///     let events = ["a", "b", "a"].map(|s| Event { service: Some(s.into()), ..Event::default() });
    ///     let events: StreamVec<'_, u64, Event> = events.to_stream(scope);
    ///     events
    ///         .complete_aggregate(node, 10, |w, out: &mut Vec<(i64, Value, Value)>| {
    ///             out.push((w.start, w.key[0].clone(), w.values[0].clone()))
    ///         })
    ///         .capture()
    /// });
    /// let mut rows: Vec<_> = out.try_iter().flat_map(|e| match e { Msg::Messages(_, d) => d, _ => vec![] }).collect();
    /// rows.sort_by(|a, b| a.1.cmp(&b.1));
    /// assert_eq!(rows, vec![(10, Value::Str("a".into()), Value::Int(2)), (10, Value::Str("b".into()), Value::Int(1))]);
    /// ```
    fn complete_aggregate<D, F>(
        self,
        node: Rc<AggNode>,
        trigger: u64,
        emit: F,
    ) -> StreamVec<'scope, u64, D>
    where
        D: Clone + 'static,
        F: FnMut(Closed<'_>, &mut Vec<D>) + 'static;
}

impl<'scope> CompleteAggregate<'scope> for StreamVec<'scope, u64, Event> {
    fn complete_aggregate<D, F>(
        self,
        node: Rc<AggNode>,
        trigger: u64,
        emit: F,
    ) -> StreamVec<'scope, u64, D>
    where
        D: Clone + 'static,
        F: FnMut(Closed<'_>, &mut Vec<D>) + 'static,
    {
        self.pre_aggregate(Rc::clone(&node))
            .complete_aggregate(node, trigger, emit)
    }
}

impl<'scope> CompleteAggregate<'scope> for StreamVec<'scope, u64, Partial> {
    fn complete_aggregate<D, F>(
        self,
        node: Rc<AggNode>,
        trigger: u64,
        mut emit: F,
    ) -> StreamVec<'scope, u64, D>
    where
        D: Clone + 'static,
        F: FnMut(Closed<'_>, &mut Vec<D>) + 'static,
    {
        debug_assert!(node.windows.is_global(), "complete mode has no windows");
        // The whole table on one worker: every emission is complete.
        // Versioned: saved partials carry their first window since sliding windows are
        // sliced, so a checkpoint of the earlier shape is refused, not misread.
        let slot = Slot::register("CompleteAggregate2");
        let meter = StateMeter::register(&node.analyses, node.keys.len(), node.accs.len());
        self.unary_frontier(
            Exchange::new(|_: &Partial| 0),
            "CompleteAggregate",
            move |initial, _| {
                // Partials by their time, each held with a capability for the time the table
                // including them is sent at (just before the next trigger): never earlier than
                // needed, so a checkpoint barrier between triggers is not held up.
                // Checkpointed: the table, and the pending partials with their send times.
                type Saved = (HashMap<Key, Vec<Acc>>, Vec<(u64, u64, Vec<Partial>)>);
                let (mut table, saved) = slot
                    .as_ref()
                    .and_then(|s| s.restore_gathered::<Saved>())
                    .unwrap_or_default();
                let mut pending: crate::operators::Pending<Partial> =
                    crate::operators::rehold(&initial, saved);
                drop(initial);
                let mut rows = Vec::new();
                let mut values = Vec::new();
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| {
                        let t = crate::operators::time_of(&cap);
                        let send = next_trigger(t, trigger).saturating_sub(1).max(t);
                        let (_, items) = pending
                            .entry(t)
                            .or_insert_with(|| (cap.delayed(&send, 0), Vec::new()));
                        for batch in data {
                            items.append(batch);
                        }
                    });
                    while let Some((&first, _)) = pending.first_key_value() {
                        let at = next_trigger(first, trigger);
                        if frontier.less_than(&at) {
                            break; // data before the trigger may still come
                        }
                        let mut cap = None;
                        while let Some(entry) = pending.first_entry() {
                            if *entry.key() >= at {
                                break;
                            }
                            let (c, parts) = entry.remove();
                            cap.get_or_insert(c);
                            for p in parts {
                                match table.get_mut(&p.key) {
                                    Some(accs) => {
                                        for (a, b) in accs.iter_mut().zip(p.accs) {
                                            a.merge(b);
                                        }
                                    }
                                    None => {
                                        table.insert(p.key, p.accs);
                                    }
                                }
                            }
                        }
                        let Some(cap) = cap else { break };
                        for (key, accs) in &table {
                            values.clear();
                            values.extend(accs.iter().cloned().map(Acc::finish));
                            emit(
                                Closed {
                                    start: at as i64,
                                    end: at as i64,
                                    key: key.clone(),
                                    values: &mut values,
                                },
                                &mut rows,
                            );
                        }
                        // Sent just before `at`, so the sink writes the table at the same
                        // frontier step (see `operators::closing`).
                        let send = at.saturating_sub(1).max(*cap.time());
                        output
                            .session(&cap.delayed(&send))
                            .give_iterator(rows.drain(..));
                    }
                    meter.set(table.len());
                    if let Some((slot, epoch)) = barrier::due(&slot, frontier.frontier()) {
                        slot.save(epoch, &(&table, crate::operators::held(&pending)));
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Value;
    use crate::time::window::Windows;
    use timely::container::CapacityContainerBuilder;
    use timely::dataflow::operators::{Capture, Input};
    use timely::dataflow::InputHandle;

    /// (keys, bytes) metered for analysis `a` in this process.
    fn metered(a: usize) -> Option<(u64, u64)> {
        crate::operators::state::per_analysis()
            .into_iter()
            .find(|(x, _, _)| *x == a)
            .map(|(_, k, b)| (k, b))
    }

    #[test]
    fn the_table_is_metered_per_key_while_the_operator_lives() {
        // Analysis 9201: no other test meters it.
        timely::execute_directly(|worker| {
            let node = Rc::new(AggNode {
                complete: Some(10_000),
                analyses: vec![9201],
                ..AggNode::count_by_service(Windows::global(), 0)
            });
            let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<Event>>>::new();
            let probe = timely::dataflow::ProbeHandle::new();
            worker.dataflow(|scope| {
                use timely::dataflow::operators::Probe;
                scope
                    .input_from(&mut input)
                    .complete_aggregate(node, 10_000, |w, out: &mut Vec<i64>| out.push(w.start))
                    .probe_with(&probe);
            });
            for s in ["a", "b", "c", "a"] {
                input.send(Event {
                    service: Some(s.into()),
                    ..Event::default()
                });
            }
            input.advance_to(20_000);
            worker.step_while(|| probe.less_than(input.time()));
            let (keys, bytes) = metered(9201).expect("metered");
            assert_eq!(keys, 3, "one group per key");
            assert!(bytes > keys, "{bytes} bytes");
        });
        assert_eq!(metered(9201), Some((0, 0)), "ended: nothing held");
    }

    #[test]
    fn trigger_instants() {
        assert_eq!(next_trigger(0, 10_000), 10_000);
        assert_eq!(next_trigger(9_999, 10_000), 10_000);
        assert_eq!(next_trigger(10_000, 10_000), 20_000);
    }

    #[test]
    fn each_trigger_with_new_data_emits_the_whole_table() {
        let out = timely::execute_directly(|worker| {
            let node = Rc::new(AggNode {
                complete: Some(10_000),
                ..AggNode::count_by_service(Windows::global(), 0)
            });
            let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<Event>>>::new();
            let out = worker.dataflow(|scope| {
                scope
                    .input_from(&mut input)
                    .complete_aggregate(node, 10_000, |w, out: &mut Vec<(i64, String)>| {
                        out.push((w.start, format!("{:?}={:?}", w.key[0], w.values[0])))
                    })
                    .capture()
            });
            let ev = |s: &str| Event {
                service: Some(s.into()),
                ..Event::default()
            };
            // Progress 0 and 5 s: both before the trigger at 10 s.
            input.send(ev("a"));
            input.advance_to(5_000);
            input.send(ev("b"));
            // 10 s .. 30 s: one more `a` at 20 s; nothing between 10 and 20 s.
            input.advance_to(20_000);
            input.send(ev("a"));
            input.advance_to(40_000);
            out
        });
        let mut rows: Vec<(i64, String)> = out
            .try_iter()
            .flat_map(|e| match e {
                timely::dataflow::operators::capture::Event::Messages(_, d) => d,
                _ => vec![],
            })
            .collect();
        rows.sort();
        let s = |v: &str| format!("{:?}", Value::Str(v.into()));
        assert_eq!(
            rows,
            vec![
                (10_000, format!("{}={:?}", s("a"), Value::Int(1))),
                (10_000, format!("{}={:?}", s("b"), Value::Int(1))),
                (30_000, format!("{}={:?}", s("a"), Value::Int(2))),
                (30_000, format!("{}={:?}", s("b"), Value::Int(1))),
            ]
        );
    }
}
