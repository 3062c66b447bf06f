//! Intersection of two analyses' results: rows of one analysis whose key also has a row in
//! another analysis for an overlapping window (e.g. IPs flagged by both `ddos` and
//! `suspicious_ips`).

use std::collections::{BTreeMap, HashMap};

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

use crate::checkpoint::barrier::{self, Slot};
use crate::checkpoint::groups::{absorb_held, Keyed};
use crate::operators::state::StateMeter;
use crate::record::{Key, Row, Value};

/// Keeps rows whose key is also present in another stream for an overlapping window.
pub trait Intersect<'scope> {
    /// Emits the rows of `self` (relabelled `analysis`) that have a row with the same key (first
    /// `key_len` columns) in `other` whose window overlaps theirs. `horizon` bounds how far
    /// past a window's end a matching row of `other` can still arrive (its window size plus
    /// its delay); `self_horizon` is the same bound for `self`, used to forget old rows.
    ///
    /// ```
    /// use timely::dataflow::operators::{ToStream, Capture, capture::Event};
    /// use logflow::operators::intersect::Intersect;
    /// use logflow::record::{Row, Value};
    ///
    /// let row = |start: i64, ip: &str| Row { analysis: 0, start, end: start + 60, values: vec![Value::Str(ip.into())], retract: false };
    /// let out = timely::example(move |scope| {
    ///     let a = vec![row(0, "1.2.3.4"), row(0, "5.6.7.8")].to_stream(scope);
    ///     let b = vec![row(30, "1.2.3.4"), row(600, "5.6.7.8")].to_stream(scope);
    ///     a.intersect(b, 1, 7, 120, 120).capture()
    /// });
    /// let rows: Vec<Row> = out.try_iter().flat_map(|e| match e { Event::Messages(_, d) => d, _ => vec![] }).collect();
    /// assert_eq!(rows.len(), 1);
    /// assert_eq!((rows[0].analysis, rows[0].values[0].clone()), (7, Value::Str("1.2.3.4".into())));
    /// ```
    fn intersect(
        self,
        other: StreamVec<'scope, u64, Row>,
        key_len: usize,
        analysis: u32,
        horizon: u64,
        self_horizon: u64,
    ) -> StreamVec<'scope, u64, Row>;
}

impl<'scope> Intersect<'scope> for StreamVec<'scope, u64, Row> {
    fn intersect(
        self,
        other: StreamVec<'scope, u64, Row>,
        key_len: usize,
        analysis: u32,
        horizon: u64,
        self_horizon: u64,
    ) -> StreamVec<'scope, u64, Row> {
        let keys = barrier::key_route(self.scope().peers());
        let route = move |r: &Row| keys.key_worker(r.key(key_len));
        let slot = Slot::register("Intersect");
        // Its state: the keys of `other` with their windows, and the rows of `self` waiting.
        let per_entry = std::mem::size_of::<(Key, Vec<(i64, i64)>)>()
            + key_len * std::mem::size_of::<Value>()
            + std::mem::size_of::<(i64, i64)>()
            + 1;
        let meter = StateMeter::register_sized(&[analysis as usize], per_entry);
        self.binary_frontier(
            other,
            Exchange::new(route),
            Exchange::new(route),
            "Intersect",
            move |initial, _| {
                // Checkpointed: (release, send time, rows) of the waiting rows, and `seen`.
                type Saved = (Vec<(u64, u64, Vec<Row>)>, HashMap<Key, Vec<(i64, i64)>>);
                // Rescaled: the waiting rows and `seen` of the keys this worker owns now.
                let (saved, mut seen) = slot
                    .as_ref()
                    .and_then(|s| {
                        s.restore_split::<Saved>(
                            |(waiting, seen), owned| {
                                for (_, _, rows) in waiting.iter_mut() {
                                    rows.retain(|r| owned.key(r.key(key_len)));
                                }
                                waiting.retain(|(_, _, rows)| !rows.is_empty());
                                seen.retain_owned(owned);
                            },
                            |(waiting, seen), (more, other)| {
                                absorb_held(waiting, more, Vec::extend);
                                seen.absorb(other);
                            },
                        )
                    })
                    .unwrap_or_default();
                // Rows waiting until `other` can no longer produce a match, by release time.
                let mut waiting: BTreeMap<u64, (Capability<u64>, Vec<Row>)> =
                    crate::operators::rehold(&initial, saved);
                drop(initial);
                move |(left, left_frontier), (right, right_frontier), output| {
                    right.for_each(|_, data| {
                        for r in data.drain(..) {
                            seen.entry(r.key(key_len).to_vec())
                                .or_default()
                                .push((r.start, r.end));
                        }
                    });
                    left.for_each_stamp(|cap, data| {
                        for batch in data {
                            for r in batch.drain(..) {
                                let release = (r.end.max(0) as u64)
                                    .saturating_add(horizon)
                                    .max(crate::operators::time_of(&cap));
                                waiting
                                    .entry(release)
                                    .or_insert_with(|| {
                                        (
                                            cap.delayed(
                                                &crate::operators::closing(release, &cap),
                                                0,
                                            ),
                                            Vec::new(),
                                        )
                                    })
                                    .1
                                    .push(r);
                            }
                        }
                    });
                    while let Some(entry) = waiting.first_entry() {
                        if right_frontier.less_than(entry.key())
                            || left_frontier.less_than(entry.key())
                        {
                            break;
                        }
                        let (cap, rows) = entry.remove();
                        let mut session = output.session(&cap);
                        for mut r in rows {
                            let hit = seen.get(r.key(key_len)).is_some_and(|ws| {
                                ws.iter().any(|&(s, e)| s < r.end && r.start < e)
                            });
                            if hit {
                                r.analysis = analysis;
                                session.give(r);
                            }
                        }
                    }
                    // Forget windows of `other` that no future row of `self` can overlap.
                    if let Some(&f) = left_frontier.frontier().first() {
                        let cutoff = f.saturating_sub(self_horizon) as i64;
                        seen.retain(|_, ws| {
                            ws.retain(|&(_, e)| e > cutoff);
                            !ws.is_empty()
                        });
                    } else if right_frontier.is_empty() && waiting.is_empty() {
                        seen.clear();
                    }
                    // At the barrier when both inputs are: the least of the two frontiers.
                    let least = left_frontier
                        .frontier()
                        .iter()
                        .chain(right_frontier.frontier().iter())
                        .min()
                        .copied();
                    if let Some((slot, epoch)) = barrier::due_at(&slot, least) {
                        slot.save(epoch, &(crate::operators::held(&waiting), &seen));
                    }
                    meter.set(seen.len() + waiting.values().map(|(_, r)| r.len()).sum::<usize>());
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timely::dataflow::operators::{Input, Probe};

    #[test]
    fn its_keys_and_waiting_rows_are_metered_while_it_runs() {
        // Analysis 9101 is used by no other test of this process.
        const ANALYSIS: u32 = 9101;
        let of = || {
            crate::operators::state::per_analysis()
                .into_iter()
                .find(|(a, _, _)| *a == ANALYSIS as usize)
        };
        timely::execute_directly(move |worker| {
            let (mut left, mut right, probe) = worker.dataflow::<u64, _, _>(|scope| {
                let (l, left) = scope.new_input::<Vec<Row>>();
                let (r, right) = scope.new_input::<Vec<Row>>();
                let (probe, _) = left.intersect(right, 1, ANALYSIS, 120, 120).probe();
                (l, r, probe)
            });
            let row = |start: i64, ip: &str| Row {
                analysis: 0,
                start,
                end: start + 60,
                values: vec![Value::Str(ip.into())],
                retract: false,
            };
            right.send(row(0, "1.2.3.4"));
            right.send(row(0, "5.6.7.8"));
            left.send(row(0, "1.2.3.4"));
            left.advance_to(1);
            right.advance_to(1);
            worker.step_while(|| probe.less_than(&1));
            // Two keys of `other`, one row waiting for its release.
            let (_, keys, bytes) = of().expect("metered");
            assert_eq!(keys, 3);
            assert!(bytes > 0);
        });
        assert_eq!(of().map(|(_, k, _)| k), Some(0), "ended: no state");
    }
}
