//! The control connections: heartbeats, a clean "finished" and a "failed: reason" between
//! the processes, so that a peer that fails or goes silent stops every other one at once,
//! naming it.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Layout, FAILED, FINISHED, HEARTBEAT, MAX_REASON};
use crate::Error;

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
    pub(super) fn start(
        layout: &Layout,
        control: Vec<Option<TcpStream>>,
    ) -> Result<Arc<Watchdog>, Error> {
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
                        .map_err(|e| Error::Peer(format!("control connection: {e}")))?;
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
                .map_err(|e| Error::Internal(format!("starting the watchdog: {e}")))?;
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
            .map_err(|e| Error::Internal(format!("starting the heartbeat: {e}")))?;
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
pub(super) fn install_panic_hook(wd: Arc<Watchdog>) {
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
