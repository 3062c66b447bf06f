//! The terminal: one line per output record, prefixed by its topic.

use std::io::{self, Write};
use std::sync::Arc;

use super::render::{alert_json, dead_letter_json, late_json, row_json};
use super::Sink;
use crate::record::Row;
use crate::record::{DeadLetter, LateEvent};
use crate::spec::plan::JobPlan;
use crate::Error;

/// Prints outputs to stdout as `<topic> <json>`.
pub struct ConsoleSink {
    plan: Arc<JobPlan>,
    out: io::BufWriter<io::Stdout>,
    buf: String,
}

impl ConsoleSink {
    pub fn new(plan: Arc<JobPlan>) -> Self {
        ConsoleSink {
            plan,
            out: io::BufWriter::new(io::stdout()),
            buf: String::new(),
        }
    }

    fn emit(&mut self, topic: &str) -> Result<(), Error> {
        writeln!(self.out, "{topic} {}", self.buf).map_err(|e| Error::io("stdout", e))
    }
}

impl Sink for ConsoleSink {
    fn rows(&mut self, rows: &[Row]) -> Result<(), Error> {
        let plan = Arc::clone(&self.plan);
        for r in rows {
            self.buf.clear();
            row_json(&plan, r, &mut self.buf);
            self.emit(&plan.analyses[r.analysis as usize].topic)?;
            self.buf.clear();
            if alert_json(&plan, r, &mut self.buf) {
                self.emit(&plan.alerts_topic())?;
            }
        }
        Ok(())
    }

    fn dead_letters(&mut self, records: &[DeadLetter]) -> Result<(), Error> {
        let topic = self.plan.dead_letter_topic();
        for d in records {
            self.buf.clear();
            dead_letter_json(d, &mut self.buf);
            self.emit(&topic)?;
        }
        Ok(())
    }

    fn late_events(&mut self, records: &[LateEvent]) -> Result<(), Error> {
        let plan = Arc::clone(&self.plan);
        let topic = plan.late_topic();
        for l in records {
            self.buf.clear();
            late_json(&plan, l, &mut self.buf);
            self.emit(&topic)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.out.flush().map_err(|e| Error::io("stdout", e))
    }
}
