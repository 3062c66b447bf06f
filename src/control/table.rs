//! The jobs of a cluster and their states, as every worker sees them: each worker applies the
//! same ordered commands (submissions, cancellations, per-process statistics) to its own table,
//! and process 0 answers `logflow jobs` from its worker 0's copy.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::time::rfc3339;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    /// Asked to stop gracefully (`logflow stop`): its workers stop reading, take the final
    /// checkpoint if it keeps checkpoints, and flush their sinks.
    Stopping,
    /// Stopped gracefully: every worker let go of the dataflow after a stop request.
    Stopped,
    /// Every worker's dataflow completed (a bounded input was read to its end).
    Finished,
    Cancelled,
    /// A worker could not open the job's input or output, or a sink failed.
    Failed,
}

impl JobState {
    /// Still holding its dataflow somewhere (running or stopping).
    pub fn live(self) -> bool {
        matches!(self, JobState::Running | JobState::Stopping)
    }

    pub fn name(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Stopping => "stopping",
            JobState::Stopped => "stopped",
            JobState::Finished => "finished",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
        }
    }
}

/// What one process reports about one job (its workers together).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStats {
    pub read: u64,
    pub dead_letter: u64,
    pub late: u64,
    /// Result rows written by this process's sinks.
    pub written: u64,
    /// Least watermark over this process's partitions that are neither idle nor finished.
    pub watermark_ms: Option<i64>,
    /// Local workers that still hold the job's dataflow.
    pub installed: usize,
}

/// One job as `logflow jobs` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: u64,
    pub name: String,
    /// The spec file it was submitted from.
    pub spec: String,
    pub state: JobState,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub submitted: String,
    #[serde(default)]
    pub ended: Option<String>,
    /// The job's watermark (least over all processes), the last one seen once the job ended.
    #[serde(default)]
    pub watermark: Option<String>,
    pub records_in: u64,
    pub records_out: u64,
    pub dead_letter: u64,
    pub late: u64,
    /// Workers that still hold the job's dataflow: 0 once it finished or was cancelled and its
    /// state was freed everywhere.
    pub workers_running: usize,
}

#[derive(Clone)]
struct Entry {
    status: JobStatus,
    /// The latest report of each process (None: not heard from yet).
    processes: Vec<Option<ProcessStats>>,
    watermark_ms: Option<i64>,
    /// Workers in the cluster (all build every job's dataflow).
    workers: usize,
}

/// Ended jobs (finished, cancelled, failed) kept for `jobs`; older ones are dropped, so the
/// table, and the reply listing it, stay bounded however long the cluster runs.
pub const KEEP_ENDED: usize = 100;

/// Every job submitted to the cluster, by id: those running and the last [`KEEP_ENDED`]
/// ended ones.
#[derive(Clone)]
pub struct JobTable {
    processes: usize,
    jobs: BTreeMap<u64, Entry>,
}

impl JobTable {
    pub fn new(processes: usize) -> JobTable {
        JobTable {
            processes,
            jobs: BTreeMap::new(),
        }
    }

    /// A job was submitted and its dataflow built on `workers` workers.
    pub fn submitted(&mut self, id: u64, name: &str, spec: &str, at_ms: i64, workers: usize) {
        self.jobs.insert(
            id,
            Entry {
                status: JobStatus {
                    id,
                    name: name.to_string(),
                    spec: spec.to_string(),
                    state: JobState::Running,
                    reason: None,
                    submitted: rfc3339(at_ms),
                    ended: None,
                    watermark: None,
                    records_in: 0,
                    records_out: 0,
                    dead_letter: 0,
                    late: 0,
                    workers_running: workers,
                },
                processes: vec![None; self.processes],
                watermark_ms: None,
                workers,
            },
        );
        self.prune();
    }

    /// Drops the oldest ended jobs beyond [`KEEP_ENDED`]. Every worker applies the same
    /// commands, so every table drops the same ones.
    fn prune(&mut self) {
        let ended: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, e)| !e.status.state.live())
            .map(|(id, _)| *id)
            .collect();
        for id in &ended[..ended.len().saturating_sub(KEEP_ENDED)] {
            self.jobs.remove(id);
        }
    }

    /// A process's report. The job is finished (stopped, when it was asked to stop) once every
    /// process reports no worker holding its dataflow while it is still running.
    pub fn report(&mut self, id: u64, process: usize, stats: ProcessStats, at_ms: i64) {
        let Some(e) = self.jobs.get_mut(&id) else {
            return;
        };
        if let Some(slot) = e.processes.get_mut(process) {
            *slot = Some(stats);
        }
        let reported: Vec<&ProcessStats> = e.processes.iter().flatten().collect();
        let s = &mut e.status;
        s.records_in = reported.iter().map(|p| p.read).sum();
        s.records_out = reported.iter().map(|p| p.written).sum();
        s.dead_letter = reported.iter().map(|p| p.dead_letter).sum();
        s.late = reported.iter().map(|p| p.late).sum();
        // Processes not heard from yet still hold the dataflow on all their workers.
        let per_process = e.workers / e.processes.len().max(1);
        s.workers_running = e
            .processes
            .iter()
            .map(|p| p.as_ref().map_or(per_process, |p| p.installed))
            .sum();
        if let Some(wm) = reported.iter().filter_map(|p| p.watermark_ms).min() {
            e.watermark_ms = Some(wm);
        }
        s.watermark = e.watermark_ms.map(rfc3339);
        let all_reported = reported.len() == e.processes.len();
        if all_reported && s.workers_running == 0 && s.state.live() {
            s.state = match s.state {
                JobState::Stopping => JobState::Stopped,
                _ => JobState::Finished,
            };
            s.ended = Some(rfc3339(at_ms));
        }
    }

    /// A running job was asked to stop gracefully; false if it is unknown or not running.
    pub fn stopping(&mut self, id: u64) -> bool {
        match self.jobs.get_mut(&id) {
            Some(e) if e.status.state == JobState::Running => {
                e.status.state = JobState::Stopping;
                true
            }
            _ => false,
        }
    }

    /// Cancels or fails a running (or stopping) job; false if it is unknown or has ended.
    pub fn end(&mut self, id: u64, state: JobState, reason: Option<String>, at_ms: i64) -> bool {
        let Some(e) = self.jobs.get_mut(&id) else {
            return false;
        };
        if !e.status.state.live() {
            return false;
        }
        e.status.state = state;
        e.status.reason = reason;
        e.status.ended = Some(rfc3339(at_ms));
        true
    }

    pub fn get(&self, id: u64) -> Option<&JobStatus> {
        self.jobs.get(&id).map(|e| &e.status)
    }

    /// The jobs still holding their dataflows (running or stopping).
    pub fn running(&self) -> Vec<u64> {
        self.jobs
            .iter()
            .filter(|(_, e)| e.status.state.live())
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn list(&self) -> Vec<JobStatus> {
        self.jobs.values().map(|e| e.status.clone()).collect()
    }
}

/// The jobs as a text table (`logflow jobs`).
pub fn render(jobs: &[JobStatus]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>4}  {:<20} {:<10} {:<24} {:>10} {:>11}  SUBMITTED",
        "ID", "NAME", "STATE", "WATERMARK", "RECORDS_IN", "RECORDS_OUT"
    );
    for j in jobs {
        let _ = writeln!(
            out,
            "{:>4}  {:<20} {:<10} {:<24} {:>10} {:>11}  {}",
            j.id,
            j.name,
            j.state.name(),
            j.watermark.as_deref().unwrap_or("-"),
            j.records_in,
            j.records_out,
            j.submitted
        );
        if let Some(r) = &j.reason {
            let _ = writeln!(out, "      {}: {r}", j.state.name());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(read: u64, wm: Option<i64>, installed: usize) -> ProcessStats {
        ProcessStats {
            read,
            written: read / 10,
            watermark_ms: wm,
            installed,
            ..ProcessStats::default()
        }
    }

    #[test]
    fn finished_once_every_process_let_go_of_the_dataflow() {
        let mut t = JobTable::new(2);
        t.submitted(1, "log-analysis", "/d/log-analysis.toml", 0, 2);
        t.report(1, 0, stats(100, Some(60_000), 1), 1);
        // Process 1 not heard from: still running.
        assert_eq!(t.get(1).unwrap().state, JobState::Running);
        assert_eq!(t.get(1).unwrap().workers_running, 2);
        t.report(1, 1, stats(50, Some(30_000), 1), 2);
        let s = t.get(1).unwrap();
        assert_eq!(
            (s.state, s.records_in, s.records_out),
            (JobState::Running, 150, 15)
        );
        assert_eq!(s.watermark.as_deref(), Some("1970-01-01T00:00:30Z"));
        assert_eq!(s.workers_running, 2);
        // Finished partitions no longer give a watermark: the last one is kept.
        t.report(1, 0, stats(100, None, 0), 3);
        assert_eq!(t.get(1).unwrap().state, JobState::Running);
        t.report(1, 1, stats(60, None, 0), 3);
        let s = t.get(1).unwrap();
        assert_eq!(
            (s.state, s.records_in, s.workers_running),
            (JobState::Finished, 160, 0)
        );
        assert_eq!(s.watermark.as_deref(), Some("1970-01-01T00:00:30Z"));
        assert!(s.ended.is_some());
        assert!(
            !t.end(1, JobState::Cancelled, None, 4),
            "a finished job stays finished"
        );
    }

    #[test]
    fn cancelled_jobs_stay_cancelled_while_their_workers_let_go() {
        let mut t = JobTable::new(1);
        t.submitted(3, "j", "j.toml", 0, 1);
        assert!(t.end(3, JobState::Cancelled, None, 1));
        t.report(3, 0, stats(10, None, 0), 2);
        let s = t.get(3).unwrap();
        assert_eq!((s.state, s.workers_running), (JobState::Cancelled, 0));
        assert!(!t.end(7, JobState::Cancelled, None, 1), "unknown job");
        assert_eq!(t.running(), Vec::<u64>::new());
        let text = render(&t.list());
        assert!(text.contains("cancelled"), "{text}");
    }

    #[test]
    fn a_stopping_job_is_stopped_once_every_process_let_go() {
        let mut t = JobTable::new(2);
        t.submitted(4, "j", "j.toml", 0, 2);
        assert!(t.stopping(4));
        assert!(!t.stopping(4), "asked once");
        assert!(!t.stopping(9), "unknown job");
        assert_eq!(t.running(), [4], "stopping jobs still hold their dataflows");
        t.report(4, 0, stats(10, None, 0), 1);
        assert_eq!(t.get(4).unwrap().state, JobState::Stopping);
        t.report(4, 1, stats(10, None, 0), 2);
        let s = t.get(4).unwrap();
        assert_eq!((s.state, s.workers_running), (JobState::Stopped, 0));
        assert!(s.ended.is_some());
        assert!(
            !t.end(4, JobState::Cancelled, None, 3),
            "a stopped job stays so"
        );
        assert!(render(&t.list()).contains("stopped"));

        // A stopping job can still be cancelled (its stop did not finish).
        t.submitted(5, "j", "j.toml", 0, 2);
        assert!(t.stopping(5));
        assert!(t.end(5, JobState::Cancelled, None, 4));
        t.report(5, 0, stats(1, None, 0), 5);
        t.report(5, 1, stats(1, None, 0), 5);
        assert_eq!(t.get(5).unwrap().state, JobState::Cancelled);
    }

    #[test]
    fn only_the_last_ended_jobs_are_kept() {
        let mut t = JobTable::new(1);
        t.submitted(1, "long", "l.toml", 0, 1);
        for id in 2..2 + KEEP_ENDED as u64 + 5 {
            t.submitted(id, "j", "j.toml", 0, 1);
            assert!(t.end(id, JobState::Finished, None, 1));
        }
        // One more submission prunes: the running job stays, the oldest ended ones go.
        let last = 2 + KEEP_ENDED as u64 + 5;
        t.submitted(last, "j", "j.toml", 0, 1);
        let ids: Vec<u64> = t.list().iter().map(|j| j.id).collect();
        assert_eq!(ids.len(), KEEP_ENDED + 2);
        assert_eq!(ids[..2], [1, 7]);
        assert_eq!(ids.last(), Some(&last));
        assert_eq!(t.get(1).unwrap().state, JobState::Running);
    }
}
