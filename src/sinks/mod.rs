//! Sinks: where results, dead letters and late events go.
//!
//! A [`Sink`] receives already-ordered batches from the output operator (see
//! `runtime::output`) and writes them: JSONL files ([`files`]), the terminal ([`console`]).

pub mod console;
pub mod files;
pub mod kafka;
pub mod render;

use crate::record::Row;
use crate::runtime::ingest::{DeadLetter, LateEvent};
use crate::Error;

/// A destination for a job's outputs.
pub trait Sink: Send {
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
    /// Called once at the end of a run: waits until everything is durable.
    fn close(&mut self) -> Result<(), Error> {
        self.flush()
    }
}
