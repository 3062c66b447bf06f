//! One source partition as the ingest reads it: records read, parsed, stamped with event-time
//! progress and routed (dead letters, late events, the nodes' pre-aggregation), alone or, for
//! a partition the local workers share, in blocks taken in turns.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::aggregation::Aggregation;
use super::{IngestConfig, LatenessRule, PartitionState};
use crate::metrics::PartitionMeter;
use crate::record::Event;
use crate::record::{DeadLetter, LateEvent};
use crate::runtime::accounting::Counts;
use crate::sources::lookup::Tables;
use crate::sources::shared::Turns;
use crate::sources::{PartitionReader, ReadStatus, RecordBatch};
use crate::Error;

pub(super) struct Partition {
    pub(super) reader: Box<dyn PartitionReader>,
    /// Set when the local workers read this partition in turns.
    pub(super) turns: Option<Turns>,
    pub(super) meter: Arc<PartitionMeter>,
    /// Largest event time seen (for a shared partition: up to the current block's record).
    pub(super) max_ts: Option<i64>,
    pub(super) last_data: Instant,
    pub(super) ended: bool,
    /// A shared partition's blocks taken and parsed here, waiting for the event times before
    /// them (oldest first).
    blocks: VecDeque<Block>,
    /// Records read but not stamped: the first would be stamped at a checkpoint barrier.
    leftover: Option<Leftover>,
    /// The reader has no more records (the partition ends once `leftover` is stamped too).
    reader_done: bool,
    /// A routed shared block's buffers, reused for the next block: a block is megabytes
    /// (8,192 records and as many parsed events), and allocating it afresh each time paid for
    /// page faults on every first touch.
    spare: Option<(RecordBatch, Vec<Result<Event, String>>)>,
}

/// The rest of a read batch, from record `next` on, kept across a checkpoint barrier.
struct Leftover {
    batch: RecordBatch,
    parsed: Vec<Result<Event, String>>,
    next: usize,
}

/// A block of a shared partition, parsed.
struct Block {
    seq: u64,
    batch: RecordBatch,
    parsed: Vec<Result<Event, String>>,
    /// The largest event time of every earlier block, once known.
    before: Option<Option<i64>>,
}

/// Blocks of a shared partition a worker may hold: one waits while the next is parsed.
const BLOCKS_AHEAD: usize = 2;
/// Records per block of a shared partition: small enough that the workers' blocks stay close
/// in the file (and in memory), large enough that taking one is rare.
const SHARED_BLOCK: usize = 8192;

/// What one activation sends: dead letters, late events at their times, and the counts.
#[derive(Default)]
pub(super) struct Routed {
    pub(super) dead: Vec<DeadLetter>,
    pub(super) late: Vec<(u64, LateEvent)>,
    pub(super) counts: Counts,
}

/// What stamping needs during one activation.
pub(super) struct Stamp<'a, F: Fn(i64) -> i64> {
    pub(super) config: &'a IngestConfig,
    /// Rounds event time down to the progress granularity.
    pub(super) floor: &'a F,
    pub(super) cap_time: u64,
    pub(super) tables: &'a Tables,
    /// The pending checkpoint barrier: no record is stamped at it or later.
    pub(super) barrier: Option<u64>,
}

/// Parses every record of `batch`, returning the largest event time parsed.
fn parse_block(
    config: &IngestConfig,
    batch: &RecordBatch,
    parsed: &mut Vec<Result<Event, String>>,
) -> Option<i64> {
    parsed.clear();
    parsed.reserve(batch.len());
    let mut max = None;
    // One look at the clock per block: a block is read in far less than the limit.
    let latest = crate::parse::text::now_ms().saturating_add(config.max_future_ms);
    for (i, (bytes, _, cut)) in batch.iter().enumerate() {
        if let Some(len) = cut {
            parsed.push(Err(format!(
                "record too long: {len} bytes (limit {})",
                bytes.len()
            )));
            continue;
        }
        // Parsed in place: an `Event` is a few hundred bytes, not worth moving around.
        parsed.resize_with(parsed.len() + 1, || Ok(Event::default()));
        let Some(slot) = parsed.last_mut() else {
            continue;
        };
        if let Ok(ev) = slot {
            let res = match (&config.schema, &config.access_slots) {
                (Some(schema), _) => schema.parse_into(bytes, batch.meta(i), ev),
                (None, Some(slots)) => {
                    config
                        .format
                        .parse_access_into(bytes, config.fields, slots, ev)
                }
                (None, None) => config.format.parse_into(bytes, config.fields, ev),
            };
            match res {
                Ok(()) if ev.timestamp > latest => {
                    *slot = Err(format!(
                        "timestamp in the future: {} is more than {} ahead of the wall clock",
                        ev.timestamp,
                        crate::time::duration::format_ms(config.max_future_ms)
                    ))
                }
                Ok(()) => max = max.max(Some(ev.timestamp)),
                Err(e) => *slot = Err(e.0.into_owned()),
            }
        }
    }
    max
}

impl Partition {
    pub(super) fn new(reader: Box<dyn PartitionReader>, meter: Arc<PartitionMeter>) -> Self {
        Partition {
            turns: reader.turns(),
            reader,
            meter,
            max_ts: None,
            last_data: Instant::now(),
            ended: false,
            blocks: VecDeque::new(),
            leftover: None,
            reader_done: false,
            spare: None,
        }
    }

    /// The time the next record of this partition would be stamped at.
    fn next_time<F: Fn(i64) -> i64>(&self, stamp: &Stamp<'_, F>) -> u64 {
        self.max_ts.map_or(stamp.cap_time, |m| {
            ((stamp.floor)(m).max(0) as u64).max(stamp.cap_time)
        })
    }

    /// Waiting at the checkpoint barrier: its next record would be stamped at or after it.
    pub(super) fn held<F: Fn(i64) -> i64>(&self, stamp: &Stamp<'_, F>) -> bool {
        stamp.barrier.is_some_and(|b| self.next_time(stamp) >= b)
    }

    /// The position of its first record not yet sent on (read records held back count as
    /// unread): where a run restored from here, or a group commit made now, reads on.
    pub(super) fn resume(&self) -> Option<u64> {
        match &self.leftover {
            Some(l) => l.batch.records.get(l.next).map(|r| r.1),
            None => self.reader.resume_point(),
        }
    }

    /// This partition's place in a checkpoint taken now.
    pub(super) fn state(&self) -> PartitionState {
        PartitionState {
            name: self.reader.describe(),
            resume: self.resume(),
            max_ts: self.max_ts,
        }
    }

    /// The event-time progress this partition holds the watermark at (`None`: not known yet).
    /// A shared partition holds it at the least of what every worker knows and the blocks
    /// this worker has still to stamp.
    pub(super) fn progress(&self) -> Option<i64> {
        match &self.turns {
            None => self.max_ts,
            Some(t) => {
                // A block taken here whose predecessors' maxima were not all known when this
                // worker last asked: its records are not stamped yet, and the prefix may
                // already include its own maximum (published when parsed). Hold.
                if self.blocks.iter().any(|b| b.before.is_none()) {
                    return None;
                }
                let known = t.progress()?;
                Some(
                    self.blocks
                        .iter()
                        .filter_map(|b| b.before.flatten())
                        .fold(known, i64::min),
                )
            }
        }
    }

    /// Reads, parses and routes the next records of a partition this worker reads alone.
    pub(super) fn read_own<F: Fn(i64) -> i64>(
        &mut self,
        stamp: &Stamp<'_, F>,
        batch: &mut RecordBatch,
        parsed: &mut Vec<Result<Event, String>>,
        max: usize,
        agg: &mut Aggregation,
        out: &mut Routed,
    ) -> Result<ReadStatus, Error> {
        if let Some(mut l) = self.leftover.take() {
            // Records kept at the last barrier come first (and may reach the next one).
            if let Some(i) = self.route(stamp, &l.batch, &mut l.parsed, l.next, agg, out) {
                l.next = i;
                self.leftover = Some(l);
            }
            self.ended = self.reader_done && self.leftover.is_none();
            return Ok(ReadStatus::Data);
        }
        batch.clear();
        let status = self.reader.read(batch, max)?;
        if status == ReadStatus::Ended {
            self.reader_done = true;
        }
        if !batch.is_empty() {
            self.last_data = Instant::now();
            parse_block(stamp.config, batch, parsed);
            if let Some(i) = self.route(stamp, batch, parsed, 0, agg, out) {
                self.leftover = Some(Leftover {
                    batch: std::mem::take(batch),
                    parsed: std::mem::take(parsed),
                    next: i,
                });
            }
        }
        self.ended = self.reader_done && self.leftover.is_none();
        Ok(status)
    }

    /// Takes the next block of a shared partition, parses it, and routes every block whose
    /// predecessors' event times are known, in order.
    pub(super) fn read_shared<F: Fn(i64) -> i64>(
        &mut self,
        turns: &Turns,
        stamp: &Stamp<'_, F>,
        max: usize,
        agg: &mut Aggregation,
        out: &mut Routed,
    ) -> Result<ReadStatus, Error> {
        // A shared partition is a regular file: never idle while it lasts.
        self.last_data = Instant::now();
        let mut status = ReadStatus::Data;
        if self.blocks.len() < BLOCKS_AHEAD {
            let (mut batch, mut parsed) = self.spare.take().unwrap_or_default();
            batch.clear();
            let taken = turns.take(&mut batch, max.min(SHARED_BLOCK))?;
            status = taken.status;
            if let Some(seq) = taken.seq {
                let block_max = parse_block(stamp.config, &batch, &mut parsed);
                turns.publish(seq, block_max);
                self.blocks.push_back(Block {
                    seq,
                    batch,
                    parsed,
                    before: None,
                });
            } else {
                self.spare = Some((batch, parsed));
            }
        }
        for b in self.blocks.iter_mut().filter(|b| b.before.is_none()) {
            b.before = turns.before(b.seq);
        }
        while self.blocks.front().is_some_and(|b| b.before.is_some()) {
            let Some(mut b) = self.blocks.pop_front() else {
                break;
            };
            self.max_ts = b.before.flatten();
            // Never with checkpoints (a checkpointed file is read by one worker): no barrier.
            let stopped = self.route(stamp, &b.batch, &mut b.parsed, 0, agg, out);
            debug_assert!(stopped.is_none(), "shared partitions have no barrier");
            self.spare = Some((b.batch, b.parsed));
        }
        if status == ReadStatus::Ended && self.blocks.is_empty() {
            self.ended = true;
            return Ok(ReadStatus::Ended);
        }
        // Blocks waiting for another worker's maximum: come back soon.
        Ok(ReadStatus::Data)
    }

    /// Stamps the parsed records of one block in order, from record `from` on, and routes
    /// them: dead letters, late events, and the pre-aggregation of every node whose windows
    /// are still open. Stops before a record that would be stamped at the checkpoint barrier
    /// and returns its index (the records from there on are not consumed).
    fn route<F: Fn(i64) -> i64>(
        &mut self,
        stamp: &Stamp<'_, F>,
        batch: &RecordBatch,
        parsed: &mut Vec<Result<Event, String>>,
        from: usize,
        agg: &mut Aggregation,
        out: &mut Routed,
    ) -> Option<usize> {
        let cap_time = stamp.cap_time;
        // (index, time) of the events on time for some node, folded together at the end.
        let mut on_time: Vec<(usize, u64)> = Vec::with_capacity(batch.len().saturating_sub(from));
        let mut spans = vec![LateSpan::default(); stamp.config.rules.len()];
        for (i, (bytes, pos, cut)) in batch.iter().enumerate().skip(from) {
            let t = self.next_time(stamp);
            if stamp.barrier.is_some_and(|b| t >= b) {
                absorb(agg, parsed, &on_time);
                return Some(i);
            }
            // Read in place: an `Event` is a few hundred bytes, and moving each one out of the
            // block cost more cycles than any single step of routing it. Only late events
            // (rare) are taken out, to travel on.
            let Some(r) = parsed.get_mut(i) else {
                break;
            };
            out.counts.read += 1;
            let ev = match r {
                Ok(ev) => ev,
                Err(reason) => {
                    out.counts.dead_letter += 1;
                    out.dead.push(DeadLetter {
                        reason: std::mem::take(reason),
                        origin: self.reader.origin(pos),
                        raw: bytes.to_vec(),
                        original_len: cut,
                    });
                    continue;
                }
            };
            out.counts.parsed += 1;
            ev.pos = pos;
            if !stamp.tables.is_empty() {
                stamp.tables.join(ev);
            }
            let progress = self
                .max_ts
                .map_or(cap_time as i64, |m| m.max(cap_time as i64));
            self.max_ts = Some(self.max_ts.map_or(ev.timestamp, |m| m.max(ev.timestamp)));

            let mut missed = Vec::new();
            let mut on_time_somewhere = false;
            for (rule, span) in stamp.config.rules.iter().zip(&mut spans) {
                if span.is_late(rule, ev.timestamp, t as i64) {
                    missed.extend(
                        rule.analyses
                            .iter()
                            .map(|&(a, delay)| (a, progress - delay)),
                    );
                } else {
                    on_time_somewhere = true;
                }
            }
            if on_time_somewhere {
                on_time.push((i, t));
            }
            if !missed.is_empty() {
                out.counts.late += 1;
                // Late for some nodes only (rare): the others still fold it, below.
                let event = if on_time_somewhere {
                    ev.clone()
                } else {
                    std::mem::take(ev)
                };
                out.late.push((
                    t,
                    LateEvent {
                        event,
                        origin: self.reader.origin(pos),
                        raw: bytes.to_vec(),
                        missed,
                    },
                ));
            }
        }
        absorb(agg, parsed, &on_time);
        parsed.clear();
        None
    }
}

/// The slide interval `[from, to)` of the last event time a lateness rule was asked about, and
/// the progress at which an event in it is late: events come in runs of nearby times, so most
/// need no division to tell (`Windows::is_late` divides by the slide every time).
#[derive(Clone, Copy, Default)]
struct LateSpan {
    from: i64,
    to: i64,
    deadline: i64,
}

impl LateSpan {
    /// `rule.windows.is_late(ts, rule.hold_ms, progress)`.
    #[inline]
    fn is_late(&mut self, rule: &LatenessRule, ts: i64, progress: i64) -> bool {
        let w = &rule.windows;
        if w.session || w.is_global() {
            return w.is_late(ts, rule.hold_ms, progress);
        }
        if !(self.from <= ts && ts < self.to) {
            // Every time in [start, start + slide) has this latest window start, so this end.
            let start = w.last_start(ts);
            *self = LateSpan {
                from: start,
                to: start.saturating_add(w.slide),
                deadline: w.end_of(ts, start) + rule.hold_ms,
            };
        }
        self.deadline <= progress
    }
}

/// Folds the events `on_time` lists ((index in `parsed`, time)) into every node, as one batch.
fn absorb(agg: &mut Aggregation, parsed: &[Result<Event, String>], on_time: &[(usize, u64)]) {
    let mut events = Vec::with_capacity(on_time.len());
    let mut times = Vec::with_capacity(on_time.len());
    for &(i, t) in on_time {
        if let Some(Ok(ev)) = parsed.get(i) {
            events.push(ev);
            times.push(t);
        }
    }
    agg.absorb(&events, &times);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::window::Windows;

    /// A span remembered across calls answers as `Windows::is_late` does, for tumbling,
    /// sliding, session and global windows, times in and out of order, negative ones too.
    #[test]
    fn late_spans_agree_with_is_late() {
        let rules = [
            Windows::tumbling(60_000),
            Windows::sliding(300_000, 60_000),
            Windows::session(30_000),
            Windows::global(),
        ]
        .map(|windows| LatenessRule {
            windows,
            hold_ms: 10_000,
            analyses: vec![],
        });
        let mut rng = crate::agg::test_util::Rng(5);
        let mut next = move |n: u64| rng.next() % n;
        let mut spans = [LateSpan::default(); 4];
        let (mut late, mut on_time) = (0, 0);
        for i in 0..20_000i64 {
            // Mostly runs of nearby times, sometimes a jump (back or forward).
            let ts = i * 50 - 400_000 + next(90_000) as i64 - (next(20) == 0) as i64 * 700_000;
            let progress = i * 50 - 400_000 + next(120_000) as i64;
            for (rule, span) in rules.iter().zip(&mut spans) {
                let want = rule.windows.is_late(ts, rule.hold_ms, progress);
                assert_eq!(span.is_late(rule, ts, progress), want, "{ts} {progress}");
                if want {
                    late += 1
                } else {
                    on_time += 1
                }
            }
        }
        assert!(late > 1_000 && on_time > 1_000, "{late} {on_time}");
    }
}
