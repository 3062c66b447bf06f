//! Connecting the processes: each dials the processes below it and accepts those above it,
//! under a deadline, checking that every peer runs the same layout; then the data
//! connections go to timely and the control connections to the [`Watchdog`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::ProcessBuilder;
use timely::communication::{AllocatorBuilder, Hooks};

use super::watchdog::{install_panic_hook, Watchdog};
use super::{
    proof, proven, Hello, Layout, CONTROL, DATA, HELLO_DEADLINE, HELLO_LEN, MAC_LEN,
    MAX_HANDSHAKES, MAX_LOGGED_REFUSALS, PEER_KEY_ENV,
};
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
        let hello = move |kind| Hello::new(kind, me as u64, n as u64, threads);
        let bind = &layout.addresses[me];
        let listener = TcpListener::bind(bind)
            .map_err(|e| Error::Endpoint(format!("process {me} cannot listen on {bind}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::Endpoint(format!("listening on {bind}: {e}")))?;
        let hello = move |kind| {
            hello(kind).map_err(|e| Error::Internal(format!("no randomness for a hello: {e}")))
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
                        tracing::warn!(
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
            return Err(Error::Peer(format!(
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
                return Err(Error::Peer(format!(
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
            return Err(Error::Internal(format!("starting a handshake thread: {e}")));
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

#[cfg(test)]
mod tests {
    use super::super::MAGIC;
    use super::*;

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0)
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
}
