//! Local pre-aggregation: every batch of events at one timestamp becomes one partial aggregate
//! per (window, key), so only partials cross workers (as a combiner does in MapReduce).

use std::rc::Rc;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use crate::agg::aggregate::Acc;
use crate::agg::fold::Fold;
use crate::agg::intern::{Interner, Row, NULL};
use crate::agg::value_set::ValueSet;
use crate::record::value::mix;
use crate::record::{Event, Key, Value};
use crate::spec::expr::Expr;
use crate::spec::plan::AggFunc;
use crate::spec::plan::AggNode;

/// A partial aggregate of one window and key, as exchanged between workers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Partial {
    /// The window's start (event time, ms).
    pub start: i64,
    /// The group key.
    pub key: Key,
    /// One accumulator per aggregate of the node.
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
    /// use logflow::spec::plan::{AccSpec, AggFunc};
    /// use logflow::operators::pre_aggregate::PreAggregate;
    /// use logflow::time::window::Windows;
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
            let mut interner = Interner::default();
            let mut table = GroupTable::new(node, &mut interner);
            let mut row = Row::default();
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let progress = crate::operators::time_of(&cap) as i64;
                    for batch in data {
                        for ev in batch.iter() {
                            interner.read(ev, &mut row);
                            table.absorb(ev, progress, &row, &mut interner);
                        }
                    }
                    output.session(&cap).give_iterator(table.drain(&interner));
                    interner.clear();
                });
            }
        })
    }
}

/// How one aggregate of a node is fed.
#[derive(Clone, Debug)]
enum Feed {
    /// Its [`Fold`] with the event and its numbers.
    Fold(Fold),
    /// A distinct count or set of a field: its (group, id) pairs go to `pairs[set]`, the id
    /// read at `slot` of the event's ids, and become set members when the table is drained.
    Ids { set: usize, slot: usize },
}

/// The open (window, key) groups of one node, filled event by event and drained into
/// [`Partial`]s: the combiner behind [`PreAggregate`], also run inside the ingest operator,
/// where every node reads each event right after it is parsed, with no copy of it.
///
/// Groups are found by the [`Interner`] ids of the event's key fields, and distinct counts
/// record (group, id) pairs, so the nodes of a job share one hash of each field per event and
/// compare integers, not strings; values are copied only into a new group's key and, when the
/// table is drained, into its sets.
pub struct GroupTable {
    node: Rc<AggNode>,
    /// Where the node's key fields are in an event's ids.
    key_slots: Vec<usize>,
    feeds: Vec<Feed>,
    /// Indices into `groups`, hashed by (window start, key ids).
    index: HashTable<u32>,
    groups: Vec<Partial>,
    /// (hash, window start) of each group; its key ids are `kids[g * keys..(g + 1) * keys]`.
    heads: Vec<(u64, i64)>,
    kids: Vec<u32>,
    /// Per id-fed distinct aggregate: `group << 32 | id` of every member seen since the last
    /// drain.
    pairs: Vec<HashTable<u64>>,
    /// Drain's buckets: where each group's ids end, and the ids (kept for their allocation).
    scratch: (Vec<usize>, Vec<u32>),
    /// The fields of an exploded row.
    row: Row,
    /// Nodes with at most one key field: the last two groups each key id went to (`NONE` if
    /// none since the last drain), latest first. An event usually falls into the same window
    /// as the previous one of its key, or (out of order, near a window's end) the one before,
    /// so this finds its group without a hash lookup.
    last: Vec<[u32; 2]>,
    /// Tumbling windows: the window [start, end) the last event fell into, so that the next
    /// one in it needs no division.
    window: (i64, i64),
    /// The earliest window start of the groups since the last drain (`i64::MAX`: none).
    first_start: i64,
}

const NONE: u32 = u32::MAX;

impl GroupTable {
    /// A table for `node`, whose fields get slots in `interner` (the rows given to
    /// [`GroupTable::absorb`] must come from it).
    pub fn new(node: Rc<AggNode>, interner: &mut Interner) -> Self {
        let key_slots = node.keys.iter().map(|f| interner.slot_or_add(*f)).collect();
        let mut sets = 0;
        let feeds = node
            .accs
            .iter()
            .map(|a| match (&a.func, &a.arg) {
                (AggFunc::CountDistinct | AggFunc::CollectSet, Some(Expr::Field(f))) => {
                    sets += 1;
                    Feed::Ids {
                        set: sets - 1,
                        slot: interner.slot_or_add(*f),
                    }
                }
                _ => Feed::Fold(a.fold(|f| interner.num_slot_or_add(f))),
            })
            .collect();
        GroupTable {
            node,
            key_slots,
            feeds,
            index: HashTable::new(),
            groups: Vec::new(),
            heads: Vec::new(),
            kids: Vec::new(),
            pairs: (0..sets).map(|_| HashTable::new()).collect(),
            scratch: (Vec::new(), Vec::new()),
            row: Row::default(),
            last: Vec::new(),
            window: (0, 0),
            first_start: i64::MAX,
        }
    }

    /// Folds `ev` (whose fields as the nodes read them are `row`) into the node's windows that
    /// are still open at event-time `progress` (nothing when it fails the node's filter). A
    /// node with `explode` folds one row per element of its list instead (a scalar is a list
    /// of one, null an empty list), the element in its extra field; the filter applies to
    /// each row.
    #[inline]
    pub fn absorb(&mut self, ev: &Event, progress: i64, row: &Row, interner: &mut Interner) {
        let Some(x) = &self.node.explode else {
            return self.absorb_one(ev, progress, row, interner);
        };
        let slot = x.slot;
        let items = match x.list.eval(ev) {
            Value::List(items) => items,
            Value::Null => return,
            v => vec![v],
        };
        let mut exploded = ev.clone();
        let mut row = std::mem::take(&mut self.row);
        for item in items {
            exploded.set_extra(slot, item);
            interner.read(&exploded, &mut row);
            self.absorb_one(&exploded, progress, &row, interner);
        }
        self.row = row;
    }

    #[inline]
    fn absorb_one(&mut self, ev: &Event, progress: i64, row: &Row, interner: &Interner) {
        let node = &*self.node;
        let ids = &row.ids;
        if let Some(f) = &node.filter {
            if !f.test(ev) {
                return;
            }
        }
        let key_hash = match self.key_slots.as_slice() {
            [] => 0,
            [s] => u64::from(ids[*s]),
            slots => slots.iter().fold(0u64, |h, s| mix(h, u64::from(ids[*s]))),
        };
        let w = node.windows;
        if w.size == w.slide && !w.is_global() {
            // Tumbling: the one window containing the event (`open_starts` without the
            // iterator), if it is still open.
            let t = ev.timestamp;
            let start = if self.window.0 <= t && t < self.window.1 {
                self.window.0
            } else {
                let start = w.last_start(t);
                self.window = (start, start + w.size);
                start
            };
            if w.end_of(t, start) + node.hold_ms > progress {
                self.absorb_at(ev, start, key_hash, row, interner);
            }
        } else {
            for start in w.open_starts(ev.timestamp, node.hold_ms, progress) {
                self.absorb_at(ev, start, key_hash, row, interner);
            }
        }
    }

    /// Folds `ev` into its group of window `start`.
    #[inline]
    fn absorb_at(&mut self, ev: &Event, start: i64, key_hash: u64, row: &Row, interner: &Interner) {
        let ids = &row.ids;
        // With one key field (or none) the key hash is the key's id.
        let cached = match self.last.get(key_hash as usize) {
            Some(pair) if self.key_slots.len() <= 1 => pair
                .iter()
                .map(|&g| g as usize)
                .find(|&g| self.heads.get(g).is_some_and(|h| h.1 == start)),
            _ => None,
        };
        let g = match cached {
            Some(g) => g,
            None => self.find_or_add(start, key_hash, ids, interner),
        };
        let accs = self.groups[g].accs.iter_mut();
        for ((spec, acc), feed) in self.node.accs.iter().zip(accs).zip(&self.feeds) {
            match *feed {
                Feed::Fold(ref fold) => fold.apply(spec, acc, &row.nums, ev),
                Feed::Ids { set, slot } => {
                    let id = ids[slot];
                    if id != NULL {
                        let pair = (g as u64) << 32 | u64::from(id);
                        if let Entry::Vacant(v) =
                            self.pairs[set].entry(mix(pair, 0), |&p| p == pair, |&p| mix(p, 0))
                        {
                            v.insert(pair);
                        }
                    }
                }
            }
        }
    }

    /// The index of the group of window `start` and the key in `ids`, made if new.
    fn find_or_add(
        &mut self,
        start: i64,
        key_hash: u64,
        ids: &[u32],
        interner: &Interner,
    ) -> usize {
        let h = mix(key_hash, start as u64);
        let keys = self.key_slots.len();
        let (heads, kids, slots) = (&self.heads, &self.kids, &self.key_slots);
        let found = self.index.find(h, |&g| {
            let g = g as usize;
            heads[g].1 == start
                && slots
                    .iter()
                    .zip(&kids[g * keys..])
                    .all(|(s, k)| ids[*s] == *k)
        });
        let g = match found {
            Some(&g) => g as usize,
            None => {
                let g = self.groups.len();
                self.groups.push(Partial {
                    start,
                    key: slots
                        .iter()
                        .map(|s| interner.value(ids[*s]).1.clone())
                        .collect(),
                    accs: self.node.accs.iter().map(|a| a.new_state()).collect(),
                });
                self.heads.push((h, start));
                self.first_start = self.first_start.min(start);
                self.kids.extend(self.key_slots.iter().map(|s| ids[*s]));
                let heads = &self.heads;
                self.index
                    .insert_unique(h, g as u32, |&i| heads[i as usize].0);
                g
            }
        };
        if keys <= 1 {
            let code = key_hash as usize;
            if code >= self.last.len() {
                self.last.resize(code + 1, [NONE; 2]);
            }
            let pair = &mut self.last[code];
            *pair = [g as u32, pair[0]];
        }
        g
    }

    /// No group yet.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The progress at which the first of the windows gathered since the last drain closes
    /// (`None`: nothing gathered): their partials must be on their way before then.
    pub fn first_deadline(&self) -> Option<i64> {
        (!self.groups.is_empty()).then(|| self.node.deadline(self.first_start))
    }

    /// The partials gathered since the last drain, their sets filled from `interner` (the one
    /// their ids came from; it may be cleared once the partials are taken).
    pub fn drain(&mut self, interner: &Interner) -> std::vec::Drain<'_, Partial> {
        let (mut ends, mut ids) = std::mem::take(&mut self.scratch);
        for (a, feed) in self.feeds.iter().enumerate() {
            let Feed::Ids { set, .. } = *feed else {
                continue;
            };
            // The ids bucketed by group (a counting sort), so each group's set is made at its
            // final size and filled in one visit instead of at random across every group; its
            // members are distinct ids, so distinct values, pushed without a lookup.
            ends.clear();
            ends.resize(self.groups.len() + 1, 0usize);
            for &pair in self.pairs[set].iter() {
                if let Some(n) = ends.get_mut((pair >> 32) as usize + 1) {
                    *n += 1;
                }
            }
            for g in 1..ends.len() {
                ends[g] += ends[g - 1];
            }
            ids.clear();
            ids.resize(ends[self.groups.len()], 0u32);
            // `ends[g]` is where group g's next id goes, then where its ids end.
            for pair in self.pairs[set].drain() {
                if let Some(at) = ends.get_mut((pair >> 32) as usize) {
                    ids[*at] = pair as u32;
                    *at += 1;
                }
            }
            let mut start = 0;
            for (g, &end) in self.groups.iter_mut().zip(&ends) {
                if let Acc::Distinct(s) | Acc::Set(s) = &mut g.accs[a] {
                    *s = ValueSet::with_capacity(end - start);
                    for &id in &ids[start..end] {
                        let (h, v) = interner.value(id);
                        s.push_unique(*h, v.clone());
                    }
                }
                start = end;
            }
        }
        self.scratch = (ends, ids);
        self.index.clear();
        self.heads.clear();
        self.kids.clear();
        self.last.clear();
        self.first_start = i64::MAX;
        self.groups.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Field;
    use crate::spec::expr::parse;
    use crate::spec::plan::Explode;
    use crate::spec::plan::{AccSpec, AggFunc};
    use crate::time::window::Windows;

    /// Keys of two fields (one of them numeric), one and none, sliding and tumbling windows,
    /// nulls in keys and in distinct arguments, and the interner cleared between drains: the
    /// partials merged give what a plain computation over values gives.
    #[test]
    fn ids_group_and_count_as_values_do() {
        let (service, code) = (Field::Service, Field::StatusCode);
        // Two key fields; one (and none), where a key's last groups are found without a
        // lookup, with events falling into three windows each and into one.
        ids_agree(vec![service, code], Windows::sliding(60_000, 20_000));
        ids_agree(vec![service], Windows::sliding(60_000, 20_000));
        ids_agree(vec![service], Windows::tumbling(60_000));
        ids_agree(vec![], Windows::tumbling(60_000));
    }

    fn ids_agree(keys: Vec<Field>, windows: Windows) {
        use std::collections::{BTreeMap, BTreeSet};

        let field = |f| Some(Expr::Field(f));
        let node = Rc::new(AggNode {
            windows,
            keys: keys.clone(),
            accs: vec![
                AccSpec {
                    func: AggFunc::Count,
                    arg: None,
                },
                AccSpec {
                    func: AggFunc::CountDistinct,
                    arg: field(Field::UserId),
                },
                AccSpec {
                    func: AggFunc::CollectSet,
                    arg: field(Field::UserId),
                },
                AccSpec {
                    func: AggFunc::CountDistinct,
                    arg: field(Field::Service),
                },
            ],
            ..AggNode::count_by_service(Windows::global(), 0)
        });
        let mut interner = Interner::default();
        let mut table = GroupTable::new(Rc::clone(&node), &mut interner);
        let mut row = Row::default();
        let mut seed = 7u64;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let mut merged: BTreeMap<(i64, Key), Vec<Acc>> = BTreeMap::new();
        // (count, users, services) per (window, key).
        type Plain = (i64, BTreeSet<Value>, BTreeSet<Value>);
        let mut plain: BTreeMap<(i64, Key), Plain> = BTreeMap::new();
        for round in 0..3 {
            for _ in 0..2_000 {
                let ev = Event {
                    timestamp: 1_000_000 + next(300_000) as i64,
                    service: [None, Some("api"), Some("web"), Some("db")][next(4) as usize]
                        .map(Into::into),
                    status_code: [None, Some(200), Some(500)][next(3) as usize],
                    user_id: (next(5) > 0).then(|| format!("u{}", next(40)).into()),
                    ..Event::default()
                };
                interner.read(&ev, &mut row);
                table.absorb(&ev, 0, &row, &mut interner);
                // The windows computed here, not by the code under test: every start that is a
                // multiple of the slide in (t - size, t].
                let (size, slide) = (windows.size, windows.slide);
                let last = ev.timestamp.div_euclid(slide) * slide;
                let starts = (0..)
                    .map(|k| last - k * slide)
                    .take_while(|s| s + size > ev.timestamp);
                for start in starts {
                    let key = keys.iter().map(|f| ev.get(*f).to_owned()).collect();
                    let e = plain.entry((start, key)).or_default();
                    e.0 += 1;
                    if let Some(u) = &ev.user_id {
                        e.1.insert(Value::Str(u.clone()));
                    }
                    if let Some(s) = &ev.service {
                        e.2.insert(Value::Str(s.clone()));
                    }
                }
            }
            for p in table.drain(&interner) {
                match merged.get_mut(&(p.start, p.key.clone())) {
                    Some(accs) => accs.iter_mut().zip(p.accs).for_each(|(a, b)| a.merge(b)),
                    None => {
                        merged.insert((p.start, p.key), p.accs);
                    }
                }
            }
            if round < 2 {
                interner.clear();
            }
        }
        let got: BTreeMap<_, Vec<Value>> = merged
            .into_iter()
            .map(|(k, accs)| (k, accs.into_iter().map(Acc::finish).collect()))
            .collect();
        let want: BTreeMap<_, Vec<Value>> = plain
            .into_iter()
            .map(|(k, (n, users, services))| {
                let v = vec![
                    Value::Int(n),
                    Value::Int(users.len() as i64),
                    Value::List(users.into_iter().collect()),
                    Value::Int(services.len() as i64),
                ];
                (k, v)
            })
            .collect();
        assert_eq!(got.len(), want.len());
        assert_eq!(got, want);
    }

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
        let mut interner = Interner::default();
        let node = Rc::new(AggNode {
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
        });
        let mut table = GroupTable::new(node, &mut interner);
        let mut row = Row::default();
        let lines = ["the cat  the dog", "cat", ""].map(|l| Event {
            line: Some(l.into()),
            ..Event::default()
        });
        // The last event has no line: no rows.
        for ev in lines.iter().chain([&Event::default()]) {
            interner.read(ev, &mut row);
            table.absorb(ev, 0, &row, &mut interner);
        }
        let mut counts: Vec<(Key, Value)> = table
            .drain(&interner)
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
