//! Local pre-aggregation: every batch of events at one timestamp becomes one partial aggregate
//! per (window, key), so only partials cross workers (as a combiner does in MapReduce).

use std::rc::Rc;

use hashbrown::HashTable;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use crate::operators::aggregate::Acc;
use crate::record::{Event, Key, Value, ValueRef};
use crate::spec::plan::AggNode;

/// A partial aggregate of one window and key, as exchanged between workers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Partial {
    pub start: i64,
    pub key: Key,
    pub accs: Vec<Acc>,
}

/// Groups events by a node's windows and keys, worker-locally.
pub trait PreAggregate<'scope> {
    /// One [`Partial`] per (window, key) per timestamp, for the windows of `node` still open at
    /// that timestamp (an event's time is its partition's event-time progress, see
    /// `runtime::ingest`); events failing the node's filter are dropped.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use timely::dataflow::operators::{ToStream, Capture, capture::Event as Msg};
    /// use logflow::operators::aggregate::{AccSpec, AggFunc};
    /// use logflow::operators::pre_aggregate::PreAggregate;
    /// use logflow::operators::window::Windows;
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
    ///     let events = (0..3).map(|i| Event { timestamp: 30_000 * i, service: Some("api".into()), ..Event::default() });
    ///     events.to_stream(scope).pre_aggregate(node).capture()
    /// });
    /// let mut counts: Vec<_> = out.try_iter()
    ///     .flat_map(|e| match e { Msg::Messages(_, d) => d, _ => vec![] })
    ///     .map(|p| (p.start, p.accs[0].clone().finish()))
    ///     .collect();
    /// counts.sort();
    /// assert_eq!(counts, vec![(0, Value::Int(2)), (60_000, Value::Int(1))]);
    /// ```
    fn pre_aggregate(self, node: Rc<AggNode>) -> StreamVec<'scope, u64, Partial>;
}

impl<'scope> PreAggregate<'scope> for StreamVec<'scope, u64, Event> {
    fn pre_aggregate(self, node: Rc<AggNode>) -> StreamVec<'scope, u64, Partial> {
        self.unary(Pipeline, "PreAggregate", move |_, _| {
            let mut table = GroupTable::new(node);
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let progress = crate::operators::time_of(&cap) as i64;
                    for batch in data {
                        for ev in batch.iter() {
                            table.absorb(ev, progress);
                        }
                    }
                    output.session(&cap).give_iterator(table.drain());
                });
            }
        })
    }
}

/// The open (window, key) groups of one node, filled event by event and drained into
/// [`Partial`]s: the combiner behind [`PreAggregate`], also run inside the ingest operator,
/// where every node reads each event right after it is parsed, with no copy of it.
///
/// Lookups hash the event's key fields in place, so an event allocates nothing unless it starts
/// a new group (then its key is copied once).
pub struct GroupTable {
    node: Rc<AggNode>,
    /// Indices into `groups`, hashed by (window start, key).
    index: HashTable<usize>,
    groups: Vec<Partial>,
    hashes: Vec<u64>,
}

impl GroupTable {
    pub fn new(node: Rc<AggNode>) -> Self {
        GroupTable {
            node,
            index: HashTable::new(),
            groups: Vec::new(),
            hashes: Vec::new(),
        }
    }

    /// Folds `ev` into the node's windows that are still open at event-time `progress`
    /// (nothing when it fails the node's filter). A node with `explode` folds one row per
    /// element of its list instead (a scalar is a list of one, null an empty list), the
    /// element in its extra field; the filter applies to each row.
    #[inline]
    pub fn absorb(&mut self, ev: &Event, progress: i64) {
        let Some(x) = &self.node.explode else {
            return self.absorb_one(ev, progress);
        };
        let slot = x.slot;
        let items = match x.list.eval(ev) {
            Value::List(items) => items,
            Value::Null => return,
            v => vec![v],
        };
        let mut row = ev.clone();
        for item in items {
            row.set_extra(slot, item);
            self.absorb_one(&row, progress);
        }
    }

    #[inline]
    fn absorb_one(&mut self, ev: &Event, progress: i64) {
        let node = &*self.node;
        if let Some(f) = &node.filter {
            if !f.test(ev) {
                return;
            }
        }
        // One key field (the usual case) is read once, for the hash and the comparisons.
        let single = match node.keys.as_slice() {
            [f] => Some(ev.get(*f)),
            _ => None,
        };
        let mut key_hash = 0x9e37_79b9_7f4a_7c15u64;
        match single {
            Some(k) => key_hash = (key_hash ^ k.hash64()).wrapping_mul(0x0100_0000_01b3),
            None => {
                for f in &node.keys {
                    key_hash = (key_hash ^ ev.get(*f).hash64()).wrapping_mul(0x0100_0000_01b3);
                }
            }
        }
        let w = node.windows;
        if w.size == w.slide && !w.is_global() {
            // Tumbling: the one window containing the event (`open_starts` without the
            // iterator), if it is still open.
            let start = w.last_start(ev.timestamp);
            if start + w.size + node.hold_ms > progress {
                self.absorb_at(ev, start, key_hash, single);
            }
        } else {
            for start in w.open_starts(ev.timestamp, node.hold_ms, progress) {
                self.absorb_at(ev, start, key_hash, single);
            }
        }
    }

    /// Folds `ev` into its group of window `start` (`single`: the key when the node has one
    /// key field).
    #[inline]
    fn absorb_at(&mut self, ev: &Event, start: i64, key_hash: u64, single: Option<ValueRef<'_>>) {
        let node = &*self.node;
        let h = (key_hash ^ start as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // The table indexes by the low bits: fold the well-mixed high bits into them.
        let h = h ^ (h >> 29);
        let groups = &mut self.groups;
        let found = self.index.find(h, |&i| {
            let g = &groups[i];
            g.start == start
                && match (single, g.key.as_slice()) {
                    (Some(k), [v]) => v.eq_ref(k),
                    _ => g
                        .key
                        .iter()
                        .zip(&node.keys)
                        .all(|(v, f)| v.eq_ref(ev.get(*f))),
                }
        });
        let i = match found {
            Some(&i) => i,
            None => {
                let i = groups.len();
                groups.push(Partial {
                    start,
                    key: node.keys.iter().map(|f| ev.get(*f).to_owned()).collect(),
                    accs: node.accs.iter().map(|a| a.new_state()).collect(),
                });
                self.hashes.push(h);
                let hashes = &self.hashes;
                self.index.insert_unique(h, i, |&j| hashes[j]);
                i
            }
        };
        for (spec, acc) in node.accs.iter().zip(groups[i].accs.iter_mut()) {
            spec.update(acc, ev);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The partials gathered since the last drain.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Partial> {
        self.index.clear();
        self.hashes.clear();
        self.groups.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::aggregate::{AccSpec, AggFunc};
    use crate::operators::window::Windows;
    use crate::record::Field;
    use crate::spec::expr::parse;
    use crate::spec::plan::Explode;

    #[test]
    fn explode_folds_one_row_per_element_and_filters_each() {
        let list = parse("split(line)").unwrap().bind_event().unwrap();
        let filter = parse("word != 'the'")
            .unwrap()
            .bind_fields(&|n| {
                if n == "word" {
                    Some(Field::Extra(0))
                } else {
                    Field::from_name(n)
                }
            })
            .unwrap();
        let mut table = GroupTable::new(Rc::new(AggNode {
            windows: Windows::global(),
            hold_ms: 0,
            filter: Some(filter),
            keys: vec![Field::Extra(0)],
            accs: vec![AccSpec {
                func: AggFunc::Count,
                arg: None,
            }],
            analyses: vec![],
            update: true,
            input: Default::default(),
            explode: Some(Explode { list, slot: 0 }),
            complete: None,
        }));
        for line in ["the cat  the dog", "cat", ""] {
            let ev = Event {
                line: Some(line.into()),
                ..Event::default()
            };
            table.absorb(&ev, 0);
        }
        table.absorb(&Event::default(), 0); // no line: no rows
        let mut counts: Vec<(Key, Value)> = table
            .drain()
            .map(|p| (p.key, p.accs[0].clone().finish()))
            .collect();
        counts.sort_by(|a, b| a.0.cmp(&b.0));
        let word = |w: &str| vec![Value::Str(w.into())];
        assert_eq!(
            counts,
            vec![(word("cat"), Value::Int(2)), (word("dog"), Value::Int(1))]
        );
    }
}
