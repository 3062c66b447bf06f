//! Several hosts: three "hosts" made by this test with Linux network namespaces, joined by a
//! bridge, one logflow process in each, and a real Kafka broker bound to the bridge's address
//! in the root namespace (reachable from every namespace). Addresses are 10.213.x.0/24 and
//! exist only on that bridge and inside the namespaces.
//!
//! The 3-process run equals the single-process run, and so does a job submitted to a cluster
//! started with one process per namespace; then one namespace's process is killed and the
//! other two must exit within seconds naming it. Namespaces and the bridge are removed at
//! the end, even on failure, and leftovers of dead runs are removed at the start.
//!
//! Needs root (CI runs as root). Not root, it says so and skips, except under `CI=1`, where it
//! fails; as root every failure to make the namespaces fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{assert_loss_is_named, hostfile, Proc};
use common::kafka::{
    assert_side_outputs, assert_topics_equal_files, create_outputs, file_results, gen, log_keys,
    variant_spec, Broker, LOG_ANALYSES,
};
use common::oracle::{self, Reference};
use common::{accounting, repo, tmpdir};

const HOSTS: usize = 3;
const EVENTS: u64 = 100_000;
/// Namespaces are `logflow-<pid>-<i>`, bridges `lfbr<pid>`: the pid tells a leftover of a dead
/// run from a namespace of a run going on now.
const NS_PREFIX: &str = "logflow-";
const BRIDGE_PREFIX: &str = "lfbr";

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn alive(pid: &str) -> bool {
    std::path::Path::new("/proc").join(pid).exists()
}

/// Removes namespaces and bridges left by runs whose process is gone.
fn remove_leftovers() {
    for line in ip(&["netns", "list"]).unwrap_or_default().lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if let Some(rest) = name.strip_prefix(NS_PREFIX) {
            let pid = rest.split('-').next().unwrap_or_default();
            if !alive(pid) {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
    for line in ip(&["-o", "link", "show", "type", "bridge"])
        .unwrap_or_default()
        .lines()
    {
        // "7: lfbr1234: <...>"
        let name = line.split(':').nth(1).unwrap_or_default().trim();
        if let Some(pid) = name.strip_prefix(BRIDGE_PREFIX) {
            if !alive(pid) {
                let _ = ip(&["link", "del", name]);
            }
        }
    }
}

/// The namespaces and their bridge; removed on drop.
struct Hosts {
    namespaces: Vec<String>,
    bridge: String,
    /// `10.213.x`
    subnet: String,
}

impl Hosts {
    fn create(n: usize) -> Result<Hosts, String> {
        remove_leftovers();
        let pid = std::process::id();
        let mut hosts = Hosts {
            namespaces: Vec::new(),
            bridge: format!("{BRIDGE_PREFIX}{pid}"),
            subnet: format!("10.213.{}", 20 + pid % 200),
        };
        ip(&["link", "add", &hosts.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}.1/24", hosts.subnet),
            "dev",
            &hosts.bridge,
        ])?;
        ip(&["link", "set", &hosts.bridge, "up"])?;
        for i in 0..n {
            let ns = format!("{NS_PREFIX}{pid}-{i}");
            ip(&["netns", "add", &ns])?;
            hosts.namespaces.push(ns.clone());
            let (outer, inner) = (format!("lfh{pid}x{i}"), format!("lfn{pid}x{i}"));
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", &ns,
            ])?;
            ip(&["link", "set", &outer, "master", &hosts.bridge, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", hosts.address(i)),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }

    /// Host `i`'s address (`.1` is the bridge in the root namespace).
    fn address(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 2)
    }

    /// `logflow ARGS` inside host `i`.
    fn logflow(&self, i: usize, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.namespaces[i]])
            .arg(env!("CARGO_BIN_EXE_logflow"))
            .args(args)
            .current_dir(repo());
        c
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with it the other end.
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// This process's effective user id, from /proc (std has no geteuid).
fn effective_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .expect("the effective uid in /proc/self/status")
}

#[test]
fn three_hosts_in_network_namespaces() {
    let euid = effective_uid();
    if euid != 0 {
        // Only the missing privilege skips, never a failure as root; CI must run it.
        assert!(
            std::env::var("CI").as_deref() != Ok("1"),
            "CI=1: this test must run, as root (effective uid {euid})"
        );
        common::skip(&format!("not root (effective uid {euid})"));
        return;
    }
    let hosts = Hosts::create(HOSTS)
        .unwrap_or_else(|e| panic!("cannot make network namespaces as root: {e}"));
    let dir = tmpdir("netns");
    let b = Broker::start_on("kafka-netns", &format!("{}.1", hosts.subnet));

    let input = dir.join("logs.jsonl");
    gen(
        "logs",
        &EVENTS.to_string(),
        &["--late-fraction", "0.002"],
        &input,
    );
    let expected = file_results(
        "dataflows/log-analysis.toml",
        "json",
        &input,
        &dir.join("single"),
    );
    Reference::new(&oracle::log_analysis(), &input)
        .assert_matches(&dir.join("single"), "log-analysis");
    b.topic("logs", HOSTS as u32);
    assert_eq!(b.produce("logs", &input), EVENTS);
    let spec = variant_spec("netns", "30s", &dir);
    create_outputs(&b, "netns", Some("netns"), &LOG_ANALYSES);
    let addresses: Vec<String> = (0..HOSTS)
        .map(|i| format!("{}:2101", hosts.address(i)))
        .collect();
    let hostfile = hostfile(&dir, &addresses);
    let run = |i: usize, extra: &[&str]| {
        let n = HOSTS.to_string();
        let p = i.to_string();
        let mut args = vec![
            "run",
            spec.to_str().unwrap(),
            "--brokers",
            &b.address,
            "--topic",
            "logs",
            "-n",
            &n,
            "-p",
            &p,
            "-w",
            "1",
            "-h",
            hostfile.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        hosts.logflow(i, &args)
    };

    // One process per host, reading to the end of the topic.
    let started = Instant::now();
    let mut procs: Vec<Proc> = (0..HOSTS)
        .map(|i| {
            Proc::spawn(
                run(i, &["--stop-at-end"]),
                &dir,
                &format!("catchup{i}"),
                Stdio::null(),
            )
        })
        .collect();
    let mut read = 0;
    for (i, p) in procs.iter_mut().enumerate() {
        let status = p.wait(Duration::from_secs(300));
        let err = p.stderr_text();
        assert!(
            status.is_some_and(|s| s.success()),
            "host {i}: {status:?}\n{err}"
        );
        assert!(
            err.contains(&format!(
                "worker {i} (process {i}) reads logs partitions [{i}]"
            )),
            "host {i}: {err}"
        );
        read += accounting(err.as_bytes())["read"];
    }
    eprintln!("3 hosts: {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(read, EVENTS);
    assert_topics_equal_files(
        &b,
        Some("netns"),
        &LOG_ANALYSES,
        &log_keys(),
        &expected,
        &dir,
        "3 hosts",
    );
    assert_side_outputs(&b, "netns", "log-analysis", &expected, &dir, "3 hosts");

    // A cluster with one process per host: a job submitted from outside the namespaces to
    // process 0's control endpoint on its host address gives the same results.
    let control = format!("{}:7979", hosts.address(0));
    let n = HOSTS.to_string();
    let mut cluster: Vec<Proc> = (0..HOSTS)
        .map(|i| {
            let p = i.to_string();
            let mut args = vec!["cluster", "start", "-n", &n, "-p", &p, "-w", "1"];
            args.extend([
                "--hostfile",
                hostfile.to_str().unwrap(),
                "--control",
                &control,
            ]);
            Proc::spawn(
                hosts.logflow(i, &args),
                &dir,
                &format!("cluster{i}"),
                Stdio::null(),
            )
        })
        .collect();
    cluster[0].wait_for("control endpoint at", Duration::from_secs(60));
    let job_spec = variant_spec("nsjob", "30s", &dir);
    create_outputs(&b, "nsjob", Some("nsjob"), &LOG_ANALYSES);
    let submit = Command::new(env!("CARGO_BIN_EXE_logflow"))
        .current_dir(repo())
        .args(["submit", job_spec.to_str().unwrap(), "--cluster", &control])
        // The namespaces' private network: the token may cross it without TLS.
        .arg("--insecure-plaintext")
        .args(["--brokers", &b.address, "--topic", "logs", "--stop-at-end"])
        .output()
        .unwrap();
    assert!(
        submit.status.success(),
        "submit: {}",
        String::from_utf8_lossy(&submit.stderr)
    );
    let started = Instant::now();
    loop {
        let jobs = Command::new(env!("CARGO_BIN_EXE_logflow"))
            .args([
                "jobs",
                "--json",
                "--insecure-plaintext",
                "--cluster",
                &control,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&jobs.stdout);
        if text.contains("\"state\":\"finished\"") {
            assert!(text.contains("\"records_in\":100000"), "{text}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the job did not finish: {text}\n{}",
            cluster[0].stderr_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_topics_equal_files(
        &b,
        Some("nsjob"),
        &LOG_ANALYSES,
        &log_keys(),
        &expected,
        &dir,
        "cluster on 3 hosts",
    );
    let stop = Command::new(env!("CARGO_BIN_EXE_logflow"))
        .args([
            "cluster",
            "stop",
            "--insecure-plaintext",
            "--cluster",
            &control,
        ])
        .status()
        .unwrap();
    assert!(stop.success());
    for (i, p) in cluster.iter_mut().enumerate() {
        let status = p.wait(Duration::from_secs(60));
        assert!(
            status.is_some_and(|s| s.success()),
            "cluster process {i}: {status:?}\n{}",
            p.stderr_text()
        );
    }

    // A live job (no end): killing host 2's process stops the others, naming it.
    let mut live: Vec<Proc> = (0..HOSTS)
        .map(|i| Proc::spawn(run(i, &[]), &dir, &format!("live{i}"), Stdio::null()))
        .collect();
    for p in live.iter_mut() {
        p.wait_for("runs workers", Duration::from_secs(60));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_loss_is_named(&mut live, 2, &addresses[2], Duration::from_secs(10));
}
