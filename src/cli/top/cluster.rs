//! `logflow top --cluster`: a live view of every job of a cluster, from the job table its
//! control endpoint serves (`jobs`): state, rates (counter differences between two fetches),
//! watermark and its lag, and the totals. A cluster serves no per-job results (each process
//! writes its own share of a job's rows); a job's latest windows are in `top HOST:PORT` of a
//! `run` with `--metrics-addr`, or in its output.

use std::collections::BTreeMap;

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::model::Link;
use crate::control::table::{JobState, JobStatus};
use crate::time::duration::format_ms;

/// Per-second rates of one job between two fetches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JobRates {
    pub events: f64,
    pub results: f64,
    pub dead_letter: f64,
    pub late: f64,
}

/// Everything the cluster view draws.
#[derive(Clone, Debug)]
pub struct ClusterModel {
    /// The cluster's control address.
    pub target: String,
    pub link: Link,
    pub jobs: Vec<JobStatus>,
    pub rates: BTreeMap<u64, JobRates>,
    /// Wall clock of the last successful fetch (ms since the epoch), for the watermark lag.
    pub now_ms: i64,
    prev: Option<(BTreeMap<u64, JobStatus>, f64)>,
}

impl ClusterModel {
    pub fn new(target: &str) -> ClusterModel {
        ClusterModel {
            target: target.to_string(),
            link: Link::Connecting,
            jobs: Vec::new(),
            rates: BTreeMap::new(),
            now_ms: 0,
            prev: None,
        }
    }

    /// A successful fetch at `mono_s` (a monotonic clock, seconds) and wall clock `now_ms`.
    pub fn update(&mut self, jobs: Vec<JobStatus>, mono_s: f64, now_ms: i64) {
        self.rates.clear();
        if let Some((prev, t)) = &self.prev {
            let dt = mono_s - t;
            for j in &jobs {
                let Some(p) = prev.get(&j.id) else {
                    continue;
                };
                if dt <= 0.0 || j.records_in < p.records_in {
                    continue;
                }
                let per_s = |a: u64, b: u64| (a.saturating_sub(b) as f64 / dt).max(0.0);
                self.rates.insert(
                    j.id,
                    JobRates {
                        events: per_s(j.records_in, p.records_in),
                        results: per_s(j.records_out, p.records_out),
                        dead_letter: per_s(j.dead_letter, p.dead_letter),
                        late: per_s(j.late, p.late),
                    },
                );
            }
        }
        self.prev = Some((jobs.iter().map(|j| (j.id, j.clone())).collect(), mono_s));
        self.jobs = jobs;
        self.now_ms = now_ms;
        self.link = Link::Connected;
    }

    /// A failed fetch: the last data stays on screen, marked disconnected.
    pub fn failed(&mut self, why: String) {
        self.link = Link::Disconnected(why);
        self.prev = None;
        self.rates.clear();
    }

    /// Wall clock minus the job's watermark, in ms (live jobs only: an ended job's watermark
    /// stays where it stopped).
    pub fn lag_ms(&self, job: &JobStatus) -> Option<i64> {
        if !job.state.live() {
            return None;
        }
        let w = chrono::DateTime::parse_from_rfc3339(job.watermark.as_deref()?).ok()?;
        Some((self.now_ms - w.timestamp_millis()).max(0))
    }
}

fn state_style(s: JobState) -> Style {
    match s {
        JobState::Running => Style::new().fg(Color::Green),
        JobState::Stopping => Style::new().fg(Color::Yellow),
        JobState::Failed => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        JobState::Stopped | JobState::Finished | JobState::Cancelled => {
            Style::new().fg(Color::Cyan)
        }
    }
}

fn header(model: &ClusterModel) -> Vec<Line<'static>> {
    let link = match &model.link {
        Link::Connecting => Span::styled("connecting", Style::new().fg(Color::Yellow)),
        Link::Disconnected(why) => Span::styled(
            format!("disconnected ({why}); retrying every second"),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        Link::Connected => {
            let live = model.jobs.iter().filter(|j| j.state.live()).count();
            Span::styled(
                format!("{} jobs, {live} live", model.jobs.len()),
                Style::new().fg(Color::Green),
            )
        }
    };
    let events: f64 = model.rates.values().map(|r| r.events).sum();
    let results: f64 = model.rates.values().map(|r| r.results).sum();
    vec![
        Line::from(vec![
            Span::styled(
                format!("logflow top  cluster at {}  ", model.target),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            link,
            Span::raw("   q quits"),
        ]),
        Line::raw(format!(
            "events/s {events:.0}  results/s {results:.0}  (all jobs)"
        )),
    ]
}

const COLUMNS: [&str; 11] = [
    "ID",
    "NAME",
    "STATE",
    "EVENTS/S",
    "RESULTS/S",
    "LATE/S",
    "DEAD/S",
    "WATERMARK",
    "LAG",
    "RECORDS_IN",
    "RECORDS_OUT",
];

fn row(model: &ClusterModel, j: &JobStatus) -> Row<'static> {
    let r = model.rates.get(&j.id);
    let per_s = |f: fn(&JobRates) -> f64, digits: usize| {
        r.map_or_else(|| "-".to_string(), |r| format!("{:.*}", digits, f(r)))
    };
    let lag = model
        .lag_ms(j)
        .map_or_else(|| "-".to_string(), |l| format_ms((l / 1000) * 1000));
    Row::new(vec![
        Cell::from(j.id.to_string()),
        Cell::from(j.name.clone()),
        Cell::from(Span::styled(j.state.name(), state_style(j.state))),
        Cell::from(per_s(|r| r.events, 0)),
        Cell::from(per_s(|r| r.results, 0)),
        Cell::from(per_s(|r| r.late, 1)),
        Cell::from(per_s(|r| r.dead_letter, 1)),
        Cell::from(j.watermark.clone().unwrap_or_else(|| "-".into())),
        Cell::from(lag),
        Cell::from(j.records_in.to_string()),
        Cell::from(j.records_out.to_string()),
    ])
}

/// Draws the whole view: live jobs first (newest first), then the ended ones.
pub fn draw(frame: &mut Frame, model: &ClusterModel) {
    let [top, rest] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(0)]).areas(frame.area());
    frame.render_widget(Paragraph::new(header(model)), top);
    let mut jobs: Vec<&JobStatus> = model.jobs.iter().collect();
    jobs.sort_by_key(|j| (!j.state.live(), std::cmp::Reverse(j.id)));
    let widths = [
        Constraint::Length(4),
        Constraint::Max(24),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(25),
        Constraint::Length(8),
        Constraint::Length(11),
        Constraint::Length(11),
    ];
    let table = Table::new(jobs.into_iter().map(|j| row(model, j)), widths)
        .header(
            Row::new(COLUMNS.iter().map(|c| Cell::from(*c)))
                .style(Style::new().add_modifier(Modifier::UNDERLINED)),
        )
        .column_spacing(1);
    frame.render_widget(table, rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn job(id: u64, state: JobState, records_in: u64, records_out: u64) -> JobStatus {
        JobStatus {
            id,
            name: format!("job-{id}"),
            spec: "/x.toml".into(),
            state,
            reason: None,
            submitted: "2026-12-07T10:00:00Z".into(),
            ended: None,
            watermark: Some("2026-11-24T10:00:00Z".into()),
            records_in,
            records_out,
            dead_letter: 0,
            late: 0,
            workers_running: 2,
        }
    }

    fn screen(model: &ClusterModel) -> String {
        let mut t = Terminal::new(TestBackend::new(140, 10)).unwrap();
        t.draw(|f| draw(f, model)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..10)
            .map(|y| {
                (0..140)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn rates_per_job_from_two_fetches_live_jobs_first() {
        let at = 1_795_514_400_000 + 65_000;
        let mut m = ClusterModel::new("127.0.0.1:7979");
        m.update(
            vec![
                job(1, JobState::Finished, 500, 50),
                job(2, JobState::Running, 1000, 10),
            ],
            10.0,
            at,
        );
        assert!(m.rates.is_empty(), "one fetch: no rate yet");
        m.update(
            vec![
                job(1, JobState::Finished, 500, 50),
                job(2, JobState::Running, 4000, 40),
                job(3, JobState::Running, 7, 0),
            ],
            12.0,
            at,
        );
        assert_eq!(m.rates[&2].events, 1500.0);
        assert_eq!(m.rates[&2].results, 15.0);
        assert_eq!(m.rates[&1].events, 0.0);
        assert!(!m.rates.contains_key(&3), "new since the last fetch");
        assert_eq!(m.lag_ms(&m.jobs[1]), Some(65_000));
        assert_eq!(m.lag_ms(&m.jobs[0]), None, "ended");
        let text = screen(&m);
        assert!(
            text.contains("logflow top  cluster at 127.0.0.1:7979  3 jobs, 2 live"),
            "{text}"
        );
        assert!(text.contains("events/s 1500  results/s 15"), "{text}");
        let line = |id: &str| {
            text.lines()
                .position(|l| l.trim_start().starts_with(id))
                .unwrap_or_else(|| panic!("no job {id}:\n{text}"))
        };
        assert!(line("3") < line("2") && line("2") < line("1"), "{text}");
        let two = text.lines().nth(line("2")).unwrap();
        for want in ["job-2", "running", "1500", "15", "1m5s", "4000", "40"] {
            assert!(two.contains(want), "{want}: {two}");
        }
        m.failed("refused".into());
        assert!(screen(&m).contains("disconnected (refused)"));
        assert_eq!(m.jobs.len(), 3, "the last data stays");
    }
}
