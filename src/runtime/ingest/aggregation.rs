//! The ingest's worker-local pre-aggregation: every node's groups, filled as each event is
//! routed, and the partials ready to send (see [`Aggregation`]).

use std::rc::Rc;

use crate::agg::intern::{Interner, Rows};
use crate::operators::pre_aggregate::{Batch, GroupTable, Partial};
use crate::record::Event;
use crate::spec::plan::AggNode;

/// The worker-local pre-aggregation of every node, and the partials ready to send.
///
/// Partials are held across reads and activations, so a (window, key) becomes one partial per
/// flush instead of one per read, and go out before the capability passes them (see the
/// operator and [`Aggregation::due`]). That delays no result: the windows they feed close only
/// after the capability has moved. Each partition stamps its events at its own progress, so a
/// worker reading several partitions absorbs at a few times in turn:
/// - an append-mode node's windows are emitted once, when the frontier passes their deadline,
///   so its partials may travel at any time between the capability and that deadline: one table
///   per node, sent at the least time it absorbed at or at the capability if that has moved
///   on (either is before every deadline), merges what the partitions' different times would
///   otherwise split, and stays across capability moves until its first window's deadline;
/// - update- and complete-mode nodes emit results at times between, so their partials keep
///   their own time: one table set per time; so do session nodes, whose operator applies
///   partials in time order (a session may close between two times and not take the later).
pub(super) struct Aggregation {
    /// Append-mode nodes: (node index, table).
    merged: Vec<(usize, GroupTable)>,
    /// The least time `merged` absorbed at since the last flush.
    merged_time: Option<u64>,
    /// Update-mode, complete-mode and session nodes, whose partials keep their time.
    timed: Vec<(usize, Rc<AggNode>)>,
    /// (time, tables of the `timed` nodes) gathered since the last flush.
    open: Vec<(u64, Vec<(usize, GroupTable)>)>,
    /// Emptied table sets, reused so that their hash tables keep their capacity.
    spare: Vec<Vec<(usize, GroupTable)>>,
    /// Index in `open` of the time absorbed at last.
    last: usize,
    /// Events absorbed since the last flush.
    pub(super) held: usize,
    /// (time, node, partials)
    pub(super) ready: Vec<(u64, usize, Vec<Partial>)>,
    /// Ids of the fields every node groups or counts by, shared by all tables and cleared
    /// when they have all been drained.
    interner: Interner,
    /// The fields of the events being absorbed, as the nodes read them.
    rows: Rows,
    /// The progress each of them is absorbed at.
    progress: Vec<i64>,
}

/// Table sets kept for reuse beyond those in use: more only when partitions' times spread.
const SPARE_TABLES: usize = 8;
/// Events folded as one batch: a block's rows, ids and (event, group) pairs of this many stay
/// in the core's caches while every aggregate of every node passes over them.
const CHUNK: usize = 1024;

impl Aggregation {
    pub(super) fn new(nodes: &[Rc<AggNode>]) -> Self {
        let (timed, append): (Vec<_>, Vec<_>) = nodes
            .iter()
            .cloned()
            .enumerate()
            .partition(|(_, n)| n.update || n.complete.is_some() || n.windows.session);
        let mut interner = Interner::default();
        let merged = append
            .into_iter()
            .map(|(i, n)| (i, GroupTable::new(n, &mut interner)))
            .collect();
        // One table set made now, so that every field has its slot before the first event.
        let spare = vec![Self::tables(&timed, &mut interner)];
        Aggregation {
            merged,
            merged_time: None,
            timed,
            open: Vec::new(),
            spare,
            last: 0,
            held: 0,
            ready: Vec::new(),
            interner,
            rows: Rows::default(),
            progress: Vec::new(),
        }
    }

    fn tables(timed: &[(usize, Rc<AggNode>)], interner: &mut Interner) -> Vec<(usize, GroupTable)> {
        timed
            .iter()
            .map(|(i, n)| (*i, GroupTable::new(Rc::clone(n), interner)))
            .collect()
    }

    /// Folds `events` into every node, event `i` at time `times[i]` (its partition's
    /// event-time progress when it was read).
    pub(super) fn absorb(&mut self, events: &[&Event], times: &[u64]) {
        for (events, times) in events.chunks(CHUNK).zip(times.chunks(CHUNK)) {
            self.absorb_chunk(events, times);
        }
    }

    fn absorb_chunk(&mut self, events: &[&Event], times: &[u64]) {
        let n = events.len().min(times.len());
        let Some(&least) = times[..n].iter().min() else {
            return;
        };
        self.held += n;
        self.merged_time = Some(self.merged_time.map_or(least, |m| m.min(least)));
        let (mut rows, mut progress) = (
            std::mem::take(&mut self.rows),
            std::mem::take(&mut self.progress),
        );
        rows.clear();
        self.interner.read_all(&events[..n], &mut rows);
        progress.clear();
        progress.extend(times[..n].iter().map(|&t| t as i64));
        let batch = Batch {
            events: &events[..n],
            progress: &progress,
            rows: &rows,
        };
        for (_, table) in self.merged.iter_mut() {
            table.absorb(&batch, 0..n, &mut self.interner);
        }
        // Update-mode, complete-mode and session nodes: each run of events at one time into
        // that time's tables.
        let mut from = 0;
        while from < n && !self.timed.is_empty() {
            let t = times[from];
            let to = from + times[from..n].iter().take_while(|&&x| x == t).count();
            if self.open.get(self.last).is_none_or(|(time, _)| *time != t) {
                self.last = self.slot(t);
            }
            if let Some((_, tables)) = self.open.get_mut(self.last) {
                for (_, table) in tables.iter_mut() {
                    table.absorb(&batch, from..to, &mut self.interner);
                }
            }
            from = to;
        }
        (self.rows, self.progress) = (rows, progress);
    }

    /// The index in `open` of the tables at time `t`, made if needed.
    fn slot(&mut self, t: u64) -> usize {
        if let Some(i) = self.open.iter().position(|(time, _)| *time == t) {
            return i;
        }
        let tables = match self.spare.pop() {
            Some(tables) => tables,
            None => Self::tables(&self.timed, &mut self.interner),
        };
        self.open.push((t, tables));
        self.open.len() - 1
    }

    /// Whether gathered partials must be sent before the capability moves to `next`: an
    /// append-mode window they feed closes there, or update- and complete-mode partials were
    /// gathered at a time before it (they keep their time).
    pub(super) fn due(&self, next: u64) -> bool {
        let next = i64::try_from(next).unwrap_or(i64::MAX);
        self.open.iter().any(|(t, _)| (*t as i64) < next)
            || self
                .merged
                .iter()
                .filter_map(|(_, table)| table.first_deadline())
                .any(|d| d <= next)
    }

    /// Moves every gathered partial to `ready`; append-mode partials go at `now` (the
    /// capability) if the times they were absorbed at have passed.
    pub(super) fn flush(&mut self, now: u64) {
        if let Some(time) = self.merged_time.take() {
            let time = time.max(now);
            for (i, table) in self.merged.iter_mut() {
                if !table.is_empty() {
                    let partials = table.drain(&self.interner).collect();
                    self.ready.push((time, *i, partials));
                }
            }
        }
        for (time, mut tables) in self.open.drain(..) {
            for (i, table) in tables.iter_mut() {
                if !table.is_empty() {
                    let partials = table.drain(&self.interner).collect();
                    self.ready.push((time, *i, partials));
                }
            }
            if self.spare.len() < SPARE_TABLES {
                self.spare.push(tables);
            }
        }
        self.last = 0;
        self.held = 0;
        self.interner.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Value;
    use crate::time::window::Windows;

    fn event(ts: i64, service: &str) -> Event {
        Event {
            timestamp: ts,
            service: Some(service.into()),
            ..Event::default()
        }
    }

    /// (time, node, window start, count) of every partial flushed, sorted.
    fn flushed(agg: &mut Aggregation) -> Vec<(u64, usize, i64, Value)> {
        agg.flush(0);
        let mut out: Vec<_> = agg
            .ready
            .drain(..)
            .flat_map(|(t, i, ps)| {
                ps.into_iter()
                    .map(move |p| (t, i, p.start, p.accs[0].clone().finish()))
            })
            .collect();
        out.sort_by_key(|&(t, i, start, _)| (t, i, start));
        out
    }

    #[test]
    fn partials_are_due_when_a_window_they_feed_closes_or_their_time_passes() {
        // 1-minute windows held 5 minutes: the window [60 s, 120 s) closes at 420 s.
        let append = Rc::new(AggNode::count_by_service(
            Windows::tumbling(60_000),
            300_000,
        ));
        let mut agg = Aggregation::new(&[append]);
        assert!(!agg.due(u64::MAX), "nothing gathered, nothing due");
        agg.absorb(&[&event(90_000, "api")], &[60_000]);
        agg.absorb(&[&event(130_000, "api")], &[120_000]);
        assert!(!agg.due(419_999));
        assert!(agg.due(420_000), "the earliest window closes at 420 s");
        // Sent at the capability when the time absorbed at has passed.
        agg.flush(200_000);
        assert!(agg.ready.iter().all(|(t, _, _)| *t == 200_000));
        agg.ready.clear();
        assert!(!agg.due(u64::MAX), "drained");

        let update = Rc::new(AggNode {
            update: true,
            ..AggNode::count_by_service(Windows::tumbling(60_000), 300_000)
        });
        let mut agg = Aggregation::new(&[update]);
        agg.absorb(&[&event(90_000, "api")], &[60_000]);
        assert!(!agg.due(60_000));
        assert!(
            agg.due(60_001),
            "update partials keep their time: due once it passes"
        );
        agg.flush(60_000);
        assert_eq!(agg.ready[0].0, 60_000);
    }

    #[test]
    fn append_partials_merge_across_times_update_partials_keep_theirs() {
        let append = Rc::new(AggNode::count_by_service(Windows::tumbling(60_000), 0));
        let update = Rc::new(AggNode {
            update: true,
            ..AggNode::count_by_service(Windows::tumbling(60_000), 0)
        });
        let mut agg = Aggregation::new(&[append, update]);
        // Two partitions at different progress, read in turns: one batch, three times.
        let events = [
            event(10_000, "api"),
            event(20_000, "api"),
            event(30_000, "api"),
        ];
        agg.absorb(&events.iter().collect::<Vec<_>>(), &[2_000, 1_000, 2_000]);
        assert_eq!(agg.held, 3);
        assert_eq!(
            flushed(&mut agg),
            vec![
                // One partial for the append node, at the least time held.
                (1_000, 0, 0, Value::Int(3)),
                // The update node's keep the time of their events.
                (1_000, 1, 0, Value::Int(1)),
                (2_000, 1, 0, Value::Int(2)),
            ]
        );
        assert_eq!(agg.held, 0);
        // Emptied tables start afresh at the next time.
        agg.absorb(&[&event(70_000, "api")], &[3_000]);
        assert_eq!(
            flushed(&mut agg),
            vec![
                (3_000, 0, 60_000, Value::Int(1)),
                (3_000, 1, 60_000, Value::Int(1))
            ]
        );
    }
}
