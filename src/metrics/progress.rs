//! The progress line of a run on a terminal: records per second, the watermark and its lag
//! behind the wall clock, late and dead-letter counts, redrawn in place once a second on
//! stderr and erased when the run ends (the summary and the accounting line follow). It is
//! drawn through [`crate::diagnostics`], which erases and redraws it around every other line.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::registry::Totals;
use super::Metrics;
use crate::time::duration::format_ms;
use crate::time::rfc3339;

const EVERY: Duration = Duration::from_secs(1);

/// A running progress line; [`Progress::stop`] erases it.
pub struct Progress {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    pub fn start(metrics: Arc<Metrics>) -> Progress {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("logflow-progress".into())
            .spawn(move || {
                let started = Instant::now();
                let mut last = (Instant::now(), 0u64);
                // Redraws every second until the sender is dropped.
                while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(EVERY) {
                    let t = metrics.totals();
                    let now = Instant::now();
                    let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
                    let rate = t.read.saturating_sub(last.1) as f64 / secs;
                    last = (now, t.read);
                    let line = render(&t, rate, wall_ms(), started.elapsed());
                    crate::diagnostics::draw_progress(&line);
                }
                crate::diagnostics::clear_progress();
            })
            .ok();
        Progress {
            stop: Some(tx),
            thread,
        }
    }

    /// Erases the line and stops redrawing it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.take(); // dropping the sender wakes the thread
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.halt();
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One progress line.
pub fn render(t: &Totals, rate: f64, now_ms: i64, elapsed: Duration) -> String {
    let watermark = match t.watermark_ms {
        Some(w) => format!(
            "watermark {} (lag {})",
            rfc3339(w),
            format_ms(((now_ms - w).max(0) / 1000) * 1000)
        ),
        None if t.partitions > 0 && t.finished == t.partitions => "input done".to_string(),
        None => "watermark -".to_string(),
    };
    let mut line = format!(
        "{}s  read {} ({:.0}/s)  {watermark}  late {}  dead-letter {}",
        elapsed.as_secs(),
        t.read,
        rate,
        t.late,
        t.dead_letter
    );
    if t.idle > 0 {
        line.push_str(&format!("  idle partitions {}/{}", t.idle, t.partitions));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rate_watermark_lag_and_counts() {
        let t = Totals {
            read: 12_000,
            parsed: 11_900,
            dead_letter: 100,
            late: 7,
            watermark_ms: Some(1_795_514_400_000), // 2026-11-24T10:00:00Z
            reached_ms: Some(1_795_514_400_000),
            partitions: 4,
            idle: 1,
            finished: 0,
        };
        let line = render(
            &t,
            2500.4,
            1_795_514_400_000 + 90_500,
            Duration::from_secs(3),
        );
        assert_eq!(
            line,
            "3s  read 12000 (2500/s)  watermark 2026-11-24T10:00:00Z (lag 1m30s)  late 7  dead-letter 100  idle partitions 1/4"
        );
        let done = Totals {
            partitions: 1,
            finished: 1,
            ..Totals::default()
        };
        assert!(render(&done, 0.0, 0, Duration::ZERO).contains("input done"));
    }
}
