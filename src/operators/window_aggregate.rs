//! Event-time window aggregation: pre-aggregate locally, exchange partials by key, merge, and
//! emit each window once the frontier passes its deadline.
//!
//! The timely timestamp of an event is the event-time progress of its source partition when it
//! was read (see `runtime::ingest`); an event contributes to the windows whose deadline
//! (`end + delay + allowed lateness`) is after that progress. Such a window cannot have been
//! emitted yet, because the frontier cannot pass a time at which data is still in flight. So the
//! operator never needs to guess about lateness, and results do not depend on timing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

use crate::agg::aggregate::Acc;
use crate::checkpoint::barrier::{self, Slot};
use crate::operators::pre_aggregate::{Partial, PreAggregate};
use crate::operators::state::StateMeter;
use crate::record::{key_hash, Event, Key, Value};
use crate::spec::plan::AggNode;

/// A finished window: its start, key, and the node's aggregate results in slot order.
pub struct Closed<'a> {
    /// The window's start (event time, ms).
    pub start: i64,
    /// Its end (exclusive).
    pub end: i64,
    /// The group key.
    pub key: Key,
    /// The finished aggregates, in the node's order (taken by the callback as it likes).
    pub values: &'a mut Vec<Value>,
}

/// Windowed aggregation of events.
pub trait WindowAggregate<'scope> {
    /// Groups events by `node`'s windows and keys, computes its aggregates, and calls `emit` for
    /// every closed window; the items `emit` pushes are sent at the window's deadline.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use timely::dataflow::operators::{ToStream, Capture, capture::Event as Msg};
    /// use logflow::spec::plan::{AccSpec, AggFunc};
    /// use logflow::time::window::Windows;
    /// use logflow::operators::window_aggregate::WindowAggregate;
    /// use logflow::record::{Event, Field, Value};
    /// use logflow::spec::plan::AggNode;
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
    ///     let events = (0..3).map(|i| Event { timestamp: 1_000 * i, service: Some("api".into()), ..Event::default() });
    ///     let events: timely::dataflow::StreamVec<u64, Event> = events.to_stream(scope);
    ///     events
    ///         .window_aggregate(node, |w, out: &mut Vec<(i64, Value)>| out.push((w.start, w.values[0].clone())))
    ///         .capture()
    /// });
    /// let rows: Vec<_> = out.try_iter().flat_map(|e| match e { Msg::Messages(_, d) => d, _ => vec![] }).collect();
    /// assert_eq!(rows, vec![(0, Value::Int(3))]);
    /// ```
    fn window_aggregate<D, F>(self, node: Rc<AggNode>, emit: F) -> StreamVec<'scope, u64, D>
    where
        D: 'static,
        F: FnMut(Closed<'_>, &mut Vec<D>) + 'static;
}

impl<'scope> WindowAggregate<'scope> for StreamVec<'scope, u64, Event> {
    fn window_aggregate<D, F>(self, node: Rc<AggNode>, emit: F) -> StreamVec<'scope, u64, D>
    where
        D: 'static,
        F: FnMut(Closed<'_>, &mut Vec<D>) + 'static,
    {
        self.pre_aggregate(Rc::clone(&node))
            .window_aggregate(node, emit)
    }
}

/// Partials already pre-aggregated (by [`PreAggregate`] or at ingest) are exchanged by key and
/// merged.
impl<'scope> WindowAggregate<'scope> for StreamVec<'scope, u64, Partial> {
    fn window_aggregate<D, F>(self, node: Rc<AggNode>, emit: F) -> StreamVec<'scope, u64, D>
    where
        D: 'static,
        F: FnMut(Closed<'_>, &mut Vec<D>) + 'static,
    {
        if node.windows.slice().is_some() {
            return crate::operators::sliding::merge_slices(self, node, emit);
        }
        merge(self, node, None, emit, |_, _, _: &mut Vec<D>| {})
    }
}

/// The merge of partials into windows. With `max_keys`, each worker keeps per window only the
/// first `max_keys` keys (in key order) it owns: a key beyond them is handed to `overflow`
/// once, as soon as it is seen (sent at the time of the partial that brought it, so it is
/// written without waiting for the window), and holds nothing but its 8-byte hash until the
/// window closes. The first `max_keys` keys of a window overall are among the kept ones of the
/// workers that own them, which is what [`crate::operators::key_limit`] relies on.
pub(crate) fn merge<'scope, D, F, G>(
    partials: StreamVec<'scope, u64, Partial>,
    node: Rc<AggNode>,
    max_keys: Option<usize>,
    mut emit: F,
    mut overflow: G,
) -> StreamVec<'scope, u64, D>
where
    D: 'static,
    F: FnMut(Closed<'_>, &mut Vec<D>) + 'static,
    G: FnMut(i64, Key, &mut Vec<D>) + 'static,
{
    let route = barrier::key_route(partials.scope().peers());
    let exchange = Exchange::new(move |p: &Partial| route.key_worker(&p.key));
    // A capped merge also saves which keys overflowed: a differently shaped state.
    let slot = Slot::register(match max_keys {
        None => "WindowMerge",
        Some(_) => "WindowMergeCapped",
    });
    let meter = StateMeter::register(&node.analyses, node.keys.len(), node.accs.len());
    partials.unary_frontier(exchange, "WindowMerge", move |initial, _| {
        // Checkpointed: the open windows, each with its deadline and the time it is sent at,
        // and (capped) the hashes of the keys each window overflowed.
        let (saved, overflowed): (Vec<(u64, u64, Open)>, Overflowed) = match max_keys {
            None => (
                slot.as_ref()
                    .and_then(|s| s.restore_keyed())
                    .unwrap_or_default(),
                BTreeMap::new(),
            ),
            Some(_) => slot
                .as_ref()
                .and_then(|s| s.restore_keyed())
                .unwrap_or_default(),
        };
        let mut windows: BTreeMap<u64, (Capability<u64>, Open)> =
            crate::operators::rehold(&initial, saved);
        drop(initial);
        // Capped: each open window's kept keys (its groups' keys, in order) and overflowed ones.
        let mut bounds: BTreeMap<u64, Bound> = BTreeMap::new();
        if max_keys.is_some() {
            for (deadline, (_, open)) in &windows {
                bounds.entry(*deadline).or_default().kept =
                    open.keys().map(|(_, k)| k.clone()).collect();
            }
            for (deadline, hashes) in overflowed {
                bounds.entry(deadline).or_default().overflowed = hashes;
            }
        }
        let mut out = Vec::new();
        let mut spilled = Vec::new();
        let mut values = Vec::new();
        move |(input, frontier), output| {
            input.for_each_stamp(|cap, data| {
                for batch in data {
                    for p in batch.drain(..) {
                        // Sliding (only under `max_keys`: see `sliding`): a slice's partial
                        // goes to each window it feeds, so each window's keys are capped as
                        // tumbling windows' are.
                        let mut fed = node.windows.starts_from(p.start, p.first).peekable();
                        let Partial {
                            mut key, mut accs, ..
                        } = p;
                        while let Some(start) = fed.next() {
                            let p = if fed.peek().is_some() {
                                Partial {
                                    start,
                                    first: start,
                                    key: key.clone(),
                                    accs: accs.clone(),
                                }
                            } else {
                                Partial {
                                    start,
                                    first: start,
                                    key: std::mem::take(&mut key),
                                    accs: std::mem::take(&mut accs),
                                }
                            };
                            let deadline = node.deadline(p.start).max(0) as u64;
                            let (_, open) = windows.entry(deadline).or_insert_with(|| {
                                (
                                    cap.delayed(&crate::operators::closing(deadline, &cap), 0),
                                    HashMap::default(),
                                )
                            });
                            if let Some(max) = max_keys {
                                let bound = bounds.entry(deadline).or_default();
                                match bound.admit(max, &p.key) {
                                    Admit::Kept => {}
                                    Admit::Overflow => {
                                        if bound.overflowed.insert(key_hash(&p.key)) {
                                            overflow(p.start, p.key, &mut spilled);
                                        }
                                        continue;
                                    }
                                    Admit::Evicts(last) => {
                                        open.remove(&(p.start, last.clone()));
                                        bound.overflowed.insert(key_hash(&last));
                                        overflow(p.start, last, &mut spilled);
                                    }
                                }
                            }
                            match open.entry((p.start, p.key)) {
                                std::collections::hash_map::Entry::Vacant(v) => {
                                    v.insert(p.accs);
                                }
                                std::collections::hash_map::Entry::Occupied(mut o) => {
                                    for (a, b) in o.get_mut().iter_mut().zip(p.accs) {
                                        a.merge(b);
                                    }
                                }
                            }
                        }
                    }
                }
                if !spilled.is_empty() {
                    output.session(&cap).give_iterator(spilled.drain(..));
                }
            });
            // Emit every window whose deadline the frontier has passed.
            while let Some(entry) = windows.first_entry() {
                if frontier.less_than(entry.key()) {
                    break;
                }
                let deadline = *entry.key();
                let (cap, open) = entry.remove();
                bounds.remove(&deadline);
                for ((start, key), accs) in open {
                    values.clear();
                    values.extend(accs.into_iter().map(Acc::finish));
                    let end = start + node.windows.size;
                    emit(
                        Closed {
                            start,
                            end,
                            key,
                            values: &mut values,
                        },
                        &mut out,
                    );
                }
                if !out.is_empty() {
                    output.session(&cap).give_iterator(out.drain(..));
                }
            }
            if let Some((slot, epoch)) = barrier::due(&slot, frontier.frontier()) {
                let held = crate::operators::held(&windows);
                match max_keys {
                    None => slot.save(epoch, &held),
                    Some(_) => {
                        let hashes: BTreeMap<u64, &KeyHashes> =
                            bounds.iter().map(|(d, b)| (*d, &b.overflowed)).collect();
                        slot.save(epoch, &(held, hashes))
                    }
                }
            }
            meter.set(windows.values().map(|(_, open)| open.len()).sum());
        }
    })
}

// foldhash: the keys come from the input, but routing already spreads them, and SipHash's DoS
// resistance costs more than the merge itself.
type Open = HashMap<(i64, Key), Vec<Acc>, foldhash::fast::FixedState>;
type KeyHashes = HashSet<u64, foldhash::fast::FixedState>;
/// Per window deadline, the hashes of the keys it overflowed.
type Overflowed = BTreeMap<u64, KeyHashes>;

/// One open window's keys under `max_keys`.
#[derive(Default)]
pub(crate) struct Bound {
    /// The keys held, in order (at most `max_keys`).
    pub(crate) kept: BTreeSet<Key>,
    /// Hashes of the keys overflowed so far: each is reported once per window.
    overflowed: KeyHashes,
}

/// What a capped window does with a partial's key.
#[derive(Debug, PartialEq)]
pub(crate) enum Admit {
    /// Held (already, or now with room to spare).
    Kept,
    /// Beyond the first `max_keys`: not held.
    Overflow,
    /// Held, in place of the largest key held so far, which overflows.
    Evicts(Key),
}

impl Bound {
    pub(crate) fn admit(&mut self, max: usize, key: &Key) -> Admit {
        if self.kept.contains(key) {
            return Admit::Kept;
        }
        if self.kept.len() < max {
            self.kept.insert(key.clone());
            return Admit::Kept;
        }
        match self.kept.last() {
            Some(last) if key < last => {
                let evicted = self.kept.pop_last();
                self.kept.insert(key.clone());
                evicted.map_or(Admit::Kept, Admit::Evicts)
            }
            _ => Admit::Overflow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::window::Windows;
    use timely::dataflow::operators::capture::Event as Msg;
    use timely::dataflow::operators::vec::Input;
    use timely::dataflow::operators::{Capture, Probe};

    /// A window's rows are sent at the time just before its deadline, so that an operator
    /// downstream that finishes a time once the frontier has passed it (the sink) writes them
    /// as soon as the watermark reaches the deadline, not one progress step later.
    #[test]
    fn rows_are_complete_when_the_watermark_reaches_the_deadline() {
        let (send, recv) = std::sync::mpsc::channel();
        let send = std::sync::Mutex::new(send);
        timely::execute(timely::Config::thread(), move |worker| {
            let node = Rc::new(AggNode::count_by_service(Windows::tumbling(60_000), 5_000));
            let send = send.lock().map(|s| s.clone()).expect("sender");
            let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, events) = scope.new_input::<Event>();
                let rows = events.window_aggregate(node, |w, out: &mut Vec<i64>| out.push(w.start));
                rows.clone().capture_into(send);
                let (probe, _) = rows.probe();
                (input, probe)
            });
            for t in [1_000, 30_000, 59_999] {
                input.send(Event {
                    timestamp: t,
                    service: Some("api".into()),
                    ..Event::default()
                });
            }
            // The watermark reaches the deadline (end 60 s + hold 5 s) exactly.
            input.advance_to(65_000);
            worker.step_while(|| probe.less_than(input.time()));
        })
        .expect("timely");
        let rows: Vec<_> = recv
            .try_iter()
            .filter_map(|m| match m {
                Msg::Messages(t, rows) => Some((t.into_elements(), rows)),
                Msg::Progress(_) => None,
            })
            .collect();
        assert_eq!(rows, vec![(vec![64_999], vec![0])]);
    }
}
