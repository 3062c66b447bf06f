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
        let hello = move |kind| Hello {
            kind,
            process: me as u64,
            processes: n as u64,
            threads,
        };
        let bind = &layout.addresses[me];
        let listener = TcpListener::bind(bind)
            .map_err(|e| Error::Runtime(format!("process {me} cannot listen on {bind}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::Runtime(format!("listening on {bind}: {e}")))?;

        // Connect to the processes below, while this thread accepts the ones above.
        let lower = {
            let layout = layout.clone();
            std::thread::spawn(move || -> Result<Vec<[TcpStream; 2]>, Error> {
                (0..me)
                    .map(|i| {
                        Ok([
                            dial(&layout, i, hello(DATA), deadline)?,
                            dial(&layout, i, hello(CONTROL), deadline)?,
                        ])
                    })
                    .collect()
            })
        };
        // A failure here returns at once; the connecting thread ends by its deadline.
        let mut upper = accept_all(&listener, layout, hello, deadline)?;
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
            hello,
            left.min(Duration::from_secs(2)),
        ) {
            Ok(s) => return check_answer(layout, i, hello, s),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100).min(left));
    }
}

fn try_dial(address: &str, hello: Hello, timeout: Duration) -> io::Result<(TcpStream, Hello)> {
    let addrs: Vec<SocketAddr> = address.to_socket_addrs()?.collect();
    let mut err = io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(mut s) => {
                s.set_read_timeout(Some(timeout))?;
                hello.write(&mut s)?;
                let answer = Hello::read(&mut s)?.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "not a logflow process")
                })?;
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

/// Accepts a data and a control connection from every process above this one.
fn accept_all(
    listener: &TcpListener,
    layout: &Layout,
    hello: impl Fn(u8) -> Hello,
    deadline: Instant,
) -> Result<Vec<Option<[TcpStream; 2]>>, Error> {
    let me = layout.process;
    let n = layout.addresses.len();
    let mut got: Vec<[Option<TcpStream>; 2]> = (me + 1..n).map(|_| [None, None]).collect();
    let complete =
        |got: &Vec<[Option<TcpStream>; 2]>| got.iter().all(|[d, c]| d.is_some() && c.is_some());
    while !complete(&got) {
        if Instant::now() >= deadline {
            let missing: Vec<String> = got
                .iter()
                .enumerate()
                .filter(|(_, [d, c])| d.is_none() || c.is_none())
                .map(|(k, _)| layout.peer(me + 1 + k))
                .collect();
            return Err(Error::Runtime(format!(
                "timed out after {:?} waiting for {} to connect to {}",
                layout.peer_timeout,
                missing.join(", "),
                layout.addresses[me]
            )));
        }
        let mut s = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => {
                return Err(Error::Runtime(format!(
                    "accepting on {}: {e}",
                    layout.addresses[me]
                )))
            }
        };
        // A stray connection (not logflow, or too slow to say hello) is dropped, not fatal.
        // The 2 s are for the whole hello: a peer trickling it byte by byte is cut as well.
        let theirs = s.set_nonblocking(false).and_then(|_| {
            Hello::read(&mut crate::metrics::listener::Deadline {
                stream: &s,
                until: Instant::now() + Duration::from_secs(2),
            })
        });
        let Ok(Some(theirs)) = theirs else { continue };
        let k = (theirs.process as usize).checked_sub(me + 1);
        let Some(slot) = k.and_then(|k| got.get_mut(k)) else {
            return Err(Error::Runtime(format!(
                "a process at {} says it is process {} of {}: check the hostfile",
                s.peer_addr()
                    .map_or_else(|_| "?".to_string(), |a| a.to_string()),
                theirs.process,
                theirs.processes
            )));
        };
        let peer = layout.peer(theirs.process as usize);
        let index = match theirs.kind {
            DATA => 0,
            CONTROL => 1,
            _ => continue,
        };
        // Answer before judging, so that both sides can name a mismatch.
        let mine = hello(theirs.kind);
        mine.write(&mut s)
            .and_then(|_| s.set_read_timeout(None))
            .map_err(|e| Error::Runtime(format!("answering {peer}: {e}")))?;
        same_layout(&peer, mine, theirs)?;
        slot[index] = Some(s);
    }
    Ok(got
        .into_iter()
        .map(|[d, c]| d.zip(c).map(|(d, c)| [d, c]))
        .collect())
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
        tracing::error!("logflow: {reason}");
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
