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
//! Emission: each key's windows advance over its slices, a slice counted when the first window
//! containing it is emitted and uncounted when it is dropped, so that a window costs the
//! slices entering and leaving it, not all of them. How depends on the accumulator ([`Way`]):
//! the sets of `count_distinct` and `collect_set` count each member's slices; `count`, `sum`,
//! `avg` and `stddev` keep a running total that a leaving slice is subtracted from (exact
//! sums make it bit-exact); `min`, `max`, sketches, HLL and top-k sit in two stacks, O(1)
//! merges per window amortized; `collect_list` and `percentile_exact`, whose result holds
//! every value anyway, are combined from the window's slices. A slice's late parts (events
//! late for some of its windows) stay apart and are merged into each window they reach.
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
        let ways = Ways::new(&node);
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
                        held += receive(&mut slices, &mut running, &windows, p);
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
                    emit_window(
                        &slices,
                        &mut running,
                        &windows,
                        &ways,
                        start,
                        &mut values,
                        |key, values| {
                            emit(
                                Closed {
                                    start,
                                    end,
                                    key,
                                    values,
                                },
                                &mut out,
                            )
                        },
                    );
                    // No window left to emit starts before the next one: slices before it
                    // are in none.
                    held -= evict(
                        &mut slices,
                        &mut running,
                        &windows,
                        &ways,
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

/// Keeps partial `p` in its slice's parts; returns the parts added (0 or 1).
fn receive(slices: &mut Slices, running: &mut Running, windows: &Windows, p: Partial) -> usize {
    if Some(p.first) != earliest(windows, p.start) {
        if let Some(c) = running.get_mut(&p.key) {
            c.late.insert(p.start);
        }
    }
    let parts = slices.entry(p.key).or_default().entry(p.start).or_default();
    match parts.iter_mut().find(|(first, _)| *first == p.first) {
        Some((_, accs)) => {
            for (a, b) in accs.iter_mut().zip(p.accs) {
                a.merge(b);
            }
            0
        }
        None => {
            parts.push((p.first, p.accs));
            1
        }
    }
}

/// Calls `emit` with the values of the window `start` of every key with data in it (into
/// `values`).
fn emit_window(
    slices: &Slices,
    running: &mut Running,
    windows: &Windows,
    ways: &Ways,
    start: i64,
    values: &mut Vec<Value>,
    mut emit: impl FnMut(Key, &mut Vec<Value>),
) {
    let end = start.saturating_add(windows.size);
    for (key, ks) in slices.iter() {
        let counted = running
            .entry(key.clone())
            .or_insert_with(|| Counted::new(ways, ks, windows, start));
        counted.advance(ks, windows, ways, start, end);
        if window_values(ks, counted, windows, ways, start, end, values) {
            emit(key.clone(), values);
        }
    }
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

/// How a window's value of one accumulator is kept as windows advance.
#[derive(Clone, Copy, PartialEq)]
enum Way {
    /// `count_distinct`, `collect_set`: each member with the number of counted slices holding
    /// it.
    Members(SetKind),
    /// `count`, `sum`, `avg`, `stddev`: a running total, each slice merged in as it enters and
    /// subtracted as it leaves (exact sums make that bit-exact).
    Total,
    /// `min`, `max`, sketches, HLL, top-k: two stacks (a window is the merge of the older
    /// slices' suffix aggregate and the newer slices' running one): O(1) merges a window,
    /// amortized. The price is memory: up to one suffix aggregate per counted slice, each as
    /// large as a window's (bounded: a dense HLL is 4 KB, a sketch 2048 buckets a sign, top-k
    /// 8192 counts), and not counted in the state meter, which counts slices.
    Stacks,
    /// `collect_list`, `percentile_exact`: combined from the window's slices, whose whole
    /// content their result needs anyway (and whose suffix aggregates would hold it many
    /// times over).
    Combine,
}

impl Way {
    fn of(func: &AggFunc) -> Way {
        match func {
            AggFunc::CountDistinct => Way::Members(SetKind::Distinct),
            AggFunc::CollectSet => Way::Members(SetKind::Set),
            AggFunc::Count
            | AggFunc::CountNonNull
            | AggFunc::CountIf
            | AggFunc::Sum
            | AggFunc::Avg
            | AggFunc::Stddev => Way::Total,
            AggFunc::CollectList | AggFunc::PercentileExact(_) => Way::Combine,
            AggFunc::Min
            | AggFunc::Max
            | AggFunc::Percentile(_)
            | AggFunc::ApproxCountDistinct
            | AggFunc::TopK(_) => Way::Stacks,
        }
    }
}

/// The ways of a node's accumulators, and the indices of those kept as totals and in stacks.
struct Ways {
    way: Vec<Way>,
    totals: Vec<usize>,
    stacks: Vec<usize>,
}

impl Ways {
    fn new(node: &AggNode) -> Ways {
        let way: Vec<Way> = node.accs.iter().map(|a| Way::of(&a.func)).collect();
        let of = |w: Way| (0..way.len()).filter(|&i| way[i] == w).collect();
        Ways {
            totals: of(Way::Total),
            stacks: of(Way::Stacks),
            way,
        }
    }

    fn members(&self) -> bool {
        self.way.iter().any(|w| matches!(w, Way::Members(_)))
    }
}

/// Per key, its counted slices.
type Running = HashMap<Key, Counted, foldhash::fast::FixedState>;

/// One key's windows as they advance: the primary parts of its slices `[from, hi)` (those of
/// the windows emitted so far; every slice before the window being emitted has been dropped,
/// so they are the window's), each kept its accumulator's [`Way`]: slices are counted as a
/// window reaches them and uncounted as they are dropped. Late parts are merged at emission.
struct Counted {
    from: i64,
    hi: i64,
    /// Counted slices.
    primaries: usize,
    /// Per accumulator: (hash, member, number of counted slices holding it) of a set's,
    /// nothing for the others.
    members: Vec<HashTable<(u64, Value, u32)>>,
    /// The running totals ([`Ways::totals`]), and per total the counted slices that are
    /// [`Acc::flagged`].
    totals: Vec<Acc>,
    flagged: Vec<u32>,
    /// A total could not be subtracted exactly (a NaN or infinity left): rebuilt from the
    /// counted slices before the next window.
    rebuild: bool,
    /// Two stacks of the [`Ways::stacks`] accumulators. Front: per counted slice, oldest last,
    /// the merge of it and every newer slice in the front. Back: the newer slices (oldest
    /// first) and their merge.
    front: Vec<(i64, Vec<Acc>)>,
    back: Vec<i64>,
    back_merged: Option<Vec<Acc>>,
    /// Slices with a late part (one whose first window is not the slice's earliest).
    late: BTreeSet<i64>,
}

impl Counted {
    fn new(ways: &Ways, ks: &BTreeMap<i64, Parts>, windows: &Windows, start: i64) -> Counted {
        let late = ks
            .iter()
            .filter(|(s, parts)| {
                let e = earliest(windows, **s);
                parts.iter().any(|(first, _)| Some(*first) != e)
            })
            .map(|(s, _)| *s)
            .collect();
        Counted {
            from: start,
            hi: start,
            primaries: 0,
            members: ways.way.iter().map(|_| HashTable::new()).collect(),
            totals: Vec::new(),
            flagged: vec![0; ways.totals.len()],
            rebuild: false,
            front: Vec::new(),
            back: Vec::new(),
            back_merged: None,
            late,
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

    /// Counts the primary part of slice `s` (slices come in ascending order).
    fn push(&mut self, ways: &Ways, s: i64, accs: &[Acc]) {
        self.primaries += 1;
        if ways.members() {
            self.apply(accs, true);
        }
        if self.totals.is_empty() {
            self.totals = ways.totals.iter().map(|&i| accs[i].clone()).collect();
        } else {
            for (t, &i) in self.totals.iter_mut().zip(&ways.totals) {
                t.merge(accs[i].clone());
            }
        }
        for (f, &i) in self.flagged.iter_mut().zip(&ways.totals) {
            *f += u32::from(accs[i].flagged());
        }
        if !ways.stacks.is_empty() {
            self.back.push(s);
            match &mut self.back_merged {
                None => {
                    self.back_merged = Some(ways.stacks.iter().map(|&i| accs[i].clone()).collect())
                }
                Some(m) => {
                    for (a, &i) in m.iter_mut().zip(&ways.stacks) {
                        a.merge(accs[i].clone());
                    }
                }
            }
        }
    }

    /// Uncounts the primary part `accs` of slice `s`, the oldest counted; `primary_of` finds
    /// the primary part of any counted slice (for the two stacks' turn).
    fn pop<'a>(
        &mut self,
        ways: &Ways,
        s: i64,
        accs: &[Acc],
        primary_of: impl Fn(i64) -> Option<&'a [Acc]>,
    ) {
        self.primaries = self.primaries.saturating_sub(1);
        if ways.members() {
            self.apply(accs, false);
        }
        for ((t, f), &i) in self
            .totals
            .iter_mut()
            .zip(&mut self.flagged)
            .zip(&ways.totals)
        {
            *f = f.saturating_sub(u32::from(accs[i].flagged()));
            if !self.rebuild && !t.subtract(&accs[i], *f > 0) {
                self.rebuild = true;
            }
        }
        if ways.stacks.is_empty() {
            return;
        }
        if self.front.is_empty() {
            // The turn: the back's slices become the front's suffix aggregates, newest first,
            // each the merge of its slice (the older, so merged into) and the newer ones.
            let back = std::mem::take(&mut self.back);
            self.back_merged = None;
            for b in back.into_iter().rev() {
                let Some(part) = (if b == s { Some(accs) } else { primary_of(b) }) else {
                    continue;
                };
                let mut merged: Vec<Acc> = ways.stacks.iter().map(|&i| part[i].clone()).collect();
                if let Some((_, newer)) = self.front.last() {
                    for (a, n) in merged.iter_mut().zip(newer) {
                        a.merge(n.clone());
                    }
                }
                self.front.push((b, merged));
            }
        }
        if self.front.last().is_some_and(|(f, _)| *f == s) {
            self.front.pop();
        }
    }

    /// Counts the slices up to `end` for the window `[start, end)` (windows come in start
    /// order). Their primary parts are final: their first window is `start` or an earlier
    /// one, whose deadline has passed.
    fn advance(
        &mut self,
        ks: &BTreeMap<i64, Parts>,
        windows: &Windows,
        ways: &Ways,
        start: i64,
        end: i64,
    ) {
        if self.hi <= start {
            // Every slice counted is before this window, so dropped: start afresh.
            let late = std::mem::take(&mut self.late);
            *self = Counted::new(ways, &BTreeMap::new(), windows, start);
            self.late = late;
        }
        for (s, parts) in ks.range(self.hi..end) {
            if let Some(accs) = primary(windows, *s, parts) {
                self.push(ways, *s, accs);
            }
        }
        self.hi = self.hi.max(end);
        if self.rebuild {
            // Every slice before `start` is dropped: those up to `hi` are the counted ones.
            self.totals.clear();
            self.flagged.iter_mut().for_each(|f| *f = 0);
            for (s, parts) in ks.range(..self.hi) {
                if let Some(accs) = primary(windows, *s, parts) {
                    for (j, &i) in ways.totals.iter().enumerate() {
                        match self.totals.get_mut(j) {
                            Some(t) => t.merge(accs[i].clone()),
                            None => self.totals.push(accs[i].clone()),
                        }
                        self.flagged[j] += u32::from(accs[i].flagged());
                    }
                }
            }
            self.rebuild = false;
        }
    }
}

/// The finished values of the window `[start, end)` of one key into `values` (false: no
/// data): each accumulator from `counted` its [`Way`] (with any late part that reaches the
/// window), or combined from the window's slices in ascending order.
fn window_values(
    ks: &BTreeMap<i64, Parts>,
    counted: &Counted,
    windows: &Windows,
    ways: &Ways,
    start: i64,
    end: i64,
    values: &mut Vec<Value>,
) -> bool {
    let n = ways.way.len();
    // Late parts that reach the window, merged per accumulator.
    let mut late: Vec<Option<Acc>> = Vec::new();
    for s in counted.late.range(start..end) {
        let Some(parts) = ks.get(s) else { continue };
        let e = earliest(windows, *s);
        for (_, accs) in parts.iter().filter(|(f, _)| *f <= start && Some(*f) != e) {
            if late.is_empty() {
                late = vec![None; n];
            }
            for (l, acc) in late.iter_mut().zip(accs) {
                match l {
                    None => *l = Some(acc.clone()),
                    Some(l) => l.merge(acc.clone()),
                }
            }
        }
    }
    if counted.primaries == 0 && late.is_empty() {
        return false;
    }
    let mut late = late.into_iter();
    let (mut total, mut stacked) = (0, 0);
    values.clear();
    for a in 0..n {
        let extra = late.next().flatten();
        let v = match ways.way[a] {
            Way::Members(kind) => {
                let members = &counted.members[a];
                match (kind, extra) {
                    (SetKind::Distinct, None) => Value::Int(members.len() as i64),
                    (kind, extra) => {
                        let mut set = ValueSet::with_capacity(members.len());
                        for (h, v, _) in members.iter() {
                            set.push_unique(*h, v.clone());
                        }
                        if let Some(Acc::Distinct(extra) | Acc::Set(extra)) = extra {
                            set.merge(extra);
                        }
                        match kind {
                            SetKind::Distinct => Acc::Distinct(set).finish(),
                            SetKind::Set => Acc::Set(set).finish(),
                        }
                    }
                }
            }
            Way::Total => {
                let t = counted.totals.get(total).cloned();
                total += 1;
                merged([t, extra])
            }
            Way::Stacks => {
                let older = counted.front.last().map(|(_, m)| m[stacked].clone());
                let newer = counted.back_merged.as_ref().map(|m| m[stacked].clone());
                stacked += 1;
                merged([older, newer, extra])
            }
            Way::Combine => {
                let mut combined: Option<Acc> = None;
                for (_, parts) in ks.range(start..end) {
                    for (_, accs) in parts.iter().filter(|(f, _)| *f <= start) {
                        match &mut combined {
                            None => combined = Some(accs[a].clone()),
                            Some(c) => c.merge(accs[a].clone()),
                        }
                    }
                }
                combined.map_or(Value::Null, Acc::finish)
            }
        };
        values.push(v);
    }
    true
}

/// The merge of the given partials, older first, finished (null: none).
fn merged<const N: usize>(parts: [Option<Acc>; N]) -> Value {
    parts
        .into_iter()
        .flatten()
        .reduce(|mut a, b| {
            a.merge(b);
            a
        })
        .map_or(Value::Null, Acc::finish)
}

/// Drops every slice before `before` (and keys left with none), uncounting the counted ones
/// from their key's windows; returns the parts dropped.
fn evict(
    slices: &mut Slices,
    running: &mut Running,
    windows: &Windows,
    ways: &Ways,
    before: i64,
) -> usize {
    let mut dropped = 0;
    slices.retain(|key, ks| {
        if ks.first_key_value().is_none_or(|(s, _)| *s >= before) {
            return true;
        }
        let kept = ks.split_off(&before);
        let gone = std::mem::replace(ks, kept);
        let mut counted = running.get_mut(key);
        for (s, parts) in &gone {
            if let Some(c) = counted.as_deref_mut() {
                c.late.remove(s);
                if c.from <= *s && *s < c.hi {
                    if let Some(accs) = primary(windows, *s, parts) {
                        let primary_of = |b: i64| {
                            gone.get(&b)
                                .or_else(|| ks.get(&b))
                                .and_then(|parts| primary(windows, b, parts))
                        };
                        c.pop(ways, *s, accs, primary_of);
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::test_util::{same_bits, Rng};
    use crate::record::Event;
    use crate::spec::plan::{AccSpec, Quantiles};

    fn funcs() -> Vec<AggFunc> {
        let qs = || Quantiles::new(&[0.5, 0.9], false);
        vec![
            AggFunc::Count,
            AggFunc::Sum,
            AggFunc::Avg,
            AggFunc::Stddev,
            AggFunc::Min,
            AggFunc::Max,
            AggFunc::CountDistinct,
            AggFunc::CollectSet,
            AggFunc::CollectList,
            AggFunc::Percentile(qs()),
            AggFunc::PercentileExact(qs()),
            AggFunc::ApproxCountDistinct,
            AggFunc::TopK(2),
        ]
    }

    /// A partial of 1 to 4 random values (integers and floats, now and then an infinity).
    fn partial(rng: &mut Rng, key: &Key, start: i64, first: i64, pos: &mut u64) -> Partial {
        let accs = funcs()
            .into_iter()
            .map(|func| AccSpec { func, arg: None }.new_state())
            .collect::<Vec<_>>();
        let mut p = Partial {
            start,
            first,
            key: key.clone(),
            accs,
        };
        for _ in 0..1 + rng.below(4) {
            *pos += 1;
            let v = match rng.below(40) {
                0 => Value::Float(f64::INFINITY),
                k if k < 20 => Value::Int(rng.below(50) as i64 - 10),
                _ => Value::Float((rng.below(100_000) as f64 - 2_000.0) / 7.0),
            };
            let ev = Event {
                timestamp: start,
                pos: *pos,
                ..Event::default()
            };
            p.accs.iter_mut().for_each(|a| a.absorb(v.clone(), &ev));
        }
        p
    }

    /// Windows advanced over slices (running totals, two stacks, counted sets, late parts
    /// arriving after their slice was counted) finish to the bits of each window combined
    /// afresh from every part that reaches it, for every aggregate kind and several shapes.
    #[test]
    fn advancing_windows_equal_windows_combined_afresh() {
        let mut rng = Rng(30);
        let node = AggNode {
            windows: Windows::tumbling(1),
            hold_ms: 0,
            filter: None,
            keys: vec![],
            accs: funcs()
                .into_iter()
                .map(|func| AccSpec { func, arg: None })
                .collect(),
            analyses: vec![],
            update: false,
            input: Default::default(),
            explode: None,
            complete: None,
        };
        let ways = Ways::new(&node);
        let mut checked = (0, 0);
        for (size, slide) in [(90, 20), (60, 10), (40, 30), (100, 50)] {
            let windows = Windows::sliding(size, slide);
            let width = windows.slice().unwrap();
            let keys: Vec<Key> = (0..3).map(|k| vec![Value::Int(k)]).collect();
            // Every part, by the window start it arrives before (its first window).
            let mut arriving: BTreeMap<i64, Vec<Partial>> = BTreeMap::new();
            let mut pos = 0;
            for s in (0..40).map(|i| i * width) {
                for key in &keys {
                    let mut fed = windows.starts_from(s, i64::MIN);
                    let earliest = fed.next().unwrap();
                    if rng.below(4) > 0 {
                        let p = partial(&mut rng, key, s, earliest, &mut pos);
                        arriving.entry(earliest).or_default().push(p);
                    }
                    // A late part: its events missed the slice's first windows.
                    if let Some(first) = fed.nth(rng.below(3)).filter(|_| rng.below(3) == 0) {
                        let p = partial(&mut rng, key, s, first, &mut pos);
                        arriving.entry(first).or_default().push(p);
                    }
                }
            }
            let all: Vec<Partial> = arriving.values().flatten().cloned().collect();
            let (mut slices, mut running) = (Slices::default(), Running::default());
            let mut values = Vec::new();
            let (lo, hi) = (-size, 40 * width + size);
            for start in (lo / slide..=hi / slide).map(|k| k * slide) {
                for p in arriving.remove(&start).unwrap_or_default() {
                    receive(&mut slices, &mut running, &windows, p);
                }
                let mut got = BTreeMap::new();
                emit_window(
                    &slices,
                    &mut running,
                    &windows,
                    &ways,
                    start,
                    &mut values,
                    |k, v| {
                        got.insert(k, v.clone());
                    },
                );
                for key in &keys {
                    let reach = all.iter().filter(|p| {
                        p.key == *key
                            && start <= p.start
                            && p.start < start + size
                            && p.first <= start
                    });
                    let want: Option<Vec<Value>> = reach
                        .map(|p| p.accs.clone())
                        .reduce(|mut a, b| {
                            a.iter_mut().zip(b).for_each(|(a, b)| a.merge(b));
                            a
                        })
                        .map(|accs| accs.into_iter().map(Acc::finish).collect());
                    let got = got.get(key);
                    assert_eq!(
                        got.is_some(),
                        want.is_some(),
                        "{size}/{slide} window {start}"
                    );
                    if let (Some(got), Some(want)) = (got, want) {
                        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                            let same = match (g, w) {
                                (Value::List(a), Value::List(b)) => {
                                    a.len() == b.len()
                                        && a.iter().zip(b).all(|(a, b)| same_bits(a, b))
                                }
                                _ => same_bits(g, w),
                            };
                            assert!(
                                same,
                                "{size}/{slide} window {start} key {key:?} {:?}: {g:?} vs {w:?}",
                                node.accs[i].func
                            );
                        }
                        checked.0 += 1;
                    }
                }
                evict(&mut slices, &mut running, &windows, &ways, start + slide);
            }
            checked.1 += all
                .iter()
                .filter(|p| windows.starts_from(p.start, i64::MIN).next() != Some(p.first))
                .count();
        }
        assert!(
            checked.0 > 300 && checked.1 > 50,
            "{checked:?} windows, late parts"
        );
    }

    /// Sliding windows once merged per window (slot `WindowMerge`: per deadline the open
    /// (window, key) accumulators). A checkpoint of that shape, restored into the slice
    /// merge, is refused with the reason instead of being misread as slices; one of the slice
    /// merge's own shape is restored (so the refusal is the old shape's, not the test's).
    #[test]
    fn a_checkpoint_of_the_per_window_merge_is_refused_not_misread() {
        use crate::checkpoint::barrier::building;
        use crate::checkpoint::codec;
        use crate::checkpoint::process::Checkpoints;
        use timely::dataflow::operators::vec::Input;

        let dir = std::env::temp_dir().join(format!("logflow-old-merge-{}", std::process::id()));
        let text = format!(
            "name = \"t\"\n[source]\nkind = \"file\"\npath = \"x\"\nformat = \"json\"\n\
             [checkpoint]\ndir = \"{}\"\n[[analysis]]\nname = \"a\"\n\
             window = {{ size = \"1m\", slide = \"10s\" }}\nselect = [\"count() as n\"]\n",
            dir.display()
        );
        let plan = crate::spec::load_text("t.toml", &text).expect("spec");
        let restore = |part: Vec<(String, Vec<u8>)>| -> Result<(), String> {
            let _ = std::fs::remove_dir_all(&dir);
            let plan = plan.clone();
            let open = move || {
                Checkpoints::open(&plan, 1, 1, true, Box::new(|_, _| {}), Box::new(|| false))
                    .expect("open")
                    .expect("checkpoints")
            };
            open().write_for_test(60_000, &part);
            let node = plan_node(&text);
            timely::execute_directly(move |worker| {
                let ck = open().worker(0, Rc::default());
                building(Some(&ck), || {
                    worker.dataflow::<u64, _, _>(|scope| {
                        let (_input, partials) = scope.new_input::<Partial>();
                        merge_slices(partials, Rc::new(node), |_, _: &mut Vec<()>| {});
                    })
                });
                ck.built().map_err(|e| e.to_string())
            })
        };
        // The per-window merge's state: one window of one key, due at its deadline.
        let window: HashMap<(i64, Key), Vec<Acc>> =
            HashMap::from([((0, vec![Value::Int(1)]), vec![Acc::Count(3)])]);
        let old = codec::encode(&vec![(90_000u64, 90_000u64, window)]).expect("encodes");
        let err = restore(vec![("0:WindowMerge".into(), old)]).expect_err("refused");
        assert!(
            err.contains("checkpoint 60000 in") && err.contains("is of a different job or version"),
            "{err}"
        );
        let slices: Slices = HashMap::from_iter([(
            vec![Value::Int(1)],
            BTreeMap::from([(0, vec![(-50_000, vec![Acc::Count(3)])])]),
        )]);
        let due = vec![(90_000u64, 90_000u64, BTreeSet::from([0i64]))];
        let new = codec::encode(&(due, slices)).expect("encodes");
        assert_eq!(restore(vec![("0:WindowMergeSlices".into(), new)]), Ok(()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn plan_node(text: &str) -> AggNode {
        crate::spec::load_text("t.toml", text).expect("spec").nodes[0].clone()
    }
}
