//! A directory of files picked up as they appear (Spark's file stream source): every file
//! whose name matches `pattern`, oldest first (modification time, then name), read to its
//! end once. One partition, read by worker 0.
//!
//! Files must be complete when they appear: write them elsewhere (or under a hidden name,
//! `.name`, which is never read) and move them in, as Spark requires. `max_files_per_trigger`
//! bounds how many new files one read starts; `end_after_idle` ends the input when no new file
//! has come for that long (for tests and batch runs); without it the source never ends.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use super::file::FileReader;
use super::{PartitionReader, ReadStatus, RecordBatch};
use crate::record::Origin;
use crate::spec::plan::DirectoryConfig;
use crate::Error;

/// `*` (any run) and `?` (one character) wildcards.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// How often the folder is listed while nothing is being read.
const SCAN_EVERY: Duration = Duration::from_millis(50);

/// Reads the files of a folder as they appear.
pub struct DirectoryReader {
    config: DirectoryConfig,
    max_record: usize,
    seen: HashSet<PathBuf>,
    queue: VecDeque<PathBuf>,
    current: Option<(FileReader, u64)>,
    /// (first position, path) of every file started: positions are global line numbers.
    files: Vec<(u64, String)>,
    next_base: u64,
    last_activity: Instant,
    last_scan: Option<Instant>,
}

impl DirectoryReader {
    /// Checks that the folder exists.
    pub fn open(config: &DirectoryConfig, max_record: usize) -> Result<Self, Error> {
        let meta = std::fs::metadata(&config.path).map_err(|e| Error::io(&config.path, e))?;
        if !meta.is_dir() {
            return Err(Error::Input(format!(
                "directory source: {} is not a folder",
                config.path
            )));
        }
        Ok(DirectoryReader {
            config: config.clone(),
            max_record,
            seen: HashSet::new(),
            queue: VecDeque::new(),
            current: None,
            files: Vec::new(),
            next_base: 0,
            last_activity: Instant::now(),
            last_scan: None,
        })
    }

    /// Queues the new matching files, oldest first.
    fn scan(&mut self) -> Result<(), Error> {
        if self.last_scan.is_some_and(|t| t.elapsed() < SCAN_EVERY) {
            return Ok(());
        }
        self.last_scan = Some(Instant::now());
        let dir = &self.config.path;
        let mut new: Vec<(SystemTime, String, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with('.')
                || !glob_match(&self.config.pattern, &name)
                || self.seen.contains(&path)
            {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            new.push((
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                name,
                path,
            ));
        }
        new.sort();
        for (_, _, path) in new {
            self.seen.insert(path.clone());
            self.queue.push_back(path);
        }
        Ok(())
    }
}

impl PartitionReader for DirectoryReader {
    fn read(&mut self, batch: &mut RecordBatch, max: usize) -> Result<ReadStatus, Error> {
        let before = batch.len();
        let mut started = 0;
        while batch.len() - before < max {
            if self.current.is_none() {
                if self.queue.is_empty() {
                    self.scan()?;
                }
                if started >= self.config.max_files_per_trigger {
                    break;
                }
                let Some(path) = self.queue.pop_front() else {
                    break;
                };
                let name = path.display().to_string();
                let reader = FileReader::open(&name, self.max_record)?;
                self.files.push((self.next_base, name));
                self.current = Some((reader, self.next_base));
                started += 1;
                self.last_activity = Instant::now();
            }
            let Some((reader, base)) = self.current.as_mut() else {
                break;
            };
            let from = batch.len();
            let status = reader.read(batch, max - (batch.len() - before))?;
            for r in &mut batch.records[from..] {
                r.1 += *base;
            }
            if status == ReadStatus::Ended {
                // One line per file: what was picked up, and when, is visible without metrics
                // (the tests wait for it before dropping the next file).
                if let Some((_, name)) = self.files.last() {
                    eprintln!(
                        "logflow: directory source read {name} ({} lines)",
                        reader.lines()
                    );
                }
                self.next_base = *base + reader.lines();
                self.current = None;
                self.last_activity = Instant::now();
            }
        }
        if batch.len() > before || self.current.is_some() || !self.queue.is_empty() {
            return Ok(ReadStatus::Data);
        }
        Ok(match self.config.end_after_idle {
            Some(idle) if self.last_activity.elapsed() >= idle => ReadStatus::Ended,
            _ => ReadStatus::Pending,
        })
    }

    fn origin(&self, pos: u64) -> Origin {
        let i = self.files.partition_point(|(base, _)| *base < pos);
        match i.checked_sub(1).and_then(|i| self.files.get(i)) {
            Some((base, path)) => Origin::File {
                path: path.clone(),
                line: pos - base,
            },
            None => Origin::File {
                path: self.config.path.clone(),
                line: pos,
            },
        }
    }

    fn describe(&self) -> String {
        format!("directory {}", self.config.path)
    }
}

impl DirectoryConfig {
    /// Watches the folder on the worker that owns the one partition.
    pub fn open(&self, args: &super::OpenArgs<'_>) -> Result<super::WorkerReaders, Error> {
        let mut readers = args.placement.empty();
        if let Some(w) = args.placement.owner(0) {
            readers[w].push(Box::new(DirectoryReader::open(
                self,
                args.max_record_bytes,
            )?));
        }
        Ok(readers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(glob_match("*", "a.txt"));
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "a.txt.tmp"));
        assert!(glob_match("log-??.json", "log-01.json"));
        assert!(!glob_match("log-??.json", "log-1.json"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }

    fn read(r: &mut DirectoryReader) -> (Vec<(String, u64)>, ReadStatus) {
        let mut batch = RecordBatch::default();
        let status = r.read(&mut batch, 1000).unwrap();
        let got = batch
            .iter()
            .map(|(b, p, _)| (String::from_utf8_lossy(b).into_owned(), p))
            .collect();
        (got, status)
    }

    #[test]
    fn picks_up_files_as_they_appear_a_few_per_read() {
        let dir = std::env::temp_dir().join(format!("logflow-dir-src-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = DirectoryConfig {
            path: dir.display().to_string(),
            pattern: "*.txt".into(),
            max_files_per_trigger: 2,
            end_after_idle: Some(Duration::from_millis(300)),
        };
        let mut r = DirectoryReader::open(&cfg, 1024).unwrap();
        assert_eq!(read(&mut r).1, ReadStatus::Pending);
        // Oldest first, whatever the names.
        for (name, text) in [("b.txt", "b1\nb2\n"), ("a.txt", "a1\n"), ("c.txt", "c1\n")] {
            std::fs::write(dir.join(name), text).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::write(dir.join("skip.csv"), "no\n").unwrap();
        std::fs::write(dir.join(".hidden.txt"), "no\n").unwrap();
        std::thread::sleep(SCAN_EVERY);
        let (got, _) = read(&mut r);
        assert_eq!(
            got,
            vec![("b1".into(), 1), ("b2".into(), 2), ("a1".into(), 3)],
            "two files per read"
        );
        let (got, _) = read(&mut r);
        assert_eq!(got, vec![("c1".into(), 4)]);
        assert_eq!(
            r.origin(3),
            Origin::File {
                path: dir.join("a.txt").display().to_string(),
                line: 1
            }
        );
        std::fs::write(dir.join("d.txt"), "d1\n").unwrap();
        std::thread::sleep(SCAN_EVERY);
        let (got, _) = read(&mut r);
        assert_eq!(got, vec![("d1".into(), 5)]);
        let started = Instant::now();
        loop {
            let (got, status) = read(&mut r);
            assert!(got.is_empty());
            if status == ReadStatus::Ended {
                break;
            }
            // A deadline for a hang only (generous: a loaded machine is slow, not wrong).
            assert!(started.elapsed() < Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(started.elapsed() >= Duration::from_millis(250));
    }
}
