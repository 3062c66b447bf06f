//! The output operator: gathers results, dead letters and late events on the worker that owns
//! the sink, and writes each timestamp's batch in a stable order once the frontier has passed
//! it (so files are deterministic and each window's rows appear together).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::StreamVec;

use crate::checkpoint::barrier::{self, Slot};
use crate::record::Row;
use crate::record::{DeadLetter, LateEvent};
use crate::sinks::Sink;
use crate::Error;

#[derive(Default)]
struct Pending {
    rows: Vec<Row>,
    dead: Vec<DeadLetter>,
    late: Vec<LateEvent>,
}

/// Writes every output to `sink`. With `gather`, all outputs go to worker 0 (the only one with
/// a sink: files, console); otherwise each worker writes its own (Kafka).
/// Sink failures are recorded in `failed` and stop further writes; the run reports them.
///
/// Returns a stream that carries no data: its frontier is the progress below which every
/// output is acknowledged ([`Sink::acknowledged`]) on every worker, for a probe that decides
/// which input positions are done (`runtime::ingest::commits`); without `acks` its frontier
/// is empty from the start.
pub fn write_outputs<'scope>(
    rows: StreamVec<'scope, u64, Row>,
    dead: StreamVec<'scope, u64, DeadLetter>,
    late: StreamVec<'scope, u64, LateEvent>,
    mut sink: Option<Box<dyn Sink>>,
    gather: bool,
    failed: Rc<RefCell<Option<crate::Error>>>,
    acks: bool,
) -> StreamVec<'scope, u64, ()> {
    let scope = rows.scope();
    let target = if gather { 0 } else { scope.index() as u64 };
    let mut builder = OperatorBuilder::new("Output".to_string(), scope);
    let mut rows_in = builder.new_input(rows, Exchange::new(move |_: &Row| target));
    let mut dead_in = builder.new_input(dead, Exchange::new(move |_: &DeadLetter| target));
    let mut late_in = builder.new_input(late, Exchange::new(move |_: &LateEvent| target));
    let (_acked_out, acked) = builder.new_output::<Vec<()>>();

    // Results an earlier run of this job already committed (exactly-once sink restarted).
    let skip_below = sink.as_ref().and_then(|s| s.resume_after());
    let activator = scope.activator_for(Rc::clone(&builder.operator_info().address));
    // Checkpointed: what the sink needs to come back to the checkpoint (file lengths). A
    // gathered sink is worker 0's in every layout, so it moves to any. Per-worker sinks
    // (Kafka) save nothing of their own; an exactly-once one saves what earlier layouts
    // committed, the same in every old worker's part, so any old worker's will do.
    let slot = Slot::register("Output");
    let restored = slot.as_ref().and_then(|s| match gather {
        true => s.restore_gathered::<Vec<u8>>(),
        false => s.restore_merged::<Vec<u8>>(|first, _| first),
    });
    if let (Some(state), Some(s)) = (restored, sink.as_mut()) {
        if let Err(e) = s.restore(&state) {
            failed.borrow_mut().get_or_insert(e);
        }
    }
    builder.build(move |caps| {
        let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
        let mut closed = false;
        // Held at the acknowledged progress ([`write_outputs`]); dropped when done, or at
        // once when nobody looks (no progress traffic for it).
        let mut acked_at = caps.into_iter().next().filter(|_| acks);
        // Everything below this was handed to the sink and flushed.
        let mut written = 0;
        move |frontiers| {
            rows_in.for_each(|cap, data| {
                pending
                    .entry(crate::operators::time_of(&cap))
                    .or_default()
                    .rows
                    .append(data);
            });
            dead_in.for_each(|cap, data| {
                pending
                    .entry(crate::operators::time_of(&cap))
                    .or_default()
                    .dead
                    .append(data);
            });
            late_in.for_each(|cap, data| {
                pending
                    .entry(crate::operators::time_of(&cap))
                    .or_default()
                    .late
                    .append(data);
            });
            let mut wrote = false;
            while let Some(entry) = pending.first_entry() {
                let t = *entry.key();
                if frontiers.iter().any(|f| f.less_equal(&t)) {
                    break;
                }
                let mut batch = entry.remove();
                let Some(s) = sink.as_mut() else { continue };
                if failed.borrow().is_some() {
                    continue;
                }
                if skip_below.is_some_and(|below| t < below) {
                    // Dead letters and late events are stamped by read batches, which differ
                    // between runs: they are written again (at least once), results are not.
                    batch.rows.clear();
                }
                batch.rows.sort_by(|a, b| {
                    (a.analysis, a.start, &a.values).cmp(&(b.analysis, b.start, &b.values))
                });
                s.at(t);
                let res = s
                    .dead_letters(&batch.dead)
                    .and_then(|_| s.late_events(&batch.late))
                    .and_then(|_| s.rows(&batch.rows));
                if let Err(e) = res {
                    *failed.borrow_mut() = Some(at_position(e, t));
                }
                wrote = true;
            }
            let done = frontiers.iter().all(|f| f.is_empty()) && pending.is_empty();
            if done {
                acked_at = None;
            }
            if closed {
                return;
            }
            // Everything below the least frontier time has been written.
            let upto = frontiers
                .iter()
                .filter_map(|f| f.frontier().iter().min().copied())
                .min();
            if let Some((slot, epoch)) = barrier::due_at(&slot, upto) {
                // A failed sink made nothing durable (its open transaction is aborted when the
                // job starts again): saving would let the checkpoint complete, and a restart
                // from it would never write those results.
                if failed.borrow().is_none() {
                    // `upto` is the epoch at a barrier and `None` once every input is done
                    // (`Slot::due`), when this commit holds everything: a marker saying only
                    // the epoch would let a restart from an earlier checkpoint write those
                    // results again. No sink on this worker: files and console are written by
                    // worker 0.
                    let state = match sink.as_mut() {
                        Some(s) => s.checkpoint(upto.unwrap_or(u64::MAX)),
                        None => Ok(Vec::new()),
                    };
                    match state {
                        Ok(state) => slot.save(epoch, &state),
                        Err(e) => {
                            failed.borrow_mut().get_or_insert(e);
                        }
                    }
                }
            }
            let Some(s) = sink.as_mut() else {
                // Worker 0 writes the gathered outputs: nothing of this worker's is pending.
                if let (Some(cap), Some(t)) = (acked_at.as_mut(), upto) {
                    if *cap.time() < t {
                        cap.downgrade(&t);
                    }
                }
                closed = done;
                return;
            };
            if failed.borrow().is_some() {
                return;
            }
            let res = if done {
                s.close()
            } else if wrote || s.pending().is_some() {
                match upto {
                    Some(t) => s.progress(t),
                    None => s.flush(),
                }
            } else {
                Ok(())
            };
            if let Err(e) = res {
                *failed.borrow_mut() = Some(e);
                closed = done;
                return;
            }
            if let (false, Some(wait)) = (done, s.pending()) {
                activator.activate_after(wait);
            }
            // Batches below `upto` were written, and flushed if there were any.
            written = written.max(upto.unwrap_or(u64::MAX));
            if let Some(cap) = acked_at.as_mut() {
                let acked = s.acknowledged(written);
                if *cap.time() < acked {
                    cap.downgrade(&acked);
                }
                if acked < written && !done {
                    activator.activate_after(ACK_POLL);
                }
            }
            closed = done;
        }
    });
    acked
}

/// How often the output looks for acknowledgements while deliveries are outstanding.
const ACK_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// A sink failure while writing the batch at progress `t`, naming that input position unless
/// it names one already (a Kafka delivery failure names the batch of the message refused, which
/// may be an earlier one). Kafka errors keep their domain (an unreachable broker may pass).
fn at_position(e: Error, t: u64) -> Error {
    // A reader that closed stdout (`| head`) ends the run quietly: that error keeps its kind.
    if e.is_closed_stdout() || e.to_string().contains(crate::sinks::INPUT_POSITION) {
        return e;
    }
    let pos = crate::sinks::input_position(t);
    match e {
        Error::Kafka { cause, message } => Error::kafka(cause, format!("{message} ({pos})")),
        e => Error::Sink(format!("{e} ({pos})")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};

    use timely::dataflow::operators::vec::Input;

    use super::*;
    use crate::checkpoint::barrier::building;
    use crate::checkpoint::process::Checkpoints;
    use crate::checkpoint::store::Store;
    use crate::metrics::Metrics;
    use crate::record::Value;
    use crate::Error;

    /// What the output asked of the sink: rows written, and for each checkpoint its `upto`
    /// and the rows written before it.
    #[derive(Default)]
    struct Calls {
        rows: usize,
        checkpoints: Vec<(u64, usize)>,
    }

    struct TestSink {
        calls: Arc<Mutex<Calls>>,
        /// Writing rows fails (a broker gone for good, say).
        fail: bool,
    }

    impl Sink for TestSink {
        fn rows(&mut self, rows: &[Row]) -> Result<(), Error> {
            if self.fail {
                return Err(Error::Sink("delivery failed".into()));
            }
            if let Ok(mut c) = self.calls.lock() {
                c.rows += rows.len();
            }
            Ok(())
        }
        fn dead_letters(&mut self, _: &[DeadLetter]) -> Result<(), Error> {
            Ok(())
        }
        fn late_events(&mut self, _: &[LateEvent]) -> Result<(), Error> {
            Ok(())
        }
        fn flush(&mut self) -> Result<(), Error> {
            Ok(())
        }
        fn checkpoint(&mut self, upto: u64) -> Result<Vec<u8>, Error> {
            if let Ok(mut c) = self.calls.lock() {
                let written = c.rows;
                c.checkpoints.push((upto, written));
            }
            Ok(Vec::new())
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("logflow-output-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// A one-worker job keeping checkpoints in `dir`, whose output gets one row at `steps`
    /// times the first barrier (the progress granularity) and then the end of its input: the
    /// frontier passes the pending barrier without stopping at it, as when a job's input
    /// ends. With `linger`, the input stays open at the row's time for a few steps first (as
    /// data after the barrier still crossing workers holds the frontier there), else the
    /// frontier goes from the start straight to empty. Returns the worker's failure, if any.
    fn end_of_input(dir: &Path, steps: u64, linger: bool, sink: TestSink) -> Option<String> {
        let text = format!(
            "name = \"t\"\n[source]\nkind = \"file\"\npath = \"x\"\nformat = \"json\"\n\
             [checkpoint]\ndir = \"{}\"\ninterval = \"1s\"\n[[analysis]]\nname = \"a\"\n\
             window = {{ size = \"1m\" }}\nselect = [\"count() as n\"]\n",
            dir.display()
        );
        let plan = crate::spec::load_text("t.toml", &text).expect("spec");
        timely::execute_directly(move |worker| {
            let id = crate::runtime::Cluster::default().identity(&plan);
            let metrics = Arc::new(Metrics::new(&plan, id));
            let failed: Rc<RefCell<Option<Error>>> = Rc::new(RefCell::new(None));
            let on_completed = Box::new(move |_, took| metrics.checkpoint_completed(took));
            let ck = Checkpoints::open(&plan, 1, 1, true, on_completed, Box::new(|| false))
                .expect("open")
                .expect("checkpoints")
                .worker(0, Rc::clone(&failed));
            let (mut rows, mut dead, mut late) = building(Some(&ck), || {
                let out = Rc::clone(&failed);
                worker.dataflow::<u64, _, _>(move |scope| {
                    let (rows_in, rows) = scope.new_input::<Row>();
                    let (dead_in, dead) = scope.new_input::<DeadLetter>();
                    let (late_in, late) = scope.new_input::<LateEvent>();
                    write_outputs(rows, dead, late, Some(Box::new(sink)), false, out, false);
                    (rows_in, dead_in, late_in)
                })
            });
            ck.built().expect("built");
            let at = steps * plan.granularity_ms as u64;
            rows.advance_to(at);
            rows.send(Row {
                analysis: 0,
                start: 0,
                end: 60_000,
                values: vec![Value::Int(1)],
                retract: false,
            });
            if linger {
                dead.advance_to(at);
                late.advance_to(at);
                for _ in 0..10 {
                    worker.step();
                }
            }
            drop((rows, dead, late));
            while worker.has_dataflows() {
                worker.step();
            }
            let e = failed.borrow().as_ref().map(|e| e.to_string());
            e
        })
    }

    /// A sink that failed writes no checkpoint part: the job must start again from an earlier
    /// checkpoint, whose replay writes what the failed sink never made durable.
    #[test]
    fn a_failed_sink_completes_no_checkpoint() {
        let dir = tmp("failed");
        let calls = Arc::new(Mutex::new(Calls::default()));
        let sink = TestSink {
            calls: Arc::clone(&calls),
            fail: true,
        };
        let failure = end_of_input(&dir, 10, false, sink);
        assert!(failure.is_some_and(|e| e.contains("delivery failed")));
        assert_eq!(
            Store::open(&dir).expect("store").latest().expect("read"),
            None
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// At the end of the input the frontier passes the pending barrier: the checkpoint is
    /// taken once every input is done, holds everything written, and its `upto` (a
    /// transactional sink's marker) covers it all, or a restart from an earlier checkpoint
    /// writes those results again. Also when the frontier lingers past the barrier first
    /// (saving there would have cut through data still on its way, the row's).
    #[test]
    fn the_checkpoint_at_the_end_of_the_input_covers_what_it_commits() {
        for linger in [false, true] {
            let dir = tmp(&format!("end-{linger}"));
            let calls = Arc::new(Mutex::new(Calls::default()));
            let sink = TestSink {
                calls: Arc::clone(&calls),
                fail: false,
            };
            assert_eq!(end_of_input(&dir, 10, linger, sink), None);
            assert!(Store::open(&dir)
                .expect("store")
                .latest()
                .expect("read")
                .is_some());
            let c = calls.lock().expect("calls");
            // One checkpoint, after the row (at 10 barriers' time) was written, covering it.
            assert_eq!(c.checkpoints, [(u64::MAX, 1)], "linger {linger}");
            drop(c);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
