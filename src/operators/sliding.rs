//! Sliding windows from slices (stream slicing: Traub et al., "Efficient Window Aggregation
//! with General Stream Slicing", EDBT 2019).
//!
//! The pre-aggregation folds each event once, into its slice of width `gcd(size, slide)`
//! (see [`crate::time::window::Windows::slice`]); this merge holds the slices of each key and,
//! when a window's deadline passes, combines the slices it spans into the window's result.
//! State is one accumulator set per open (slice, key), whatever `size / slide`; a slice is
//! dropped once the last window containing it has closed (its deadline includes the allowed
//! lateness).
//!
//! Emission: the sets of `count_distinct` and `collect_set`, whose merge costs their size,
//! are counted per key as the windows advance (each member with the number of counted slices
//! holding it: a slice is added when the first window containing it is emitted and subtracted
//! when it is dropped), so a window costs the slices entering and leaving it, not all of them;
//! the other accumulators are small and are combined from the window's slices.
//!
//! Combining is exact: every accumulator's merge depends only on the multiset of what it
//! absorbed (exact sums, sets, sorted lists, sketches of integer counts; see
//! [`crate::agg::aggregate`]), so a window combined from slices finishes to the same bits as
//! one fed event by event. Slices are combined in ascending order all the same, so that the
//! result never depends on the order partials arrived in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

use hashbrown::HashTable;

use crate::agg::aggregate::Acc;
use crate::agg::value_set::ValueSet;
use crate::checkpoint::barrier::{self, Slot};
use crate::operators::pre_aggregate::Partial;
use crate::operators::state::StateMeter;
use crate::operators::window_aggregate::Closed;
use crate::record::{Key, Value};
use crate::spec::plan::{AggFunc, AggNode};
use crate::time::window::Windows;

/// The parts of one slice of one key: `(first window fed, accumulators)`. Events read while
/// every window of the slice was open share one part; an event late for its slice's earlier
/// windows is kept apart with the first window it may reach.
pub(crate) type Parts = Vec<(i64, Vec<Acc>)>;

/// Per key, its slices by start.
// foldhash: as the tumbling merge's map (routing already spread the keys).
pub(crate) type Slices = HashMap<Key, BTreeMap<i64, Parts>, foldhash::fast::FixedState>;

/// The merge of slice partials into sliding windows (append mode, no `max_keys`): calls `emit`
/// for every (window, key) with data once the frontier passes the window's deadline.
pub(crate) fn merge_slices<'scope, D, F>(
    partials: StreamVec<'scope, u64, Partial>,
    node: Rc<AggNode>,
    mut emit: F,
) -> StreamVec<'scope, u64, D>
where
    D: 'static,
    F: FnMut(Closed<'_>, &mut Vec<D>) + 'static,
{
    let route = barrier::key_route(partials.scope().peers());
    let exchange = Exchange::new(move |p: &Partial| route.key_worker(&p.key));
    // Slices, not windows, are the saved state: a slot of its own, so that a checkpoint of the
    // per-window merge is refused (a different job or version) instead of misread.
    let slot = Slot::register("WindowMergeSlices");
    let meter = StateMeter::register(&node.analyses, node.keys.len(), node.accs.len());
    let windows = node.windows;
    partials.unary_frontier(exchange, "SliceMerge", move |initial, _| {
        // Checkpointed: the windows to emit (per deadline, the time they are sent at and their
        // starts) and the slices.
        type Saved = (Vec<(u64, u64, BTreeSet<i64>)>, Slices);
        let (saved, mut slices): Saved = slot
            .as_ref()
            .and_then(|s| s.restore_keyed())
            .unwrap_or_default();
        let mut due: BTreeMap<u64, (Capability<u64>, BTreeSet<i64>)> =
            crate::operators::rehold(&initial, saved);
        drop(initial);
        let mut held: usize = slices
            .values()
            .map(|k| k.values().map(Vec::len).sum::<usize>())
            .sum();
        // Not saved: rebuilt from the slices from the next window on.
        let mut running: Running = HashMap::default();
        let sets: Vec<Option<SetKind>> = node
            .accs
            .iter()
            .map(|a| match a.func {
                AggFunc::CountDistinct => Some(SetKind::Distinct),
                AggFunc::CollectSet => Some(SetKind::Set),
                _ => None,
            })
            .collect();
        let mut out = Vec::new();
        let mut values = Vec::new();
        move |(input, frontier), output| {
            input.for_each_stamp(|cap, data| {
                for batch in data {
                    for p in batch.drain(..) {
                        let mut fed = windows.starts_from(p.start, p.first).peekable();
                        if fed.peek().is_none() {
                            continue;
                        }
                        for start in fed {
                            let deadline = node.deadline(start).max(0) as u64;
                            due.entry(deadline)
                                .or_insert_with(|| {
                                    (
                                        cap.delayed(&crate::operators::closing(deadline, &cap), 0),
                                        BTreeSet::new(),
                                    )
                                })
                                .1
                                .insert(start);
                        }
                        let parts = slices.entry(p.key).or_default().entry(p.start).or_default();
                        match parts.iter_mut().find(|(first, _)| *first == p.first) {
                            Some((_, accs)) => {
                                for (a, b) in accs.iter_mut().zip(p.accs) {
                                    a.merge(b);
                                }
                            }
                            None => {
                                parts.push((p.first, p.accs));
                                held += 1;
                            }
                        }
                    }
                }
            });
            // Emit every window whose deadline the frontier has passed, in start order.
            while let Some(entry) = due.first_entry() {
                if frontier.less_than(entry.key()) {
                    break;
                }
                let (cap, starts) = entry.remove();
                for start in starts {
                    let end = start.saturating_add(windows.size);
                    for (key, ks) in slices.iter() {
                        let counted = running
                            .entry(key.clone())
                            .or_insert_with(|| Counted::new(sets.len(), start));
                        counted.advance(ks, &windows, &sets, start, end);
                        if !window_values(ks, counted, &windows, &sets, start, end, &mut values) {
                            continue;
                        }
                        emit(
                            Closed {
                                start,
                                end,
                                key: key.clone(),
                                values: &mut values,
                            },
                            &mut out,
                        );
                    }
                    // No window left to emit starts before the next one: slices before it
                    // are in none.
                    held -= evict(
                        &mut slices,
                        &mut running,
                        &windows,
                        start.saturating_add(windows.slide),
                    );
                }
                if !out.is_empty() {
                    output.session(&cap).give_iterator(out.drain(..));
                }
            }
            if let Some((slot, epoch)) = barrier::due(&slot, frontier.frontier()) {
                slot.save(epoch, &(crate::operators::held(&due), &slices));
            }
            meter.set(held);
        }
    })
}

/// The earliest window containing slice `s`: the first window of its on-time part (its
/// primary part; any other holds events late for some of the slice's windows).
#[inline]
fn earliest(windows: &Windows, s: i64) -> Option<i64> {
    windows.starts_from(s, i64::MIN).next()
}

/// The primary part of a slice's parts.
fn primary<'a>(windows: &Windows, s: i64, parts: &'a Parts) -> Option<&'a [Acc]> {
    let e = earliest(windows, s);
    parts
        .iter()
        .find(|(first, _)| Some(*first) == e)
        .map(|(_, accs)| accs.as_slice())
}

/// Which set an accumulator is.
#[derive(Clone, Copy, PartialEq)]
enum SetKind {
    Distinct,
    Set,
}

/// Per key, its counted sets.
type Running = HashMap<Key, Counted, foldhash::fast::FixedState>;

/// One key's sets over the primary parts of its slices `[from, hi)`: those of the windows
/// emitted so far, from which slices are subtracted as they are dropped.
struct Counted {
    from: i64,
    hi: i64,
    /// Per accumulator: (hash, member, number of counted slices holding it) of a set's,
    /// nothing for the others.
    members: Vec<HashTable<(u64, Value, u32)>>,
}

impl Counted {
    fn new(accs: usize, start: i64) -> Counted {
        Counted {
            from: start,
            hi: start,
            members: (0..accs).map(|_| HashTable::new()).collect(),
        }
    }

    /// Adds (or subtracts) the sets of one part.
    fn apply(&mut self, accs: &[Acc], add: bool) {
        for (members, acc) in self.members.iter_mut().zip(accs) {
            let (Acc::Distinct(set) | Acc::Set(set)) = acc else {
                continue;
            };
            for (h, v) in set.entries() {
                match (members.find_entry(*h, |m| m.0 == *h && m.1 == *v), add) {
                    (Ok(mut e), true) => e.get_mut().2 += 1,
                    (Ok(mut e), false) => {
                        e.get_mut().2 -= 1;
                        if e.get().2 == 0 {
                            e.remove();
                        }
                    }
                    (Err(_), true) => {
                        members.insert_unique(*h, (*h, v.clone(), 1), |m| m.0);
                    }
                    (Err(_), false) => {}
                }
            }
        }
    }

    /// Counts the slices up to `end` for the window `[start, end)` (windows come in start
    /// order). Their primary parts are final: their first window is `start` or an earlier
    /// one, whose deadline has passed.
    fn advance(
        &mut self,
        ks: &BTreeMap<i64, Parts>,
        windows: &Windows,
        sets: &[Option<SetKind>],
        start: i64,
        end: i64,
    ) {
        if sets.iter().all(Option::is_none) {
            return;
        }
        if self.hi <= start {
            // Every slice counted is before this window, so dropped: start afresh.
            self.members.iter_mut().for_each(HashTable::clear);
            (self.from, self.hi) = (start, start);
        }
        for (s, parts) in ks.range(self.hi..end) {
            if let Some(accs) = primary(windows, *s, parts) {
                self.apply(accs, true);
            }
        }
        self.hi = self.hi.max(end);
    }
}

/// The finished values of the window `[start, end)` of one key into `values` (false: no
/// data): sets from `counted` (with any late part that reaches the window), the other
/// accumulators combined from the window's slices in ascending order.
fn window_values(
    ks: &BTreeMap<i64, Parts>,
    counted: &Counted,
    windows: &Windows,
    sets: &[Option<SetKind>],
    start: i64,
    end: i64,
    values: &mut Vec<Value>,
) -> bool {
    let n = sets.len();
    let mut combined: Vec<Option<Acc>> = vec![None; n];
    let mut late: Vec<Option<ValueSet>> = vec![None; n];
    let mut any = false;
    for (s, parts) in ks.range(start..end) {
        let e = earliest(windows, *s);
        for (first, accs) in parts.iter().filter(|(f, _)| *f <= start) {
            any = true;
            let is_primary = Some(*first) == e;
            for (a, acc) in accs.iter().enumerate() {
                match (sets[a], acc) {
                    (Some(_), Acc::Distinct(set) | Acc::Set(set)) => {
                        if !is_primary {
                            late[a]
                                .get_or_insert_with(ValueSet::default)
                                .merge(set.clone());
                        }
                    }
                    _ => match &mut combined[a] {
                        None => combined[a] = Some(acc.clone()),
                        Some(c) => c.merge(acc.clone()),
                    },
                }
            }
        }
    }
    if !any {
        return false;
    }
    values.clear();
    for a in 0..n {
        let v = match sets[a] {
            Some(kind) => {
                let members = &counted.members[a];
                match (kind, late[a].take()) {
                    (SetKind::Distinct, None) => Value::Int(members.len() as i64),
                    (kind, extra) => {
                        let mut set = ValueSet::with_capacity(members.len());
                        for (h, v, _) in members.iter() {
                            set.push_unique(*h, v.clone());
                        }
                        if let Some(extra) = extra {
                            set.merge(extra);
                        }
                        match kind {
                            SetKind::Distinct => Acc::Distinct(set).finish(),
                            SetKind::Set => Acc::Set(set).finish(),
                        }
                    }
                }
            }
            None => combined[a].take().map_or(Value::Null, Acc::finish),
        };
        values.push(v);
    }
    true
}

/// Drops every slice before `before` (and keys left with none), subtracting the counted ones
/// from their key's sets; returns the parts dropped.
fn evict(slices: &mut Slices, running: &mut Running, windows: &Windows, before: i64) -> usize {
    let mut dropped = 0;
    slices.retain(|key, ks| {
        let mut counted = running.get_mut(key);
        while let Some(e) = ks.first_entry() {
            let s = *e.key();
            if s >= before {
                break;
            }
            let parts = e.remove();
            if let Some(c) = counted.as_deref_mut().filter(|c| c.from <= s && s < c.hi) {
                if let Some(accs) = primary(windows, s, &parts) {
                    c.apply(accs, false);
                }
            }
            dropped += parts.len();
        }
        if ks.is_empty() {
            running.remove(key);
        }
        !ks.is_empty()
    });
    dropped
}
