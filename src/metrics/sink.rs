//! A sink decorator that counts what the real sink has written: output records, windows and
//! the business gauges are updated only after a write succeeded.

use std::sync::Arc;

use super::Metrics;
use crate::record::Row;
use crate::record::{DeadLetter, LateEvent};
use crate::sinks::Sink;
use crate::Error;

pub struct MeteredSink {
    inner: Box<dyn Sink>,
    metrics: Arc<Metrics>,
}

impl MeteredSink {
    pub fn wrap(inner: Box<dyn Sink>, metrics: Arc<Metrics>) -> Box<dyn Sink> {
        Box::new(MeteredSink { inner, metrics })
    }
}

impl Sink for MeteredSink {
    fn at(&mut self, progress: u64) {
        self.inner.at(progress)
    }

    fn rows(&mut self, rows: &[Row]) -> Result<(), Error> {
        self.inner.rows(rows)?;
        self.metrics.rows_written(rows);
        Ok(())
    }

    fn dead_letters(&mut self, records: &[DeadLetter]) -> Result<(), Error> {
        self.inner.dead_letters(records)
    }

    fn late_events(&mut self, records: &[LateEvent]) -> Result<(), Error> {
        self.inner.late_events(records)
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.inner.flush()
    }

    fn progress(&mut self, upto: u64) -> Result<(), Error> {
        self.inner.progress(upto)
    }

    fn pending(&self) -> Option<std::time::Duration> {
        self.inner.pending()
    }

    fn resume_after(&self) -> Option<u64> {
        self.inner.resume_after()
    }

    fn acknowledged(&self, written: u64) -> u64 {
        self.inner.acknowledged(written)
    }

    fn checkpoint(&mut self, upto: u64) -> Result<Vec<u8>, Error> {
        self.inner.checkpoint(upto)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), Error> {
        self.inner.restore(state)
    }

    fn close(&mut self) -> Result<(), Error> {
        self.inner.close()
    }
}
