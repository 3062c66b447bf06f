//! Formats `apache` and `nginx`: common and combined access logs,
//! `host ident authuser [time] "request" status bytes ["referer" "user-agent"] [response time]`.
//!
//! Mapping (docs/design.md section 2): `ip_address` = host, `user_id` = authuser (`-` = null),
//! `timestamp` = the bracketed time in UTC, `status_code`, `message` = the request line,
//! `service` = first segment of the URL path, `response_time` = a trailing integer in
//! microseconds (Apache `%D`) or a trailing decimal in seconds (nginx `$request_time`),
//! `level` from the status. Hand-written byte scanning; no regex, no allocation beyond the
//! output strings.

use super::timestamp::parse_access_time;
use super::ParseError;
use crate::record::{Event, Str, Value};

fn err(msg: &'static str) -> ParseError {
    ParseError::new(msg)
}

/// Splits off the next space-delimited token.
fn token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(' ');
    if s.is_empty() {
        return None;
    }
    match s.find(' ') {
        Some(i) => Some((&s[..i], &s[i..])),
        None => Some((s, "")),
    }
}

/// Reads a double-quoted field (backslash escapes allowed inside); returns its raw contents.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(' ');
    let body = s.strip_prefix('"')?;
    let b = body.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some((&body[..i], &body[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// The service of a request line: the first non-empty segment of the URL path.
pub fn service_of(request: &str) -> &str {
    let mut parts = request.split(' ').filter(|p| !p.is_empty());
    let (Some(_method), Some(url)) = (parts.next(), parts.next()) else {
        return "root";
    };
    // Absolute URL: drop `scheme://host`. Only a target that starts with a scheme has one:
    // a `://` later on (in a query, or after a path segment) is part of the path.
    let path = match url.find("://") {
        Some(i) if is_scheme(&url[..i]) => {
            let rest = &url[i + 3..];
            rest.find('/').map_or("", |j| &rest[j..])
        }
        _ => url,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.split('/')
        .find(|seg| !seg.is_empty())
        .unwrap_or("root")
}

/// RFC 3986 `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
}

fn level_of(status: i64) -> &'static str {
    if status >= 500 {
        "ERROR"
    } else if status >= 400 {
        "WARN"
    } else {
        "INFO"
    }
}

/// A trailing response time: integer microseconds, or decimal seconds.
fn response_time(tok: &str) -> Option<Option<f64>> {
    if tok == "-" {
        return Some(None);
    }
    if !tok.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        || tok.bytes().filter(|c| *c == b'.').count() > 1
    {
        return None;
    }
    if tok.contains('.') {
        tok.parse::<f64>().ok().map(Some)
    } else {
        tok.parse::<u64>().ok().map(|us| Some(us as f64 / 1e6))
    }
}

/// The request's parts a job may also read, in the order of the slots given to [`parse_with`]:
/// they are extra fields ([`crate::record::Field::Extra`]), set only when an analysis uses them.
pub const FIELDS: [&str; 6] = [
    "method",
    "path",
    "protocol",
    "bytes",
    "referer",
    "user_agent",
];

/// Parses one line; the request line is copied into `message` only when `keep_message`.
pub(super) fn parse(line: &[u8], keep_message: bool) -> Result<Event, ParseError> {
    parse_with(line, keep_message, &[None; 6])
}

/// As [`parse`], also setting each of [`FIELDS`] that has a slot (`-` is null; `bytes` is an
/// int).
pub(super) fn parse_with(
    line: &[u8],
    keep_message: bool,
    slots: &[Option<u8>; 6],
) -> Result<Event, ParseError> {
    let line = std::str::from_utf8(line).map_err(|_| err("access log line is not valid UTF-8"))?;
    let (host, rest) = token(line).ok_or_else(|| err("empty access log line"))?;
    let (_ident, rest) = token(rest).ok_or_else(|| err("truncated access log line: no ident"))?;
    let (user, rest) = token(rest).ok_or_else(|| err("truncated access log line: no authuser"))?;
    let rest = rest.trim_start_matches(' ');
    let rest = rest
        .strip_prefix('[')
        .ok_or_else(|| err("no [time] in access log line"))?;
    let close = rest
        .find(']')
        .ok_or_else(|| err("unterminated [time] in access log line"))?;
    let timestamp = parse_access_time(&rest[..close])
        .ok_or_else(|| err("bad access log time (expected dd/Mon/yyyy:HH:MM:SS +hhmm)"))?;
    let rest = &rest[close + 1..];
    let (request, rest) =
        quoted(rest).ok_or_else(|| err("no quoted request line in access log line"))?;
    let (status, rest) = token(rest).ok_or_else(|| err("truncated access log line: no status"))?;
    if status.len() != 3 || !status.bytes().all(|c| c.is_ascii_digit()) {
        return Err(err("access log status is not a 3-digit number"));
    }
    let status: i64 = status.parse().map_err(|_| err("bad status"))?;
    let (bytes, mut rest) = token(rest).ok_or_else(|| err("truncated access log line: no size"))?;
    if bytes != "-" && !bytes.bytes().all(|c| c.is_ascii_digit()) {
        return Err(err("access log size is not a number or `-`"));
    }
    // Combined format: referer and user agent. A user agent cut off at the end of the line
    // (seen in real logs) loses nothing logflow reads, so the request still counts.
    let (mut referer, mut agent) = (None, None);
    if rest.trim_start_matches(' ').starts_with('"') {
        let (re, r) = quoted(rest).ok_or_else(|| err("unterminated referer"))?;
        referer = Some(re);
        let r = r.trim_start_matches(' ');
        if !r.starts_with('"') {
            return Err(err("missing user agent after the referer"));
        }
        rest = match quoted(r) {
            Some((a, r)) => {
                agent = Some(a);
                r
            }
            None => "",
        };
    }
    let mut response = None;
    if let Some((tok, r)) = token(rest) {
        response =
            response_time(tok).ok_or_else(|| err("unexpected text after the access log fields"))?;
        if !r.trim().is_empty() {
            return Err(err("unexpected text after the response time"));
        }
    }
    let mut ev = Event {
        timestamp,
        level: Some(Str::from(level_of(status))),
        service: Some(Str::from(service_of(request))),
        message: keep_message.then(|| Str::from(request)),
        ip_address: Some(Str::from(host)),
        user_id: (user != "-").then(|| Str::from(user)),
        response_time: response,
        status_code: Some(status),
        ..Event::default()
    };
    if slots.iter().any(Option::is_some) {
        let mut parts = request.split(' ').filter(|p| !p.is_empty());
        let text = |v: Option<&str>| match v {
            None | Some("-") => Value::Null,
            Some(v) => Value::Str(Str::from(v)),
        };
        let values = [
            text(parts.next()),
            text(parts.next()),
            text(parts.next()),
            bytes.parse::<i64>().map_or(Value::Null, Value::Int),
            text(referer),
            text(agent),
        ];
        for (slot, v) in slots.iter().zip(values) {
            if let Some(slot) = slot {
                ev.set_extra(*slot, v);
            }
        }
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(line: &[u8]) -> Result<Event, ParseError> {
        parse(line, true)
    }

    const COMBINED: &str = r#"83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" 200 203023 "http://semicomplete.com/presentations/logstash-monitorama-2013/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1)""#;

    #[test]
    fn combined_line() {
        let e = parse_all(COMBINED.as_bytes()).unwrap();
        assert_eq!(e.ip_address.as_deref(), Some("83.149.9.216"));
        assert_eq!(e.user_id, None);
        assert_eq!(e.timestamp, 1_431_857_103_000);
        assert_eq!(e.status_code, Some(200));
        assert_eq!(e.level.as_deref(), Some("INFO"));
        assert_eq!(e.service.as_deref(), Some("presentations"));
        assert_eq!(
            e.message.as_deref(),
            Some("GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1")
        );
        assert_eq!(e.response_time, None);
    }

    #[test]
    fn common_format_users_levels_and_response_times() {
        let e = parse_all(br#"10.0.0.1 - alice [24/Nov/2026:11:05:00 +0100] "POST /api/v1/items?x=1 HTTP/1.1" 503 - 250000"#).unwrap();
        assert_eq!(e.user_id.as_deref(), Some("alice"));
        assert_eq!(e.timestamp, 1_795_514_700_000);
        assert_eq!(e.level.as_deref(), Some("ERROR"));
        assert_eq!(e.service.as_deref(), Some("api"));
        assert_eq!(e.response_time, Some(0.25));
        let e = parse_all(br#"10.0.0.1 - - [24/Nov/2026:10:05:00 +0000] "GET /x HTTP/1.1" 404 12 "-" "curl/8" 0.125"#).unwrap();
        assert_eq!(
            (e.level.as_deref(), e.response_time),
            (Some("WARN"), Some(0.125))
        );
        let e = parse_all(br#"10.0.0.1 - - [24/Nov/2026:10:05:00 +0000] "GET /a\"b HTTP/1.1" 200 1 "-" "agent \"quoted\"""#).unwrap();
        assert_eq!(e.service.as_deref(), Some("a\\\"b"));
    }

    #[test]
    fn request_parts_are_fields_when_asked_for() {
        let slots = [Some(0), Some(1), Some(2), Some(3), Some(4), Some(5)];
        let e = parse_with(COMBINED.as_bytes(), false, &slots).unwrap();
        let want = [
            Value::Str("GET".into()),
            Value::Str("/presentations/logstash-monitorama-2013/images/kibana-search.png".into()),
            Value::Str("HTTP/1.1".into()),
            Value::Int(203_023),
            Value::Str("http://semicomplete.com/presentations/logstash-monitorama-2013/".into()),
            Value::Str("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1)".into()),
        ];
        assert_eq!(e.extra, want);
        let e = parse_with(
            br#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "-" 400 - "-" "-""#,
            false,
            &[None, Some(1), None, Some(0), Some(2), None],
        )
        .unwrap();
        assert_eq!(e.extra, [Value::Null, Value::Null, Value::Null]);
        assert!(parse(COMBINED.as_bytes(), true).unwrap().extra.is_empty());
    }

    #[test]
    fn services() {
        for (req, svc) in [
            ("GET / HTTP/1.1", "root"),
            ("GET /presentations/a.png HTTP/1.1", "presentations"),
            ("GET /favicon.ico HTTP/1.1", "favicon.ico"),
            ("GET //favicon.ico HTTP/1.1", "favicon.ico"),
            ("GET http://host/a/b HTTP/1.1", "a"),
            ("GET http://host HTTP/1.1", "root"),
            ("GET /a?x=/b HTTP/1.1", "a"),
            ("GET /a#f HTTP/1.1", "a"),
            ("GET /?q=1 HTTP/1.1", "root"),
            ("-", "root"),
            ("GET", "root"),
            // Seen in the real Apache log: a `://` that is not after a scheme.
            (
                "GET /blog/geekery/x.css?p://www.semicomplete.com/about/ HTTP/1.1",
                "blog",
            ),
            ("GET /misc/nmh//%22file://$file/%22 HTTP/1.1", "misc"),
            ("GET https://h.example/b HTTP/1.1", "b"),
            ("GET svn+ssh://h/c HTTP/1.1", "c"),
        ] {
            assert_eq!(service_of(req), svc, "{req}");
        }
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            &b"garbage"[..],
            b"",
            br#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1""#,
            br#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" abc 12"#,
            br#"1.2.3.4 - - [17/Foo/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 12"#,
            br#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1 200 12"#,
            br#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 12 "ref" "ua" soon"#,
            b"1.2.3.4 - - [17/May/2015:10:05:03 +0000] \"GET /\xff HTTP/1.1\" 200 12",
        ] {
            assert!(parse_all(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_real_apache_log_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/apache_logs");
        let text = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut n = 0;
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            parse_all(line).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)));
            n += 1;
        }
        assert_eq!(n, 10_000);
    }

    #[test]
    fn a_user_agent_cut_off_at_the_end_of_the_line_is_tolerated() {
        let e = parse_all(br#"46.118.127.106 - - [20/May/2015:12:05:17 +0000] "GET /scripts/x.py HTTP/1.1" 200 235 "-" "Mozilla/5.0 (compatible; Googlebot/2.1"#).unwrap();
        assert_eq!(e.service.as_deref(), Some("scripts"));
        assert!(parse_all(
            br#"1.2.3.4 - - [20/May/2015:12:05:17 +0000] "GET / HTTP/1.1" 200 235 "-""#
        )
        .is_err());
    }
}
