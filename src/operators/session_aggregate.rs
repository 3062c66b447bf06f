//! Session windows: per group key, events less than a gap apart form one session, from its
//! first event to its last plus the gap.
//!
//! Events are pre-aggregated like tumbling windows of one gap (epoch-aligned *cells*: two events
//! of one cell are less than a gap apart, so always in one session), with their least and
//! greatest event time in accumulator slots 0 and 1 (`spec::plan::SESSION_BOUNDS`). The partials
//! are exchanged by key, and each worker joins a key's cells into sessions: a cell merges with
//! every open session less than a gap away, so a late event that bridges two sessions merges
//! them. A session closes when the frontier passes `last + gap + delay + allowed lateness`
//! (its deadline); its state is dropped then.
//!
//! Determinism: whether an event joins a session or starts a new one after it closed must not
//! depend on when messages arrive, so partials are applied in time order, and a session whose
//! deadline is before a time closes before that time's partials are applied. Both orders follow
//! from the data alone (an event's time is its partition's progress, see `runtime::ingest`),
//! and merging is associative and commutative, so every layout gives the same sessions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use differential_dataflow::{AsCollection, VecCollection};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

use crate::agg::aggregate::Acc;
use crate::checkpoint::barrier::{self, Slot};
use crate::checkpoint::groups::{Keyed, Owned};
use crate::operators::pre_aggregate::{Partial, PreAggregate};
use crate::operators::state::StateMeter;
use crate::operators::window_aggregate::Closed;
use crate::record::{Event, Key, Value};
use crate::spec::plan::AggNode;

/// Session windows over events (or partials pre-aggregated in gap-wide cells).
pub trait SessionAggregate<'scope> {
    /// Joins each key's events into sessions of `node`'s gap and calls `emit` for every
    /// session once it has closed (append mode); [`Closed::start`] is its first event,
    /// [`Closed::end`] its last event plus the gap. The rows are sent at the deadline.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use timely::dataflow::operators::{ToStream, Capture, capture::Event as Msg};
    /// use logflow::spec::plan::{AccSpec, AggFunc, AggNode, SESSION_BOUNDS};
    /// use logflow::operators::session_aggregate::SessionAggregate;
    /// use logflow::time::window::Windows;
    /// use logflow::record::{Event, Field, Value};
    /// use logflow::spec::expr::Expr;
    ///
    /// let bound = |func| AccSpec { func, arg: Some(Expr::Field(Field::Timestamp)) };
    /// let out = timely::example(move |scope| {
    ///     let node = Rc::new(AggNode {
    ///         windows: Windows::session(10_000),
    ///         hold_ms: 0,
    ///         filter: None,
    ///         keys: vec![],
    ///         accs: vec![bound(SESSION_BOUNDS[0].clone()), bound(SESSION_BOUNDS[1].clone()), AccSpec { func: AggFunc::Count, arg: None }],
    ///         analyses: vec![],
    ///         update: false,
    ///         input: Default::default(),
    ///         explode: None,
    ///         complete: None,
    ///     });
    ///     // 1 s and 5 s are one session; 15 s is a gap after 5 s (not less): the next one.
    ///     let events = [1_000, 5_000, 15_000, 24_000].map(|t| Event { timestamp: t, ..Event::default() });
    ///     let events: timely::dataflow::StreamVec<u64, Event> = events.to_stream(scope);
    ///     events
    ///         .session_aggregate(node, |s, out: &mut Vec<(i64, i64, Value)>| out.push((s.start, s.end, s.values[2].clone())))
    ///         .capture()
    /// });
    /// let mut rows: Vec<_> = out.try_iter().flat_map(|e| match e { Msg::Messages(_, d) => d, _ => vec![] }).collect();
    /// rows.sort();
    /// assert_eq!(rows, vec![(1_000, 15_000, Value::Int(2)), (15_000, 34_000, Value::Int(2))]);
    /// ```
    fn session_aggregate<D, F>(self, node: Rc<AggNode>, emit: F) -> StreamVec<'scope, u64, D>
    where
        D: Clone + Serialize + DeserializeOwned + 'static,
        F: FnMut(Closed<'_>, &mut Vec<D>) + 'static;

    /// Update mode: whenever a key's sessions change at a time, the collection changes by the
    /// rows of the sessions replaced (`-1`: a session extended, or the parts a bridging event
    /// merged) and those of the new state (`+1`).
    fn session_updates<D, F>(self, node: Rc<AggNode>, emit: F) -> VecCollection<'scope, u64, D>
    where
        D: Clone + Serialize + DeserializeOwned + 'static,
        F: FnMut(Closed<'_>, &mut Vec<D>) + 'static;
}

impl<'scope> SessionAggregate<'scope> for StreamVec<'scope, u64, Event> {
    fn session_aggregate<D, F>(self, node: Rc<AggNode>, emit: F) -> StreamVec<'scope, u64, D>
    where
        D: Clone + Serialize + DeserializeOwned + 'static,
        F: FnMut(Closed<'_>, &mut Vec<D>) + 'static,
    {
        self.pre_aggregate(Rc::clone(&node))
            .session_aggregate(node, emit)
    }

    fn session_updates<D, F>(self, node: Rc<AggNode>, emit: F) -> VecCollection<'scope, u64, D>
    where
        D: Clone + Serialize + DeserializeOwned + 'static,
        F: FnMut(Closed<'_>, &mut Vec<D>) + 'static,
    {
        self.pre_aggregate(Rc::clone(&node))
            .session_updates(node, emit)
    }
}

impl<'scope> SessionAggregate<'scope> for StreamVec<'scope, u64, Partial> {
    fn session_aggregate<D, F>(self, node: Rc<AggNode>, emit: F) -> StreamVec<'scope, u64, D>
    where
        D: Clone + Serialize + DeserializeOwned + 'static,
        F: FnMut(Closed<'_>, &mut Vec<D>) + 'static,
    {
        sessions(self, node, false, emit).map(|(d, _, _)| d)
    }

    fn session_updates<D, F>(self, node: Rc<AggNode>, emit: F) -> VecCollection<'scope, u64, D>
    where
        D: Clone + Serialize + DeserializeOwned + 'static,
        F: FnMut(Closed<'_>, &mut Vec<D>) + 'static,
    {
        sessions(self, node, true, emit).as_collection()
    }
}

/// One open session of a key.
#[derive(Serialize, Deserialize)]
struct Session<D> {
    /// Its last event's time.
    last: i64,
    /// The node's accumulators (slots 0 and 1: first and last event time).
    accs: Vec<Acc>,
    /// Update mode: the rows last emitted for it, to retract on its next change.
    rows: Vec<D>,
}

/// Every open session of a worker's keys; checkpointed.
#[derive(Serialize, Deserialize)]
struct Sessions<D> {
    /// Per key, its open sessions by first event time: disjoint, at least a gap apart.
    keys: HashMap<Key, BTreeMap<i64, Session<D>>>,
    /// (deadline, key, first event time) of every open session: the closing order.
    deadlines: BTreeSet<(u64, Key, i64)>,
}

impl<D> Default for Sessions<D> {
    fn default() -> Self {
        Sessions {
            keys: HashMap::new(),
            deadlines: BTreeSet::new(),
        }
    }
}

/// The first and last event time of a session node's accumulators (slots 0 and 1).
fn bounds(accs: &[Acc]) -> Option<(i64, i64)> {
    match accs {
        [Acc::Min(Value::Int(first)), Acc::Max(Value::Int(last)), ..] => Some((*first, *last)),
        _ => None,
    }
}

/// Split by key group when a checkpoint is restored on another number of workers.
impl<D> Keyed for Sessions<D> {
    fn retain_owned(&mut self, owned: &Owned) {
        self.keys.retain_owned(owned);
        self.deadlines.retain(|(_, k, _)| owned.key(k));
    }
    fn absorb(&mut self, other: Self) {
        self.keys.extend(other.keys);
        self.deadlines.extend(other.deadlines);
    }
    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl<D> Sessions<D> {
    /// When a session ending at `last` closes: the progress at which no event can join it.
    fn deadline(node: &AggNode, last: i64) -> u64 {
        last.saturating_add(node.windows.size)
            .saturating_add(node.hold_ms)
            .max(0) as u64
    }

    /// Merges a cell into its key's sessions: with every open session less than a gap from it.
    /// Update mode (`changed` given): the rows of the sessions it replaces go to `replaced`
    /// (to retract), and the merged session is recorded in `changed`.
    fn absorb(
        &mut self,
        node: &AggNode,
        p: Partial,
        mut changed: Option<&mut BTreeSet<(Key, i64)>>,
        replaced: &mut Vec<D>,
    ) {
        let gap = node.windows.size;
        // Never empty (every event has a time); a partial without bounds is dropped, not
        // fatal.
        let Some((lo, hi)) = bounds(&p.accs) else {
            return;
        };
        if !self.keys.contains_key(&p.key) {
            self.keys.insert(p.key.clone(), BTreeMap::new());
        }
        let Some(sessions) = self.keys.get_mut(&p.key) else {
            return;
        };
        // Sessions are disjoint and sorted, so those within reach are adjacent: the ones
        // starting before `hi + gap`, walked back while they end after `lo - gap`.
        let near: Vec<i64> = sessions
            .range(..hi.saturating_add(gap))
            .rev()
            .take_while(|(_, s)| s.last > lo.saturating_sub(gap))
            .map(|(first, _)| *first)
            .collect();
        let mut accs = p.accs;
        for first in near {
            let Some(s) = sessions.remove(&first) else {
                continue;
            };
            self.deadlines
                .remove(&(Self::deadline(node, s.last), p.key.clone(), first));
            if let Some(changed) = changed.as_deref_mut() {
                changed.remove(&(p.key.clone(), first));
            }
            for (a, b) in accs.iter_mut().zip(s.accs) {
                a.merge(b);
            }
            replaced.extend(s.rows);
        }
        let Some((first, last)) = bounds(&accs) else {
            return;
        };
        self.deadlines
            .insert((Self::deadline(node, last), p.key.clone(), first));
        if let Some(changed) = changed {
            changed.insert((p.key, first));
        }
        sessions.insert(
            first,
            Session {
                last,
                accs,
                rows: Vec::new(),
            },
        );
    }

    /// The first session to close, with its deadline.
    fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|(d, _, _)| *d)
    }

    /// Removes the first session to close: (key, first event time, session).
    fn close_first(&mut self) -> Option<(Key, i64, Session<D>)> {
        let (_, key, first) = self.deadlines.pop_first()?;
        let sessions = self.keys.get_mut(&key)?;
        let s = sessions.remove(&first)?;
        if sessions.is_empty() {
            self.keys.remove(&key);
        }
        Some((key, first, s))
    }
}

/// Finishes a session's accumulators and has `emit` make its rows.
fn rows_of<D, F>(node: &AggNode, key: Key, first: i64, s: &Session<D>, emit: &mut F) -> Vec<D>
where
    F: FnMut(Closed<'_>, &mut Vec<D>),
{
    let mut values: Vec<Value> = s.accs.iter().cloned().map(Acc::finish).collect();
    let mut rows = Vec::new();
    emit(
        Closed {
            start: first,
            end: s.last.saturating_add(node.windows.size),
            key,
            values: &mut values,
        },
        &mut rows,
    );
    rows
}

/// The session operator: append mode sends each closed session's rows (`+1`) at its deadline;
/// update mode sends the changes at the time of the partials that made them.
fn sessions<'scope, D, F>(
    partials: StreamVec<'scope, u64, Partial>,
    node: Rc<AggNode>,
    update: bool,
    mut emit: F,
) -> StreamVec<'scope, u64, (D, u64, isize)>
where
    D: Clone + Serialize + DeserializeOwned + 'static,
    F: FnMut(Closed<'_>, &mut Vec<D>) + 'static,
{
    let route = barrier::key_route(partials.scope().peers());
    let exchange = Exchange::new(move |p: &Partial| route.key_worker(&p.key));
    let slot = Slot::register("SessionAggregate");
    // Open sessions count as the window merges' groups do (`logflow_state_keys`).
    let meter = StateMeter::register(&node.analyses, node.keys.len(), node.accs.len());
    partials.unary_frontier(exchange, "SessionAggregate", move |initial, _| {
        let mut state: Sessions<D> = slot
            .as_ref()
            .and_then(|s| s.restore_keyed())
            .unwrap_or_default();
        // Append mode holds the time the first open session's rows will be sent at: its
        // deadline itself, not the time before it as windows do, because a session stays open
        // while the frontier is at its deadline (partials at that time may still join it). A
        // checkpoint barrier can stop the input exactly there, and a hold before it would keep
        // the operators downstream from reaching the barrier, so it would never complete.
        let mut hold: Option<Capability<u64>> = match update {
            false => state.next_deadline().map(|d| initial.delayed(&d)),
            true => None,
        };
        drop(initial);
        // Partials per time, applied in time order once the frontier has passed their time.
        // Empty at a checkpoint barrier: nothing at or after it was sent.
        let mut pending: crate::operators::Pending<Partial> = BTreeMap::new();
        move |(input, frontier), output| {
            input.for_each_stamp(|cap, data| crate::operators::stash(&mut pending, &cap, data));
            loop {
                let ready = pending
                    .first_key_value()
                    .map(|(t, _)| *t)
                    .filter(|t| !frontier.less_equal(t));
                let closing = state.next_deadline().filter(|d| !frontier.less_equal(d));
                match (ready, closing) {
                    // A session whose deadline comes first closes before the time's partials
                    // (an event at that time may be less than a gap away, yet too late for it).
                    (Some(t), Some(d)) if d < t => {}
                    (Some(_), _) => {
                        let Some((t, (cap, parts))) = pending.pop_first() else {
                            break;
                        };
                        let (mut changed, mut replaced) = (BTreeSet::new(), Vec::new());
                        for p in parts {
                            let changed = update.then_some(&mut changed);
                            state.absorb(&node, p, changed, &mut replaced);
                        }
                        if update {
                            let mut updates: Vec<(D, u64, isize)> =
                                replaced.drain(..).map(|r| (r, t, -1)).collect();
                            for (key, first) in changed {
                                let Some(s) =
                                    state.keys.get_mut(&key).and_then(|k| k.get_mut(&first))
                                else {
                                    continue;
                                };
                                let rows = rows_of(&node, key, first, s, &mut emit);
                                updates.extend(s.rows.drain(..).map(|r| (r, t, -1)));
                                updates.extend(rows.iter().cloned().map(|r| (r, t, 1)));
                                s.rows = rows;
                            }
                            if !updates.is_empty() {
                                output.session(&cap).give_iterator(updates.into_iter());
                            }
                        } else if let Some(d) = state.next_deadline() {
                            // Every session's deadline is after the time of the events in it.
                            let send = d.max(t);
                            if hold.as_ref().is_none_or(|h| *h.time() > send) {
                                hold = Some(cap.delayed(&send));
                            }
                        }
                        continue;
                    }
                    (None, Some(_)) => {}
                    (None, None) => break,
                }
                // Close the first session.
                let Some((key, first, s)) = state.close_first() else {
                    break;
                };
                if let Some(h) = &hold {
                    let d = Sessions::<D>::deadline(&node, s.last);
                    let send = d.max(*h.time());
                    let rows = rows_of(&node, key, first, &s, &mut emit);
                    let at = h.delayed(&send);
                    output
                        .session(&at)
                        .give_iterator(rows.into_iter().map(|r| (r, send, 1)));
                }
            }
            // The held time follows the first open session.
            match state.next_deadline() {
                Some(d) => {
                    if let Some(h) = &mut hold {
                        if *h.time() < d {
                            h.downgrade(&d);
                        }
                    }
                }
                None => hold = None,
            }
            meter.set(state.deadlines.len());
            if let Some((slot, epoch)) = barrier::due(&slot, frontier.frontier()) {
                debug_assert!(pending.is_empty(), "partials at or after the barrier");
                slot.save(epoch, &state);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Field;
    use crate::spec::expr::Expr;
    use crate::spec::plan::{AccSpec, AggFunc};
    use crate::time::window::Windows;
    use timely::dataflow::operators::capture::Event as Msg;
    use timely::dataflow::operators::vec::Input;
    use timely::dataflow::operators::{Capture, Probe};

    /// Sessions of 10 s with 5 s of delay; count() in slot 2.
    fn node(update: bool) -> Rc<AggNode> {
        let bound = |func| AccSpec {
            func,
            arg: Some(Expr::Field(Field::Timestamp)),
        };
        Rc::new(AggNode {
            accs: vec![
                bound(AggFunc::Min),
                bound(AggFunc::Max),
                AccSpec {
                    func: AggFunc::Count,
                    arg: None,
                },
            ],
            update,
            ..AggNode::count_by_service(Windows::session(10_000), 5_000)
        })
    }

    /// (start, end, count) with the time and difference of each change, sorted.
    type Changes = Vec<((i64, i64, Value), u64, isize)>;

    /// Events at 1 s and 16 s (two sessions) at progress 0; at progress 9 s one at 8 s that
    /// bridges them; at progress 35 s one at 25 s: less than a gap after the merged session,
    /// but that closed at 16 + 10 + 5 = 31 s, so it starts a new one.
    fn run(update: bool) -> Changes {
        let (send, recv) = std::sync::mpsc::channel();
        let send = std::sync::Mutex::new(send);
        timely::execute(timely::Config::thread(), move |worker| {
            let send = send.lock().map(|s| s.clone()).expect("sender");
            let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, events) = scope.new_input::<Event>();
                let emit = |s: Closed<'_>, out: &mut Vec<(i64, i64, Value)>| {
                    out.push((s.start, s.end, s.values[2].clone()))
                };
                let changes = match update {
                    true => events.session_updates(node(true), emit).inner,
                    false => events
                        .session_aggregate(node(false), emit)
                        .map(|r| (r, 0, 1)),
                };
                changes.clone().capture_into(send);
                let (probe, _) = changes.probe();
                (input, probe)
            });
            let event = |t| Event {
                timestamp: t,
                ..Event::default()
            };
            for (progress, times) in [
                (0, &[1_000, 16_000][..]),
                (9_000, &[8_000]),
                (35_000, &[25_000]),
            ] {
                input.advance_to(progress);
                for &t in times {
                    input.send(event(t));
                }
                worker.step_while(|| probe.less_than(input.time()));
            }
        })
        .expect("timely");
        let mut changes: Changes = recv
            .try_iter()
            .flat_map(|m| match m {
                Msg::Messages(_, d) => d,
                Msg::Progress(_) => Vec::new(),
            })
            .collect();
        changes.sort_by_key(|(r, t, d)| (*t, r.0, *d));
        changes
    }

    /// A checkpoint barrier can stop the input at an open session's deadline; the output must
    /// reach that time too (the operators after it save at the barrier), while the session,
    /// which partials at its deadline may still join, stays open and holds it.
    #[test]
    fn the_output_reaches_an_open_sessions_deadline() {
        timely::execute(timely::Config::thread(), |worker| {
            let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, events) = scope.new_input::<Event>();
                let rows = events
                    .session_aggregate(node(false), |s, out: &mut Vec<i64>| out.push(s.start));
                let (probe, _) = rows.probe();
                (input, probe)
            });
            input.send(Event {
                timestamp: 1_000,
                ..Event::default()
            });
            // Its deadline: 1 s + gap 10 s + delay 5 s.
            input.advance_to(16_000);
            for _ in 0..100 {
                worker.step();
            }
            assert!(!probe.less_than(&16_000), "output held before the deadline");
            assert!(probe.less_than(&16_001), "session closed at its deadline");
        })
        .expect("timely");
    }

    #[test]
    fn a_bridging_event_merges_sessions_and_a_closed_session_takes_no_more() {
        assert_eq!(
            run(false),
            vec![
                ((1_000, 26_000, Value::Int(3)), 0, 1),
                ((25_000, 35_000, Value::Int(1)), 0, 1),
            ]
        );
    }

    #[test]
    fn update_mode_retracts_the_parts_of_a_merged_session() {
        assert_eq!(
            run(true),
            vec![
                ((1_000, 11_000, Value::Int(1)), 0, 1),
                ((16_000, 26_000, Value::Int(1)), 0, 1),
                ((1_000, 11_000, Value::Int(1)), 9_000, -1),
                ((1_000, 26_000, Value::Int(3)), 9_000, 1),
                ((16_000, 26_000, Value::Int(1)), 9_000, -1),
                ((25_000, 35_000, Value::Int(1)), 35_000, 1),
            ]
        );
    }
}
