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
    /// Called once at the end of a run: waits until everything is durable.
    fn close(&mut self) -> Result<(), Error> {
        self.flush()
    }
}
