//! One source partition as the ingest reads it: records read, parsed, stamped with event-time
//! progress and routed (dead letters, late events, the nodes' pre-aggregation), alone or, for
//! a partition the local workers share, in blocks taken in turns.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::aggregation::Aggregation;
use super::{IngestConfig, PartitionState};
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
        for (i, (bytes, pos, cut)) in batch.iter().enumerate().skip(from) {
            let t = self.next_time(stamp);
            if stamp.barrier.is_some_and(|b| t >= b) {
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
            for rule in &stamp.config.rules {
                if rule.windows.is_late(ev.timestamp, rule.hold_ms, t as i64) {
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
                agg.absorb(ev, t);
            }
            if !missed.is_empty() {
                out.counts.late += 1;
                out.late.push((
                    t,
                    LateEvent {
                        event: std::mem::take(ev),
                        origin: self.reader.origin(pos),
                        raw: bytes.to_vec(),
                        missed,
                    },
                ));
            }
        }
        parsed.clear();
        None
    }
}
