//! The peer handshake of a cluster under attack during its start: while process 0 waits for
//! process 1, raw TCP clients connect to its peer port with garbage, with a hello that never
//! ends, with a well-formed hello under the wrong peer key, and 200 of them at once. None of
//! them ends or holds up the start: each is refused and logged, the real process 1 connects,
//! and the cluster serves requests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster::{hostfile, local_addresses, Proc};
use common::{bin, tmpdir};

/// The control endpoint's address: `LOGFLOW_IT_CONTROL_PORT` plus an offset no other test
/// file uses.
fn control() -> String {
    let port: u16 = std::env::var("LOGFLOW_IT_CONTROL_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(19479);
    format!("127.0.0.1:{}", port + 12)
}

/// A well-formed hello (`LOGFLOW2`, data, process 1 of 2, 1 worker, a nonce).
fn hello() -> Vec<u8> {
    let mut b = b"LOGFLOW2".to_vec();
    b.push(1);
    for n in [1u64, 2, 1] {
        b.extend_from_slice(&n.to_be_bytes());
    }
    b.extend_from_slice(&[9u8; 16]);
    b
}

#[test]
fn hostile_clients_during_start_up_are_refused_and_the_real_peer_connects() {
    let dir = tmpdir("peer-handshake");
    let addresses = local_addresses(2);
    let hosts = hostfile(&dir, &addresses);
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{}\n", "3c".repeat(32))).unwrap();
    let key = "a1".repeat(32);
    let addr = control();
    let process = |p: &str| {
        let mut c = bin();
        c.args(["cluster", "start", "-n", "2", "-w", "1", "-p", p])
            .arg("--hostfile")
            .arg(&hosts)
            .args(["--control", &addr, "--peer-timeout", "40s"])
            .arg("--token-file")
            .arg(&token_file)
            .arg("--allow-dir")
            .arg(&dir)
            .env("LOGFLOW_PEER_KEY", &key);
        c
    };
    let mut zero = Proc::spawn(process("0"), &dir, "p0", Stdio::null());
    let connect = || {
        let started = Instant::now();
        loop {
            if let Ok(s) = TcpStream::connect(&addresses[0]) {
                return s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "process 0 never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let started = Instant::now();
    // Garbage.
    let mut garbage = connect();
    garbage.write_all(&[0xee; 100]).unwrap();
    // A hello that never ends.
    let mut slow = connect();
    slow.write_all(&hello()[..5]).unwrap();
    // A whole hello, then a proof made without the key.
    let mut impostor = connect();
    impostor.write_all(&hello()).unwrap();
    let mut answer = [0u8; 49 + 32];
    impostor
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    impostor.read_exact(&mut answer).unwrap();
    assert_eq!(&answer[..8], b"LOGFLOW2");
    impostor.write_all(&[0u8; 32]).unwrap();
    // 200 idle connections at once (more than the handshakes served side by side).
    let idle: Vec<TcpStream> = (0..200).map(|_| connect()).collect();

    // The real process 1, and the cluster starts.
    let mut one = Proc::spawn(process("1"), &dir, "p1", Stdio::null());
    zero.wait_for("control endpoint at", Duration::from_secs(30));
    // Two hundred idle connections one after another would take 400 s; side by side they
    // take the 2 s deadline of one (the rest is start-up on a busy machine).
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
    let log = zero.stderr_text();
    for refusal in [
        "not a logflow hello",
        "no whole hello within 2s",
        "a wrong peer key (LOGFLOW_PEER_KEY)",
    ] {
        assert!(
            log.contains("logflow: refused a peer connection from 127.0.0.1:")
                && log.contains(refusal),
            "no {refusal:?} in:\n{log}"
        );
    }
    // The impostor got no data connection: its socket was closed.
    let mut rest = Vec::new();
    let _ = impostor.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");

    // The cluster works: a request is answered, and it stops cleanly.
    let out = bin()
        .args(["jobs", "--cluster", &addr, "--token-file"])
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = bin()
        .args(["cluster", "stop", "--cluster", &addr, "--token-file"])
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for (i, p) in [&mut zero, &mut one].into_iter().enumerate() {
        let status = p.wait(Duration::from_secs(60));
        assert!(
            status.is_some_and(|s| s.success()),
            "process {i}: {status:?}\n{}",
            p.stderr_text()
        );
    }
}
