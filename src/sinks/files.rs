//! JSONL files: `DIR/<analysis>.jsonl` per analysis, `DIR/<job>.dead-letter.jsonl` and
//! `DIR/<job>.late.jsonl`. Every file is created at start, so an analysis with no rows leaves an
//! empty file rather than none.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::render::{dead_letter_json, late_json, row_json};
use super::Sink;
use crate::record::Row;
use crate::runtime::ingest::{DeadLetter, LateEvent};
use crate::spec::plan::JobPlan;
use crate::Error;

struct Out {
    path: PathBuf,
    w: BufWriter<File>,
}

impl Out {
    fn create(path: PathBuf) -> Result<Self, Error> {
        let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Out {
            path,
            w: BufWriter::with_capacity(1 << 16, f),
        })
    }

    fn line(&mut self, s: &str) -> Result<(), Error> {
        self.w
            .write_all(s.as_bytes())
            .and_then(|_| self.w.write_all(b"\n"))
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// Writes every output to JSONL files in one directory.
pub struct FilesSink {
    plan: Arc<JobPlan>,
    analyses: Vec<Out>,
    dead: Out,
    late: Out,
    buf: String,
}

impl FilesSink {
    pub fn create(dir: &Path, plan: Arc<JobPlan>) -> Result<Self, Error> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let analyses = plan
            .analyses
            .iter()
            .map(|a| Out::create(dir.join(format!("{}.jsonl", a.name))))
            .collect::<Result<_, _>>()?;
        let dead = Out::create(dir.join(format!("{}.jsonl", plan.dead_letter_topic())))?;
        let late = Out::create(dir.join(format!("{}.jsonl", plan.late_topic())))?;
        Ok(FilesSink {
            plan,
            analyses,
            dead,
            late,
            buf: String::new(),
        })
    }
}

impl Sink for FilesSink {
    fn rows(&mut self, rows: &[Row]) -> Result<(), Error> {
        for r in rows {
            self.buf.clear();
            row_json(&self.plan, r, &mut self.buf);
            self.analyses[r.analysis as usize].line(&self.buf)?;
        }
        Ok(())
    }

    fn dead_letters(&mut self, records: &[DeadLetter]) -> Result<(), Error> {
        for d in records {
            self.buf.clear();
            dead_letter_json(d, &mut self.buf);
            self.dead.line(&self.buf)?;
        }
        Ok(())
    }

    fn late_events(&mut self, records: &[LateEvent]) -> Result<(), Error> {
        for l in records {
            self.buf.clear();
            late_json(&self.plan, l, &mut self.buf);
            self.late.line(&self.buf)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        for o in self
            .analyses
            .iter_mut()
            .chain([&mut self.dead, &mut self.late])
        {
            o.w.flush().map_err(|e| Error::io(&o.path, e))?;
        }
        Ok(())
    }
}
