//! Several processes as one timely cluster.
//!
//! timely's own start-up retries connecting forever (printing to stdout), and its network
//! threads panic when a connection breaks while the workers wait on progress that never comes.
//! So logflow connects the processes itself, under a deadline, and hands the connected sockets
//! to timely (`initialize_networking_from_sockets`). Next to each data connection it keeps a
//! control connection carrying heartbeats, a clean "finished" and a "failed: reason": a peer
//! that disappears, stops answering or fails makes every other process exit at once with
//! status 1 and a message naming it, instead of hanging.
//!
//! Process `i` connects to every process below it and accepts from every process above it
//! (timely's convention), on the `host:port` of the hostfile.

mod connect;
mod watchdog;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

pub use connect::Network;
pub use watchdog::Watchdog;

use crate::Error;

/// Start of every logflow connection (rejects strays and other programs on the port).
const MAGIC: &[u8; 8] = b"LOGFLOW1";
const DATA: u8 = 1;
const CONTROL: u8 = 2;
/// Control messages.
const HEARTBEAT: u8 = b'H';
const FINISHED: u8 = b'B';
const FAILED: u8 = b'F';
/// Longest failure reason sent to peers.
const MAX_REASON: usize = 4096;

/// The processes of one job: worker threads per process, this process's index, and the
/// `host:port` of every process (line `i` of the hostfile is process `i`).
#[derive(Clone, Debug)]
pub struct Layout {
    pub threads: usize,
    pub process: usize,
    pub addresses: Vec<String>,
    /// How long to wait for peers at start, and for a silent peer before giving it up.
    pub peer_timeout: Duration,
}

impl Layout {
    fn peer(&self, i: usize) -> String {
        format!("process {i} ({})", self.addresses[i])
    }
}

/// Reads a hostfile: one `host:port` per line (blank lines and `#` comments skipped); the
/// first `processes` lines are used.
pub fn read_hostfile(path: &Path, processes: usize) -> Result<Vec<String>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let hosts: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if hosts.len() < processes {
        return Err(Error::Usage(format!(
            "{} lists {} hosts but there are {processes} processes",
            path.display(),
            hosts.len()
        )));
    }
    Ok(hosts[..processes].to_vec())
}

/// What a process says when it connects, and what it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hello {
    kind: u8,
    process: u64,
    processes: u64,
    threads: u64,
}

impl Hello {
    fn write(&self, s: &mut TcpStream) -> io::Result<()> {
        let mut b = Vec::with_capacity(33);
        b.extend_from_slice(MAGIC);
        b.push(self.kind);
        b.extend_from_slice(&self.process.to_be_bytes());
        b.extend_from_slice(&self.processes.to_be_bytes());
        b.extend_from_slice(&self.threads.to_be_bytes());
        s.write_all(&b)
    }

    /// `None` when the bytes are not a logflow hello.
    fn read(s: &mut impl Read) -> io::Result<Option<Hello>> {
        let mut b = [0u8; 33];
        s.read_exact(&mut b)?;
        if &b[..8] != MAGIC {
            return Ok(None);
        }
        let n = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(x)
        };
        Ok(Some(Hello {
            kind: b[8],
            process: n(9),
            processes: n(17),
            threads: n(25),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Instant;

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0)
    }

    #[test]
    fn missing_peer_is_named_after_the_timeout() {
        let addresses = vec![
            format!("127.0.0.1:{}", free_port()),
            format!("127.0.0.1:{}", free_port()),
        ];
        let layout = Layout {
            threads: 1,
            process: 1,
            addresses: addresses.clone(),
            peer_timeout: Duration::from_millis(400),
        };
        let started = Instant::now();
        let err = Network::connect(&layout).err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.contains(&format!("process 0 ({})", addresses[0])),
            "{err}"
        );
        // Given up on the timeout it was given: said, and waited for (no wall-clock upper
        // bound: a loaded machine may take longer to get there, and a hang never returns).
        assert!(err.contains("timed out after 400ms"), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(400));
    }

    #[test]
    fn mismatched_layouts_are_refused() {
        let addresses = vec![
            format!("127.0.0.1:{}", free_port()),
            format!("127.0.0.1:{}", free_port()),
        ];
        let layout = |process, threads| Layout {
            threads,
            process,
            addresses: addresses.clone(),
            peer_timeout: Duration::from_secs(3),
        };
        let other = std::thread::spawn({
            let l = layout(0, 2);
            move || Network::connect(&l).err().map(|e| e.to_string())
        });
        let mine = Network::connect(&layout(1, 1)).err().map(|e| e.to_string());
        let theirs = other.join().ok().flatten();
        let all = format!("{mine:?} {theirs:?}");
        assert!(all.contains("-w 2"), "{all}");
    }
}
