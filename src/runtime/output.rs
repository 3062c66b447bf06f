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
use crate::runtime::ingest::{DeadLetter, LateEvent};
use crate::sinks::Sink;

#[derive(Default)]
struct Pending {
    rows: Vec<Row>,
    dead: Vec<DeadLetter>,
    late: Vec<LateEvent>,
}

/// Writes every output to `sink`. With `gather`, all outputs go to worker 0 (the only one with
/// a sink: files, console); otherwise each worker writes its own (Kafka).
/// Sink failures are recorded in `failed` and stop further writes; the run reports them.
pub fn write_outputs<'scope>(
    rows: StreamVec<'scope, u64, Row>,
    dead: StreamVec<'scope, u64, DeadLetter>,
    late: StreamVec<'scope, u64, LateEvent>,
    mut sink: Option<Box<dyn Sink>>,
    gather: bool,
    failed: Rc<RefCell<Option<crate::Error>>>,
) {
    let scope = rows.scope();
    let target = if gather { 0 } else { scope.index() as u64 };
    let mut builder = OperatorBuilder::new("Output".to_string(), scope);
    let mut rows_in = builder.new_input(rows, Exchange::new(move |_: &Row| target));
    let mut dead_in = builder.new_input(dead, Exchange::new(move |_: &DeadLetter| target));
    let mut late_in = builder.new_input(late, Exchange::new(move |_: &LateEvent| target));

    // Results an earlier run of this job already committed (exactly-once sink restarted).
    let skip_below = sink.as_ref().and_then(|s| s.resume_after());
    let activator = scope.activator_for(Rc::clone(&builder.operator_info().address));
    // Checkpointed: what the sink needs to come back to the checkpoint (file lengths).
    let slot = Slot::register("Output");
    if let (Some(state), Some(s)) = (
        slot.as_ref().and_then(|s| s.restore::<Vec<u8>>()),
        sink.as_mut(),
    ) {
        if let Err(e) = s.restore(&state) {
            failed.borrow_mut().get_or_insert(e);
        }
    }
    builder.build(move |_caps| {
        let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
        let mut closed = false;
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
                let res = s
                    .dead_letters(&batch.dead)
                    .and_then(|_| s.late_events(&batch.late))
                    .and_then(|_| s.rows(&batch.rows));
                if let Err(e) = res {
                    *failed.borrow_mut() = Some(e);
                }
                wrote = true;
            }
            let done = frontiers.iter().all(|f| f.is_empty()) && pending.is_empty();
            if closed {
                return;
            }
            // Everything below the least frontier time has been written.
            let upto = frontiers
                .iter()
                .filter_map(|f| f.frontier().iter().min().copied())
                .min();
            if let Some((slot, epoch)) = barrier::due_at(&slot, upto) {
                let state = match (sink.as_mut(), failed.borrow().is_some()) {
                    (Some(s), false) => s.checkpoint(epoch),
                    _ => Ok(Vec::new()),
                };
                match state {
                    Ok(state) => slot.save(epoch, &state),
                    Err(e) => {
                        failed.borrow_mut().get_or_insert(e);
                    }
                }
            }
            let Some(s) = sink.as_mut() else {
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
            } else if let (false, Some(wait)) = (done, s.pending()) {
                activator.activate_after(wait);
            }
            closed = done;
        }
    });
}
