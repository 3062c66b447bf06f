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

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::ProcessBuilder;
use timely::communication::{AllocatorBuilder, Hooks};

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
        .map_err(|e| Error::Runtime(format!("no randomness for the peer key: {e}")))?;
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

/// The connections of this process to its peers, once every peer has answered.
pub struct Network {
    layout: Layout,
    /// Data connection to each process (`None` for this one), for timely.
    data: Vec<Option<TcpStream>>,
    watchdog: Arc<Watchdog>,
}

impl Network {
    /// Connects to every peer, or fails after `peer_timeout` naming the peers still missing.
    pub fn connect(layout: &Layout) -> Result<Network, Error> {
        let n = layout.addresses.len();
        let me = layout.process;
        let deadline = Instant::now() + layout.peer_timeout;
        let threads = layout.threads as u64;
        let hello = move |kind| Hello::new(kind, me as u64, n as u64, threads);
        let bind = &layout.addresses[me];
        let listener = TcpListener::bind(bind)
            .map_err(|e| Error::Runtime(format!("process {me} cannot listen on {bind}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::Runtime(format!("listening on {bind}: {e}")))?;
        let hello = move |kind| {
            hello(kind).map_err(|e| Error::Runtime(format!("no randomness for a hello: {e}")))
        };

        // Connect to the processes below, while this thread accepts the ones above.
        let lower = {
            let layout = layout.clone();
            std::thread::spawn(move || -> Result<Vec<[TcpStream; 2]>, Error> {
                (0..me)
                    .map(|i| {
                        Ok([
                            dial(&layout, i, hello(DATA)?, deadline)?,
                            dial(&layout, i, hello(CONTROL)?, deadline)?,
                        ])
                    })
                    .collect()
            })
        };
        // A failure here returns at once; the connecting thread ends by its deadline.
        let mut upper = accept_all(listener, layout, hello, deadline)?;
        let lower = lower
            .join()
            .map_err(|_| Error::Runtime("the connecting thread panicked".into()))??;

        let mut data = Vec::with_capacity(n);
        let mut control = Vec::with_capacity(n);
        for [d, c] in lower {
            data.push(Some(d));
            control.push(Some(c));
        }
        data.push(None);
        control.push(None);
        for slot in upper.iter_mut() {
            let [d, c] = slot
                .take()
                .ok_or_else(|| Error::Runtime("a peer connection went missing".into()))?;
            data.push(Some(d));
            control.push(Some(c));
        }
        for s in data.iter().flatten() {
            s.set_nodelay(true)
                .and_then(|_| s.set_nonblocking(false))
                .map_err(|e| Error::Runtime(format!("configuring a peer connection: {e}")))?;
        }
        let watchdog = Watchdog::start(layout, control)?;
        Ok(Network {
            layout: layout.clone(),
            data,
            watchdog,
        })
    }

    pub fn watchdog(&self) -> &Arc<Watchdog> {
        &self.watchdog
    }

    /// timely's allocators over the connected sockets, and the guard of its network threads.
    pub fn into_timely(
        self,
    ) -> Result<(Vec<AllocatorBuilder>, Box<dyn std::any::Any + Send>), Error> {
        let hooks = Hooks::default();
        let threads = self.layout.threads;
        let process_allocators =
            ProcessBuilder::new_typed_vector(threads, hooks.refill.clone(), hooks.spill.clone());
        install_panic_hook(Arc::clone(&self.watchdog));
        let (builders, guard) = initialize_networking_from_sockets(
            process_allocators,
            self.data,
            self.layout.process,
            threads,
            hooks,
        )
        .map_err(|e| Error::Runtime(format!("starting timely networking: {e}")))?;
        Ok((
            builders.into_iter().map(AllocatorBuilder::Tcp).collect(),
            Box::new(guard),
        ))
    }
}

/// Connects to process `i` until it answers or the deadline passes.
fn dial(layout: &Layout, i: usize, hello: Hello, deadline: Instant) -> Result<TcpStream, Error> {
    let peer = layout.peer(i);
    let mut last = String::from("no attempt");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Runtime(format!(
                "timed out after {:?} waiting for {peer}: {last}",
                layout.peer_timeout
            )));
        }
        match try_dial(
            &layout.addresses[i],
            &layout.peer_key,
            hello,
            left.min(Duration::from_secs(2)),
        ) {
            Ok(s) => return check_answer(layout, i, hello, s),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100).min(left));
    }
}

fn try_dial(
    address: &str,
    key: &[u8; 32],
    hello: Hello,
    timeout: Duration,
) -> io::Result<(TcpStream, Hello)> {
    let addrs: Vec<SocketAddr> = address.to_socket_addrs()?.collect();
    let mut err = io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(mut s) => {
                s.set_read_timeout(Some(timeout))?;
                s.write_all(&hello.bytes())?;
                let mut b = [0u8; HELLO_LEN];
                s.read_exact(&mut b)?;
                let answer = Hello::parse(&b).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "not a logflow process")
                })?;
                let mut mac = [0u8; MAC_LEN];
                s.read_exact(&mut mac)?;
                if !proven(key, b'A', &hello, &answer, &mac) {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("it does not hold this process's peer key ({PEER_KEY_ENV})"),
                    ));
                }
                s.write_all(proof(key, b'D', &hello, &answer).as_ref())?;
                s.set_read_timeout(None)?;
                return Ok((s, answer));
            }
            Err(e) => err = e,
        }
    }
    Err(err)
}

/// The peer that answered must be the process the hostfile names, with the same layout.
fn check_answer(
    layout: &Layout,
    i: usize,
    mine: Hello,
    (s, answer): (TcpStream, Hello),
) -> Result<TcpStream, Error> {
    let peer = layout.peer(i);
    if answer.process != i as u64 {
        return Err(Error::Runtime(format!(
            "{peer} answered as process {}: check the hostfile",
            answer.process
        )));
    }
    same_layout(&peer, mine, answer)?;
    Ok(s)
}

fn same_layout(peer: &str, mine: Hello, theirs: Hello) -> Result<(), Error> {
    if (mine.processes, mine.threads) != (theirs.processes, theirs.threads) {
        return Err(Error::Runtime(format!(
            "{peer} runs with -n {} -w {}, this process with -n {} -w {}",
            theirs.processes, theirs.threads, mine.processes, mine.threads
        )));
    }
    Ok(())
}

/// Accepted connections still shaking hands, by number, oldest first.
type Shaking = Arc<Mutex<std::collections::VecDeque<(u64, TcpStream)>>>;

fn lock_shaking(
    s: &Shaking,
) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(u64, TcpStream)>> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An accepted connection whose handshake succeeded, or where it came from and why it was
/// refused.
type Handshake = Result<(Hello, TcpStream), (String, String)>;

/// Accepts a data and a control connection from every process above this one. Each accepted
/// connection shakes hands on its own thread (at most [`MAX_HANDSHAKES`] at once, one more
/// closes the oldest), so a stray or a hostile client can neither hold up the real peers nor
/// end the start: it is refused, logged, and waited past.
fn accept_all(
    listener: TcpListener,
    layout: &Layout,
    hello: impl Fn(u8) -> Result<Hello, Error>,
    deadline: Instant,
) -> Result<Vec<Option<[TcpStream; 2]>>, Error> {
    let me = layout.process;
    let n = layout.addresses.len();
    let mut got: Vec<[Option<TcpStream>; 2]> = (me + 1..n).map(|_| [None, None]).collect();
    let complete =
        |got: &Vec<[Option<TcpStream>; 2]>| got.iter().all(|[d, c]| d.is_some() && c.is_some());
    let (tx, rx) = std::sync::mpsc::channel::<Handshake>();
    // Connections still shaking hands, oldest first, by number. A handshake thread takes its
    // connection out when it is done, under the same lock as an eviction, so a finished
    // connection is never closed to make room.
    let shaking: Shaking = Arc::default();
    let mut accepted = 0u64;
    let mut refused = 0usize;
    let mut last_refusal = String::new();
    while !complete(&got) {
        while let Ok(done) = rx.try_recv() {
            let (theirs, s) = match done {
                Ok(ok) => ok,
                Err((from, why)) => {
                    refused += 1;
                    if refused <= MAX_LOGGED_REFUSALS {
                        eprintln!(
                            "logflow: refused a peer connection from {from} on {}: {why}",
                            layout.addresses[me]
                        );
                    }
                    last_refusal = format!("{from}: {why}");
                    continue;
                }
            };
            let index = usize::from(theirs.kind == CONTROL);
            // The handshake checked that the index is one of the processes above.
            let k = (theirs.process as usize).checked_sub(me + 1);
            if let Some(slot) = k.and_then(|k| got.get_mut(k)) {
                if slot[index].is_none() {
                    slot[index] = Some(s);
                }
            }
        }
        if complete(&got) {
            break;
        }
        if Instant::now() >= deadline {
            let missing: Vec<String> = got
                .iter()
                .enumerate()
                .filter(|(_, [d, c])| d.is_none() || c.is_none())
                .map(|(k, _)| layout.peer(me + 1 + k))
                .collect();
            let refusals = match refused {
                0 => String::new(),
                r => format!("; refused {r} connections, the last from {last_refusal}"),
            };
            return Err(Error::Runtime(format!(
                "timed out after {:?} waiting for {} to connect to {}{refusals}",
                layout.peer_timeout,
                missing.join(", "),
                layout.addresses[me]
            )));
        }
        let (s, from) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Runtime(format!(
                    "accepting on {}: {e}",
                    layout.addresses[me]
                )))
            }
        };
        accepted += 1;
        let id = accepted;
        {
            let mut sh = lock_shaking(&shaking);
            if sh.len() >= MAX_HANDSHAKES {
                if let Some((_, oldest)) = sh.pop_front() {
                    // Its thread's read fails at once and reports the refusal.
                    let _ = oldest.shutdown(std::net::Shutdown::Both);
                }
            }
            match s.try_clone() {
                Ok(w) => sh.push_back((id, w)),
                Err(_) => continue,
            }
        }
        let mine = hello(DATA)?;
        let (layout, tx, sh) = (layout.clone(), tx.clone(), Arc::clone(&shaking));
        let spawned = std::thread::Builder::new()
            .name("logflow:hello".into())
            .spawn(move || {
                let done = shake_hands(&layout, s, mine);
                let mut sh = lock_shaking(&sh);
                let before = sh.len();
                sh.retain(|(i, _)| *i != id);
                let done = match done {
                    Ok(_) if sh.len() == before => {
                        Err("closed to make room for newer connections".to_string())
                    }
                    d => d,
                };
                drop(sh);
                let _ = tx.send(done.map_err(|why| (from.to_string(), why)));
            });
        if let Err(e) = spawned {
            return Err(Error::Runtime(format!("starting a handshake thread: {e}")));
        }
    }
    Ok(got
        .into_iter()
        .map(|[d, c]| d.zip(c).map(|(d, c)| [d, c]))
        .collect())
}

/// The accepting side of one connection's handshake, all of it within [`HELLO_DEADLINE`]:
/// their hello, ours with our proof, their proof; then their index and layout must fit.
/// `mine` is this process's hello (its kind is set to theirs).
fn shake_hands(
    layout: &Layout,
    mut s: TcpStream,
    mine: Hello,
) -> Result<(Hello, TcpStream), String> {
    let me = layout.process;
    let n = layout.addresses.len();
    let until = Instant::now() + HELLO_DEADLINE;
    s.set_nonblocking(false).map_err(|e| e.to_string())?;
    let mut r = crate::metrics::listener::Deadline { stream: &s, until };
    let mut b = [0u8; HELLO_LEN];
    r.read_exact(&mut b)
        .map_err(|e| format!("no whole hello within {HELLO_DEADLINE:?} ({e})"))?;
    let theirs = Hello::parse(&b).ok_or("not a logflow hello")?;
    if !matches!(theirs.kind, DATA | CONTROL) {
        return Err(format!("a hello of unknown kind {}", theirs.kind));
    }
    let mine = Hello {
        kind: theirs.kind,
        ..mine
    };
    // Answer before judging, so that a real peer with another layout can name it.
    let mut answer = mine.bytes().to_vec();
    answer.extend_from_slice(proof(&layout.peer_key, b'A', &theirs, &mine).as_ref());
    s.set_write_timeout(Some(HELLO_DEADLINE))
        .and_then(|_| s.write_all(&answer))
        .map_err(|e| format!("answering: {e}"))?;
    let mut mac = [0u8; MAC_LEN];
    let mut r = crate::metrics::listener::Deadline { stream: &s, until };
    r.read_exact(&mut mac)
        .map_err(|e| format!("no proof of the peer key within {HELLO_DEADLINE:?} ({e})"))?;
    if !proven(&layout.peer_key, b'D', &theirs, &mine, &mac) {
        return Err(format!("a wrong peer key ({PEER_KEY_ENV})"));
    }
    if theirs.process <= me as u64 || theirs.process >= n as u64 {
        return Err(format!(
            "it says it is process {} of {}: check the hostfile",
            theirs.process, theirs.processes
        ));
    }
    let peer = layout.peer(theirs.process as usize);
    same_layout(&peer, mine, theirs).map_err(|e| e.to_string())?;
    s.set_read_timeout(None)
        .and_then(|_| s.set_write_timeout(None))
        .map_err(|e| e.to_string())?;
    Ok((theirs, s))
}

/// Watches the peers over the control connections; see the module docs.
pub struct Watchdog {
    layout: Layout,
    /// Write side of each peer's control connection.
    writers: Vec<Option<Mutex<TcpStream>>>,
    /// This process has finished cleanly: closed connections are expected now.
    finished: AtomicBool,
}

/// Set by the first fatal cluster error; later ones wait for the exit it makes.
static ABORTING: AtomicBool = AtomicBool::new(false);

impl Watchdog {
    fn start(layout: &Layout, control: Vec<Option<TcpStream>>) -> Result<Arc<Watchdog>, Error> {
        let timeout = layout.peer_timeout;
        let beat = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut writers = Vec::with_capacity(control.len());
        let mut readers = Vec::new();
        for (i, c) in control.into_iter().enumerate() {
            match c {
                Some(s) => {
                    let r = s
                        .try_clone()
                        .and_then(|r| r.set_read_timeout(Some(timeout)).map(|_| r))
                        .map_err(|e| Error::Runtime(format!("control connection: {e}")))?;
                    readers.push((i, r));
                    writers.push(Some(Mutex::new(s)));
                }
                None => writers.push(None),
            }
        }
        let wd = Arc::new(Watchdog {
            layout: layout.clone(),
            writers,
            finished: AtomicBool::new(false),
        });
        for (i, r) in readers {
            let w = Arc::clone(&wd);
            std::thread::Builder::new()
                .name(format!("logflow:watch-{i}"))
                .spawn(move || w.watch(i, r))
                .map_err(|e| Error::Runtime(format!("starting the watchdog: {e}")))?;
        }
        let w = Arc::clone(&wd);
        std::thread::Builder::new()
            .name("logflow:heartbeat".into())
            .spawn(move || {
                while !w.finished.load(Ordering::SeqCst) {
                    w.send_all(&[HEARTBEAT]);
                    std::thread::sleep(beat);
                }
            })
            .map_err(|e| Error::Runtime(format!("starting the heartbeat: {e}")))?;
        Ok(wd)
    }

    /// Reads peer `i`'s control messages until it finishes; anything else ends this process.
    fn watch(&self, i: usize, mut r: TcpStream) {
        let peer = self.layout.peer(i);
        let mut b = [0u8; 1];
        loop {
            let res = r.read(&mut b);
            if self.finished.load(Ordering::SeqCst) {
                return;
            }
            match res {
                Ok(1) if b[0] == HEARTBEAT => {}
                Ok(1) if b[0] == FINISHED => return,
                Ok(1) if b[0] == FAILED => {
                    let mut len = [0u8; 4];
                    let mut reason = vec![0u8; MAX_REASON];
                    let reason = r.read_exact(&mut len).ok().and_then(|_| {
                        let n = (u32::from_be_bytes(len) as usize).min(MAX_REASON);
                        r.read_exact(&mut reason[..n]).ok()?;
                        Some(String::from_utf8_lossy(&reason[..n]).into_owned())
                    });
                    let reason = reason.unwrap_or_else(|| "no reason given".into());
                    self.abort(&format!("{peer} failed: {reason}"));
                }
                Ok(0) => self.abort(&format!("lost {peer}: connection closed")),
                Ok(_) => self.abort(&format!("lost {peer}: unexpected control message")),
                // A read with a timeout fails so when the process was stopped (SIGSTOP, a
                // frozen container) and continued: the peer is still there.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    self.abort(&format!(
                        "lost {peer}: no heartbeat for {:?}",
                        self.layout.peer_timeout
                    ))
                }
                Err(e) => self.abort(&format!("lost {peer}: {e}")),
            }
        }
    }

    fn send_all(&self, msg: &[u8]) {
        for w in self.writers.iter().flatten() {
            if let Ok(mut s) = w.lock() {
                // A broken connection is reported by that peer's reader.
                let _ = s.write_all(msg);
            }
        }
    }

    /// This process finished cleanly: peers may now see its connections close.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
        self.send_all(&[FINISHED]);
    }

    /// Tells every peer that this process failed, and why; from now on this process is only
    /// on its way out, so its own watch stays quiet.
    pub fn fail(&self, reason: &str) {
        self.finished.store(true, Ordering::SeqCst);
        let bytes = reason.as_bytes();
        let bytes = &bytes[..bytes.len().min(MAX_REASON)];
        let mut msg = vec![FAILED];
        msg.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        msg.extend_from_slice(bytes);
        self.send_all(&msg);
    }

    /// Ends this process: the cluster cannot go on (timely has no way to abandon a
    /// computation whose peer is gone). Prints one line, tells the peers, exits 1.
    pub fn abort(&self, reason: &str) -> ! {
        if ABORTING.swap(true, Ordering::SeqCst) {
            // Another thread is already exiting the process.
            loop {
                std::thread::park();
            }
        }
        eprintln!("logflow: {reason}");
        self.fail(reason);
        std::process::exit(1);
    }
}

/// Panics in timely's threads (a network thread whose connection broke, a worker) end the
/// process through the watchdog, naming the peer for network threads (`timely:recv-N`).
fn install_panic_hook(wd: Arc<Watchdog>) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or_default();
        if !name.starts_with("timely:") {
            return previous(info);
        }
        let what = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("panic");
        let peer = name
            .strip_prefix("timely:recv-")
            .or_else(|| name.strip_prefix("timely:send-"))
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|i| *i < wd.layout.addresses.len());
        match peer {
            Some(i) => {
                // The control connection may explain the break (that peer failed, or it lost
                // another peer first): give its reader a moment to report that instead.
                std::thread::sleep(Duration::from_millis(250));
                wd.abort(&format!("lost {}: {what}", wd.layout.peer(i)))
            }
            None => wd.abort(&format!("{name} panicked: {what}")),
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn stray_and_hostile_hellos_are_refused_while_the_real_peer_connects() {
        let addresses = vec![
            format!("127.0.0.1:{}", free_port()),
            format!("127.0.0.1:{}", free_port()),
        ];
        let key = [7u8; 32];
        let layout = |process| Layout {
            threads: 1,
            process,
            addresses: addresses.clone(),
            peer_timeout: Duration::from_secs(20),
            peer_key: key,
        };
        let started = Instant::now();
        let zero = {
            let l = layout(0);
            std::thread::spawn(move || Network::connect(&l).map(|_| ()))
        };
        let target: SocketAddr = addresses[0].parse().unwrap();
        let connect = || loop {
            if let Ok(s) = TcpStream::connect(target) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // 100 clients that never finish a hello (each would cost 2 s one after the other),
        // garbage, a hello with the wrong key, and one with the right key but an index no
        // process has: none may end or hold up the start.
        let mut slow: Vec<TcpStream> = (0..100).map(|_| connect()).collect();
        for s in &mut slow {
            let _ = s.write_all(&MAGIC[..3]);
        }
        let mut garbage = connect();
        garbage.write_all(&[0xab; HELLO_LEN + MAC_LEN]).unwrap();
        let impostor = Hello::new(DATA, 1, 2, 1).unwrap();
        let wrong_key = try_dial(&addresses[0], &[8u8; 32], impostor, Duration::from_secs(5));
        assert!(wrong_key.is_err(), "the impostor got in");
        let stray = Hello::new(DATA, 5, 9, 1).unwrap();
        let _kept_open = try_dial(&addresses[0], &key, stray, Duration::from_secs(5));
        // The real process 1 connects, and so both ends start.
        Network::connect(&layout(1)).unwrap();
        zero.join().unwrap().unwrap();
        // Well before 100 slow clients in a row would have let it (200 s), with time to spare
        // on a loaded machine.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
        drop(slow);
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
