//! Line-delimited files (or stdin), streamed in large blocks: memory stays bounded by the block
//! size and the record limit, whatever the file size.

use std::io::{self, Read};
use std::path::Path;

use super::{PartitionReader, ReadStatus, RecordBatch};
use crate::record::Origin;
use crate::Error;

const BLOCK: usize = 1 << 20;

/// Reads of the input one call of `read` may make. A stream with no records in it (`/dev/zero`,
/// endless empty lines, one endless line) must still hand control back to the worker, so a
/// cancel or a SIGTERM is seen; a call that fills its batch never comes near this.
const REFILLS_PER_READ: usize = 16;

/// Reads newline-delimited records. Empty lines are not records. A line longer than the limit
/// is cut to the limit and flagged (it goes to the dead-letter output with its real length).
pub struct FileReader {
    path: String,
    input: Box<dyn Read + Send>,
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    head: usize,
    /// End of the bytes read into `buf` (the rest is room for the next read).
    end: usize,
    eof: bool,
    line: u64,
    max_record: usize,
    /// Bytes of an over-long line seen so far (we keep only the first `max_record`).
    skipping: Option<u64>,
    /// The last refill found no bytes yet on a non-blocking input (a socket).
    blocked: bool,
}

impl FileReader {
    /// Opens `path` (`-` = stdin). A directory is refused here (reading it would fail only
    /// once the job runs); pipes and devices are read as streams, with the bounds of files.
    pub fn open(path: &str, max_record: usize) -> Result<Self, Error> {
        let input: Box<dyn Read + Send> = if path == "-" {
            Box::new(io::stdin())
        } else {
            let file =
                crate::sandbox::open_read(Path::new(path)).map_err(|e| Error::io(path, e))?;
            let meta = file.metadata().map_err(|e| Error::io(path, e))?;
            if meta.is_dir() {
                return Err(Error::Input(format!(
                    "{path}: is a directory, not a file (a `directory` source reads the files in one)"
                )));
            }
            Box::new(file)
        };
        Ok(Self::from_reader(path, input, max_record))
    }

    pub fn from_reader(path: &str, input: Box<dyn Read + Send>, max_record: usize) -> Self {
        FileReader {
            path: path.to_string(),
            input,
            buf: Vec::new(),
            head: 0,
            end: 0,
            eof: false,
            line: 0,
            max_record,
            skipping: None,
            blocked: false,
        }
    }

    /// Lines read so far (empty ones included): the number of the last line.
    pub fn lines(&self) -> u64 {
        self.line
    }

    /// Moves past the first `lines` lines without returning them (a job restored from a
    /// checkpoint reads on from there).
    pub fn skip_lines(&mut self, lines: u64) -> Result<(), Error> {
        while self.line < lines {
            match memchr::memchr(b'\n', &self.buf[self.head..self.end]) {
                Some(i) => {
                    self.head += i + 1;
                    self.line += 1;
                }
                None if self.eof => {
                    if self.head < self.end {
                        self.line += 1; // a last line without a newline
                    }
                    self.head = self.end;
                    return Ok(());
                }
                None => {
                    // The start of a line not wanted: its bytes need not be kept.
                    self.head = self.end;
                    self.refill()?;
                }
            }
        }
        Ok(())
    }

    /// Reads more bytes, keeping the unconsumed tail. The buffer keeps its length (zeroed
    /// once, when it grows): zeroing it before every read cost 3% of the file job.
    fn refill(&mut self) -> Result<(), Error> {
        if self.head > 0 {
            self.buf.copy_within(self.head..self.end, 0);
            self.end -= self.head;
            self.head = 0;
        }
        if self.buf.len() < BLOCK.max(self.end + 1) {
            let grown = BLOCK.max(self.end * 2);
            self.buf.resize(grown, 0);
        }
        let n = loop {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return Ok(());
                }
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        };
        self.end += n;
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }

    /// Emits the line `buf[head..bytes_end]` and moves past it to `next`.
    fn emit(&mut self, batch: &mut RecordBatch, bytes_end: usize, next: usize) {
        self.line += 1;
        let line = &self.buf[self.head..bytes_end];
        if !line.is_empty() && line != b"\r" {
            batch.push(line, self.line, None);
        }
        self.head = next;
    }
}

impl PartitionReader for FileReader {
    fn read(&mut self, batch: &mut RecordBatch, max: usize) -> Result<ReadStatus, Error> {
        let before = batch.len();
        self.blocked = false;
        let mut refills = 0;
        while batch.len() - before < max && !self.blocked && refills < REFILLS_PER_READ {
            let avail = &self.buf[self.head..self.end];
            if let Some(skipped) = self.skipping {
                // Inside an over-long line: discard until its newline.
                match memchr::memchr(b'\n', avail) {
                    Some(i) => {
                        let total = skipped + i as u64;
                        if let Some(last) = batch.records.last_mut() {
                            last.2 = Some(total);
                        }
                        self.skipping = None;
                        self.head += i + 1;
                    }
                    None => {
                        self.skipping = Some(skipped + avail.len() as u64);
                        self.head = self.end;
                        if self.eof {
                            if let Some(last) = batch.records.last_mut() {
                                last.2 = self.skipping.take();
                            }
                            continue;
                        }
                        self.refill()?;
                        refills += 1;
                    }
                }
                continue;
            }
            match memchr::memchr(b'\n', avail) {
                Some(i) if i <= self.max_record => {
                    let end = self.head + i;
                    self.emit(batch, end, end + 1);
                }
                Some(_) => self.start_skip(batch),
                None if avail.len() > self.max_record => self.start_skip(batch),
                None if self.eof => {
                    if avail.is_empty() {
                        break;
                    }
                    let end = self.end;
                    self.emit(batch, end, end);
                }
                None => {
                    self.refill()?;
                    refills += 1;
                    if self.end == self.head && self.eof {
                        break;
                    }
                }
            }
        }
        Ok(if batch.len() > before {
            ReadStatus::Data
        } else if self.blocked {
            ReadStatus::Pending
        } else if self.eof && self.head >= self.end && self.skipping.is_none() {
            ReadStatus::Ended
        } else {
            ReadStatus::Data
        })
    }

    fn origin(&self, pos: u64) -> Origin {
        Origin::File {
            path: self.path.clone(),
            line: pos,
        }
    }

    fn describe(&self) -> String {
        format!("file {}", self.path)
    }

    fn resume_point(&self) -> Option<u64> {
        Some(self.line + 1)
    }
}

impl FileReader {
    /// Keeps the first `max_record` bytes of an over-long line and skips the rest.
    fn start_skip(&mut self, batch: &mut RecordBatch) {
        self.line += 1;
        let keep = &self.buf[self.head..self.head + self.max_record];
        batch.push(keep, self.line, Some(self.max_record as u64));
        self.skipping = Some(self.max_record as u64);
        self.head += self.max_record;
    }
}

impl crate::spec::plan::FileConfig {
    /// Opens the file for this process's first worker when it owns partition 0. With several
    /// local workers (and no checkpoints, which need one position per partition) its blocks
    /// are parsed on every local worker in turns, with the event times one reader gives them.
    pub fn open(&self, args: &super::OpenArgs<'_>) -> Result<super::WorkerReaders, Error> {
        let p = args.placement;
        let mut readers = p.empty();
        let path = &self.path;
        if let Some(w) = p.owner(0) {
            let mut file = FileReader::open(path, args.max_record_bytes)?;
            if let Some(&point) = args.resume.get(&file.describe()) {
                file.skip_lines(point.saturating_sub(1))?;
            }
            if path == "-" || p.threads == 1 || args.checkpointed {
                tracing::info!(
                    "logflow: worker {} (process {}) reads {path} (its only partition)",
                    p.first() + w,
                    p.process
                );
                readers[w].push(Box::new(file));
            } else {
                tracing::info!(
                    "logflow: workers {}..={} (process {}) read {path} in turns",
                    p.first(),
                    p.first() + p.threads - 1,
                    p.process
                );
                let turns = super::shared::Turns::new(Box::new(file));
                for list in readers.iter_mut() {
                    list.push(Box::new(turns.clone()));
                }
            }
        }
        Ok(readers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(
        input: &[u8],
        max_record: usize,
        per_call: usize,
    ) -> Vec<(Vec<u8>, u64, Option<u64>)> {
        let mut r =
            FileReader::from_reader("t", Box::new(io::Cursor::new(input.to_vec())), max_record);
        let mut out = Vec::new();
        let mut batch = RecordBatch::default();
        loop {
            batch.clear();
            let status = r.read(&mut batch, per_call).unwrap();
            out.extend(batch.iter().map(|(b, p, c)| (b.to_vec(), p, c)));
            if status == ReadStatus::Ended {
                return out;
            }
        }
    }

    #[test]
    fn splits_lines_and_counts_positions() {
        let got = read_all(b"a\nbb\n\nccc", 100, 2);
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), 1, None),
                (b"bb".to_vec(), 2, None),
                (b"ccc".to_vec(), 4, None)
            ]
        );
    }

    #[test]
    fn cuts_long_lines_and_reports_their_length() {
        let mut input = vec![b'x'; 5000];
        input.extend_from_slice(b"\nok\n");
        input.extend(vec![b'y'; 300]);
        let got = read_all(&input, 100, 10);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0.len(), 100);
        assert_eq!((got[0].1, got[0].2), (1, Some(5000)));
        assert_eq!(got[1], (b"ok".to_vec(), 2, None));
        assert_eq!((got[2].0.len(), got[2].1, got[2].2), (100, 3, Some(300)));
    }

    /// Every record `r` has left, `per_call` at a time.
    fn drain(r: &mut FileReader, per_call: usize) -> Vec<(Vec<u8>, u64)> {
        let mut out = Vec::new();
        let mut batch = RecordBatch::default();
        loop {
            batch.clear();
            let status = r.read(&mut batch, per_call).unwrap();
            out.extend(batch.iter().map(|(b, p, _)| (b.to_vec(), p)));
            if status == ReadStatus::Ended {
                return out;
            }
        }
    }

    #[test]
    fn skipping_lines_resumes_at_the_next_record() {
        let mut input = Vec::new();
        for i in 1..=200_000 {
            input.extend_from_slice(format!("line {i}\n").as_bytes());
            if i % 1000 == 0 {
                input.push(b'\n'); // an empty line: counted, not a record
            }
        }
        let mut whole = FileReader::from_reader("t", Box::new(io::Cursor::new(input.clone())), 64);
        let mut batch = RecordBatch::default();
        whole.read(&mut batch, 150_123).unwrap();
        let point = whole.resume_point().unwrap();
        let rest = drain(&mut whole, 7_000);
        let mut resumed = FileReader::from_reader("t", Box::new(io::Cursor::new(input)), 64);
        resumed.skip_lines(point - 1).unwrap();
        assert_eq!(resumed.resume_point(), Some(point));
        let again = drain(&mut resumed, 9_000);
        assert_eq!(
            rest.first().map(|r| r.0.clone()),
            Some(b"line 150124".to_vec())
        );
        assert_eq!(again, rest);
        // Past the end: nothing more.
        let mut r = FileReader::from_reader("t", Box::new(io::Cursor::new(b"a\nb".to_vec())), 64);
        r.skip_lines(10).unwrap();
        batch.clear();
        assert_eq!(r.read(&mut batch, 10).unwrap(), ReadStatus::Ended);
    }

    #[test]
    fn streams_large_inputs_across_blocks() {
        let mut input = Vec::new();
        for i in 0..300_000 {
            input.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        let got = read_all(&input, 1 << 20, 10_000);
        assert_eq!(got.len(), 300_000);
        assert_eq!(got[299_999].0, b"line 299999".to_vec());
        assert_eq!(got[299_999].1, 300_000);
    }

    /// Endless input without records (`/dev/zero`, endless empty lines): every call returns,
    /// after a bounded number of bytes, so the worker can see a cancel.
    #[test]
    fn endless_input_without_records_still_returns_from_each_read() {
        for byte in [0u8, b'\n', b'x'] {
            let mut r = FileReader::from_reader("t", Box::new(io::repeat(byte)), 1024);
            let mut batch = RecordBatch::default();
            for _ in 0..3 {
                batch.clear();
                let started = std::time::Instant::now();
                assert_eq!(r.read(&mut batch, 1000).unwrap(), ReadStatus::Data);
                assert!(started.elapsed() < std::time::Duration::from_secs(5));
            }
            // An endless line is one record (cut to the limit), and nothing more.
            assert!(batch.len() <= 1, "{byte}: {}", batch.len());
        }
    }

    #[test]
    fn a_directory_is_refused_when_opened() {
        let dir = std::env::temp_dir();
        let err = FileReader::open(&dir.to_string_lossy(), 1024)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("is a directory"), "{err}");
    }
}
