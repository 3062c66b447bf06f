//! Local pre-aggregation: every batch of events at one timestamp becomes one partial aggregate
//! per (window, key), so only partials cross workers (as a combiner does in MapReduce).
//!
//! Sliding windows are sliced (stream slicing): an event is folded once, into the slice of
//! width `gcd(size, slide)` that holds it, not into each of the `size / slide` windows that
//! contain it; the merge combines a window from its slices.

use std::ops::Range;
use std::rc::Rc;

use hashbrown::HashTable;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use crate::agg::aggregate::Acc;
use crate::agg::fold::Fold;
use crate::agg::intern::{Interner, Rows, NULL};
use crate::agg::pair_set::PairSet;
use crate::agg::value_set::ValueSet;
use crate::record::value::mix;
use crate::record::{Event, Key, Value};
use crate::spec::expr::Expr;
use crate::spec::plan::AggFunc;
use crate::spec::plan::AggNode;

/// A partial aggregate of one window and key, as exchanged between workers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Partial {
    /// The window's start (event time, ms); sliding windows: the start of the slice.
    pub start: i64,
    /// Sliding windows: the earliest window the partial feeds, which are the windows
    /// containing its slice from this one on (those still open when its events were read:
    /// an event late for the earlier ones must not reach them). Otherwise `start`.
    pub first: i64,
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
            let mut rows = Rows::default();
            let mut times = Vec::new();
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let progress = crate::operators::time_of(&cap) as i64;
                    for batch in data {
                        let events: Vec<&Event> = batch.iter().collect();
                        rows.clear();
                        interner.read_all(&events, &mut rows);
                        times.clear();
                        times.resize(events.len(), progress);
                        let batch = Batch {
                            events: &events,
                            progress: &times,
                            rows: &rows,
                        };
                        table.absorb(&batch, 0..events.len(), &mut interner);
                    }
                    output.session(&cap).give_iterator(table.drain(&interner));
                    interner.clear();
                });
            }
        })
    }
}

/// A batch of events as the tables fold it: the events, the event-time progress each is
/// absorbed at, and their fields as the nodes read them (row `r` is `events[r]`).
#[derive(Clone, Copy)]
pub struct Batch<'a> {
    /// The events.
    pub events: &'a [&'a Event],
    /// The progress each event is absorbed at: only windows still open then take it.
    pub progress: &'a [i64],
    /// The events' ids and numbers, read by the interner the tables' slots come from.
    pub rows: &'a Rows,
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

/// The open (window, key) groups of one node, filled batch by batch and drained into
/// [`Partial`]s: the combiner behind [`PreAggregate`], also run inside the ingest operator,
/// where every node folds each block of events right after it is parsed, with no copy of them.
///
/// A batch is folded in two passes: first each event's group (or groups) is found, then each
/// aggregate folds every (event, group) pair in one loop, so how an aggregate folds is decided
/// once per batch rather than once per event, and the accumulators of a group lie side by side.
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
    /// Indices of groups, hashed by (window or slice start, first window, key ids).
    index: HashTable<u32>,
    /// (hash, start, first window) of each group; its key ids are
    /// `kids[g * keys..(g + 1) * keys]`, its key values `keys[g]`.
    heads: Vec<(u64, i64, i64)>,
    kids: Vec<u32>,
    keys: Vec<Key>,
    /// The groups' accumulators, the node's aggregates of each group in a row: aggregate `a`
    /// of group `g` is `accs[g * node.accs.len() + a]`.
    accs: Vec<Acc>,
    /// Per id-fed distinct aggregate: the (group, id) of every member seen since the last
    /// drain.
    pairs: Vec<PairSet>,
    /// Drain's buckets: where each group's ids end, and the ids (kept for their allocation).
    scratch: (Vec<usize>, Vec<u32>),
    /// (row, group) of every fold of the batch being absorbed (kept for its allocation).
    hits: Vec<(u32, u32)>,
    /// The fields of an exploded row.
    exploded: Rows,
    /// Nodes with at most one key field: the last two groups each key id went to (`NONE` if
    /// none since the last drain), latest first. An event usually falls into the same window
    /// as the previous one of its key, or (out of order, near a window's end) the one before,
    /// so this finds its group without a hash lookup.
    last: Vec<[u32; 2]>,
    /// Tumbling windows: the window [start, end) the last event fell into, so that the next
    /// one in it needs no division.
    window: (i64, i64),
    /// The earliest first window of the groups since the last drain (`i64::MAX`: none).
    first_start: i64,
    /// Sliding windows: the slice width (see [`crate::time::window::Windows::slice`]).
    slice: Option<i64>,
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
            slice: node.windows.slice(),
            node,
            key_slots,
            feeds,
            index: HashTable::new(),
            heads: Vec::new(),
            kids: Vec::new(),
            keys: Vec::new(),
            accs: Vec::new(),
            pairs: (0..sets).map(|_| PairSet::default()).collect(),
            scratch: (Vec::new(), Vec::new()),
            hits: Vec::new(),
            exploded: Rows::default(),
            last: Vec::new(),
            window: (0, 0),
            first_start: i64::MAX,
        }
    }

    /// Folds the events `range` of `batch` into the node's windows that are still open at
    /// each one's progress (nothing for one failing the node's filter). A node with `explode`
    /// folds one row per element of its list instead (a scalar is a list of one, null an empty
    /// list), the element in its extra field; the filter applies to each row.
    pub fn absorb(&mut self, batch: &Batch<'_>, range: Range<usize>, interner: &mut Interner) {
        let node = Rc::clone(&self.node);
        let Some(x) = &node.explode else {
            return self.absorb_rows(batch, range, interner);
        };
        let mut rows = std::mem::take(&mut self.exploded);
        for r in range {
            let (Some(ev), Some(&progress)) = (batch.events.get(r), batch.progress.get(r)) else {
                break;
            };
            let items = match x.list.eval(*ev) {
                Value::List(items) => items,
                Value::Null => continue,
                v => vec![v],
            };
            let mut exploded = (*ev).clone();
            for item in items {
                exploded.set_extra(x.slot, item);
                rows.clear();
                interner.read(&exploded, &mut rows);
                let events = [&exploded];
                let one = Batch {
                    events: &events,
                    progress: &[progress],
                    rows: &rows,
                };
                self.absorb_rows(&one, 0..1, interner);
            }
        }
        self.exploded = rows;
    }

    /// [`GroupTable::absorb`] of rows as they are: their groups first, then each aggregate
    /// over them.
    fn absorb_rows(&mut self, batch: &Batch<'_>, range: Range<usize>, interner: &Interner) {
        let node = Rc::clone(&self.node);
        let mut hits = std::mem::take(&mut self.hits);
        hits.clear();
        let w = node.windows;
        for r in range {
            let (Some(ev), Some(&progress)) = (batch.events.get(r), batch.progress.get(r)) else {
                break;
            };
            if let Some(f) = &node.filter {
                if !f.test(*ev) {
                    continue;
                }
            }
            let ids = batch.rows.ids(r);
            let id = |s: &usize| ids.get(*s).copied().unwrap_or(NULL);
            let key_hash = match self.key_slots.as_slice() {
                [] => 0,
                [s] => u64::from(id(s)),
                slots => slots.iter().fold(0u64, |h, s| mix(h, u64::from(id(s)))),
            };
            let row = r as u32;
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
                    hits.push((row, self.group(start, start, key_hash, ids, interner)));
                }
            } else if let Some(width) = self.slice {
                // Sliding: once, into the event's slice, for the windows still open.
                let t = ev.timestamp;
                if let Some(first) = w.first_open(t, node.hold_ms, progress) {
                    let start = t - t.rem_euclid(width);
                    hits.push((row, self.group(start, first, key_hash, ids, interner)));
                }
            } else {
                // Global and session windows: one window (cell) per event.
                for start in w.open_starts(ev.timestamp, node.hold_ms, progress) {
                    hits.push((row, self.group(start, start, key_hash, ids, interner)));
                }
            }
        }
        let n = node.accs.len();
        for (a, (spec, feed)) in node.accs.iter().zip(&self.feeds).enumerate() {
            match *feed {
                Feed::Fold(ref fold) => {
                    fold.fold_rows(spec, &hits, batch.rows, batch.events, &mut self.accs, n, a)
                }
                Feed::Ids { set, slot } => {
                    let Some(pairs) = self.pairs.get_mut(set) else {
                        continue;
                    };
                    for &(r, g) in &hits {
                        pairs.insert(g, batch.rows.id(r as usize, slot));
                    }
                }
            }
        }
        self.hits = hits;
    }

    /// The group of window (or slice) `start` feeding windows from `first`, for the key whose
    /// ids are `ids` (hashed to `key_hash`), made if new.
    #[inline(always)]
    fn group(
        &mut self,
        start: i64,
        first: i64,
        key_hash: u64,
        ids: &[u32],
        interner: &Interner,
    ) -> u32 {
        // With one key field (or none) the key hash is the key's id.
        if self.key_slots.len() <= 1 {
            if let Some(pair) = self.last.get(key_hash as usize) {
                for &g in pair {
                    if self
                        .heads
                        .get(g as usize)
                        .is_some_and(|h| h.1 == start && h.2 == first)
                    {
                        return g;
                    }
                }
            }
        }
        self.find_or_add(start, first, key_hash, ids, interner)
    }

    /// The index of the group of window (or slice) `start`, first window `first` and the key in
    /// `ids`, made if new.
    #[inline(never)]
    fn find_or_add(
        &mut self,
        start: i64,
        first: i64,
        key_hash: u64,
        ids: &[u32],
        interner: &Interner,
    ) -> u32 {
        let mut h = mix(key_hash, start as u64);
        if first != start {
            h = mix(h, first as u64);
        }
        let keys = self.key_slots.len();
        let id = |s: &usize| ids.get(*s).copied().unwrap_or(NULL);
        let (heads, kids, slots) = (&self.heads, &self.kids, &self.key_slots);
        let found = self.index.find(h, |&g| {
            let g = g as usize;
            heads[g].1 == start
                && heads[g].2 == first
                && slots
                    .iter()
                    .zip(&kids[g * keys..])
                    .all(|(s, k)| id(s) == *k)
        });
        let g = match found {
            Some(&g) => g,
            None => {
                let g = self.heads.len() as u32;
                self.keys.push(
                    slots
                        .iter()
                        .map(|s| interner.value(id(s)).1.clone())
                        .collect(),
                );
                self.accs
                    .extend(self.node.accs.iter().map(|a| a.new_state()));
                self.heads.push((h, start, first));
                self.first_start = self.first_start.min(first);
                self.kids.extend(self.key_slots.iter().map(id));
                let heads = &self.heads;
                self.index.insert_unique(h, g, |&i| heads[i as usize].0);
                g
            }
        };
        if keys <= 1 {
            let code = key_hash as usize;
            if code >= self.last.len() {
                self.last.resize(code + 1, [NONE; 2]);
            }
            let pair = &mut self.last[code];
            *pair = [g, pair[0]];
        }
        g
    }

    /// No group yet.
    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    /// The progress at which the first of the windows gathered since the last drain closes
    /// (`None`: nothing gathered): their partials must be on their way before then.
    pub fn first_deadline(&self) -> Option<i64> {
        (!self.heads.is_empty()).then(|| self.node.deadline(self.first_start))
    }

    /// The partials gathered since the last drain, their sets filled from `interner` (the one
    /// their ids came from; it may be cleared once the partials are taken).
    pub fn drain(&mut self, interner: &Interner) -> impl Iterator<Item = Partial> + '_ {
        let n = self.node.accs.len();
        let groups = self.heads.len();
        let (mut ends, mut ids) = std::mem::take(&mut self.scratch);
        for (a, feed) in self.feeds.iter().enumerate() {
            let Feed::Ids { set, .. } = *feed else {
                continue;
            };
            let Some(pairs) = self.pairs.get_mut(set) else {
                continue;
            };
            // Each group's ids together, so its set is made at its final size and filled in
            // one visit instead of at random across every group; its members are distinct ids,
            // so distinct values, pushed without a lookup.
            pairs.drain_into(groups, &mut ends, &mut ids);
            for (g, bounds) in ends.windows(2).enumerate() {
                let members = ids.get(bounds[0]..bounds[1]).unwrap_or_default();
                if let Some(Acc::Distinct(s) | Acc::Set(s)) = self.accs.get_mut(g * n + a) {
                    *s = ValueSet::with_capacity(members.len());
                    for &id in members {
                        let (h, v) = interner.value(id);
                        s.push_unique(*h, v.clone());
                    }
                }
            }
        }
        self.scratch = (ends, ids);
        self.index.clear();
        self.kids.clear();
        self.last.clear();
        self.first_start = i64::MAX;
        let mut accs = self.accs.drain(..);
        self.keys
            .drain(..)
            .zip(self.heads.drain(..))
            .map(move |(key, (_, start, first))| Partial {
                start,
                first,
                key,
                accs: accs.by_ref().take(n).collect(),
            })
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

    /// Folds `events` into `table` as one batch, each at `progress`.
    fn absorb_events(
        table: &mut GroupTable,
        interner: &mut Interner,
        events: &[Event],
        progress: i64,
    ) {
        let refs: Vec<&Event> = events.iter().collect();
        let mut rows = Rows::default();
        for ev in &refs {
            interner.read(ev, &mut rows);
        }
        let times = vec![progress; refs.len()];
        let batch = Batch {
            events: &refs,
            progress: &times,
            rows: &rows,
        };
        table.absorb(&batch, 0..refs.len(), interner);
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
        let mut rng = crate::agg::test_util::Rng(7);
        let mut next = move |n: u64| rng.next() % n;
        let mut merged: BTreeMap<(i64, Key), Vec<Acc>> = BTreeMap::new();
        // (count, users, services) per (window, key).
        type Plain = (i64, BTreeSet<Value>, BTreeSet<Value>);
        let mut plain: BTreeMap<(i64, Key), Plain> = BTreeMap::new();
        for round in 0..3 {
            let mut batch = Vec::new();
            for i in 0..2_000 {
                let ev = Event {
                    timestamp: 1_000_000 + next(300_000) as i64,
                    service: [None, Some("api"), Some("web"), Some("db")][next(4) as usize]
                        .map(Into::into),
                    status_code: [None, Some(200), Some(500)][next(3) as usize],
                    user_id: (next(5) > 0).then(|| format!("u{}", next(40)).into()),
                    ..Event::default()
                };
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
                batch.push(ev);
                // Batches of every size, one event to hundreds.
                if i % 331 == 0 || i % 500 == 7 || i == 1_999 {
                    absorb_events(&mut table, &mut interner, &batch, 0);
                    batch.clear();
                }
            }
            for p in table.drain(&interner) {
                // Sliding windows' partials are slices: each feeds its windows.
                for start in windows.starts_from(p.start, p.first) {
                    match merged.get_mut(&(start, p.key.clone())) {
                        Some(accs) => accs
                            .iter_mut()
                            .zip(p.accs.clone())
                            .for_each(|(a, b)| a.merge(b)),
                        None => {
                            merged.insert((start, p.key.clone()), p.accs.clone());
                        }
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

    /// Sliding windows cost one fold per event whatever `size / slide`: the counts of the
    /// partials add up to the number of events (per window, they would add up to that times
    /// the windows per event), in one partial per (slice, key).
    #[test]
    fn an_event_is_folded_once_whatever_the_slide() {
        for (size, slide) in [
            (60_000, 60_000),
            (60_000, 10_000),
            (300_000, 120_000),
            (3_600_000, 10_000),
        ] {
            let node = Rc::new(AggNode::count_by_service(Windows::sliding(size, slide), 0));
            let mut interner = Interner::default();
            let mut table = GroupTable::new(Rc::clone(&node), &mut interner);
            let events = 5_000;
            let batch: Vec<Event> = (0..events)
                .map(|i| Event {
                    timestamp: 960_000 + (i * 7_919) % 600_000,
                    service: Some(["api", "web"][(i % 2) as usize].into()),
                    ..Event::default()
                })
                .collect();
            absorb_events(&mut table, &mut interner, &batch, 0);
            let partials: Vec<Partial> = table.drain(&interner).collect();
            let folds: i64 = partials
                .iter()
                .map(|p| match p.accs[0] {
                    Acc::Count(n) => n as i64,
                    _ => 0,
                })
                .sum();
            assert_eq!(folds, events, "{size}/{slide}");
            let width = crate::time::window::gcd(size, slide);
            assert!(partials.iter().all(|p| p.start % width == 0));
            // 600 s of events: one partial per slice and key.
            assert_eq!(partials.len() as i64, 2 * 600_000 / width, "{size}/{slide}");
        }
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
        let lines = ["the cat  the dog", "cat", ""].map(|l| Event {
            line: Some(l.into()),
            ..Event::default()
        });
        // The last event has no line: no rows.
        let batch: Vec<Event> = lines.into_iter().chain([Event::default()]).collect();
        absorb_events(&mut table, &mut interner, &batch, 0);
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
