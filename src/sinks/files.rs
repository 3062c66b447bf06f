//! JSONL files: `DIR/<analysis>.jsonl` per analysis, `DIR/<job>.dead-letter.jsonl`,
//! `DIR/<job>.late.jsonl` and, when some analysis is an alert, `DIR/<job>.alerts.jsonl`. Every file is created at start, so an analysis with no rows leaves an
//! empty file rather than none.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::render::{alert_json, dead_letter_json, late_json, row_json};
use super::Sink;
use crate::record::Row;
use crate::record::{DeadLetter, LateEvent};
use crate::spec::plan::JobPlan;
use crate::Error;

struct Out {
    path: PathBuf,
    w: BufWriter<File>,
}

impl Out {
    /// A new, empty file; or, for a job restored from a checkpoint, the file as it is, written
    /// on at its end (after [`Sink::restore`] cut it back to the checkpoint's length).
    fn open(path: PathBuf, resuming: bool) -> Result<Self, Error> {
        let f = crate::sandbox::create(&path, resuming).map_err(|e| Error::io(&path, e))?;
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
    /// `<job>.alerts.jsonl`, when some analysis is an alert.
    alerts: Option<Out>,
    buf: String,
}

impl FilesSink {
    /// Creates the files; `resuming` (a job restored from a checkpoint) keeps what they hold.
    pub fn create(dir: &Path, plan: Arc<JobPlan>, resuming: bool) -> Result<Self, Error> {
        crate::sandbox::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let analyses = plan
            .analyses
            .iter()
            .map(|a| Out::open(dir.join(format!("{}.jsonl", a.name)), resuming))
            .collect::<Result<_, _>>()?;
        let dead = Out::open(
            dir.join(format!("{}.jsonl", plan.dead_letter_topic())),
            resuming,
        )?;
        let late = Out::open(dir.join(format!("{}.jsonl", plan.late_topic())), resuming)?;
        let alerts = match plan.has_alerts() {
            true => Some(Out::open(
                dir.join(format!("{}.jsonl", plan.alerts_topic())),
                resuming,
            )?),
            false => None,
        };
        Ok(FilesSink {
            plan,
            analyses,
            dead,
            late,
            alerts,
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
            if let Some(alerts) = self.alerts.as_mut() {
                self.buf.clear();
                if alert_json(&self.plan, r, &mut self.buf) {
                    alerts.line(&self.buf)?;
                }
            }
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
        for o in self.outs() {
            o.w.flush().map_err(|e| Error::io(&o.path, e))?;
        }
        Ok(())
    }

    /// Every file's length, once its contents are on disk: a restored job cuts each file back
    /// to it, so what it writes again after the checkpoint appears once (exactly once). By
    /// file name, so that a spec with analyses added or removed finds the others' files.
    fn checkpoint(&mut self, _upto: u64) -> Result<Vec<u8>, Error> {
        let mut lengths: Vec<(String, u64)> = Vec::new();
        for o in self.outs() {
            o.w.flush().map_err(|e| Error::io(&o.path, e))?;
            let f = o.w.get_ref();
            f.sync_data().map_err(|e| Error::io(&o.path, e))?;
            let len = f.metadata().map_err(|e| Error::io(&o.path, e))?.len();
            lengths.push((file_name(&o.path), len));
        }
        crate::checkpoint::codec::encode(&(NAMED_LENGTHS, lengths))
            .map_err(|e| Error::Checkpoint(format!("checkpoint: {e}")))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), Error> {
        use crate::checkpoint::codec::decode;
        let named = match decode::<(u64, Vec<(String, u64)>)>(state) {
            Ok((NAMED_LENGTHS, named)) => Some(named),
            _ => None,
        };
        // Before lengths were named, they were in file order (the plan is then the same).
        let positional = match named {
            Some(_) => Vec::new(),
            None => decode::<Vec<u64>>(state)
                .map_err(|e| Error::Checkpoint(format!("checkpoint: file lengths: {e}")))?,
        };
        let mut positional = positional.into_iter();
        for o in self.outs() {
            // A file the checkpoint does not know (an analysis added since) had no row then.
            let len = match &named {
                Some(named) => {
                    let name = file_name(&o.path);
                    named
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map_or(0, |(_, l)| *l)
                }
                None => match positional.next() {
                    Some(len) => len,
                    None => break,
                },
            };
            let f = o.w.get_ref();
            // A checkpoint only ever cuts a file back to what was durable: a longer length
            // is a damaged or forged checkpoint (set_len would pad the output with zeros).
            let now = f.metadata().map_err(|e| Error::io(&o.path, e))?.len();
            if len > now {
                return Err(Error::Checkpoint(format!(
                    "checkpoint: {} has {now} bytes, the checkpoint says {len}",
                    o.path.display()
                )));
            }
            f.set_len(len).map_err(|e| Error::io(&o.path, e))?;
        }
        Ok(())
    }
}

/// Tags file lengths saved by name (a count of positional lengths is never this large).
const NAMED_LENGTHS: u64 = u64::MAX;

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl FilesSink {
    /// Every file, analyses first.
    fn outs(&mut self) -> impl Iterator<Item = &mut Out> {
        self.analyses
            .iter_mut()
            .chain([&mut self.dead, &mut self.late])
            .chain(self.alerts.as_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(analyses: &[&str]) -> Arc<JobPlan> {
        let mut text = "name = \"j\"\n[source]\nkind = \"file\"\npath = \"in.jsonl\"\n\
                        format = \"json\"\n"
            .to_string();
        for a in analyses {
            text.push_str(&format!(
                "[[analysis]]\nname = \"{a}\"\nwindow = {{ size = \"1m\" }}\n\
                 select = [\"count() as n\"]\n"
            ));
        }
        Arc::new(crate::spec::load_text("j.toml", &text).unwrap())
    }

    #[test]
    fn files_are_cut_back_by_name_when_analyses_are_added_or_removed() {
        let dir = std::env::temp_dir().join(format!("logflow-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut sink = FilesSink::create(&dir, plan(&["a", "b"]), false).unwrap();
        for name in ["a", "b"] {
            std::fs::write(dir.join(format!("{name}.jsonl")), "saved\n").unwrap();
        }
        let state = sink.checkpoint(0).unwrap();
        drop(sink);
        // After the checkpoint: more lines everywhere, and a file of `c` left by a run that
        // died after it (c was added then).
        for name in ["a", "b", "c"] {
            std::fs::write(dir.join(format!("{name}.jsonl")), "saved\nafter\n").unwrap();
        }
        let mut sink = FilesSink::create(&dir, plan(&["c", "b"]), true).unwrap();
        sink.restore(&state).unwrap();
        let read = |n: &str| std::fs::read_to_string(dir.join(format!("{n}.jsonl"))).unwrap();
        assert_eq!(read("b"), "saved\n");
        assert_eq!(
            read("c"),
            "",
            "not in the checkpoint: nothing of it was there"
        );
        assert_eq!(read("a"), "saved\nafter\n", "removed: left alone");
        // Lengths saved in file order before names were saved restore the same plan.
        for name in ["b", "c"] {
            std::fs::write(dir.join(format!("{name}.jsonl")), "saved\nafter\n").unwrap();
        }
        let positional = crate::checkpoint::codec::encode(&vec![6u64, 0, 0, 0]).unwrap();
        sink.restore(&positional).unwrap();
        assert_eq!((read("c"), read("b")), ("saved\n".into(), "".into()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
