//! Draws a [`Model`]: a status line, the job's rates and watermark lag, then the latest window
//! of each analysis (its top rows; findings in red). Rows per analysis follow the terminal's
//! height so that every analysis stays on screen.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::model::{cell, Analysis, Link, Model};
use crate::time::duration::format_ms;

/// Widest a column is drawn (longer cells, such as sets of services, are cut).
const MAX_COLUMN: u16 = 40;

fn status(model: &Model) -> Span<'static> {
    match &model.link {
        Link::Connecting => Span::styled("connecting", Style::new().fg(Color::Yellow)),
        Link::Disconnected(why) => Span::styled(
            format!("disconnected ({why}); retrying every second"),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        Link::Connected => match &model.sample {
            Some(s) if s.running => Span::styled("running", Style::new().fg(Color::Green)),
            _ => Span::styled("finished", Style::new().fg(Color::Cyan)),
        },
    }
}

fn rate(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"))
}

fn header(model: &Model) -> Vec<Line<'static>> {
    let name = model
        .sample
        .as_ref()
        .and_then(|s| s.pipeline.clone())
        .unwrap_or_else(|| "?".into());
    let title = Line::from(vec![
        Span::styled(
            format!("logflow top  {name} at {}  ", model.target),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        status(model),
        Span::raw("   q quits"),
    ]);
    let Some(s) = &model.sample else {
        return vec![title, Line::raw("")];
    };
    let watermark = match (s.watermark, model.lag_ms()) {
        (Some(w), Some(lag)) => format!(
            "watermark {} (lag {})",
            crate::time::rfc3339((w * 1000.0) as i64),
            format_ms((lag / 1000) * 1000)
        ),
        _ if s.input_done => "input done".to_string(),
        _ => "watermark -".to_string(),
    };
    let r = model.rates;
    let numbers = format!(
        "events/s {}  {watermark}  late/s {}  dead-letter/s {}  read {}  dead-letter {}  late {}  rows out {}",
        r.map_or_else(|| "-".to_string(), |r| format!("{:.0}", r.events)),
        rate(r.map(|r| r.late)),
        rate(r.map(|r| r.dead_letter)),
        s.read,
        s.dead_letter,
        s.late,
        s.rows_out
    );
    vec![title, Line::raw(numbers)]
}

/// Rows shown per analysis so that all of them fit in `height` lines (each also takes a
/// title and a column header line).
pub fn rows_per_analysis(height: u16, analyses: usize) -> usize {
    let per = usize::from(height) / analyses.max(1);
    per.saturating_sub(2).max(1)
}

fn title(a: &Analysis, shown: usize) -> Line<'static> {
    let mut spans = vec![Span::styled(
        a.name.clone(),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    match (&a.window_start, &a.window_end) {
        (Some(s), Some(e)) => {
            spans.push(Span::raw(format!(
                "  window {s} .. {e}  {} rows",
                a.rows_in_window
            )));
            if let (Some(by), true) = (&a.rank_by, a.rows_in_window as usize > shown) {
                spans.push(Span::raw(format!(" (top {shown} by {by})")));
            }
            if a.finding && !a.rows.is_empty() {
                spans.push(Span::styled(
                    "  FOUND",
                    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                ));
            }
        }
        _ => spans.push(Span::raw("  no window closed yet")),
    }
    Line::from(spans)
}

fn table(a: &Analysis, shown: usize) -> Table<'static> {
    let rows: Vec<Vec<String>> = a
        .rows
        .iter()
        .take(shown)
        .map(|r| r.iter().map(cell).collect())
        .collect();
    let widths: Vec<Constraint> = a
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let w = rows
                .iter()
                .filter_map(|r| r.get(i))
                .map(|s| s.chars().count())
                .chain(std::iter::once(c.chars().count()))
                .max()
                .unwrap_or(1);
            Constraint::Length(u16::try_from(w).unwrap_or(MAX_COLUMN).min(MAX_COLUMN))
        })
        .collect();
    let style = if a.finding {
        Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    let body = rows
        .into_iter()
        .map(|r| Row::new(r.into_iter().map(Cell::from)).style(style));
    Table::new(body, widths)
        .header(
            Row::new(a.columns.iter().cloned().map(Cell::from))
                .style(Style::new().add_modifier(Modifier::UNDERLINED)),
        )
        .column_spacing(2)
}

/// Draws the whole view.
pub fn draw(frame: &mut Frame, model: &Model) {
    let area = frame.area();
    let [top, rest] = Layout::vertical([Constraint::Length(3), Constraint::Min(0)]).areas(area);
    frame.render_widget(Paragraph::new(header(model)), top);
    let Some(results) = &model.results else {
        return;
    };
    let n = results.analyses.len();
    let per = rows_per_analysis(rest.height, n);
    let mut y = rest.y;
    let bottom = rest.y + rest.height;
    for a in &results.analyses {
        if y >= bottom {
            break;
        }
        let shown = a.rows.len().min(per);
        frame.render_widget(
            Paragraph::new(title(a, shown)),
            Rect::new(rest.x, y, rest.width, 1),
        );
        y += 1;
        if shown == 0 {
            continue;
        }
        let h = u16::try_from(shown + 1)
            .unwrap_or(u16::MAX)
            .min(bottom.saturating_sub(y));
        frame.render_widget(table(a, shown), Rect::new(rest.x, y, rest.width, h));
        y = y.saturating_add(h);
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::{Results, Sample};
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn screen(model: &Model, w: u16, h: u16) -> (Vec<String>, ratatui::buffer::Buffer) {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, model)).unwrap();
        let buf = t.backend().buffer().clone();
        let lines = (0..h)
            .map(|y| {
                (0..w)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect();
        (lines, buf)
    }

    fn model() -> Model {
        let mut m = Model::new("127.0.0.1:9100");
        let sample = Sample {
            pipeline: Some("log-analysis".into()),
            running: true,
            read: 1000.0,
            watermark: Some(1_795_514_400.0),
            partitions: 4,
            ..Sample::default()
        };
        let results = Results::parse(
            r#"{"pipeline":"log-analysis","running":true,"analyses":[
            {"name":"response_time","finding":false,"columns":["service","request_count","avg_response_time"],
             "rank_by":"request_count","window_start":"2026-11-24T09:59:00Z","window_end":"2026-11-24T10:00:00Z",
             "rows_in_window":3,"rows":[["api-gateway",40,0.25],["auth-service",30,0.125],["db",20,1.5]]},
            {"name":"ddos","finding":true,"columns":["ip_address","request_count","unique_users"],
             "rank_by":"request_count","window_start":"2026-11-24T09:59:00Z","window_end":"2026-11-24T10:00:00Z",
             "rows_in_window":1,"rows":[["185.220.101.47",300,3]]},
            {"name":"error_rate_spikes","finding":true,"columns":["service","error_rate_change"],"rows":[]}]}"#,
        )
        .unwrap();
        m.update(
            sample.clone(),
            Some(results),
            0.0,
            1_795_514_400_000 + 302_000,
        );
        let later = Sample {
            read: 3000.0,
            dead_letter: 20.0,
            ..sample
        };
        m.update(later, None, 2.0, 1_795_514_400_000 + 302_000);
        m
    }

    #[test]
    fn draws_rates_lag_windows_and_highlights_findings() {
        let m = model();
        let (lines, buf) = screen(&m, 120, 30);
        let text = lines.join("\n");
        assert!(
            lines[0].contains("logflow top  log-analysis at 127.0.0.1:9100  running"),
            "{text}"
        );
        assert!(
            lines[1].contains("events/s 1000  watermark 2026-11-24T10:00:00Z (lag 5m2s)  late/s 0.0  dead-letter/s 10.0"),
            "{text}"
        );
        assert!(
            text.contains(
                "response_time  window 2026-11-24T09:59:00Z .. 2026-11-24T10:00:00Z  3 rows"
            ),
            "{text}"
        );
        let row = lines
            .iter()
            .position(|l| l.contains("api-gateway"))
            .unwrap();
        assert!(
            lines[row].contains("40") && lines[row].contains("0.250"),
            "{text}"
        );
        assert!(text.contains("ddos  window"), "{text}");
        assert!(text.contains("FOUND"), "{text}");
        assert!(
            text.contains("error_rate_spikes  no window closed yet"),
            "{text}"
        );
        // The finding's row is red, an ordinary row is not.
        let ddos = lines
            .iter()
            .position(|l| l.contains("185.220.101.47"))
            .unwrap();
        let x = lines[ddos].find("185").unwrap() as u16;
        assert_eq!(buf[(x, ddos as u16)].fg, Color::Red);
        let x = lines[row].find("api").unwrap() as u16;
        assert_eq!(buf[(x, row as u16)].fg, Color::Reset);
    }

    #[test]
    fn a_short_terminal_shows_fewer_rows_of_every_analysis_and_disconnection() {
        let mut m = model();
        // 3 header lines, then 3 analyses in 9 lines: 1 row each (title, column header, row).
        let (lines, _) = screen(&m, 120, 12);
        let text = lines.join("\n");
        assert!(
            text.contains("api-gateway") && !text.contains("auth-service"),
            "{text}"
        );
        assert!(text.contains("(top 1 by request_count)"), "{text}");
        assert!(text.contains("185.220.101.47"), "{text}");
        assert!(text.contains("error_rate_spikes"), "{text}");
        m.failed("connection refused".into());
        let (lines, _) = screen(&m, 120, 12);
        assert!(
            lines[0].contains("disconnected (connection refused); retrying every second"),
            "{}",
            lines.join("\n")
        );
        assert!(
            lines.join("\n").contains("api-gateway"),
            "the last data stays"
        );
        assert_eq!(rows_per_analysis(0, 0), 1);
    }
}
