//! Kafka security (issue 23): the log job over SASL_SSL (SCRAM-SHA-512, TLS with a CA made by
//! `scripts/kafka up --security sasl_ssl`) equals its file-mode results; a wrong password fails
//! without showing it; spec properties that load code are refused; the operator's
//! `LOGFLOW_KAFKA_*` credentials never reach a broker named by a submitted job; and no output
//! of any of these runs (nor the broker's logs) holds a secret.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::Proc;
use common::kafka::{file_results, gen, variant_spec, LOG_ANALYSES};
use common::rows::assert_same_rows;
use common::{accounting, bin, read_jsonl, repo, tmpdir};
use serde_json::Value;

/// The SASL_SSL broker's port (its controller's is the next one):
/// `LOGFLOW_IT_KAFKA_SECURE_PORT`, so several checkouts can test at once.
fn secure_port() -> u16 {
    std::env::var("LOGFLOW_IT_KAFKA_SECURE_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(19492)
}

/// The control endpoint's port of this file's cluster: `LOGFLOW_IT_CONTROL_PORT` plus 9
/// (the other test files use small offsets from it).
fn control() -> String {
    let port: u16 = std::env::var("LOGFLOW_IT_CONTROL_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(19479);
    format!("127.0.0.1:{}", port + 9)
}

/// The control endpoint of the cluster that runs the job with SASL_SSL in its spec: plus 10.
fn spec_control() -> String {
    let port: u16 = std::env::var("LOGFLOW_IT_CONTROL_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(19479);
    format!("127.0.0.1:{}", port + 10)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Panics (without printing it) if `haystack` contains `secret`.
fn assert_hidden(haystack: &str, secret: &str, what: &str) {
    assert!(
        secret.len() >= 8,
        "{what}: test secret too short to grep for"
    );
    assert!(
        !haystack.contains(secret),
        "{what}: a secret value was printed (the output, with it masked):\n{}",
        haystack.replace(secret, "<SECRET>")
    );
}

/// A SASL_SSL broker from `scripts/kafka`, stopped and wiped when dropped.
struct SecureBroker {
    address: String,
    state: PathBuf,
    python: PathBuf,
    /// The librdkafka settings file the script wrote (0600).
    props: PathBuf,
    /// Everything `scripts/kafka up` printed.
    script_output: String,
}

impl SecureBroker {
    fn script(state: &Path, args: &[&str]) -> Output {
        Command::new(repo().join("scripts/kafka"))
            .args(args)
            .env("KAFKA_STATE_DIR", state)
            .output()
            .expect("run scripts/kafka")
    }

    fn start() -> SecureBroker {
        let state = repo().join("target/kafka-security");
        let _ = Self::script(&state, &["down", "--wipe"]);
        let port = secure_port();
        let up = Self::script(
            &state,
            &[
                "up",
                "--port",
                &port.to_string(),
                "--controller-port",
                &(port + 1).to_string(),
                "--security",
                "sasl_ssl",
            ],
        );
        let script_output = text(&up);
        assert!(up.status.success(), "scripts/kafka up: {script_output}");
        let address = String::from_utf8_lossy(&up.stdout)
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string();
        let props = Self::script(&state, &["client-properties"]);
        assert!(
            props.status.success(),
            "client-properties: {}",
            text(&props)
        );
        let props = PathBuf::from(String::from_utf8_lossy(&props.stdout).trim());
        let py = Command::new(repo().join("scripts/pyenv")).output().unwrap();
        assert!(py.status.success(), "scripts/pyenv: {}", text(&py));
        let python = PathBuf::from(String::from_utf8_lossy(&py.stdout).lines().last().unwrap());
        SecureBroker {
            address,
            state,
            python,
            props,
            script_output,
        }
    }

    /// The client settings (`key`, `value`) of the file the script wrote.
    fn settings(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.props)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }

    fn setting(&self, key: &str) -> String {
        self.settings()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{key} not in {}", self.props.display()))
    }

    /// The settings as the operator's `LOGFLOW_KAFKA_*` environment.
    fn env(&self) -> Vec<(String, String)> {
        self.settings()
            .into_iter()
            .map(|(k, v)| {
                (
                    format!("LOGFLOW_KAFKA_{}", k.to_ascii_uppercase().replace('.', "_")),
                    v,
                )
            })
            .collect()
    }

    fn client(&self, args: &[&str]) -> String {
        let out = Command::new(&self.python)
            .arg(repo().join("tests/kafka_client.py"))
            .args(args)
            .env("KAFKA_CLIENT_PROPERTIES", &self.props)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kafka_client.py {args:?}: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The broker's own logs, every file of them.
    fn logs(&self) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(self.state.join("logs")).unwrap() {
            all.push_str(&String::from_utf8_lossy(
                &std::fs::read(e.unwrap().path()).unwrap(),
            ));
        }
        all
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        let _ = Self::script(&self.state, &["down", "--wipe"]);
    }
}

/// Runs `logflow run dataflows/log-analysis.toml` against the broker, with `env`; its output.
fn run_log_job(b: &SecureBroker, env: &[(String, String)], limit: Duration) -> Output {
    let mut cmd = bin();
    cmd.args([
        "run",
        "dataflows/log-analysis.toml",
        "--brokers",
        &b.address,
        "--topic",
        "logs",
        "-w",
        "2",
        "--stop-at-end",
    ])
    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("job did not end in {limit:?}: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn log_job_over_sasl_ssl_equals_file_mode_and_shows_no_secret() {
    let dir = tmpdir("kafka-security");
    let b = SecureBroker::start();
    let password = b.setting("sasl.password");
    assert_eq!(b.setting("security.protocol"), "SASL_SSL");
    assert_eq!(b.setting("sasl.mechanisms"), "SCRAM-SHA-512");
    let admin_password = std::fs::read_to_string(b.state.join("secrets/admin.password")).unwrap();
    let admin_password = admin_password.trim();
    // The script never prints a password; the settings file is the owner's alone.
    assert_hidden(&b.script_output, &password, "scripts/kafka up");
    assert_hidden(&b.script_output, admin_password, "scripts/kafka up");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&b.props).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "client.properties mode {mode:o}");

    let logs = dir.join("logs.jsonl");
    gen("logs", "30000", &["--late-fraction", "0.002"], &logs);
    let expected = file_results(
        "dataflows/log-analysis.toml",
        "json",
        &logs,
        &dir.join("file-logs"),
    );
    let mut create = vec![
        "create".to_string(),
        b.address.clone(),
        "logs:4".to_string(),
        "log-analysis.dead-letter:1".to_string(),
        "log-analysis.late:1".to_string(),
        "log-analysis.alerts:1".to_string(),
    ];
    create.extend(LOG_ANALYSES.iter().map(|a| format!("{a}:2")));
    b.client(&create.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        b.client(&["produce", &b.address, "logs", logs.to_str().unwrap()]),
        "30000"
    );

    // The operator's credentials from the environment, to the operator's --brokers.
    let out = run_log_job(&b, &b.env(), Duration::from_secs(300));
    let printed = text(&out);
    assert!(out.status.success(), "SASL_SSL run failed: {printed}");
    assert_eq!(accounting(&out.stderr)["read"], 30_000);
    assert_hidden(&printed, &password, "SASL_SSL run");
    for a in LOG_ANALYSES {
        let file = dir.join(format!("{a}.dump.jsonl"));
        b.client(&["dump", &b.address, a, file.to_str().unwrap()]);
        let rows: Vec<Value> = read_jsonl(&file)
            .iter()
            .map(|r| serde_json::from_str(r["value"].as_str().unwrap()).unwrap())
            .collect();
        assert_same_rows(&rows, &expected[a], &format!("SASL_SSL: {a}"));
    }
    for side in ["dead-letter", "late"] {
        let topic = format!("log-analysis.{side}");
        let n: usize = b.client(&["count", &b.address, &topic]).parse().unwrap();
        assert_eq!(n, expected[&topic].len(), "SASL_SSL: {topic}");
    }
    assert!(!expected["log-analysis.dead-letter"].is_empty());

    // The same job submitted to a cluster that has no Kafka settings of its own: everything
    // it needs (SASL_SSL, SCRAM, user, password, the CA by value) stands in the submitted
    // spec's `properties`, which pass the allow-list and reach the submitter's broker.
    let job = "specprops";
    let mut create = vec!["create".to_string(), b.address.clone()];
    create.extend(
        ["dead-letter", "late", "alerts"]
            .iter()
            .map(|s| format!("{job}.{s}:1"))
            .chain(LOG_ANALYSES.iter().map(|a| format!("{job}.{a}:2"))),
    );
    b.client(&create.iter().map(String::as_str).collect::<Vec<_>>());
    let ca_pem = std::fs::read_to_string(b.setting("ssl.ca.location")).unwrap();
    let mut props = String::new();
    for (k, v) in [
        ("security.protocol", "SASL_SSL".to_string()),
        ("sasl.mechanisms", "SCRAM-SHA-512".to_string()),
        ("sasl.username", b.setting("sasl.username")),
        ("sasl.password", password.clone()),
        ("ssl.ca.pem", ca_pem),
    ] {
        // A TOML basic string: Rust's escapes of these ASCII values are TOML's.
        props.push_str(&format!("\"{k}\" = {v:?}\n"));
    }
    let base = std::fs::read_to_string(variant_spec(job, "5s", &dir)).unwrap();
    let spec = base.replacen(
        "[source]\n",
        &format!("[sink.properties]\n{props}\n[source.properties]\n{props}\n[source]\n"),
        1,
    );
    assert_ne!(spec, base);
    let spec_path = dir.join("specprops.toml");
    std::fs::write(&spec_path, &spec).unwrap();
    let addr = spec_control();
    let mut c = bin();
    c.args(["cluster", "start", "-n", "1", "-w", "2", "--control", &addr])
        .arg("--allow-dir")
        .arg(&dir)
        .env_remove("LOGFLOW_BROKERS");
    let mut cluster = Proc::spawn(c, &dir, "specprops-cluster", Stdio::null());
    cluster.wait_for("control endpoint at", Duration::from_secs(60));
    let submit = bin()
        .args(["submit", spec_path.to_str().unwrap(), "--cluster", &addr])
        .args(["--brokers", &b.address, "--topic", "logs", "--stop-at-end"])
        .output()
        .unwrap();
    assert!(submit.status.success(), "submit: {}", text(&submit));
    assert_hidden(&text(&submit), &password, "submit");
    let started = Instant::now();
    loop {
        let jobs = bin()
            .args(["jobs", "--json", "--cluster", &addr])
            .output()
            .unwrap();
        let listed = text(&jobs);
        assert_hidden(&listed, &password, "jobs --json");
        if listed.contains("\"state\":\"finished\"") {
            assert!(listed.contains("\"records_in\":30000"), "{listed}");
            break;
        }
        assert!(
            !listed.contains("\"state\":\"failed\""),
            "the job failed: {listed}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the job did not finish: {listed}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = bin().args(["cluster", "stop", "--cluster", &addr]).output();
    let _ = cluster.wait(Duration::from_secs(60));
    assert_hidden(&cluster.stderr_text(), &password, "cluster log");
    for a in LOG_ANALYSES {
        let file = dir.join(format!("{job}.{a}.dump.jsonl"));
        b.client(&[
            "dump",
            &b.address,
            &format!("{job}.{a}"),
            file.to_str().unwrap(),
        ]);
        let rows: Vec<Value> = read_jsonl(&file)
            .iter()
            .map(|r| serde_json::from_str(r["value"].as_str().unwrap()).unwrap())
            .collect();
        assert_same_rows(&rows, &expected[a], &format!("spec properties: {a}"));
    }
    for side in ["dead-letter", "late"] {
        let n: usize = b
            .client(&["count", &b.address, &format!("{job}.{side}")])
            .parse()
            .unwrap();
        assert_eq!(
            n,
            expected[&format!("log-analysis.{side}")].len(),
            "spec properties: {side}"
        );
    }

    // A wrong password fails, says why, and is not shown (nor the right one).
    let wrong = "wrong-pw-Zq7xK2mV9";
    let env: Vec<(String, String)> = b
        .env()
        .into_iter()
        .map(|(k, v)| {
            let v = if k == "LOGFLOW_KAFKA_SASL_PASSWORD" {
                wrong.to_string()
            } else {
                v
            };
            (k, v)
        })
        .collect();
    let out = run_log_job(&b, &env, Duration::from_secs(120));
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(1), "wrong password: {printed}");
    assert!(
        printed.contains("SASL authentication error") && printed.contains("invalid credentials"),
        "wrong password: the error does not say why: {printed}"
    );
    assert!(printed.contains("sasl.password=***"), "{printed}");
    assert_hidden(&printed, wrong, "wrong-password run");
    assert_hidden(&printed, &password, "wrong-password run");

    // The broker's logs hold neither password.
    let broker_logs = b.logs();
    assert!(
        broker_logs.contains("invalid credentials"),
        "no failed login logged"
    );
    assert_hidden(&broker_logs, &password, "broker logs");
    assert_hidden(&broker_logs, admin_password, "broker logs");
    assert_hidden(&broker_logs, wrong, "broker logs");
}

#[test]
fn properties_that_load_code_are_refused_with_exit_2() {
    let dir = tmpdir("kafka-security-refused");
    let base = std::fs::read_to_string(repo().join("dataflows/log-analysis.toml")).unwrap();
    let so = "/tmp/logflow-test-never-loaded-Q3x9.so";
    for (key, what) in [
        ("plugin.library.paths", "load code"),
        ("ssl.engine.location", "load code"),
        ("sasl.oauthbearer.token.endpoint.url", "other hosts"),
        ("debug", "allow-list"),
    ] {
        // The property goes into the source's table (added right after `[source]`).
        let spec = base.replacen(
            "[source]\n",
            &format!("[source.properties]\n\"{key}\" = \"{so}\"\n\n[source]\n"),
            1,
        );
        assert_ne!(spec, base);
        let path = dir.join("spec.toml");
        std::fs::write(&path, spec).unwrap();
        for args in [
            vec!["check", path.to_str().unwrap()],
            vec![
                "run",
                path.to_str().unwrap(),
                "--brokers",
                "127.0.0.1:9",
                "--stop-at-end",
            ],
        ] {
            let out = bin().args(&args).output().unwrap();
            let printed = text(&out);
            assert_eq!(out.status.code(), Some(2), "{key} {args:?}: {printed}");
            assert!(
                printed.contains(&format!("`{key}` is refused")) && printed.contains(what),
                "{key}: {printed}"
            );
            assert!(!printed.contains(so), "{key}: value printed: {printed}");
        }
    }
}

/// A fake broker that records every byte any connection sends it. It answers only what a
/// client needs before it logs in (ApiVersions, SaslHandshake offering PLAIN), so a client
/// configured for SASL/PLAIN sends its user and password (SaslAuthenticate) if it has them.
struct Recorder {
    address: String,
    bytes: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<usize>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (b, c) = (Arc::clone(&bytes), Arc::clone(&connections));
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                *c.lock().unwrap() += 1;
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
                    let _ = fake_broker(&mut s, &b);
                });
            }
        });
        Recorder {
            address,
            bytes,
            connections,
        }
    }

    fn received(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }

    fn contains(&self, needle: &str) -> bool {
        self.received()
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }
}

/// Serves one connection of [`Recorder`]: Kafka request frames are recorded; ApiVersions
/// and SaslHandshake are answered, anything else is not (the client times out).
fn fake_broker(s: &mut std::net::TcpStream, record: &Mutex<Vec<u8>>) -> std::io::Result<()> {
    use std::io::Write;
    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len)?;
        let n = i32::from_be_bytes(len).clamp(0, 1 << 20) as usize;
        let mut req = vec![0u8; n];
        s.read_exact(&mut req)?;
        record.lock().unwrap().extend_from_slice(&len);
        record.lock().unwrap().extend_from_slice(&req);
        if n < 8 {
            return Ok(());
        }
        let key = i16::from_be_bytes([req[0], req[1]]);
        let version = i16::from_be_bytes([req[2], req[3]]);
        let apis: [(i16, i16, i16); 3] = [(18, 0, 3), (17, 0, 1), (36, 0, 1)];
        let mut body = Vec::new();
        match key {
            // ApiVersions (its response header is never flexible).
            18 => {
                body.extend(0i16.to_be_bytes());
                if version >= 3 {
                    body.push(apis.len() as u8 + 1);
                } else {
                    body.extend((apis.len() as i32).to_be_bytes());
                }
                for (k, lo, hi) in apis {
                    body.extend(k.to_be_bytes());
                    body.extend(lo.to_be_bytes());
                    body.extend(hi.to_be_bytes());
                    if version >= 3 {
                        body.push(0);
                    }
                }
                if version >= 1 {
                    body.extend(0i32.to_be_bytes());
                }
                if version >= 3 {
                    body.push(0);
                }
            }
            // SaslHandshake: PLAIN.
            17 => {
                body.extend(0i16.to_be_bytes());
                body.extend(1i32.to_be_bytes());
                body.extend(5i16.to_be_bytes());
                body.extend(b"PLAIN");
            }
            _ => continue,
        }
        let mut frame = ((4 + body.len()) as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&req[4..8]);
        frame.extend(body);
        s.write_all(&frame)?;
    }
}

/// The operator's credentials as `LOGFLOW_KAFKA_*` (SASL/PLAIN, as in the security review's
/// finding: the password crosses the wire as it is).
const OPERATOR_SECRET: &str = "operator-pw-Hk4s8Jw2";

fn operator_env(cmd: &mut Command) {
    cmd.env("LOGFLOW_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        .env("LOGFLOW_KAFKA_SASL_MECHANISMS", "PLAIN")
        .env("LOGFLOW_KAFKA_SASL_USERNAME", "svc-logflow")
        .env("LOGFLOW_KAFKA_SASL_PASSWORD", OPERATOR_SECRET);
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

#[test]
fn operator_credentials_never_reach_a_broker_a_submitted_job_names() {
    let dir = tmpdir("kafka-security-foreign");

    // Control: the operator's own run, pointed at the recorder, does send the credentials
    // (so the recorder can catch them, and the check below can fail).
    let ours = Recorder::start();
    let mut cmd = bin();
    cmd.args([
        "run",
        "dataflows/log-analysis.toml",
        "--brokers",
        &ours.address,
        "--stop-at-end",
    ]);
    operator_env(&mut cmd);
    let mut run = Proc::spawn(cmd, &dir, "operator-run", Stdio::null());
    let sent = wait_until(Duration::from_secs(60), || ours.contains(OPERATOR_SECRET));
    let _ = run.child.kill();
    let _ = run.child.wait();
    assert!(
        sent,
        "control: the operator's run did not send its credentials to its own --brokers \
         ({} connections, {} bytes)",
        ours.connections.lock().unwrap(),
        ours.received().len()
    );
    assert_hidden(&run.stderr_text(), OPERATOR_SECRET, "operator run");

    // A cluster started with the credentials and its own LOGFLOW_BROKERS (nothing listens
    // there); a job submitted with brokers of the submitter's choice.
    let foreign = Recorder::start();
    let spec_named = Recorder::start();
    let addr = control();
    let mut c = bin();
    c.args(["cluster", "start", "-n", "1", "-w", "1", "--control", &addr])
        .env("LOGFLOW_BROKERS", "127.0.0.1:9");
    operator_env(&mut c);
    let mut cluster = Proc::spawn(c, &dir, "cluster", Stdio::null());
    cluster.wait_for("control endpoint at", Duration::from_secs(60));

    // Named with --brokers on the submitter's command line.
    let submit = bin()
        .args([
            "submit",
            "dataflows/log-analysis.toml",
            "--brokers",
            &foreign.address,
            "--cluster",
            &addr,
        ])
        .output()
        .unwrap();
    // Named in the submitted spec's own `brokers`.
    let base = std::fs::read_to_string(repo().join("dataflows/log-analysis.toml")).unwrap();
    let spec = base.replacen(
        "[source]\n",
        &format!("[source]\nbrokers = \"{}\"\n", spec_named.address),
        1,
    );
    assert_ne!(spec, base);
    let path = dir.join("named.toml");
    std::fs::write(&path, spec).unwrap();
    let submit2 = bin()
        .args(["submit", path.to_str().unwrap(), "--cluster", &addr])
        .output()
        .unwrap();
    let jobs = bin()
        .args(["jobs", "--json", "--cluster", &addr])
        .output()
        .unwrap();
    let _ = bin().args(["cluster", "stop", "--cluster", &addr]).output();
    let _ = cluster.wait(Duration::from_secs(30));

    for (r, what) in [(&foreign, "--brokers"), (&spec_named, "spec brokers")] {
        assert!(
            *r.connections.lock().unwrap() > 0 && !r.received().is_empty(),
            "{what}: the cluster never connected to the submitted broker, so this proves nothing"
        );
        assert!(
            !r.contains(OPERATOR_SECRET) && !r.contains("svc-logflow"),
            "{what}: the operator's SASL credentials reached a broker a submitted job named"
        );
    }
    for (out, what) in [(&submit, "submit"), (&submit2, "submit"), (&jobs, "jobs")] {
        assert_hidden(&text(out), OPERATOR_SECRET, what);
    }
    assert_hidden(&cluster.stderr_text(), OPERATOR_SECRET, "cluster");
}
