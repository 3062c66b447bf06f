//! Application log lines (input format `json`), keys in a fixed order:
//! `timestamp`, `level`, `service`, `message`, `ip_address`, `user_id`, `request_id`,
//! `response_time`, `status_code`, `error_code`.
//!
//! Eight services with their own latency profiles; mostly 200s with some 3xx/4xx/5xx and the
//! level following the status; 3% of lines are internal messages (no request: null status,
//! user and request id, no `response_time`). Nulls and missing keys: `user_id` null or absent
//! (anonymous requests), `service` null, `response_time` null or absent, `ip_address` null.
//! Timestamps are RFC 3339 UTC with milliseconds (dropped when zero, like Python's
//! `isoformat`), with 1% of lines in another UTC offset and 1% as epoch milliseconds.
//!
//! The file is longer than the crate's ~600-line budget: about 250 lines are the tables a line
//! is drawn from (services, endpoints, statuses, messages, damage kinds), kept next to the
//! writer that indexes them by position and weight.

use super::fmt::{write_fixed_or_string, write_hex, write_i64, write_u64, MONTHS};
use super::incidents::{self, Schedule};
use super::rng::{cumulative, mix64, Rng};
use super::{GenConfig, LineKind};
use crate::time::{
    civil_from_days, write_date, write_padded, write_rfc3339, write_time_of_day, DAY_MS,
};

struct Endpoint {
    method: &'static str,
    path: &'static str,
    /// Whether a numeric id follows the path (`/orders/48213`).
    id: bool,
}

const fn ep(method: &'static str, path: &'static str, id: bool) -> Endpoint {
    Endpoint { method, path, id }
}

struct Service {
    name: &'static str,
    /// Typical latency, ms.
    median_ms: f64,
    /// Relative spread of the latency.
    spread: f64,
    endpoints: &'static [Endpoint],
}

const SERVICES: [Service; 8] = [
    Service {
        name: "api-gateway",
        median_ms: 45.0,
        spread: 0.25,
        endpoints: &[
            ep("GET", "/api/v1/products", true),
            ep("GET", "/api/v1/catalog", false),
            ep("GET", "/api/v1/config", false),
        ],
    },
    Service {
        name: "auth-service",
        median_ms: 85.0,
        spread: 0.3,
        endpoints: &[
            ep("POST", "/auth/login", false),
            ep("POST", "/auth/token/refresh", false),
            ep("POST", "/auth/logout", false),
        ],
    },
    Service {
        name: "user-service",
        median_ms: 120.0,
        spread: 0.3,
        endpoints: &[
            ep("GET", "/users", true),
            ep("PUT", "/users/preferences", false),
        ],
    },
    Service {
        name: "order-service",
        median_ms: 260.0,
        spread: 0.35,
        endpoints: &[ep("POST", "/orders", false), ep("GET", "/orders", true)],
    },
    Service {
        name: "payment-service",
        median_ms: 380.0,
        spread: 0.4,
        endpoints: &[
            ep("POST", "/payments/charge", false),
            ep("POST", "/payments/refund", true),
        ],
    },
    Service {
        name: "inventory-service",
        median_ms: 150.0,
        spread: 0.3,
        endpoints: &[
            ep("GET", "/inventory/sku", true),
            ep("POST", "/inventory/reserve", false),
        ],
    },
    Service {
        name: "notification-service",
        median_ms: 60.0,
        spread: 0.3,
        endpoints: &[
            ep("POST", "/notify/email", false),
            ep("POST", "/notify/push", false),
        ],
    },
    Service {
        name: "search-service",
        median_ms: 420.0,
        spread: 0.5,
        endpoints: &[
            ep("GET", "/search/products", false),
            ep("GET", "/search/suggest", false),
        ],
    },
];

/// Share of traffic per service (same order as [`SERVICES`]).
const SERVICE_WEIGHTS: [u32; 8] = cumulative([20, 12, 14, 12, 8, 10, 10, 14]);
const DDOS_SERVICE: usize = 0;
const LATENCY_SERVICE: usize = 4;
const ERROR_SERVICE: usize = 1;

const STATUSES: [u16; 15] = [
    200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 429, 500, 502, 503, 504,
];
/// Per mille; 4.5% of requests are errors (>= 400).
const STATUS_WEIGHTS: [u32; 15] = cumulative([870, 30, 15, 5, 10, 25, 10, 8, 4, 12, 3, 4, 1, 2, 1]);

/// Paths a scanner probes.
const PROBES: [&str; 6] = [
    "/.env",
    "/admin/login",
    "/wp-login.php",
    "/.git/config",
    "/api/v1/users/export",
    "/server-status",
];

/// Internal (non-request) messages: level and text; `#` is replaced by a number.
const INTERNAL: [(&str, &str); 8] = [
    ("INFO", "Cache refreshed: # entries loaded"),
    (
        "INFO",
        "Scheduled job cleanup-sessions completed, # rows removed",
    ),
    ("DEBUG", "Connection pool stats: active=# idle=4 max=50"),
    ("DEBUG", "Health check passed in # ms"),
    ("INFO", "Config reloaded from consul, version #"),
    (
        "WARN",
        "Slow query detected: SELECT * FROM orders took # ms",
    ),
    ("WARN", "Retrying message delivery, attempt #"),
    ("INFO", "Kafka consumer rebalanced, # partitions assigned"),
];

const VALIDATION_FIELDS: [&str; 4] = ["email", "quantity", "currency", "page_size"];
const OFFSETS_MIN: [i32; 6] = [60, 120, -300, 330, -480, 540];

#[derive(Clone, Copy)]
enum Ip {
    Pool(u32),
    /// The host of a service (internal messages).
    Internal(u8),
    Fixed(&'static str),
    Null,
}

#[derive(Clone, Copy)]
enum User {
    Pool(u32),
    Fixed(&'static str),
    Null,
    Missing,
}

#[derive(Clone, Copy)]
enum Rt {
    Ms(u32),
    Null,
    Missing,
}

#[derive(Clone, Copy)]
enum TsForm {
    Utc,
    Offset(i32),
    EpochMs,
}

#[derive(Clone, Copy)]
enum Msg {
    Request {
        endpoint: u8,
        id: u32,
    },
    /// A scanner probe of `PROBES[i]`.
    Probe(u8),
    Internal {
        template: u8,
        n: u32,
    },
}

/// One log event before rendering.
#[derive(Clone, Copy)]
struct Line {
    ts: i64,
    form: TsForm,
    level: &'static str,
    service: u8,
    service_null: bool,
    msg: Msg,
    ip: Ip,
    user: User,
    request_id: Option<u64>,
    rt: Rt,
    status: Option<u16>,
}

/// How a bad line is damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Damage {
    Garbage,
    Binary,
    Truncated,
    NotAnObject,
    StatusString,
    ResponseTimeString,
    NoTimestamp,
    NullTimestamp,
    DateOnly,
    ImpossibleDate,
    AccessLogTime,
    NaiveTime,
    NonUtf8,
}

const DAMAGES: [Damage; 13] = [
    Damage::Garbage,
    Damage::Binary,
    Damage::Truncated,
    Damage::NotAnObject,
    Damage::StatusString,
    Damage::ResponseTimeString,
    Damage::NoTimestamp,
    Damage::NullTimestamp,
    Damage::DateOnly,
    Damage::ImpossibleDate,
    Damage::AccessLogTime,
    Damage::NaiveTime,
    Damage::NonUtf8,
];
const DAMAGE_WEIGHTS: [u32; 13] = cumulative([2, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);

const GARBAGE: [&str; 5] = [
    "Exception in thread \"main\" java.lang.IllegalStateException: connection pool closed",
    "\tat com.shop.payments.GatewayClient.charge(GatewayClient.java:214)",
    "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    "--- log file rotated, continuing in app.log.1 ---",
    "{{{{ corrupted block: checksum mismatch }}}}",
];

pub(super) struct LogGen {
    schedule: Schedule,
    ddos_share: f64,
    scan_share: f64,
    ips: Vec<Box<str>>,
    /// The first `busy_ips` IPs get a fifth of the traffic.
    busy_ips: u64,
    users: u64,
    user_width: usize,
}

impl LogGen {
    pub(super) fn new(cfg: &GenConfig) -> Self {
        let schedule = Schedule::new(cfg.incidents, cfg.start_ms, cfg.event_rate);
        // Populations grow with the rate so that per-IP and per-user rates stay realistic
        // (and the absolute thresholds of `ddos` and `suspicious_ips` keep their meaning).
        let n_ips = ((cfg.event_rate * 3.0) as u64).clamp(300, 1 << 20);
        let users = ((cfg.event_rate * 5.0) as u64).clamp(500, 1 << 22);
        LogGen {
            schedule,
            ddos_share: schedule.share(incidents::DDOS_REQUESTS, &incidents::DDOS),
            scan_share: schedule.share(incidents::SCAN_REQUESTS, &incidents::SCAN),
            ips: ip_pool(cfg.seed, n_ips),
            busy_ips: (n_ips / 10).max(1),
            users,
            user_width: users.to_string().len().max(4),
        }
    }

    pub(super) fn write(&mut self, rng: &mut Rng, kind: LineKind, ts: i64, out: &mut Vec<u8>) {
        let bad = kind == LineKind::Bad;
        let mut line = self.event(rng, ts, bad);
        if !bad {
            self.render(&line, None, out);
            return;
        }
        let damage = DAMAGES[rng.weighted(&DAMAGE_WEIGHTS)];
        match damage {
            Damage::Garbage => {
                out.extend_from_slice(GARBAGE[rng.below(GARBAGE.len() as u64) as usize].as_bytes())
            }
            Damage::Binary => {
                // A gzip fragment: header, then bytes that are not UTF-8 (never \n or \r).
                out.extend_from_slice(&[0x1f, 0x8b, 0x08, 0x00]);
                for _ in 0..24 {
                    out.push(0x80 | (rng.next_u64() as u8));
                }
            }
            Damage::Truncated => {
                let before = out.len();
                self.render(&line, None, out);
                let len = out.len() - before;
                // Keep 1..len-1 bytes: the closing brace is always cut.
                let keep = 1 + rng.below(len as u64 - 2) as usize;
                out.truncate(before + keep);
            }
            Damage::NotAnObject => {
                if rng.chance(0.5) {
                    out.extend_from_slice(b"[\"");
                    write_rfc3339(out, line.ts, 0, false);
                    out.extend_from_slice(b"\", \"INFO\", \"");
                    out.extend_from_slice(SERVICES[line.service as usize].name.as_bytes());
                    out.extend_from_slice(b"\", \"heartbeat\"]");
                } else {
                    out.extend_from_slice(b"\"heartbeat ok\"");
                }
            }
            Damage::ResponseTimeString if !matches!(line.rt, Rt::Ms(_)) => {
                line.rt = Rt::Ms(120);
                self.render(&line, Some(damage), out);
            }
            _ => self.render(&line, Some(damage), out),
        }
    }

    /// Draws one event at `ts`. Bad lines are always requests (so a field can be damaged).
    fn event(&mut self, rng: &mut Rng, ts: i64, bad: bool) -> Line {
        let offset = self.schedule.offset(ts);
        let in_incident = |r: &std::ops::Range<i64>| offset.is_some_and(|o| r.contains(&o));
        let ddos = in_incident(&incidents::DDOS) && rng.chance(self.ddos_share);
        let scan = !ddos && in_incident(&incidents::SCAN) && rng.chance(self.scan_share);
        let internal = !ddos && !scan && !bad && rng.chance(0.03);

        let service = if ddos {
            DDOS_SERVICE
        } else {
            rng.weighted(&SERVICE_WEIGHTS)
        };
        let profile = &SERVICES[service];
        let form = match rng.below(100) {
            0 => TsForm::EpochMs,
            1 => TsForm::Offset(OFFSETS_MIN[rng.below(OFFSETS_MIN.len() as u64) as usize]),
            _ => TsForm::Utc,
        };
        let service_null = !ddos && !scan && rng.chance(0.01);

        if internal {
            let template = rng.below(INTERNAL.len() as u64) as u8;
            return Line {
                ts,
                form,
                level: INTERNAL[template as usize].0,
                service: service as u8,
                service_null,
                msg: Msg::Internal {
                    template,
                    n: rng.range(2, 2000) as u32,
                },
                ip: Ip::Internal(service as u8),
                user: User::Null,
                request_id: None,
                rt: Rt::Missing,
                status: None,
            };
        }

        let status = if service == ERROR_SERVICE
            && in_incident(&incidents::ERRORS)
            && rng.chance(incidents::ERROR_SHARE)
        {
            if rng.chance(0.7) {
                503
            } else {
                500
            }
        } else if scan && rng.chance(0.4) {
            404
        } else {
            STATUSES[rng.weighted(&STATUS_WEIGHTS)]
        };

        // Latency: a right-skewed bump around the median, a 1% slow tail, slower failures.
        let f = (1.0 + profile.spread * rng.normalish()).max(0.35);
        let mut ms = profile.median_ms * f * f;
        if rng.chance(0.01) {
            ms *= 2.0 + 2.0 * rng.f64();
        }
        if status >= 500 {
            ms *= 2.0 + rng.f64();
        } else if status == 304 {
            ms *= 0.3;
        }
        if service == LATENCY_SERVICE && in_incident(&incidents::LATENCY) {
            ms *= incidents::LATENCY_FACTOR;
        }
        let rt = match rng.below(200) {
            0..=2 => Rt::Missing,
            3 => Rt::Null,
            _ => Rt::Ms((ms + 0.5).max(1.0) as u32),
        };

        let ip = if ddos {
            Ip::Fixed(incidents::DDOS_IP)
        } else if scan {
            Ip::Fixed(incidents::SCANNER_IP)
        } else if rng.chance(0.003) {
            Ip::Null
        } else if rng.chance(0.2) {
            Ip::Pool(rng.below(self.busy_ips) as u32)
        } else {
            Ip::Pool(rng.below(self.ips.len() as u64) as u32)
        };

        let user = if ddos {
            User::Fixed(incidents::DDOS_USERS[rng.below(3) as usize])
        } else {
            match rng.below(200) {
                0..=5 => User::Null,
                6..=7 => User::Missing,
                8..=67 => User::Pool(rng.below(self.users / 10) as u32),
                _ => User::Pool(rng.below(self.users) as u32),
            }
        };

        let msg = if scan && rng.chance(0.5) {
            Msg::Probe(rng.below(PROBES.len() as u64) as u8)
        } else {
            Msg::Request {
                endpoint: rng.below(profile.endpoints.len() as u64) as u8,
                id: rng.range(1000, 99_999) as u32,
            }
        };

        Line {
            ts,
            form,
            level: level_of(status),
            service: service as u8,
            service_null,
            msg,
            ip,
            user,
            request_id: Some(rng.next_u64()),
            rt,
            status: Some(status),
        }
    }

    fn render(&self, line: &Line, damage: Option<Damage>, out: &mut Vec<u8>) {
        out.push(b'{');
        // Timestamp.
        match damage {
            Some(Damage::NoTimestamp) => {}
            Some(Damage::NullTimestamp) => out.extend_from_slice(b"\"timestamp\": null, "),
            _ => {
                out.extend_from_slice(b"\"timestamp\": ");
                self.timestamp(line, damage, out);
                out.extend_from_slice(b", ");
            }
        }
        out.extend_from_slice(b"\"level\": \"");
        out.extend_from_slice(line.level.as_bytes());
        out.extend_from_slice(b"\", \"service\": ");
        let service = &SERVICES[line.service as usize];
        if line.service_null {
            out.extend_from_slice(b"null");
        } else {
            quoted(out, service.name);
        }
        out.extend_from_slice(b", \"message\": \"");
        self.message(line, damage, out);
        out.extend_from_slice(b"\", \"ip_address\": ");
        match line.ip {
            Ip::Pool(i) => quoted(out, &self.ips[i as usize]),
            Ip::Internal(s) => {
                out.extend_from_slice(b"\"10.0.0.");
                write_u64(out, 11 + u64::from(s));
                out.push(b'"');
            }
            Ip::Fixed(ip) => quoted(out, ip),
            Ip::Null => out.extend_from_slice(b"null"),
        }
        match line.user {
            User::Missing => {}
            User::Null => out.extend_from_slice(b", \"user_id\": null"),
            User::Pool(_) | User::Fixed(_) => {
                out.extend_from_slice(b", \"user_id\": \"");
                self.user(line.user, out);
                out.push(b'"');
            }
        }
        out.extend_from_slice(b", \"request_id\": ");
        match line.request_id {
            Some(id) => {
                out.extend_from_slice(b"\"req_");
                write_hex(out, id, 12);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        match line.rt {
            Rt::Missing => {}
            Rt::Null => out.extend_from_slice(b", \"response_time\": null"),
            Rt::Ms(ms) => {
                out.extend_from_slice(b", \"response_time\": ");
                let string = damage == Some(Damage::ResponseTimeString);
                write_fixed_or_string(out, u64::from(ms), 3, string);
            }
        }
        out.extend_from_slice(b", \"status_code\": ");
        match line.status {
            Some(s) if damage == Some(Damage::StatusString) => {
                out.push(b'"');
                write_u64(out, u64::from(s));
                out.push(b'"');
            }
            Some(s) => write_u64(out, u64::from(s)),
            None if damage == Some(Damage::StatusString) => out.extend_from_slice(b"\"OK\""),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b", \"error_code\": ");
        match line.status.and_then(error_code) {
            Some(code) => quoted(out, code),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }

    fn timestamp(&self, line: &Line, damage: Option<Damage>, out: &mut Vec<u8>) {
        let ts = line.ts;
        let days = ts.div_euclid(DAY_MS);
        let ms_of_day = ts.rem_euclid(DAY_MS);
        out.push(b'"');
        match damage {
            Some(Damage::DateOnly) => write_date(out, days),
            Some(Damage::NaiveTime) => {
                write_date(out, days);
                out.push(if ts % 2 == 0 { b'T' } else { b' ' });
                write_time_of_day(out, ms_of_day);
            }
            Some(Damage::ImpossibleDate) => {
                let (year, _, _) = civil_from_days(days);
                write_padded(out, year.max(0) as u64, 4);
                // February 30th, April 31st, a 13th month or a 25th hour.
                match mix64(ts as u64) % 4 {
                    0 => out.extend_from_slice(b"-02-30T"),
                    1 => out.extend_from_slice(b"-04-31T"),
                    2 => out.extend_from_slice(b"-13-01T"),
                    _ => out.extend_from_slice(b"-11-24T25"),
                }
                if mix64(ts as u64) % 4 == 3 {
                    out.extend_from_slice(b":10:00Z");
                } else {
                    write_time_of_day(out, ms_of_day);
                    out.extend_from_slice(b".000Z");
                }
            }
            Some(Damage::AccessLogTime) => {
                // 24/Nov/2026:10:00:00 +0000
                let (y, m, d) = civil_from_days(days);
                write_padded(out, u64::from(d), 2);
                out.push(b'/');
                out.extend_from_slice(MONTHS[(m - 1) as usize].as_bytes());
                out.push(b'/');
                write_padded(out, y.max(0) as u64, 4);
                out.push(b':');
                write_time_of_day(out, ms_of_day);
                out.extend_from_slice(b" +0000");
            }
            _ => match line.form {
                TsForm::Utc => write_rfc3339(out, ts, 0, true),
                TsForm::Offset(minutes) => write_rfc3339(out, ts, minutes, false),
                TsForm::EpochMs => {
                    out.pop();
                    write_i64(out, ts);
                    return;
                }
            },
        }
        out.push(b'"');
    }

    fn message(&self, line: &Line, damage: Option<Damage>, out: &mut Vec<u8>) {
        let service = &SERVICES[line.service as usize];
        let (method, path, id) = match line.msg {
            Msg::Internal { template, n } => {
                let text = INTERNAL[template as usize].1;
                let (a, b) = text.split_once('#').unwrap_or((text, ""));
                out.extend_from_slice(a.as_bytes());
                write_u64(out, u64::from(n));
                out.extend_from_slice(b.as_bytes());
                return;
            }
            Msg::Probe(p) => ("GET", PROBES[p as usize], None),
            Msg::Request { endpoint, id } => {
                let e = &service.endpoints[endpoint as usize % service.endpoints.len()];
                (e.method, e.path, e.id.then_some(id))
            }
        };
        if damage == Some(Damage::NonUtf8) {
            // Latin-1 bytes where UTF-8 was expected.
            out.extend_from_slice(b"Upload failed for file r\xe9sum\xe9_");
            write_u64(out, u64::from(id.unwrap_or(7)));
            out.extend_from_slice(b".pdf");
            return;
        }
        let request = |out: &mut Vec<u8>| {
            out.extend_from_slice(method.as_bytes());
            out.push(b' ');
            out.extend_from_slice(path.as_bytes());
            if let Some(id) = id {
                out.push(b'/');
                write_u64(out, u64::from(id));
            }
        };
        let status = line.status.unwrap_or(200);
        match status {
            200..=299 => {
                request(out);
                out.extend_from_slice(b" completed with ");
                write_u64(out, u64::from(status));
            }
            304 => {
                request(out);
                out.extend_from_slice(b" not modified");
            }
            300..=399 => {
                request(out);
                out.extend_from_slice(b" redirected with ");
                write_u64(out, u64::from(status));
            }
            400 => {
                out.extend_from_slice(b"Validation failed for ");
                request(out);
                out.extend_from_slice(b": field \\\"");
                let f = VALIDATION_FIELDS[(id.unwrap_or(line.ts as u32) % 4) as usize];
                out.extend_from_slice(f.as_bytes());
                out.extend_from_slice(b"\\\" is invalid");
            }
            401 => {
                out.extend_from_slice(b"Authentication failed for user ");
                match line.user {
                    User::Pool(_) | User::Fixed(_) => self.user(line.user, out),
                    User::Null | User::Missing => out.extend_from_slice(b"anonymous"),
                }
                out.extend_from_slice(b": token expired");
            }
            403 => {
                out.extend_from_slice(b"Access denied: ");
                request(out);
            }
            404 => {
                out.extend_from_slice(b"Resource not found: ");
                request(out);
            }
            429 => {
                out.extend_from_slice(b"Rate limit exceeded for ");
                request(out);
                out.extend_from_slice(b" (limit 100/min)");
            }
            500 => {
                out.extend_from_slice(b"Unhandled exception in ");
                out.extend_from_slice(service.name.as_bytes());
                out.extend_from_slice(b": NullPointerException while handling ");
                request(out);
            }
            502 => {
                out.extend_from_slice(b"Bad gateway: upstream returned an invalid response for ");
                request(out);
            }
            503 => {
                out.extend_from_slice(b"Service unavailable: connection pool exhausted for ");
                request(out);
            }
            _ => {
                out.extend_from_slice(b"Upstream timeout after 30000 ms for ");
                request(out);
            }
        }
    }

    fn user(&self, user: User, out: &mut Vec<u8>) {
        match user {
            User::Pool(i) => {
                out.extend_from_slice(b"user_");
                write_padded(out, u64::from(i) + 1, self.user_width);
            }
            User::Fixed(u) => out.extend_from_slice(u.as_bytes()),
            User::Null | User::Missing => {}
        }
    }
}

fn quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

fn level_of(status: u16) -> &'static str {
    match status {
        500.. => "ERROR",
        400..=499 => "WARN",
        _ => "INFO",
    }
}

fn error_code(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "VALIDATION_ERROR",
        401 => "AUTH_TOKEN_EXPIRED",
        403 => "ACCESS_DENIED",
        404 => "NOT_FOUND",
        429 => "RATE_LIMITED",
        500 => "INTERNAL_ERROR",
        502 => "BAD_GATEWAY",
        503 => "SERVICE_UNAVAILABLE",
        504 => "UPSTREAM_TIMEOUT",
        _ => return None,
    })
}

/// `n` distinct client IPs: private ranges and public-looking addresses, never `10.0.0.*`
/// (the services' own hosts) nor the incident IPs.
pub(super) fn ip_pool(seed: u64, n: u64) -> Vec<Box<str>> {
    let mut rng = Rng::new(seed ^ 0x1b5e_ed0f_1a55);
    let mut seen = std::collections::HashSet::with_capacity(n as usize);
    let mut ips = Vec::with_capacity(n as usize);
    while (ips.len() as u64) < n {
        let r = rng.next_u64();
        let (a, b) = match r % 10 {
            0..=3 => (10, (r >> 8) as u8),
            4..=5 => (172, 16 + (r >> 8) as u8 % 16),
            6..=7 => (192, 168),
            _ => (23 + (r >> 8) as u8 % 180, (r >> 16) as u8),
        };
        let c = (r >> 24) as u8;
        let d = 1 + (r >> 32) as u8 % 254;
        if (a, b, c) == (10, 0, 0) || (a == 127) {
            continue;
        }
        let ip = format!("{a}.{b}.{c}.{d}");
        if ip == incidents::DDOS_IP || ip == incidents::SCANNER_IP || !seen.insert(ip.clone()) {
            continue;
        }
        ips.push(ip.into_boxed_str());
    }
    ips
}
