//! A TCP line source (Spark's `socket` source): logflow connects as a client to a server that
//! writes lines, such as `nc -lk 9999`, and reads them without blocking. One partition, read
//! by worker 0.
//!
//! When the server closes the connection the input ends (and with it a job that reads
//! nothing else), unless `reconnect` is set: then logflow connects again every second and
//! goes on reading; line numbers continue across connections.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::file::FileReader;
use super::{PartitionReader, ReadStatus, RecordBatch};
use crate::record::Origin;
use crate::spec::plan::SocketConfig;
use crate::Error;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_secs(1);

fn connect(addr: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                s.set_nonblocking(true)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
}

/// Reads lines from a TCP connection.
pub struct SocketReader {
    config: SocketConfig,
    name: String,
    lines: Option<FileReader>,
    /// Lines of the connections before the current one.
    base: u64,
    next_try: Instant,
    max_record: usize,
}

impl SocketReader {
    /// Connects now: a server that is not there is an error (start it first, as with Spark).
    pub fn open(config: &SocketConfig, max_record: usize) -> Result<Self, Error> {
        let name = format!("tcp://{}", config.address());
        let stream = connect(&config.address(), CONNECT_TIMEOUT).map_err(|e| {
            Error::Input(format!(
                "socket source: cannot connect to {}: {e} (start the line server first, e.g. `nc -lk {}`)",
                config.address(),
                config.port
            ))
        })?;
        Ok(SocketReader {
            lines: Some(FileReader::from_reader(&name, Box::new(stream), max_record)),
            name,
            config: config.clone(),
            base: 0,
            next_try: Instant::now(),
            max_record,
        })
    }
}

impl PartitionReader for SocketReader {
    fn read(&mut self, batch: &mut RecordBatch, max: usize) -> Result<ReadStatus, Error> {
        let Some(lines) = self.lines.as_mut() else {
            if Instant::now() < self.next_try {
                return Ok(ReadStatus::Pending);
            }
            self.next_try = Instant::now() + RETRY;
            if let Ok(s) = connect(&self.config.address(), Duration::from_millis(200)) {
                self.lines = Some(FileReader::from_reader(
                    &self.name,
                    Box::new(s),
                    self.max_record,
                ));
            }
            return Ok(ReadStatus::Pending);
        };
        let before = batch.len();
        // A reset connection ends it like a close.
        let status = lines.read(batch, max).unwrap_or(ReadStatus::Ended);
        for r in &mut batch.records[before..] {
            r.1 += self.base;
        }
        if status != ReadStatus::Ended {
            return Ok(status);
        }
        if !self.config.reconnect {
            return Ok(ReadStatus::Ended);
        }
        self.base += lines.lines();
        self.lines = None;
        self.next_try = Instant::now();
        Ok(if batch.len() > before {
            ReadStatus::Data
        } else {
            ReadStatus::Pending
        })
    }

    fn origin(&self, pos: u64) -> Origin {
        Origin::File {
            path: self.name.clone(),
            line: pos,
        }
    }

    fn describe(&self) -> String {
        format!("socket {}", self.config.address())
    }
}

impl SocketConfig {
    /// Connects on the worker that owns the one partition.
    pub fn open(&self, args: &super::OpenArgs<'_>) -> Result<super::WorkerReaders, Error> {
        let mut readers = args.placement.empty();
        if let Some(w) = args.placement.owner(0) {
            readers[w].push(Box::new(SocketReader::open(self, args.max_record_bytes)?));
        }
        Ok(readers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn read_until(r: &mut SocketReader, want: usize) -> (Vec<(String, u64)>, ReadStatus) {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut batch = RecordBatch::default();
            let status = r.read(&mut batch, 100).unwrap();
            got.extend(
                batch
                    .iter()
                    .map(|(b, p, _)| (String::from_utf8_lossy(b).into_owned(), p)),
            );
            if status == ReadStatus::Ended || got.len() >= want || Instant::now() > deadline {
                return (got, status);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn reads_lines_as_they_come_and_ends_when_the_server_closes() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let cfg = SocketConfig {
            host: "127.0.0.1".into(),
            port,
            reconnect: false,
        };
        let mut r = SocketReader::open(&cfg, 1024).unwrap();
        let (mut conn, _) = server.accept().unwrap();
        let mut batch = RecordBatch::default();
        assert_eq!(r.read(&mut batch, 10).unwrap(), ReadStatus::Pending);
        conn.write_all(b"a b\nhalf").unwrap();
        let (got, _) = read_until(&mut r, 1);
        assert_eq!(got, vec![("a b".to_string(), 1)]);
        conn.write_all(b" line\n").unwrap();
        drop(conn);
        let (got, status) = read_until(&mut r, usize::MAX);
        assert_eq!(got, vec![("half line".to_string(), 2)]);
        assert_eq!(status, ReadStatus::Ended);
    }

    #[test]
    fn reconnects_and_numbers_lines_on() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let cfg = SocketConfig {
            host: "127.0.0.1".into(),
            port,
            reconnect: true,
        };
        let mut r = SocketReader::open(&cfg, 1024).unwrap();
        let (mut conn, _) = server.accept().unwrap();
        conn.write_all(b"one\ntwo\n").unwrap();
        drop(conn);
        let (got, _) = read_until(&mut r, 2);
        assert_eq!(got.len(), 2);
        let accept = std::thread::spawn(move || {
            let (mut conn, _) = server.accept().unwrap();
            conn.write_all(b"three\n").unwrap();
        });
        let (got, status) = read_until(&mut r, 1);
        accept.join().unwrap();
        assert_eq!(got, vec![("three".to_string(), 3)]);
        assert_ne!(status, ReadStatus::Ended);
    }

    #[test]
    fn a_missing_server_is_an_error_that_says_what_to_do() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = SocketConfig {
            host: "127.0.0.1".into(),
            port,
            reconnect: false,
        };
        let err = SocketReader::open(&cfg, 1024).err().unwrap().to_string();
        assert!(
            err.contains("cannot connect") && err.contains("nc -lk"),
            "{err}"
        );
    }
}
