//! User events (input format `user-events`), keys in a fixed order:
//! `timestamp` (epoch ms), `user_id`, `action`, `value`, `session_id`, `ip_address`.
//!
//! Ten actions with realistic weights and values (seconds on page, prices, result counts;
//! null for login/logout). The user population is 20 users per line/s of event rate (at
//! least 200) so a user does ~3 events a minute at any rate: the `user_anomalies` threshold
//! (> 50 events in 5 minutes) is then only crossed by the injected scraper. A user keeps a
//! home IP (90% of events) and a session id per half hour. Nulls: `user_id` (rare enough that
//! the null group stays below the anomaly threshold at the default rate), `action`, `value`
//! (null or absent), `session_id`, `ip_address`.

use super::fmt::{write_fixed_or_string, write_hex, write_i64};
use super::incidents::{self, Schedule};
use super::logs::ip_pool;
use super::rng::{cumulative, mix64, Rng};
use super::{GenConfig, LineKind};
use crate::time::{write_date, write_padded, write_time_of_day, DAY_MS};

const ACTIONS: [&str; 10] = [
    "view",
    "click",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "purchase",
    "login",
    "logout",
    "share",
];
const ACTION_WEIGHTS: [u32; 10] = cumulative([40, 20, 10, 8, 2, 4, 3, 5, 4, 4]);
const VIEW: u8 = 0;

#[derive(Clone, Copy)]
enum User {
    Pool(u32),
    Scraper,
    Null,
}

#[derive(Clone, Copy)]
enum Value {
    Cents(u64),
    Null,
    Missing,
}

struct Event {
    ts: i64,
    user: User,
    action: Option<u8>,
    value: Value,
    session: Option<u64>,
    ip: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Damage {
    Garbage,
    Binary,
    Truncated,
    NotAnObject,
    NoTimestamp,
    NullTimestamp,
    ImpossibleDate,
    DateOnly,
    ValueString,
    UserIdNumber,
    NonUtf8,
}

const DAMAGES: [Damage; 11] = [
    Damage::Garbage,
    Damage::Binary,
    Damage::Truncated,
    Damage::NotAnObject,
    Damage::NoTimestamp,
    Damage::NullTimestamp,
    Damage::ImpossibleDate,
    Damage::DateOnly,
    Damage::ValueString,
    Damage::UserIdNumber,
    Damage::NonUtf8,
];

const GARBAGE: [&str; 3] = [
    "event-collector: buffer overflow, dropping 17 events",
    "user=42 action=click value=1.0",
    "{\"timestamp\": 1795514400000, \"user_id\": \"user_00042\", \"action\": \"view\", \"value\": 3.5,,}",
];

const SCRAPER_SESSION: u64 = 0x005c_4a93_e177;
const SCRAPER_IP: &str = "103.77.192.14";

pub(super) struct UserEventGen {
    seed: u64,
    schedule: Schedule,
    scraper_share: f64,
    users: u64,
    user_width: usize,
    ips: Vec<Box<str>>,
}

impl UserEventGen {
    pub(super) fn new(cfg: &GenConfig) -> Self {
        let schedule = Schedule::new(cfg.incidents, cfg.start_ms, cfg.event_rate);
        let users = ((cfg.event_rate * 20.0) as u64).clamp(200, 1 << 22);
        UserEventGen {
            seed: cfg.seed,
            schedule,
            scraper_share: schedule.share(incidents::SCRAPER_EVENTS, &incidents::SCRAPER),
            users,
            user_width: users.to_string().len().max(5),
            ips: ip_pool(cfg.seed, (users / 2).max(300)),
        }
    }

    pub(super) fn write(&mut self, rng: &mut Rng, kind: LineKind, ts: i64, out: &mut Vec<u8>) {
        let mut event = self.event(rng, ts);
        if kind != LineKind::Bad {
            self.render(&event, None, out);
            return;
        }
        match DAMAGES[rng.below(DAMAGES.len() as u64) as usize] {
            Damage::Garbage => {
                out.extend_from_slice(GARBAGE[rng.below(GARBAGE.len() as u64) as usize].as_bytes())
            }
            Damage::Binary => {
                out.extend_from_slice(b"\x00\x00\x00\x2a");
                for _ in 0..20 {
                    out.push(0x80 | (rng.next_u64() as u8));
                }
            }
            Damage::Truncated => {
                let before = out.len();
                self.render(&event, None, out);
                let len = out.len() - before;
                let keep = 1 + rng.below(len as u64 - 2) as usize;
                out.truncate(before + keep);
            }
            Damage::NotAnObject => out.extend_from_slice(b"[1795514400000, \"view\"]"),
            Damage::ValueString => {
                if !matches!(event.value, Value::Cents(_)) {
                    event.value = Value::Cents(1999);
                }
                self.render(&event, Some(Damage::ValueString), out);
            }
            Damage::UserIdNumber => {
                event.user = User::Pool(41);
                self.render(&event, Some(Damage::UserIdNumber), out);
            }
            damage => self.render(&event, Some(damage), out),
        }
    }

    fn event(&mut self, rng: &mut Rng, ts: i64) -> Event {
        let scraper = self
            .schedule
            .offset(ts)
            .is_some_and(|o| incidents::SCRAPER.contains(&o))
            && rng.chance(self.scraper_share);
        if scraper {
            return Event {
                ts,
                user: User::Scraper,
                action: Some(VIEW),
                value: Value::Cents(rng.range(20, 300)),
                session: Some(SCRAPER_SESSION),
                ip: None,
            };
        }
        let user = if rng.chance(0.0005) {
            User::Null
        } else {
            User::Pool(rng.below(self.users) as u32)
        };
        let action = if rng.chance(0.003) {
            None
        } else {
            Some(rng.weighted(&ACTION_WEIGHTS) as u8)
        };
        let value = match action.map(|a| ACTIONS[a as usize]) {
            _ if rng.chance(0.005) => Value::Missing,
            Some("view") => Value::Cents(rng.range(100, 18_000)),
            Some("search") => Value::Cents(rng.range(0, 500) * 100),
            Some("add_to_cart" | "remove_from_cart") => Value::Cents(rng.range(499, 49_999)),
            Some("checkout" | "purchase") => Value::Cents(rng.range(999, 199_999)),
            Some("click" | "share") => Value::Cents(100),
            _ => Value::Null,
        };
        let session = match user {
            _ if rng.chance(0.01) => None,
            User::Pool(u) => Some(mix64(
                self.seed ^ (u64::from(u) << 24) ^ (ts.div_euclid(1_800_000) as u64),
            )),
            _ => Some(rng.next_u64()),
        };
        let n_ips = self.ips.len() as u64;
        let ip = match user {
            _ if rng.chance(0.005) => None,
            User::Pool(u) if rng.chance(0.9) => {
                Some((mix64(self.seed ^ u64::from(u)) % n_ips) as u32)
            }
            _ => Some(rng.below(n_ips) as u32),
        };
        Event {
            ts,
            user,
            action,
            value,
            session,
            ip,
        }
    }

    fn render(&self, e: &Event, damage: Option<Damage>, out: &mut Vec<u8>) {
        out.push(b'{');
        match damage {
            Some(Damage::NoTimestamp) => {}
            Some(Damage::NullTimestamp) => out.extend_from_slice(b"\"timestamp\": null, "),
            Some(Damage::DateOnly) => {
                out.extend_from_slice(b"\"timestamp\": \"");
                write_date(out, e.ts.div_euclid(DAY_MS));
                out.extend_from_slice(b"\", ");
            }
            Some(Damage::ImpossibleDate) => {
                out.extend_from_slice(b"\"timestamp\": \"2026-02-30T");
                write_time_of_day(out, e.ts.rem_euclid(DAY_MS));
                out.extend_from_slice(b"Z\", ");
            }
            _ => {
                out.extend_from_slice(b"\"timestamp\": ");
                write_i64(out, e.ts);
                out.extend_from_slice(b", ");
            }
        }
        out.extend_from_slice(b"\"user_id\": ");
        match e.user {
            User::Pool(u) if damage == Some(Damage::UserIdNumber) => {
                write_padded(out, u64::from(u) + 1, 1)
            }
            User::Pool(u) => {
                out.extend_from_slice(b"\"user_");
                write_padded(out, u64::from(u) + 1, self.user_width);
                out.push(b'"');
            }
            User::Scraper => {
                out.push(b'"');
                out.extend_from_slice(incidents::SCRAPER_USER.as_bytes());
                out.push(b'"');
            }
            User::Null => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b", \"action\": ");
        match e.action {
            Some(a) => {
                out.push(b'"');
                out.extend_from_slice(ACTIONS[a as usize].as_bytes());
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        match e.value {
            Value::Missing => {}
            Value::Null => out.extend_from_slice(b", \"value\": null"),
            Value::Cents(c) => {
                out.extend_from_slice(b", \"value\": ");
                let string = damage == Some(Damage::ValueString);
                write_fixed_or_string(out, c, 2, string);
            }
        }
        out.extend_from_slice(b", \"session_id\": ");
        match e.session {
            // Latin-1 bytes where UTF-8 was expected.
            _ if damage == Some(Damage::NonUtf8) => out.extend_from_slice(b"\"sess_caf\xe9\""),
            Some(s) => {
                out.extend_from_slice(b"\"sess_");
                write_hex(out, s, 10);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b", \"ip_address\": ");
        match (e.user, e.ip) {
            (User::Scraper, _) => {
                out.push(b'"');
                out.extend_from_slice(SCRAPER_IP.as_bytes());
                out.push(b'"');
            }
            (_, Some(i)) => {
                out.push(b'"');
                out.extend_from_slice(self.ips[i as usize].as_bytes());
                out.push(b'"');
            }
            (_, None) => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }
}
