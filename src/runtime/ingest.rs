//! The ingest operator: reads this worker's source partitions, parses records, tracks event-time
//! progress per partition, and holds the capability that IS the watermark.
//!
//! Event-time semantics (DESIGN.md section 3), made deterministic:
//! - A partition's progress `M_p` is the largest event time read from it so far. An analysis's
//!   watermark on that partition is `M_p - delay`.
//! - Each event is sent at timely time `t = max(floor_g(M_p), cap)`, where `M_p` is taken just
//!   before the event and `cap` is the worker's held capability. `g` divides every window
//!   deadline, so rounding loses nothing.
//! - An event contributes to the windows of an analysis whose deadline `end + delay + allowed
//!   lateness` is after `t`; if there is none, the event is late for that analysis and goes to
//!   the late output with the watermark it missed.
//! - The capability (the watermark) is the minimum progress over the worker's partitions that
//!   are not idle; a finished partition stops counting, and when all are finished the capability
//!   is dropped, which closes every remaining window.
//!
//! Lateness thus depends only on each partition's own order, never on thread timing or on how
//! partitions are spread over workers, and replaying a partition gives the same results.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::{Scope, StreamVec};

use super::accounting::Counters;
use crate::metrics::{Metrics, PartitionMeter};
use crate::operators::window::Windows;
use crate::parse::Format;
use crate::record::Event;
use crate::sources::{Origin, PartitionReader, ReadStatus, RecordBatch};

/// A record that could not be parsed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeadLetter {
    pub reason: String,
    pub origin: Origin,
    /// The original bytes (cut to the record limit).
    pub raw: Vec<u8>,
    /// The real length when `raw` was cut.
    pub original_len: Option<u64>,
}

/// An event that arrived after its windows had closed, for one or more analyses.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LateEvent {
    pub event: Event,
    pub origin: Origin,
    pub raw: Vec<u8>,
    /// (analysis index, that analysis's watermark when the event arrived)
    pub missed: Vec<(u32, i64)>,
}

/// The windows of one aggregation node, for lateness checks at ingest.
#[derive(Clone, Debug)]
pub struct LatenessRule {
    pub windows: Windows,
    pub hold_ms: i64,
    /// (analysis index, its delay) for each analysis computed from these windows.
    pub analyses: Vec<(u32, i64)>,
}

/// Settings of the ingest operator.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    pub format: Format,
    pub granularity_ms: i64,
    pub idle_timeout: Duration,
    pub rules: Vec<LatenessRule>,
    /// Fields the analyses read; the rest are cleared before events fan out.
    pub fields: crate::record::FieldSet,
    /// Records read per activation, across partitions (bounds latency and memory).
    pub batch: usize,
}

struct Partition {
    reader: Box<dyn PartitionReader>,
    meter: Arc<PartitionMeter>,
    /// Largest event time seen.
    max_ts: Option<i64>,
    last_data: Instant,
    ended: bool,
}

/// What each worker last announced about its event-time progress: `Some(p)` = its active
/// partitions hold the watermark at `p`; `None` = all its partitions are idle. Workers whose
/// partitions are all idle follow the others instead of stalling the job (see [`ingest`]).
pub type ProgressBoard = Rc<RefCell<HashMap<usize, Option<i64>>>>;

/// Streams of events, dead letters, late events, and progress beacons `(worker, progress)`.
pub type Ingested<'scope> = (
    StreamVec<'scope, u64, Event>,
    StreamVec<'scope, u64, DeadLetter>,
    StreamVec<'scope, u64, LateEvent>,
    StreamVec<'scope, u64, (usize, Option<i64>)>,
);

const CONTAINER: usize = 4096;

/// Builds the ingest operator over this worker's partitions.
///
/// Idleness across workers: a worker whose partitions are all idle cannot know the job's
/// watermark by itself, and its capability would hold every window back. So each worker
/// announces its progress on a beacon stream (broadcast to all workers, collected into
/// `board`), and an all-idle worker advances its capability to the least progress announced
/// by the active workers (or, when every worker is idle, to the furthest event time it saw).
pub fn ingest<'scope>(
    scope: Scope<'scope, u64>,
    readers: Vec<Box<dyn PartitionReader>>,
    config: IngestConfig,
    counters: Arc<Counters>,
    metrics: &Metrics,
    board: ProgressBoard,
) -> Ingested<'scope> {
    let me = scope.index();
    let meters: Vec<Arc<PartitionMeter>> = readers
        .iter()
        .map(|r| metrics.partition(&r.origin(0), me))
        .collect();
    let mut builder = OperatorBuilder::new("Ingest".to_string(), scope);
    let info = builder.operator_info();
    let activator = scope.activator_for(Rc::clone(&info.address));
    let (events_out, events) = builder.new_output();
    let (dead_out, dead) = builder.new_output();
    let (late_out, late) = builder.new_output();
    let (beacon_out, beacons) = builder.new_output();
    let mut events_out: OutputBuilder<u64, _> = OutputBuilder::from(events_out);
    let mut dead_out: OutputBuilder<u64, _> = OutputBuilder::from(dead_out);
    let mut late_out: OutputBuilder<u64, _> = OutputBuilder::from(late_out);
    let mut beacon_out: OutputBuilder<u64, _> = OutputBuilder::from(beacon_out);

    builder.build(move |caps| {
        let now = Instant::now();
        let mut parts: Vec<Partition> = readers
            .into_iter()
            .zip(meters)
            .map(|(reader, meter)| Partition {
                reader,
                meter,
                max_ts: None,
                last_data: now,
                ended: false,
            })
            .collect();
        // No partitions: this worker must not hold the watermark back.
        let mut caps: Option<Vec<Capability<u64>>> =
            if parts.is_empty() { None } else { Some(caps) };
        if caps.is_some() {
            activator.activate();
        }
        let g = config.granularity_ms.max(1);
        let floor = move |m: i64| m - m.rem_euclid(g);
        let mut batch = RecordBatch::default();
        let mut buffer: Vec<Event> = Vec::with_capacity(CONTAINER);
        let mut buffer_time = 0u64;
        let mut next_part = 0usize;
        let mut announced: Option<Option<i64>> = None;

        move |_frontiers| {
            let Some(held) = caps.as_mut() else { return };
            let cap_time = *held[0].time();
            let mut events_h = events_out.activate();
            let mut dead_h = dead_out.activate();
            let mut late_h = late_out.activate();
            let (mut read, mut parsed, mut dead_n, mut late_n) = (0u64, 0u64, 0u64, 0u64);
            let mut more = false;
            let mut pending = false;
            let n = parts.len();
            let per_part = (config.batch / n.max(1)).max(1);
            for k in 0..n {
                let p = &mut parts[(next_part + k) % n];
                if p.ended {
                    continue;
                }
                batch.clear();
                let status = match p.reader.read(&mut batch, per_part) {
                    Ok(s) => s,
                    Err(e) => {
                        // A broken input is a runtime failure, not a finished partition:
                        // dropping the capability would wrongly close every window.
                        panic!("reading {}: {e}", p.reader.describe());
                    }
                };
                match status {
                    ReadStatus::Data => more = true,
                    ReadStatus::Pending => pending = true,
                    ReadStatus::Ended => p.ended = true,
                }
                if !batch.is_empty() {
                    p.last_data = Instant::now();
                }
                let before = (read, parsed, dead_n, late_n);
                for (bytes, pos, cut) in batch.iter() {
                    read += 1;
                    let parsed_ev = match cut {
                        Some(len) => Err(format!(
                            "record too long: {len} bytes (limit {})",
                            bytes.len()
                        )),
                        None => config.format.parse(bytes).map_err(|e| e.0.into_owned()),
                    };
                    let mut ev = match parsed_ev {
                        Ok(ev) => ev,
                        Err(reason) => {
                            dead_n += 1;
                            let dl = DeadLetter {
                                reason,
                                origin: p.reader.origin(pos),
                                raw: bytes.to_vec(),
                                original_len: cut,
                            };
                            dead_h.session(&held[1]).give(dl);
                            continue;
                        }
                    };
                    parsed += 1;
                    ev.pos = pos;
                    let progress = p.max_ts.map_or(cap_time as i64, |m| m.max(cap_time as i64));
                    let t = p
                        .max_ts
                        .map_or(cap_time, |m| (floor(m).max(0) as u64).max(cap_time));
                    p.max_ts = Some(p.max_ts.map_or(ev.timestamp, |m| m.max(ev.timestamp)));

                    let mut missed = Vec::new();
                    let mut on_time_somewhere = false;
                    for rule in &config.rules {
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
                    if !missed.is_empty() {
                        late_n += 1;
                        let le = LateEvent {
                            event: ev.clone(),
                            origin: p.reader.origin(pos),
                            raw: bytes.to_vec(),
                            missed,
                        };
                        // At the event's own time, like events: downstream counts of late data
                        // (late_alerts) then do not depend on how reads were batched.
                        late_h.session(&held[2].delayed(&t)).give(le);
                    }
                    if on_time_somewhere {
                        ev.keep_only(config.fields);
                        if t != buffer_time && !buffer.is_empty() {
                            let cap = held[0].delayed(&buffer_time);
                            events_h.session(&cap).give_container(&mut buffer);
                            buffer.clear();
                        }
                        buffer_time = t;
                        buffer.push(ev);
                        if buffer.len() >= CONTAINER {
                            let cap = held[0].delayed(&buffer_time);
                            events_h.session(&cap).give_container(&mut buffer);
                            buffer.clear();
                        }
                    }
                }
                p.meter.add(
                    read - before.0,
                    parsed - before.1,
                    dead_n - before.2,
                    late_n - before.3,
                );
                p.meter.set_max_event_time(p.max_ts);
                if p.ended {
                    p.meter.set_finished();
                }
            }
            next_part = (next_part + 1) % n.max(1);
            if !buffer.is_empty() {
                let cap = held[0].delayed(&buffer_time);
                events_h.session(&cap).give_container(&mut buffer);
                buffer.clear();
            }
            counters.add(read, parsed, dead_n, late_n);

            // The new watermark: least progress over live partitions that are not idle.
            let now = Instant::now();
            for p in parts.iter().filter(|p| !p.ended) {
                p.meter
                    .set_idle(now.duration_since(p.last_data) >= config.idle_timeout);
            }
            let live: Vec<&Partition> = parts.iter().filter(|p| !p.ended).collect();
            if live.is_empty() {
                caps = None;
                return;
            }
            let active: Vec<&&Partition> = live
                .iter()
                .filter(|p| now.duration_since(p.last_data) < config.idle_timeout)
                .collect();
            let mine: Option<i64> = if active.is_empty() {
                None
            } else if active.iter().any(|p| p.max_ts.is_none()) {
                Some(cap_time as i64) // a partition that has not produced yet holds the watermark
            } else {
                active.iter().filter_map(|p| p.max_ts).min()
            };
            if announced != Some(mine) {
                beacon_out.activate().session(&held[3]).give((me, mine));
                announced = Some(mine);
            }
            let next = match mine {
                Some(p) => Some(p),
                None => {
                    // All idle: follow the active workers; if there are none, the furthest
                    // event time seen here (nothing else can move the job forward).
                    let others = board
                        .borrow()
                        .iter()
                        .filter(|(w, _)| **w != me)
                        .filter_map(|(_, p)| *p)
                        .min();
                    others.or_else(|| live.iter().filter_map(|p| p.max_ts).max())
                }
            };
            if let Some(m) = next {
                let new_time = (floor(m).max(0) as u64).max(cap_time);
                if new_time > cap_time {
                    for c in held.iter_mut() {
                        c.downgrade(&new_time);
                    }
                }
            }
            if more {
                activator.activate();
            } else if pending {
                activator.activate_after(Duration::from_millis(20));
            } else {
                activator.activate();
            }
        }
    });
    (events, dead, late, beacons)
}
