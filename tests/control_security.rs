//! The control port under attack, each attack tried as a client would (one JSON line on the
//! socket): no token, a wrong token, files outside the allowed directories (plain, `..`,
//! symlink), a lookup of /proc/self/environ, 1,000 idle connections, a slow drip, a huge
//! request. Each is refused with a clear message while the cluster goes on running its
//! other job, which is checked after every attack.
//!
//! One test function runs the scenario in order, as the attacks share the cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster::Proc;
use common::{bin, tmpdir};
use serde_json::{json, Value};

/// The control endpoint's address: `LOGFLOW_IT_CONTROL_PORT` plus an offset no other test
/// file uses.
fn control() -> String {
    let port: u16 = std::env::var("LOGFLOW_IT_CONTROL_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(19479);
    format!("127.0.0.1:{}", port + 7)
}

/// Sends `bytes` on a fresh connection and returns the reply line ("" if none).
fn send(addr: &str, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(bytes);
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line);
    line
}

/// Sends `req` (with `token` if given) and returns the parsed reply.
fn request(addr: &str, mut req: Value, token: Option<&str>) -> Value {
    if let Some(t) = token {
        req["token"] = t.into();
    }
    let reply = send(addr, format!("{req}\n").as_bytes());
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply:?}"))
}

fn submit(spec: &str, path: &Path, overrides: Value) -> Value {
    json!({"op": "submit", "spec": spec, "path": path.to_str().unwrap(), "overrides": overrides})
}

/// The error reply's message, after checking it is an error with `exit_code`.
fn refused(reply: &Value, exit_code: i64) -> String {
    assert_eq!(reply["reply"], "error", "{reply}");
    assert_eq!(reply["exit_code"], exit_code, "{reply}");
    reply["message"].as_str().unwrap().to_string()
}

const STEADY: &str = r#"name = "steady"
[source]
kind = "generator"
format = "json"
events = 100000000
rate = 200.0
[[analysis]]
name = "per_service"
window = { size = "1m" }
group_by = ["service"]
select = ["count() as n"]
"#;

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

/// Reads the files dropped into `incoming`, ends 5 s after the last.
fn directory(incoming: &Path) -> String {
    format!(
        "name = \"watcher\"\n[source]\nkind = \"directory\"\npath = \"{}\"\n\
         pattern = \"*.jsonl\"\nformat = \"json\"\nend_after_idle = \"5s\"\n\
         [[analysis]]\nname = \"per_service\"\nwindow = {{ size = \"1m\" }}\n\
         group_by = [\"service\"]\nselect = [\"count() as n\"]\n",
        incoming.display()
    )
}

fn with_lookup(path: &str) -> String {
    format!(
        "{BATCH}[[lookup]]\nname = \"x\"\npath = \"{path}\"\nformat = \"csv\"\nkey = \"nope\"\n\
         on = \"service\"\nfields = [\"team\"]\n"
    )
}

const SECRET: &str = "hunter2-FAKE-SECRET";

#[test]
fn attacks_on_the_control_port_are_refused_while_jobs_run() {
    let dir = tmpdir("control-security");
    let allowed = dir.join("allowed");
    let outside = dir.join("outside");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let input = allowed.join("in.jsonl");
    let out = bin()
        .args([
            "gen",
            "--events",
            "2000",
            "--output",
            input.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::copy(&input, outside.join("secret.jsonl")).unwrap();
    std::fs::write(
        allowed.join("table.csv"),
        format!("TOPSECRET,db_password={SECRET}\n"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.join("secret.jsonl"), allowed.join("link.jsonl")).unwrap();
    std::os::unix::fs::symlink("/proc/self/environ", allowed.join("environ")).unwrap();
    let token_file = dir.join("token");
    let token = "4f".repeat(32);
    std::fs::write(&token_file, format!("{token}\n")).unwrap();

    let addr = control();
    let mut c = bin();
    c.args(["cluster", "start", "-n", "1", "-w", "1", "--control", &addr])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--allow-dir")
        .arg(&allowed)
        .env("LOGFLOW_KAFKA_SASL_PASSWORD", SECRET);
    let mut cluster = Proc::spawn(c, &dir, "cluster", Stdio::null());
    cluster.wait_for("control endpoint at", Duration::from_secs(60));
    let t = Some(token.as_str());
    let spec_path = allowed.join("job.toml");

    // The job that must keep running through every attack.
    let reply = request(
        &addr,
        submit(
            STEADY,
            &spec_path,
            json!({"output_dir": allowed.join("steady"), "stop_at_end": false}),
        ),
        t,
    );
    assert_eq!(reply["reply"], "submitted", "{reply}");
    let steady = reply["job"].as_u64().unwrap();
    let still_running = |what: &str| {
        let jobs = request(&addr, json!({"op": "jobs"}), t);
        let j = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == steady)
            .cloned()
            .unwrap_or_else(|| panic!("after {what}: no job {steady}: {jobs}"));
        assert_eq!(j["state"], "running", "after {what}: {j}");
    };
    still_running("the submission");

    // No token, a wrong one, one of the wrong type: `unauthorized` and nothing else.
    let expected = json!({"reply": "error", "message": "unauthorized", "exit_code": 2});
    let wrong = "4e".repeat(32);
    for (req, token) in [
        (json!({"op": "jobs"}), None),
        (json!({"op": "jobs"}), Some(wrong.as_str())),
        (json!({"op": "jobs"}), Some(&token[..63])),
        (json!({"op": "cancel", "job": steady}), Some(wrong.as_str())),
        (json!({"op": "stop", "job": steady}), None),
        (json!({"op": "stop", "job": steady}), Some(wrong.as_str())),
        (json!({"op": "shutdown"}), None),
        (json!({"op": "jobs", "token": 1}), None),
        (
            submit(STEADY, &spec_path, json!({"stop_at_end": true})),
            None,
        ),
    ] {
        assert_eq!(request(&addr, req.clone(), token), expected, "{req}");
    }
    let garbage: Value = serde_json::from_str(&send(&addr, b"not json\n")).unwrap();
    assert_eq!(garbage, expected);
    still_running("unauthenticated requests");
    // The command line says what is missing, with exit code 2.
    let out = bin()
        .args(["jobs", "--cluster", &addr])
        .env_remove("LOGFLOW_CLUSTER_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unauthorized") && err.contains("--token-file"),
        "{err}"
    );
    assert!(!err.contains("steady"), "{err}");
    let out = bin()
        .args(["jobs", "--json", "--cluster", &addr, "--token-file"])
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"steady\""),
        "{out:?}"
    );

    // Files outside the allowed directory: plainly, through `..`, through a symlink; as
    // input, output, checkpoint directory and lookup table. Refused at submission, exit 2,
    // the path named.
    let secret_in = outside.join("secret.jsonl");
    let dotdot = allowed.join("..").join("outside").join("secret.jsonl");
    let link = allowed.join("link.jsonl");
    let out_ok = allowed.join("out");
    for (spec, overrides, path) in [
        (
            BATCH.to_string(),
            json!({"input": secret_in}),
            secret_in.clone(),
        ),
        (BATCH.to_string(), json!({"input": dotdot}), dotdot.clone()),
        (BATCH.to_string(), json!({"input": link}), link.clone()),
        (
            BATCH.to_string(),
            json!({"input": "/etc/passwd"}),
            "/etc/passwd".into(),
        ),
        (
            BATCH.to_string(),
            json!({"input": input, "output_dir": outside.join("new")}),
            outside.join("new"),
        ),
        (
            BATCH.to_string(),
            json!({"input": input, "output_dir": allowed.join("../outside/deep")}),
            allowed.join("../outside/deep"),
        ),
        (
            BATCH.to_string(),
            json!({"input": input, "output_dir": out_ok, "checkpoint_dir": outside.join("ck")}),
            outside.join("ck"),
        ),
        (
            with_lookup("/proc/self/environ"),
            json!({"input": input, "output_dir": out_ok}),
            "/proc/self/environ".into(),
        ),
        (
            with_lookup(allowed.join("environ").to_str().unwrap()),
            json!({"input": input, "output_dir": out_ok}),
            allowed.join("environ"),
        ),
    ] {
        let mut overrides = overrides;
        overrides["stop_at_end"] = true.into();
        let reply = request(&addr, submit(&spec, &spec_path, overrides.clone()), t);
        let msg = refused(&reply, 2);
        assert!(msg.contains(path.to_str().unwrap()), "{overrides}: {msg}");
        assert!(msg.contains("--allow-dir"), "{msg}");
        assert!(!msg.contains(SECRET) && !msg.contains("PATH="), "{msg}");
    }
    assert!(!outside.join("new").exists() && !outside.join("deep").exists());
    assert!(!outside.join("ck").exists());
    // Inside it, but a directory: a worker would fail reading it, so it is refused first.
    let reply = request(
        &addr,
        submit(
            BATCH,
            &spec_path,
            json!({"input": allowed, "output_dir": out_ok, "stop_at_end": true}),
        ),
        t,
    );
    let msg = refused(&reply, 2);
    assert!(msg.contains("not a regular file"), "{msg}");
    still_running("submissions outside the allowed directory");

    // A lookup table the job may read, whose header does not have the key: the error counts
    // its columns and quotes none of them.
    let reply = request(
        &addr,
        submit(
            &with_lookup(allowed.join("table.csv").to_str().unwrap()),
            &spec_path,
            json!({"input": input, "output_dir": out_ok, "stop_at_end": true}),
        ),
        t,
    );
    let msg = refused(&reply, 1);
    assert!(msg.contains("no column `nope`"), "{msg}");
    assert!(!msg.contains(SECRET) && !msg.contains("TOPSECRET"), "{msg}");

    // 1,000 idle connections, then a real request: answered at once.
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let started = Instant::now();
    still_running("1,000 idle connections");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(idle);

    // A slow drip is cut at the request deadline (5 s for the whole request).
    let drip = TcpStream::connect(&addr).unwrap();
    drip.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = drip.try_clone().unwrap();
    let line = format!("{}\n", json!({"op": "jobs", "token": token}));
    let started = Instant::now();
    std::thread::spawn(move || {
        for b in line.bytes() {
            if writer.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let mut reply = String::new();
    let _ = BufReader::new(drip).read_line(&mut reply);
    let took = started.elapsed();
    assert!(reply.contains("did not arrive within 5s"), "{reply}");
    assert!(
        took >= Duration::from_millis(4500) && took < Duration::from_secs(9),
        "{took:?}"
    );
    still_running("a slow drip");

    // A huge request is refused at the bound (1 MiB), before any of it is parsed.
    let reply = send(&addr, &vec![b'x'; 3 * 1024 * 1024]);
    assert!(
        reply.contains("request larger than 1048576 bytes"),
        "{reply}"
    );
    still_running("a huge request");

    // A legitimate job inside the allowed directory still runs to its end.
    let reply = request(
        &addr,
        submit(
            BATCH,
            &spec_path,
            json!({"input": input, "output_dir": out_ok, "stop_at_end": true}),
        ),
        t,
    );
    assert_eq!(reply["reply"], "submitted", "{reply}");
    let batch = reply["job"].as_u64().unwrap();
    let started = Instant::now();
    loop {
        let jobs = request(&addr, json!({"op": "jobs"}), t);
        let state = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == batch)
            .map(|j| j["state"].clone());
        if state == Some("finished".into()) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{jobs}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(out_ok.join("per_service.jsonl").exists());
    still_running("the batch job");

    // A symlink swapped after the submission was checked: the directory source's folder is a
    // link to a folder inside at submission, then to the folder outside while the job runs.
    // The files listed there are refused as opened (the check is made on the file as
    // opened), and the job reads only the file dropped in once the link points inside again.
    let real_in = allowed.join("real-in");
    std::fs::create_dir_all(&real_in).unwrap();
    let incoming = allowed.join("incoming");
    std::os::unix::fs::symlink(&real_in, &incoming).unwrap();
    let reply = request(
        &addr,
        submit(
            &directory(&incoming),
            &spec_path,
            json!({"output_dir": allowed.join("dir-out"), "stop_at_end": true}),
        ),
        t,
    );
    assert_eq!(reply["reply"], "submitted", "{reply}");
    let watcher = reply["job"].as_u64().unwrap();
    let swap = |to: &Path| {
        let tmp = allowed.join(".incoming");
        std::os::unix::fs::symlink(to, &tmp).unwrap();
        std::fs::rename(&tmp, &incoming).unwrap();
    };
    swap(&outside);
    cluster.wait_for("directory source skipped", Duration::from_secs(30));
    swap(&real_in);
    std::fs::copy(&input, allowed.join(".b.jsonl")).unwrap();
    std::fs::rename(allowed.join(".b.jsonl"), real_in.join("b.jsonl")).unwrap();
    let started = Instant::now();
    let finished = loop {
        let jobs = request(&addr, json!({"op": "jobs"}), t);
        let job = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == watcher)
            .cloned()
            .unwrap();
        if job["state"] != "running" {
            break job;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{jobs}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(finished["state"], "finished", "{finished}");
    // 2,000 lines of b.jsonl, none of the 2,000 of the file outside.
    assert_eq!(finished["records_in"], 2000, "{finished}");
    let log = cluster.stderr_text();
    assert!(
        log.contains("directory source skipped")
            && log.contains("incoming/secret.jsonl")
            && log.contains("outside the allowed directories"),
        "{log}"
    );
    still_running("a symlink swapped in after the submission");

    let out = bin()
        .args(["cluster", "stop", "--cluster", &addr, "--token-file"])
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let status = cluster.wait(Duration::from_secs(60));
    let log = cluster.stderr_text();
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{log}");
    assert!(!log.contains(SECRET), "{log}");
}
