//! Connecting the processes: each dials the processes below it and accepts those above it,
//! under a deadline, checking that every peer runs the same layout; then the data
//! connections go to timely and the control connections to the [`Watchdog`].

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::ProcessBuilder;
use timely::communication::{AllocatorBuilder, Hooks};

use super::watchdog::{install_panic_hook, Watchdog};
use super::{Hello, Layout, CONTROL, DATA};
use crate::Error;

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
            .map_err(|e| Error::Endpoint(format!("process {me} cannot listen on {bind}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::Endpoint(format!("listening on {bind}: {e}")))?;

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
            .map_err(|_| Error::Internal("the connecting thread panicked".into()))??;

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
                .ok_or_else(|| Error::Peer("a peer connection went missing".into()))?;
            data.push(Some(d));
            control.push(Some(c));
        }
        for s in data.iter().flatten() {
            s.set_nodelay(true)
                .and_then(|_| s.set_nonblocking(false))
                .map_err(|e| Error::Peer(format!("configuring a peer connection: {e}")))?;
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
        .map_err(|e| Error::Peer(format!("starting timely networking: {e}")))?;
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
            return Err(Error::Peer(format!(
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
        return Err(Error::Peer(format!(
            "{peer} answered as process {}: check the hostfile",
            answer.process
        )));
    }
    same_layout(&peer, mine, answer)?;
    Ok(s)
}

fn same_layout(peer: &str, mine: Hello, theirs: Hello) -> Result<(), Error> {
    if (mine.processes, mine.threads) != (theirs.processes, theirs.threads) {
        return Err(Error::Peer(format!(
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
            return Err(Error::Peer(format!(
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
                return Err(Error::Peer(format!(
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
            return Err(Error::Peer(format!(
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
            .map_err(|e| Error::Peer(format!("answering {peer}: {e}")))?;
        same_layout(&peer, mine, theirs)?;
        slot[index] = Some(s);
    }
    Ok(got
        .into_iter()
        .map(|[d, c]| d.zip(c).map(|(d, c)| [d, c]))
        .collect())
}
