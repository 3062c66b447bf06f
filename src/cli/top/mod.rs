//! `logflow top ADDR`: a live view of a running job, drawn from what the job serves on its
//! metrics address (`/metrics` and `/results`, see docs/operations.md#live-view), refreshed
//! every second. The embedded demo draws the same view from its own metrics, in-process.
//! `logflow top --cluster`: every job of a cluster, from its job table ([`cluster`]).
//!
//! Fetching runs on its own thread, so keys are answered at once even when the job does not
//! answer; a job that goes away leaves its last data on screen, marked disconnected, and is
//! retried every second.

pub mod cluster;
pub mod model;
pub mod view;

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::Frame;

use super::cluster::AddrArgs;
use crate::control::protocol::{Reply, Request};
use crate::control::table::JobStatus;
use crate::metrics::Metrics;
use crate::Error;
use cluster::ClusterModel;
use model::{Model, Results, Sample};

/// How often the view is refreshed.
pub const EVERY: Duration = Duration::from_secs(1);
/// Connecting, and each read or write of a fetch.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer read from the job (`/results` is bounded to 256 KiB of rows; `/metrics`
/// grows with partitions and gauges).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// The job's metrics address (`--metrics-addr` of its `run`), HOST:PORT. Without it, the
    /// jobs of the cluster at --cluster (default: $LOGFLOW_CLUSTER, else 127.0.0.1:7979).
    #[arg(value_name = "HOST:PORT")]
    addr: Option<String>,
    #[command(flatten)]
    cluster: AddrArgs,
}

/// What a view is made of: a model updated by each fetch, and how it is drawn.
pub trait Screen {
    /// What one fetch brings.
    type Data: Send + 'static;
    /// A successful fetch at `mono_s` (a monotonic clock, seconds) and wall clock `now_ms`.
    fn update(&mut self, data: Self::Data, mono_s: f64, now_ms: i64);
    /// A failed fetch: the last data stays on screen, marked disconnected.
    fn failed(&mut self, why: String);
    fn draw(&self, frame: &mut Frame);
}

impl Screen for Model {
    type Data = (Sample, Option<Results>);
    fn update(&mut self, (sample, results): Self::Data, mono_s: f64, now_ms: i64) {
        Model::update(self, sample, results, mono_s, now_ms);
    }
    fn failed(&mut self, why: String) {
        Model::failed(self, why);
    }
    fn draw(&self, frame: &mut Frame) {
        view::draw(frame, self);
    }
}

impl Screen for ClusterModel {
    type Data = Vec<JobStatus>;
    fn update(&mut self, jobs: Self::Data, mono_s: f64, now_ms: i64) {
        ClusterModel::update(self, jobs, mono_s, now_ms);
    }
    fn failed(&mut self, why: String) {
        ClusterModel::failed(self, why);
    }
    fn draw(&self, frame: &mut Frame) {
        cluster::draw(frame, self);
    }
}

/// Where the numbers come from.
pub enum Feed {
    /// A job's metrics listener.
    Http(String),
    /// This process's own job (the embedded demo).
    InProcess(Arc<Metrics>),
}

impl Feed {
    fn fetch(&self) -> Result<(Sample, Option<Results>), String> {
        match self {
            Feed::Http(addr) => {
                let sample = Sample::parse(&get(addr, "/metrics")?)?;
                let results = Results::parse(&get(addr, "/results")?)?;
                Ok((sample, Some(results)))
            }
            Feed::InProcess(m) => {
                let t = m.totals();
                let results = Results::parse(&m.results_json())?;
                let sample = Sample {
                    pipeline: Some(results.pipeline.clone()),
                    running: m.is_running(),
                    read: t.read as f64,
                    dead_letter: t.dead_letter as f64,
                    late: t.late as f64,
                    rows_out: m.rows_total() as f64,
                    watermark: t.watermark_ms.map(|w| w as f64 / 1000.0),
                    partitions: t.partitions,
                    input_done: t.partitions > 0 && t.finished == t.partitions,
                };
                Ok((sample, Some(results)))
            }
        }
    }
}

/// `HOST:PORT` of an address given as `HOST:PORT`, `http://HOST:PORT` or `.../metrics`.
fn host_port(addr: &str) -> &str {
    let a = addr.strip_prefix("http://").unwrap_or(addr);
    let a = a.strip_suffix("/metrics").unwrap_or(a);
    a.trim_end_matches('/')
}

/// One `GET path` answered 200: its body.
fn get(addr: &str, path: &str) -> Result<String, String> {
    let target = host_port(addr);
    let mut last = format!("{target}: not a HOST:PORT address");
    let addrs = target
        .to_socket_addrs()
        .map_err(|e| format!("{target}: {e}"))?;
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e.to_string(),
        }
    }
    let mut s = stream.ok_or(last)?;
    let io = |e: std::io::Error| e.to_string();
    s.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut answer = Vec::new();
    s.take(MAX_ANSWER as u64 + 1)
        .read_to_end(&mut answer)
        .map_err(io)?;
    if answer.len() > MAX_ANSWER {
        return Err(format!("{path}: answer larger than {MAX_ANSWER} bytes"));
    }
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{path}: not an HTTP answer"))?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("{path}: {status}"));
    }
    Ok(String::from_utf8_lossy(&answer[split + 4..]).into_owned())
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Restores the terminal however the view ends (return, error or panic unwinding).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Draws the view of `feed` until `q`, Esc or Ctrl-C (a job that ends stays on screen, marked
/// finished), then restores the terminal.
pub fn show(target: &str, feed: Feed) -> Result<(), Error> {
    show_screen(Model::new(target), move || feed.fetch())
}

/// Draws `model`, updated from `fetch` every second, until `q`, Esc or Ctrl-C, then restores
/// the terminal.
fn show_screen<M: Screen>(
    mut model: M,
    fetch: impl Fn() -> Result<M::Data, String> + Send + 'static,
) -> Result<(), Error> {
    let terminal = ratatui::try_init().map_err(|e| Error::io("terminal", e))?;
    let _restore = Restore;
    let mut terminal = terminal;
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let fetcher = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("logflow-top-fetch".into())
            .spawn(move || {
                let origin = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let got = fetch();
                    let at = (started.duration_since(origin).as_secs_f64(), wall_ms());
                    if tx.send((got, at)).is_err() {
                        return;
                    }
                    let left = EVERY.saturating_sub(started.elapsed());
                    // Sleep in slices so that quitting is not held up by a whole period.
                    let until = Instant::now() + left;
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("top fetch thread: {e}")))?
    };
    let result = (|| -> Result<(), Error> {
        loop {
            while let Ok((got, (mono, wall))) = rx.try_recv() {
                match got {
                    Ok(data) => model.update(data, mono, wall),
                    Err(why) => model.failed(why),
                }
            }
            terminal
                .draw(|f| model.draw(f))
                .map_err(|e| Error::io("terminal", e))?;
            if event::poll(Duration::from_millis(100)).map_err(|e| Error::io("terminal", e))? {
                if let Event::Key(k) = event::read().map_err(|e| Error::io("terminal", e))? {
                    let ctrl_c =
                        k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if k.kind == KeyEventKind::Press
                        && (ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc))
                    {
                        return Ok(());
                    }
                }
            }
        }
    })();
    stop.store(true, Ordering::Relaxed);
    drop(rx);
    let _ = fetcher.join();
    result
}

pub fn top(args: TopArgs) -> Result<(), Error> {
    use std::io::IsTerminal;
    let Some(addr) = &args.addr else {
        if !std::io::stdout().is_terminal() {
            return Err(super::usage(
                "top draws on a terminal; for numbers in a script use `logflow jobs --json`",
            ));
        }
        let (target, _) = args.cluster.target()?;
        let cluster = args.cluster;
        return show_screen(ClusterModel::new(&target), move || {
            match cluster.call(&Request::Jobs).map_err(|e| e.to_string())? {
                (_, Reply::Jobs { jobs }) => Ok(jobs),
                (_, other) => Err(format!("unexpected answer: {other:?}")),
            }
        });
    };
    if args.cluster.given() {
        return Err(super::usage(
            "top: give a job's metrics address or --cluster, not both",
        ));
    }
    let target = host_port(addr).to_string();
    if target.to_socket_addrs().is_err() {
        return Err(super::usage(format!("top {addr}: not a HOST:PORT address")));
    }
    if !std::io::stdout().is_terminal() {
        return Err(super::usage(
            "top draws on a terminal; for numbers in a script read http://HOST:PORT/metrics and /results",
        ));
    }
    show(&target, Feed::Http(target.clone()))
}
