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
//!
//! The handshake proves that both ends hold the peer key (`LOGFLOW_PEER_KEY`, 64 hex digits;
//! `launch` and `cluster start` make a random one for the processes they start): each side
//! sends a hello with a fresh nonce and answers with an HMAC-SHA256 of both hellos, so the key
//! never crosses the wire. Without a key the HMACs are keyed with zeros: only stray programs
//! are kept out, not an impostor. Each connection is shaken hands with on its own thread,
//! under a deadline, and a connection that fails (garbage, a wrong key, a hello that never
//! ends, a process index that does not fit) is refused and logged: start-up goes on waiting
//! for the real peers.

mod connect;
mod watchdog;

use std::io;
use std::path::Path;
use std::time::Duration;

pub use connect::Network;
pub use watchdog::Watchdog;

use crate::Error;

/// Start of every logflow connection (rejects strays and other programs on the port).
const MAGIC: &[u8; 8] = b"LOGFLOW2";
/// Environment variable holding the peer key (hex), the same in every process of a job.
pub const PEER_KEY_ENV: &str = "LOGFLOW_PEER_KEY";
/// The whole handshake of one accepted connection.
const HELLO_DEADLINE: Duration = Duration::from_secs(2);
/// Accepted connections still shaking hands; one more closes the oldest.
const MAX_HANDSHAKES: usize = 64;
/// Refused connections logged one by one; the rest are counted.
const MAX_LOGGED_REFUSALS: usize = 10;
const NONCE: usize = 16;
const HELLO_LEN: usize = 8 + 1 + 3 * 8 + NONCE;
const MAC_LEN: usize = 32;
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
    /// The key every process of the job holds (see the module docs); zeros: none.
    pub peer_key: [u8; 32],
}

/// The peer key from `LOGFLOW_PEER_KEY` (zeros if unset); a value that is not 64 hex digits
/// is an error, not silently no key.
pub fn peer_key_from_env() -> Result<[u8; 32], Error> {
    match std::env::var(PEER_KEY_ENV) {
        Ok(v) if !v.trim().is_empty() => parse_key(v.trim()).ok_or_else(|| {
            Error::Usage(format!("{PEER_KEY_ENV}: not 64 hex digits (a 256-bit key)"))
        }),
        _ => Ok([0; 32]),
    }
}

fn parse_key(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

/// A fresh random peer key, in hex, for the processes a launcher starts.
pub fn new_peer_key() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness for the peer key: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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
    nonce: [u8; NONCE],
}

impl Hello {
    fn new(kind: u8, process: u64, processes: u64, threads: u64) -> io::Result<Hello> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Hello {
            kind,
            process,
            processes,
            threads,
            nonce,
        })
    }

    fn bytes(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8] = self.kind;
        b[9..17].copy_from_slice(&self.process.to_be_bytes());
        b[17..25].copy_from_slice(&self.processes.to_be_bytes());
        b[25..33].copy_from_slice(&self.threads.to_be_bytes());
        b[33..].copy_from_slice(&self.nonce);
        b
    }

    /// `None` when the bytes are not a logflow hello.
    fn parse(b: &[u8; HELLO_LEN]) -> Option<Hello> {
        if &b[..8] != MAGIC {
            return None;
        }
        let n = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(x)
        };
        let mut nonce = [0u8; NONCE];
        nonce.copy_from_slice(&b[33..]);
        Some(Hello {
            kind: b[8],
            process: n(9),
            processes: n(17),
            threads: n(25),
            nonce,
        })
    }
}

/// The proof of one side (`A`ccepting or `D`ialing) that it holds the key, bound to both
/// hellos of this connection (fresh nonces: a recorded proof is worth nothing later).
fn proof(key: &[u8; 32], side: u8, dialer: &Hello, acceptor: &Hello) -> ring::hmac::Tag {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(&[side]);
    ctx.update(&dialer.bytes());
    ctx.update(&acceptor.bytes());
    ctx.sign()
}

/// Checks `mac` in constant time.
fn proven(key: &[u8; 32], side: u8, dialer: &Hello, acceptor: &Hello, mac: &[u8]) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut msg = Vec::with_capacity(1 + 2 * HELLO_LEN);
    msg.push(side);
    msg.extend_from_slice(&dialer.bytes());
    msg.extend_from_slice(&acceptor.bytes());
    ring::hmac::verify(&key, &msg, mac).is_ok()
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
            peer_key: [0; 32],
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
            peer_key: [0; 32],
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

    #[test]
    fn a_peer_key_is_64_hex_digits() {
        assert_eq!(parse_key(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_key(&"ab".repeat(31)), None);
        assert_eq!(parse_key(&"zz".repeat(32)), None);
        assert_eq!(parse_key(&"é".repeat(32)), None);
        assert_eq!(new_peer_key().unwrap().len(), 64);
        assert_ne!(new_peer_key().unwrap(), new_peer_key().unwrap());
    }
}
