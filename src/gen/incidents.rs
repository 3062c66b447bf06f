//! Injected incidents: each one fires one detector of docs/design.md section 5, in a known window,
//! without dominating the analyses.
//!
//! Incidents repeat every [`CYCLE_MS`] (20 minutes) of event time, counted from the first
//! 10-minute boundary at or after `--start` (so every incident window lines up with the 1-, 2-
//! and 5-minute window grids). Whether an event belongs to an incident is decided on its
//! (disordered) timestamp, so an incident lands in exactly the windows listed here. The
//! default 100,000-line run at 100 lines/s covers 16 min 40 s: one full set of log incidents.
//!
//! | offset in cycle | incident | detector |
//! |---|---|---|
//! | 2–3 min | [`DDOS_IP`] sends ~300 requests to `api-gateway` as 3 bot users | `ddos` |
//! | 5–10 min (one 5-min window) | [`SCANNER_IP`] sends ~1,800 requests across all 8 services as many users | `suspicious_ips` |
//! | 12–13 min | [`LATENCY_SERVICE`] answers 6x slower | `response_time_anomalies` |
//! | 14–15 min | [`ERROR_SERVICE`] fails 35% of its requests (500/503) | `error_rate_spikes` |
//! | 4–6 min (user events) | [`SCRAPER_USER`] emits ~150 `view` events | `user_anomalies` |
//!
//! The attack sizes are absolute counts (the per-line probability is derived from the event
//! rate), so they stay visible but small at any rate; the latency and error incidents are
//! relative to the service's own traffic. Without incidents at the default rate: no IP comes
//! near 100 requests a minute (the busiest see ~60), no user-event user near 50 events in 5
//! minutes (~15), and per-service error rates vary by about 1 percentage point a minute.
//! `response_time_anomalies` still reports the odd natural row: a z-score above 2 happens by
//! chance in a few percent of windows.

use std::ops::Range;

/// One incident cycle.
pub const CYCLE_MS: i64 = 20 * MINUTE;
const MINUTE: i64 = 60_000;

/// The DDoS source IP.
pub const DDOS_IP: &str = "185.220.101.47";
/// The few users the DDoS requests carry.
pub const DDOS_USERS: [&str; 3] = ["bot_7731", "bot_7732", "bot_7733"];
/// The service the DDoS hits.
pub const DDOS_SERVICE: &str = "api-gateway";
/// The scanning IP behind `suspicious_ips`.
pub const SCANNER_IP: &str = "45.146.164.110";
/// The service whose latency jumps.
pub const LATENCY_SERVICE: &str = "payment-service";
/// The service whose error rate spikes.
pub const ERROR_SERVICE: &str = "auth-service";
/// The user-event user with abnormal activity.
pub const SCRAPER_USER: &str = "user_scraper";

/// Offsets within a cycle (ms) of each incident.
pub const DDOS: Range<i64> = 2 * MINUTE..3 * MINUTE;
/// [`SCANNER_IP`]'s requests across all services.
pub const SCAN: Range<i64> = 5 * MINUTE..10 * MINUTE;
/// [`LATENCY_SERVICE`] answers slower.
pub const LATENCY: Range<i64> = 12 * MINUTE..13 * MINUTE;
/// [`ERROR_SERVICE`] fails many of its requests.
pub const ERRORS: Range<i64> = 14 * MINUTE..15 * MINUTE;
/// [`SCRAPER_USER`]'s burst of `view` events.
pub const SCRAPER: Range<i64> = 4 * MINUTE..6 * MINUTE;

/// Requests the DDoS sends per incident.
pub const DDOS_REQUESTS: f64 = 300.0;
/// Requests the scanner sends per incident.
pub const SCAN_REQUESTS: f64 = 1800.0;
/// Events the scraper emits per incident.
pub const SCRAPER_EVENTS: f64 = 150.0;
/// Latency multiplier of the latency incident.
pub const LATENCY_FACTOR: f64 = 6.0;
/// Share of the error service's requests that fail during the error incident.
pub const ERROR_SHARE: f64 = 0.35;

/// When incidents happen for one run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    origin: Option<i64>,
    rate: f64,
}

impl Schedule {
    pub(crate) fn new(enabled: bool, start_ms: i64, event_rate: f64) -> Self {
        const ALIGN: i64 = 10 * MINUTE;
        let origin = start_ms.div_euclid(ALIGN) * ALIGN;
        let origin = if origin < start_ms {
            origin + ALIGN
        } else {
            origin
        };
        Schedule {
            origin: enabled.then_some(origin),
            rate: event_rate,
        }
    }

    /// The offset of `ts` in its incident cycle, or `None` (incidents off, or before the first cycle).
    #[inline]
    pub(crate) fn offset(&self, ts: i64) -> Option<i64> {
        let origin = self.origin?;
        (ts >= origin).then(|| (ts - origin) % CYCLE_MS)
    }

    /// Per-line probability that makes `count` lines of an incident lasting `window`.
    pub(crate) fn share(&self, count: f64, window: &Range<i64>) -> f64 {
        let lines = self.rate * (window.end - window.start) as f64 / 1000.0;
        (count / lines).min(0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_start_on_a_ten_minute_boundary() {
        let start = 1_795_514_400_000; // 10:00:00Z
        let s = Schedule::new(true, start, 100.0);
        assert_eq!(s.offset(start - 1), None);
        assert_eq!(s.offset(start), Some(0));
        assert_eq!(s.offset(start + CYCLE_MS + 5), Some(5));
        let later = Schedule::new(true, start + 1, 100.0);
        assert_eq!(later.offset(start + 10 * MINUTE), Some(0));
        assert_eq!(Schedule::new(false, start, 100.0).offset(start), None);
        assert!((s.share(300.0, &DDOS) - 0.05).abs() < 1e-12);
        assert_eq!(Schedule::new(true, start, 1.0).share(300.0, &DDOS), 0.5);
    }
}
