//! The control port over TLS (`cluster start --tls-cert/--tls-key`, clients `--tls-ca`), with a
//! CA and certificates the test makes with the openssl command: a submission over TLS runs to
//! its end; a plain client at the TLS port, and a client trusting another CA, each fail at
//! once with a message saying what to do; an authenticated client cannot have more than 8
//! requests in service; the token appears in no output of any of it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cluster::Proc;
use common::{bin, tmpdir};

/// The control endpoint's address: `LOGFLOW_IT_CONTROL_PORT` plus an offset no other test
/// file uses.
fn control() -> String {
    let port: u16 = std::env::var("LOGFLOW_IT_CONTROL_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(19479);
    format!("127.0.0.1:{}", port + 11)
}

/// Runs `openssl` with `args` (split at spaces) in `dir`.
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args.split_whitespace())
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args}: {out:?}");
}

const EC: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

/// A CA named `name` in `dir` (`<name>.pem`, `<name>.key`).
fn ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &format!(
            "req -x509 {EC} -days 2 -subj /CN={name} -keyout {name}.key -out {name}.pem \
             -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
    );
    dir.join(format!("{name}.pem"))
}

/// A server certificate for 127.0.0.1 signed by the CA `ca`: (`server.pem`, `server.key`).
fn server_cert(dir: &Path, ca: &str) -> (PathBuf, PathBuf) {
    openssl(
        dir,
        &format!("req {EC} -subj /CN=logflow-cluster -keyout server.key -out server.csr"),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &format!(
            "x509 -req -in server.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial -days 2 \
             -sha256 -extfile server.ext -out server.pem"
        ),
    );
    (dir.join("server.pem"), dir.join("server.key"))
}

const BATCH: &str = r#"name = "batch"
[source]
kind = "file"
path = "in.jsonl"
format = "json"
[[analysis]]
name = "per_service"
window = { size = "1m" }
group_by = ["service"]
select = ["count() as n"]
"#;

/// A job whose submission waits for Kafka metadata from a broker that never answers.
fn stalled(broker: &str) -> String {
    format!(
        "name = \"stalled\"\n[source]\nkind = \"kafka\"\ntopic = \"logs\"\nbrokers = \"{broker}\"\n\
         format = \"json\"\n[[analysis]]\nname = \"per_service\"\nwindow = {{ size = \"1m\" }}\n\
         group_by = [\"service\"]\nselect = [\"count() as n\"]\n"
    )
}

#[test]
fn the_control_port_over_tls() {
    if Command::new("openssl").arg("version").output().is_err() {
        common::skip("no openssl command to make the test's certificates");
        return;
    }
    let dir = tmpdir("control-tls");
    let ca_pem = ca(&dir, "ca");
    let other_ca = ca(&dir, "other-ca");
    let (cert, key) = server_cert(&dir, "ca");
    let input = dir.join("in.jsonl");
    let out = bin()
        .args(["gen", "--events", "2000", "--output"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let spec = dir.join("batch.toml");
    std::fs::write(&spec, BATCH).unwrap();
    let token = "5a".repeat(32);
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();

    let addr = control();
    let mut c = bin();
    c.args(["cluster", "start", "-n", "1", "-w", "1", "--control", &addr])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--allow-dir")
        .arg(&dir)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key);
    let mut cluster = Proc::spawn(c, &dir, "cluster", Stdio::null());
    cluster.wait_for("control endpoint at", Duration::from_secs(60));

    let mut outputs: Vec<Output> = Vec::new();
    let client = |args: &[&str], ca: Option<&Path>| {
        let mut cmd = bin();
        cmd.args(args)
            .args(["--cluster", &addr, "--token-file"])
            .arg(&token_file)
            .env_remove("LOGFLOW_CLUSTER_TLS_CA");
        if let Some(ca) = ca {
            cmd.arg("--tls-ca").arg(ca);
        }
        cmd.output().unwrap()
    };
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // A submission over TLS runs to its end.
    let out_dir = dir.join("out");
    let submitted = client(
        &[
            "submit",
            spec.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output-dir",
            out_dir.to_str().unwrap(),
            "--stop-at-end",
        ],
        Some(&ca_pem),
    );
    assert!(submitted.status.success(), "{}", stderr(&submitted));
    let job = String::from_utf8_lossy(&submitted.stdout)
        .trim()
        .to_string();
    assert!(job.parse::<u64>().is_ok(), "{submitted:?}");
    outputs.push(submitted);
    let started = Instant::now();
    loop {
        let jobs = client(&["jobs", "--json"], Some(&ca_pem));
        assert!(jobs.status.success(), "{}", stderr(&jobs));
        let text = String::from_utf8_lossy(&jobs.stdout).into_owned();
        outputs.push(jobs);
        if text.contains("\"state\":\"finished\"") {
            assert!(text.contains("\"records_in\":2000"), "{text}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(out_dir.join("per_service.jsonl").exists());

    // A plain client at the TLS port: told at once, exit 2.
    let started = Instant::now();
    let plain = client(&["jobs"], None);
    assert_eq!(plain.status.code(), Some(2), "{}", stderr(&plain));
    assert!(
        stderr(&plain).contains("TLS only") && stderr(&plain).contains("--tls-ca"),
        "{}",
        stderr(&plain)
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    outputs.push(plain);
    // The same as raw bytes on the socket: one plain JSON error line.
    let mut raw = TcpStream::connect(&addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(b"{\"op\":\"jobs\"}\n").unwrap();
    let mut line = String::new();
    let _ = BufReader::new(raw).read_line(&mut line);
    let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(reply["reply"], "error", "{line}");
    assert_eq!(reply["exit_code"], 2, "{line}");

    // A client that trusts another CA refuses the cluster's certificate, naming why.
    let wrong = client(&["jobs"], Some(&other_ca));
    assert_eq!(wrong.status.code(), Some(1), "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("TLS handshake")
            && stderr(&wrong).contains("not signed by --tls-ca"),
        "{}",
        stderr(&wrong)
    );
    outputs.push(wrong);
    // A CA file that is not PEM: exit 2, the file named.
    let bad_ca = client(&["jobs"], Some(&token_file));
    assert_eq!(bad_ca.status.code(), Some(2), "{}", stderr(&bad_ca));
    assert!(
        stderr(&bad_ca).contains("not a PEM file"),
        "{}",
        stderr(&bad_ca)
    );
    outputs.push(bad_ca);

    // Eight submissions waiting for a broker that never answers are in service at once; a
    // ninth request of the same client is refused until one of them has been answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let stalled_spec = dir.join("stalled.toml");
    std::fs::write(
        &stalled_spec,
        stalled(&silent.local_addr().unwrap().to_string()),
    )
    .unwrap();
    let submitters: Vec<_> = (0..8)
        .map(|_| {
            let mut cmd = bin();
            cmd.args(["submit", stalled_spec.to_str().unwrap(), "--cluster", &addr])
                .arg("--token-file")
                .arg(&token_file)
                .arg("--tls-ca")
                .arg(&ca_pem)
                .arg("--output-dir")
                .arg(dir.join("stalled-out"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    // Until all eight are in service (each waits 10 s for metadata).
    let started = Instant::now();
    let refused = loop {
        let jobs = client(&["jobs"], Some(&ca_pem));
        if !jobs.status.success() {
            break jobs;
        }
        outputs.push(jobs);
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "a ninth request was never refused"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        stderr(&refused).contains("too many requests in service from 127.0.0.1 (at most 8)"),
        "{}",
        stderr(&refused)
    );
    outputs.push(refused);
    for s in submitters {
        let out = s.wait_with_output().unwrap();
        assert!(!out.status.success(), "{out:?}");
        outputs.push(out);
    }
    let jobs = client(&["jobs"], Some(&ca_pem));
    assert!(jobs.status.success(), "{}", stderr(&jobs));
    outputs.push(jobs);
    drop(silent);

    let stop = client(&["cluster", "stop"], Some(&ca_pem));
    assert!(stop.status.success(), "{}", stderr(&stop));
    outputs.push(stop);
    let status = cluster.wait(Duration::from_secs(60));
    let log = cluster.stderr_text();
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{log}");

    // The token is in no output: not the cluster's log, not any client's.
    assert!(!log.contains(&token), "{log}");
    for o in &outputs {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!all.contains(&token), "{all}");
    }
}
