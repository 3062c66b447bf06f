//! The synthetic data generator behind `logflow gen`: application logs (format `json`) or
//! user events (format `user-events`), with out-of-order timestamps, bad lines, late events
//! and injected incidents, all deterministic in the seed.
//!
//! Time model: line `i` has the nominal time `start + i / event_rate`; its timestamp is the
//! nominal time minus a uniform offset in `[0, disorder)`. So a line is never more than
//! `disorder` behind the newest timestamp before it, and with `disorder` below the watermark
//! delay no line is late. A late line (`--late-fraction`) is at least
//! [`LATE_MIN_BEHIND`] behind the newest timestamp, which is late for every analysis of
//! docs/design.md section 5 (the worst case is a 5-minute window with a 10-minute delay: 15
//! minutes). Late lines only start once [`LATE_WARMUP`] (plus `disorder`) of event time has
//! been written, so that they fall behind data already seen.
//!
//! Bad lines (`--bad-fraction`) are the kinds of damage real pipelines see: garbage text,
//! truncated JSON, wrong field types, missing or malformed timestamps, non-UTF-8 bytes. Every
//! one of them is bad input under docs/design.md section 2, and every good line is good input.
//!
//! Incidents are described in [`incidents`].
//!
//! The output depends only on the configuration: the PRNG is hand-written (`rng.rs`), and no
//! platform math function is used, so a seed reproduces a file byte for byte.

mod fmt;
pub mod incidents;
mod logs;
pub(crate) mod rng;
mod user_events;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Error, Result};
use rng::Rng;

/// How far behind the newest timestamp a late line is, at least.
pub const LATE_MIN_BEHIND: Duration = Duration::from_secs(16 * 60);
/// Late lines are spread over `[LATE_MIN_BEHIND, LATE_MIN_BEHIND + LATE_SPREAD)` behind.
pub const LATE_SPREAD: Duration = Duration::from_secs(4 * 60);
/// Event time written before the first late line (plus the disorder).
pub const LATE_WARMUP: Duration = Duration::from_secs(20 * 60);

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Application log lines, one JSON object per line (input format `json`).
    Logs,
    /// User events, one JSON object per line (input format `user-events`).
    UserEvents,
}

/// Parses a flag duration (`500ms`, `90s`, `5m`, `1m30s`) with the spec's duration syntax.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::time::duration::parse_ms(text).map(|ms| Duration::from_millis(ms as u64))
}

/// `logflow gen` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct GenArgs {
    /// What to generate.
    #[arg(long, value_enum, default_value = "logs")]
    pub kind: Kind,
    /// Number of lines to write (good, bad and late together).
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// PRNG seed: the same seed and flags give byte-identical output.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Event time of the first line (RFC 3339), or `now`: the wall-clock time when writing
    /// starts (with `--rate` equal to `--event-rate`, timestamps then follow the clock).
    #[arg(long, default_value = "2026-11-24T10:00:00Z")]
    pub start: String,
    /// Lines per second of EVENT time (how fast timestamps advance).
    #[arg(long, default_value_t = 100.0)]
    pub event_rate: f64,
    /// Maximum out-of-orderness of timestamps (e.g. 500ms, 90s, 5m); keep it below the
    /// jobs' watermark delay (5 minutes) for a run without late events.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub disorder: Duration,
    /// Fraction of lines that are bad input (dead-letter material).
    #[arg(long, default_value_t = 0.01)]
    pub bad_fraction: f64,
    /// Fraction of lines whose timestamp is more than 15 minutes behind: late for every analysis.
    #[arg(long, default_value_t = 0.0)]
    pub late_fraction: f64,
    /// Do not inject incidents (DDoS, scanner, latency and error spikes, a scraping user).
    #[arg(long)]
    pub no_incidents: bool,
    /// Output file, `-` for stdout.
    #[arg(long, default_value = "-")]
    pub output: PathBuf,
    /// Wall-clock throttle in lines per second (unlimited when absent).
    #[arg(long)]
    pub rate: Option<f64>,
}

impl GenArgs {
    /// `--start now`: timestamps start at the wall-clock time writing starts.
    pub fn starts_now(&self) -> bool {
        self.start == "now"
    }

    /// The generator configuration these flags describe, validated.
    pub fn config(&self) -> Result<GenConfig> {
        let start_ms = if self.starts_now() {
            chrono::Utc::now().timestamp_millis()
        } else {
            chrono::DateTime::parse_from_rfc3339(&self.start)
                .map_err(|e| {
                    Error::Usage(format!(
                        "--start {}: not an RFC 3339 timestamp (or `now`) ({e})",
                        self.start
                    ))
                })?
                .timestamp_millis()
        };
        let cfg = GenConfig {
            kind: self.kind,
            events: self.events,
            seed: self.seed,
            start_ms,
            event_rate: self.event_rate,
            disorder_ms: i64::try_from(self.disorder.as_millis())
                .map_err(|_| Error::Usage("--disorder is too large".into()))?,
            bad_fraction: self.bad_fraction,
            late_fraction: self.late_fraction,
            incidents: !self.no_incidents,
        };
        cfg.validate()?;
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(Error::Usage(format!(
                    "--rate {rate}: must be a positive number"
                )));
            }
        }
        Ok(cfg)
    }
}

/// What the generator produces; see [`GenArgs`] for the meaning of each field.
#[derive(Clone, Debug, PartialEq)]
pub struct GenConfig {
    /// Logs or user events.
    pub kind: Kind,
    /// How many lines.
    pub events: u64,
    /// The random seed: the same seed writes the same lines.
    pub seed: u64,
    /// Epoch milliseconds of the first nominal timestamp.
    pub start_ms: i64,
    /// Lines per second of event time.
    pub event_rate: f64,
    /// Largest shift of a timestamp from its nominal time (out-of-order events).
    pub disorder_ms: i64,
    /// Share of lines that are not valid records (dead letters).
    pub bad_fraction: f64,
    /// Share of lines stamped far in the past (late events).
    pub late_fraction: f64,
    /// Inject the incidents of [`incidents`] (DDoS, scans, latency, errors).
    pub incidents: bool,
}

impl Default for GenConfig {
    /// The defaults of `logflow gen`.
    fn default() -> Self {
        GenConfig {
            kind: Kind::Logs,
            events: 100_000,
            seed: 42,
            start_ms: 1_795_514_400_000, // 2026-11-24T10:00:00Z
            event_rate: 100.0,
            disorder_ms: 60_000,
            bad_fraction: 0.01,
            late_fraction: 0.0,
            incidents: true,
        }
    }
}

impl GenConfig {
    /// Checks ranges; [`Generator::new`] clamps instead, so call this on user input.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Usage(m));
        if !(self.event_rate.is_finite() && self.event_rate > 0.0) {
            return bad(format!(
                "--event-rate {}: must be a positive number",
                self.event_rate
            ));
        }
        for (name, f) in [
            ("--bad-fraction", self.bad_fraction),
            ("--late-fraction", self.late_fraction),
        ] {
            if !(0.0..=1.0).contains(&f) {
                return bad(format!("{name} {f}: must be between 0 and 1"));
            }
        }
        if self.bad_fraction + self.late_fraction > 1.0 {
            return bad("--bad-fraction plus --late-fraction must not exceed 1".into());
        }
        if self.disorder_ms < 0 {
            return bad("--disorder must not be negative".into());
        }
        // Years 1970..=9999 keep every timestamp (and the late ones, 30 minutes behind)
        // printable as RFC 3339.
        if !(3_600_000..=253_000_000_000_000).contains(&self.start_ms) {
            return bad("--start must be between 1970-01-01T01:00:00Z and year 9999".into());
        }
        Ok(())
    }
}

/// What one generated line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// Valid input whose timestamp is within `disorder` of the newest one.
    Good,
    /// Invalid input: must go to the dead-letter output.
    Bad,
    /// Valid input, far behind: late for every analysis.
    Late,
}

/// Counts of what was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenStats {
    /// Lines written (all kinds).
    pub lines: u64,
    /// Valid records.
    pub good: u64,
    /// Invalid lines.
    pub bad: u64,
    /// Records stamped far in the past.
    pub late: u64,
    /// Bytes written, newlines included (by [`run`]; the library API counts line bytes only).
    pub bytes: u64,
}

/// Nominal time, disorder and the good/bad/late decision, shared by both kinds.
struct Timeline {
    start_ms: i64,
    ms_per_event: f64,
    disorder_ms: u64,
    bad_fraction: f64,
    late_fraction: f64,
    late_from_ms: i64,
}

impl Timeline {
    fn new(cfg: &GenConfig) -> Self {
        let disorder_ms = cfg.disorder_ms.max(0);
        Timeline {
            start_ms: cfg.start_ms,
            ms_per_event: 1000.0 / cfg.event_rate,
            disorder_ms: disorder_ms as u64,
            bad_fraction: cfg.bad_fraction,
            late_fraction: cfg.late_fraction,
            late_from_ms: cfg
                .start_ms
                .saturating_add(LATE_WARMUP.as_millis() as i64)
                .saturating_add(disorder_ms),
        }
    }

    /// The kind and timestamp of line `i`.
    fn line(&self, i: u64, rng: &mut Rng) -> (LineKind, i64) {
        let nominal = self.start_ms + (i as f64 * self.ms_per_event) as i64;
        let roll = rng.f64();
        let kind = if roll < self.bad_fraction {
            LineKind::Bad
        } else if roll < self.bad_fraction + self.late_fraction && nominal >= self.late_from_ms {
            LineKind::Late
        } else {
            LineKind::Good
        };
        let ts = match kind {
            LineKind::Late => {
                nominal
                    - self.disorder_ms as i64
                    - LATE_MIN_BEHIND.as_millis() as i64
                    - rng.below(LATE_SPREAD.as_millis() as u64) as i64
            }
            _ => nominal - rng.below(self.disorder_ms) as i64,
        };
        (kind, ts)
    }
}

enum Source {
    Logs(logs::LogGen),
    UserEvents(user_events::UserEventGen),
}

/// An in-process source of generated lines (used by `logflow gen` and usable by the engine).
///
/// ```
/// use logflow::gen::{GenConfig, Generator};
/// let mut g = Generator::new(GenConfig { events: 3, ..GenConfig::default() });
/// let mut line = Vec::new();
/// let mut n = 0;
/// while g.next_line(&mut line) {
///     assert!(line.starts_with(b"{") || g.last_kind() == Some(logflow::gen::LineKind::Bad));
///     line.clear();
///     n += 1;
/// }
/// assert_eq!(n, 3);
/// ```
pub struct Generator {
    rng: Rng,
    timeline: Timeline,
    source: Source,
    events: u64,
    stats: GenStats,
    last: Option<LineKind>,
}

/// Each line as an owned buffer (tests and benchmarks that keep the lines; writers reuse one
/// buffer with [`Generator::next_line`]).
impl Iterator for Generator {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        self.next_line(&mut line).then_some(line)
    }
}

impl Generator {
    /// A generator for `cfg`. Out-of-range values are clamped; use [`GenConfig::validate`]
    /// to report them instead.
    pub fn new(mut cfg: GenConfig) -> Self {
        if !(cfg.event_rate.is_finite() && cfg.event_rate > 0.0) {
            cfg.event_rate = 100.0;
        }
        cfg.bad_fraction = clamp01(cfg.bad_fraction);
        cfg.late_fraction = clamp01(cfg.late_fraction).min(1.0 - cfg.bad_fraction);
        cfg.disorder_ms = cfg.disorder_ms.max(0);
        let source = match cfg.kind {
            Kind::Logs => Source::Logs(logs::LogGen::new(&cfg)),
            Kind::UserEvents => Source::UserEvents(user_events::UserEventGen::new(&cfg)),
        };
        Generator {
            rng: Rng::new(cfg.seed),
            timeline: Timeline::new(&cfg),
            source,
            events: cfg.events,
            stats: GenStats::default(),
            last: None,
        }
    }

    /// Appends the next line to `out`, without a newline; `false` (and nothing appended)
    /// when all lines have been generated.
    pub fn next_line(&mut self, out: &mut Vec<u8>) -> bool {
        let i = self.stats.lines;
        if i >= self.events {
            return false;
        }
        let (kind, ts) = self.timeline.line(i, &mut self.rng);
        let before = out.len();
        match &mut self.source {
            Source::Logs(g) => g.write(&mut self.rng, kind, ts, out),
            Source::UserEvents(g) => g.write(&mut self.rng, kind, ts, out),
        }
        self.stats.lines += 1;
        self.stats.bytes += (out.len() - before) as u64;
        match kind {
            LineKind::Good => self.stats.good += 1,
            LineKind::Bad => self.stats.bad += 1,
            LineKind::Late => self.stats.late += 1,
        }
        self.last = Some(kind);
        true
    }

    /// What the line last returned by [`Generator::next_line`] is.
    pub fn last_kind(&self) -> Option<LineKind> {
        self.last
    }

    /// Counts so far.
    pub fn stats(&self) -> GenStats {
        self.stats
    }
}

fn clamp01(f: f64) -> f64 {
    if f.is_nan() {
        0.0
    } else {
        f.clamp(0.0, 1.0)
    }
}

/// Runs `logflow gen`: writes the configured lines, newline-terminated, to `--output`.
/// A closed stdout (e.g. `logflow gen | head`) ends the run without an error.
pub fn run(args: &GenArgs) -> Result<GenStats> {
    let cfg = args.config()?;
    if args.output.as_os_str() == "-" {
        let stdout = io::stdout();
        let lock = stdout.lock();
        match write_all(cfg, args.rate, lock, Path::new("<stdout>")) {
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
                Ok(GenStats::default())
            }
            other => other,
        }
    } else {
        let file = std::fs::File::create(&args.output).map_err(|e| Error::io(&args.output, e))?;
        write_all(cfg, args.rate, file, &args.output)
    }
}

/// Generates every line of `cfg` into `w`, throttled to `rate` lines per wall-clock second.
fn write_all(
    cfg: GenConfig,
    rate: Option<f64>,
    mut w: impl Write,
    path: &Path,
) -> Result<GenStats> {
    const CHUNK: usize = 1 << 16;
    let io_err = |e| Error::io(path, e);
    let mut gen = Generator::new(cfg);
    let mut buf = Vec::with_capacity(CHUNK + 4096);
    let started = Instant::now();
    // Throttled: flush at least every 10 ms worth of lines, so consumers see a steady stream.
    let lines_per_flush = rate.map(|r| ((r / 100.0) as u64).max(1));
    let mut newlines = 0u64;
    while gen.next_line(&mut buf) {
        buf.push(b'\n');
        newlines += 1;
        let written = gen.stats().lines;
        match (rate, lines_per_flush) {
            (Some(r), Some(every)) if written % every == 0 => {
                w.write_all(&buf).map_err(io_err)?;
                buf.clear();
                w.flush().map_err(io_err)?;
                let due = Duration::from_secs_f64(written as f64 / r);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            _ if buf.len() >= CHUNK => {
                w.write_all(&buf).map_err(io_err)?;
                buf.clear();
            }
            _ => {}
        }
    }
    w.write_all(&buf).map_err(io_err)?;
    w.flush().map_err(io_err)?;
    let mut stats = gen.stats();
    stats.bytes += newlines;
    Ok(stats)
}

#[cfg(test)]
mod tests;
