//! Limits shared by the TCP listeners (metrics and the cluster's control endpoint): a cap on
//! connections being read, a deadline for a whole request, and a bound on its size.
//!
//! Each connection gets its own thread, so a slow client holds up no one else. While its
//! request is being read a connection is *pending*; at most `max_pending` are, and when one
//! more arrives the oldest pending one is closed. So idle or trickling connections can neither
//! pile up threads nor lock out the next client: a real request, sent at once, is read long
//! before a thousand later connections could push it out.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Connections whose request is still being read, oldest first.
type Pending = Arc<Mutex<VecDeque<(u64, TcpStream)>>>;

/// A connection's place among the pending ones; released when its request has been read (or
/// when the handler returns).
pub struct Slot {
    id: u64,
    pending: Pending,
}

impl Slot {
    /// The request is read: this connection can no longer be closed to make room.
    pub fn release(&self) {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        p.retain(|(id, _)| *id != self.id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

/// Accepts connections on `listener` forever, each handled by `handler` on a thread named
/// `name`, at most `max_pending` of them still reading their request (see the module docs).
pub fn serve_bounded<F>(listener: TcpListener, name: &str, max_pending: usize, handler: F)
where
    F: Fn(TcpStream, &Slot) + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let pending: Pending = Arc::default();
    let mut next = 0u64;
    for stream in listener.incoming().flatten() {
        next += 1;
        let Ok(watch) = stream.try_clone() else {
            continue;
        };
        {
            let mut p = pending.lock().unwrap_or_else(PoisonError::into_inner);
            while p.len() >= max_pending.max(1) {
                if let Some((_, oldest)) = p.pop_front() {
                    // Its thread's read fails at once and the thread ends.
                    let _ = oldest.shutdown(Shutdown::Both);
                }
            }
            p.push_back((next, watch));
        }
        let slot = Slot {
            id: next,
            pending: Arc::clone(&pending),
        };
        let h = Arc::clone(&handler);
        let spawned = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || h(stream, &slot));
        if spawned.is_err() {
            // The slot was dropped with the closure: nothing is left pending.
            continue;
        }
    }
}

/// Why a request could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// More than the bound arrived before the request's end.
    TooLarge,
    /// The whole request did not arrive before its deadline.
    Deadline,
    /// The client closed the connection before the request's end.
    Closed,
    /// The connection failed (the callers drop it: a client's broken connection is theirs).
    Io,
}

/// Reads from `stream` until `complete` says the bytes so far hold a whole request, at most
/// `max` bytes and until `deadline` in all (not per read: a client sending one byte a
/// second is cut at the deadline like a silent one).
pub fn read_request(
    stream: &mut TcpStream,
    deadline: Instant,
    max: usize,
    complete: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Deadline);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| ReadError::Io)?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ReadError::Deadline)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(ReadError::Io),
        };
        // A terminator may straddle two reads (at most 4 bytes long: HTTP's blank line).
        let start = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if complete(&buf[start..]) {
            return Ok(buf);
        }
        if buf.len() > max {
            return Err(ReadError::TooLarge);
        }
    }
}

/// Reads and drops what the client still sends, until it closes or `deadline`: closing a
/// socket with unread input resets it, and the reset can discard the reply already written.
pub fn drain(stream: &mut TcpStream, deadline: Instant) {
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Reads from `stream` with one deadline for every read together (for a fixed-size message
/// read with `read_exact`).
pub struct Deadline<'a> {
    pub stream: &'a TcpStream,
    pub until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut s = self.stream;
        s.read(buf)
    }
}

/// A deadline `d` from now.
pub fn deadline(d: Duration) -> Instant {
    Instant::now() + d
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::SocketAddr;

    /// A listener whose handler reads one line (1 KiB at most, 1 s in all) and echoes its
    /// length, or the read error.
    fn echo(max_pending: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            serve_bounded(listener, "test-conn", max_pending, |mut s, slot| {
                let r = read_request(&mut s, deadline(Duration::from_secs(1)), 1024, |b| {
                    b.contains(&b'\n')
                });
                slot.release();
                let answer = match r {
                    Ok(b) => format!("ok {}\n", b.len()),
                    Err(e) => format!("{e:?}\n"),
                };
                let _ = s.write_all(answer.as_bytes());
                let _ = s.shutdown(Shutdown::Write);
                drain(&mut s, deadline(Duration::from_secs(1)));
            })
        });
        addr
    }

    /// The handler's answer line ("" if the connection was closed without one).
    fn answer(s: &TcpStream) -> String {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = String::new();
        let _ = io::BufRead::read_line(&mut io::BufReader::new(s), &mut out);
        out
    }

    #[test]
    fn idle_connections_make_room_for_a_real_request() {
        let addr = echo(4);
        let idle: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"hello\n").unwrap();
        assert_eq!(answer(&s), "ok 6\n");
        // The oldest idle connections were closed to make room.
        let first = idle.into_iter().next().unwrap();
        assert_eq!(answer(&first), "");
    }

    #[test]
    fn a_trickle_is_cut_at_the_deadline_and_a_flood_at_the_bound() {
        let addr = echo(4);
        let s = TcpStream::connect(addr).unwrap();
        let mut w = s.try_clone().unwrap();
        let started = Instant::now();
        std::thread::spawn(move || {
            for _ in 0..30 {
                let _ = w.write_all(b"x");
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        // Cut after the 1 s deadline, long before the 3 s the trickle lasts.
        assert_eq!(answer(&s), "Deadline\n");
        assert!(started.elapsed() < Duration::from_millis(2500));

        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(&[b'x'; 4096]);
        assert_eq!(answer(&s), "TooLarge\n");
    }

    #[test]
    fn a_fixed_size_read_has_one_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut w = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (s, _) = listener.accept().unwrap();
        std::thread::spawn(move || {
            for _ in 0..20 {
                let _ = w.write_all(b"x");
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let started = Instant::now();
        let mut buf = [0u8; 16];
        let mut r = Deadline {
            stream: &s,
            until: deadline(Duration::from_millis(500)),
        };
        let e = r.read_exact(&mut buf).unwrap_err();
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_millis(1000));
    }
}
