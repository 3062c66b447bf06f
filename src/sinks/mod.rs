//! Sinks: where results, dead letters and late events go.
//!
//! A [`Sink`] receives already-ordered batches from the output operator (see
//! `runtime::output`) and writes them: JSONL files ([`files`]), the terminal ([`console`]).

pub mod console;
pub mod files;
pub mod render;

use crate::record::Row;
use crate::record::{DeadLetter, LateEvent};
use crate::Error;

/// Where in the input a sink failure happened: the event-time progress of the batch being
/// written, the same on every run of the job over the same input (a failure named at the same
/// position after a restart will recur: `launch --restart` stops there).
pub fn input_position(progress: u64) -> String {
    let at = match i64::try_from(progress) {
        Ok(ms) => crate::time::rfc3339(ms),
        Err(_) => "the end of the input".into(),
    };
    format!("{INPUT_POSITION} {at}")
}

/// What [`input_position`] starts with.
pub const INPUT_POSITION: &str = "at input position: event-time progress";

/// A destination for a job's outputs.
pub trait Sink: Send {
    /// The event-time progress of the batch written next ([`input_position`] of a failure).
    fn at(&mut self, progress: u64) {
        let _ = progress;
    }
    fn rows(&mut self, rows: &[Row]) -> Result<(), Error>;
    fn dead_letters(&mut self, records: &[DeadLetter]) -> Result<(), Error>;
    fn late_events(&mut self, records: &[LateEvent]) -> Result<(), Error>;
    /// Makes everything written so far visible (called after each batch of windows).
    fn flush(&mut self) -> Result<(), Error>;
    /// Everything at progress times below `upto` has been written: a transactional sink may
    /// commit it (with `upto`, see [`Sink::resume_after`]); others flush.
    fn progress(&mut self, upto: u64) -> Result<(), Error> {
        let _ = upto;
        self.flush()
    }
    /// Writes not yet committed: call [`Sink::progress`] again within this long (a
    /// transaction left open would hide them from read_committed readers, then time out).
    fn pending(&self) -> Option<std::time::Duration> {
        None
    }
    /// Results at progress times below this were committed by an earlier run of the same job
    /// (an exactly-once sink restarted): they are not written again.
    fn resume_after(&self) -> Option<u64> {
        None
    }
    /// A checkpoint is being taken, and everything below `upto` has been written: `upto` is
    /// the checkpoint's epoch, or later when the input has ended (`u64::MAX`: everything).
    /// Makes it durable (a transactional sink commits it, with `upto`) and returns what the
    /// sink needs to come back to this point ([`Sink::restore`]).
    fn checkpoint(&mut self, upto: u64) -> Result<Vec<u8>, Error> {
        self.progress(upto)?;
        self.flush()?;
        Ok(Vec::new())
    }
    /// Comes back to a restored checkpoint's point (what [`Sink::checkpoint`] returned), before
    /// anything is written.
    fn restore(&mut self, state: &[u8]) -> Result<(), Error> {
        let _ = state;
        Ok(())
    }
    /// Of the results handed to the sink at progress times below `written` (each followed
    /// by [`Sink::progress`] or [`Sink::flush`]), those below the returned time are
    /// acknowledged: in the file (files, terminal), delivered to the brokers (Kafka at least
    /// once), committed (Kafka exactly once). A job commits the input positions whose results
    /// are acknowledged (see `runtime::ingest::commits`).
    fn acknowledged(&self, written: u64) -> u64 {
        written
    }
    /// Called once at the end of a run: waits until everything is durable.
    fn close(&mut self) -> Result<(), Error> {
        self.flush()
    }
}
