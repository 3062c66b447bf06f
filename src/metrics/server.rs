//! The `/metrics` endpoint: a small HTTP/1.1 listener binding exactly the address
//! `--metrics-addr` gives. A scrape is a short GET answered and closed. Scrapes are served
//! concurrently within [`super::listener`]'s limits (a thread per connection, at most
//! [`MAX_PENDING`] still sending their request, [`REQUEST_DEADLINE`] for a whole request), so
//! a slow or idle client cannot stall Prometheus.
//!
//! No HTTP server crate: one GET route with no body, keep-alive or TLS is a few dozen lines
//! here, and the limits that matter (pending connections, whole-request deadline) are the ones
//! shared with the control endpoint, which is not HTTP.
//!
//! Content negotiation: a scraper that accepts OpenMetrics (Prometheus does) gets it, anyone
//! else (curl, a browser) the classic Prometheus text format.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;

use super::listener::{self, Slot};
use super::Metrics;
use crate::Error;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Longest request head read (a scrape request is a few hundred bytes).
const MAX_HEAD: usize = 16 * 1024;
/// A whole request, and writing the answer: well under Prometheus' 10 s scrape timeout.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// Connections still sending their request; one more closes the oldest.
pub const MAX_PENDING: usize = 16;

/// Binds `addr` and serves `metrics` from a background thread; returns the bound address
/// (useful with port 0).
pub fn serve(addr: &str, metrics: Arc<Metrics>) -> Result<SocketAddr, Error> {
    let (listener, local) = bind_exactly("--metrics-addr", addr)?;
    let registry = Arc::new(metrics.registry());
    std::thread::Builder::new()
        .name("logflow-metrics".into())
        .spawn(move || {
            // A failed connection or request only affects that client.
            listener::serve_bounded(listener, "logflow-scrape", MAX_PENDING, move |s, slot| {
                let _ = handle(s, slot, &registry, &metrics);
            })
        })
        .map_err(|e| Error::Internal(format!("metrics listener thread: {e}")))?;
    Ok(local)
}

/// Binds a listener on exactly `addr` (HOST:PORT, as the flag `flag` gave it: no default
/// interface is added) and returns it with its bound address (useful with port 0). Errors name
/// the flag: a bad address is a usage error, a taken port a runtime one.
pub(crate) fn bind_exactly(flag: &str, addr: &str) -> Result<(TcpListener, SocketAddr), Error> {
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Error::Usage(format!("{flag} {addr}: not a HOST:PORT address ({e})")))?
        .collect();
    let listener = TcpListener::bind(&resolved[..])
        .map_err(|e| Error::Endpoint(format!("{flag} {addr}: cannot listen: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Endpoint(format!("{flag} {addr}: {e}")))?;
    Ok((listener, local))
}

struct Request {
    method: String,
    path: String,
    openmetrics: bool,
}

fn read_request(stream: &mut TcpStream, slot: &Slot) -> Option<Request> {
    let deadline = listener::deadline(REQUEST_DEADLINE);
    let head = listener::read_request(stream, deadline, MAX_HEAD, |b| {
        b.windows(4).any(|w| w == b"\r\n\r\n")
    });
    slot.release();
    let head = head.ok()?;
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let (Some(method), Some(target)) = (first.next(), first.next()) else {
        return None;
    };
    let path = target.split(['?', '#']).next().unwrap_or("").to_string();
    let openmetrics = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("accept") && v.contains("application/openmetrics-text")
        })
    });
    Some(Request {
        method: method.to_string(),
        path,
        openmetrics,
    })
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
    head_only: bool,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

fn handle(
    mut stream: TcpStream,
    slot: &Slot,
    registry: &Registry,
    metrics: &Metrics,
) -> io::Result<()> {
    stream.set_write_timeout(Some(REQUEST_DEADLINE))?;
    let Some(req) = read_request(&mut stream, slot) else {
        return respond(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            "bad request\n",
            false,
        );
    };
    let head_only = req.method == "HEAD";
    let readable = req.method == "GET" || head_only;
    match (readable, req.path.as_str()) {
        (true, "/metrics") => {
            // Read before encoding: if the job had already ended, this scrape sees final values.
            let after_finish = !metrics.is_running();
            let mut body = String::new();
            let encoded = if req.openmetrics {
                prometheus_client::encoding::text::encode(&mut body, registry)
            } else {
                prometheus_client::encoding::prometheus_text::encode(&mut body, registry)
            };
            if encoded.is_err() {
                return respond(
                    &mut stream,
                    "500 Internal Server Error",
                    "text/plain",
                    "metrics encoding failed\n",
                    head_only,
                );
            }
            let content_type = if req.openmetrics {
                OPENMETRICS
            } else {
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE
            };
            respond(&mut stream, "200 OK", content_type, &body, head_only)?;
            metrics.scrape_served(after_finish);
            Ok(())
        }
        // Liveness: the listener answers while the process runs.
        (true, "/health") => respond(
            &mut stream,
            "200 OK",
            "application/json",
            "{\"status\":\"live\"}\n",
            head_only,
        ),
        (true, "/ready") => {
            let missing = metrics.missing();
            let body = serde_json::json!({ "ready": missing.is_empty(), "missing": missing });
            let status = if missing.is_empty() {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            respond(
                &mut stream,
                status,
                "application/json",
                &format!("{body}\n"),
                head_only,
            )
        }
        (true, "/") => respond(
            &mut stream,
            "200 OK",
            "text/plain; charset=utf-8",
            "logflow: metrics at /metrics, liveness at /health, readiness at /ready\n",
            head_only,
        ),
        (false, "/metrics" | "/" | "/health" | "/ready") => respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
            false,
        ),
        _ => respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            "not found\n",
            head_only,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Identity;
    use crate::spec::{parse_spec, plan::JobPlan, SpecSource};
    use std::io::Read;
    use std::time::Instant;

    fn get(addr: SocketAddr, path: &str, accept: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    fn metrics() -> Arc<Metrics> {
        let text = "name = \"j\"\n[source]\nkind = \"file\"\npath = \"x\"\nformat = \"json\"\n\
            [[analysis]]\nname = \"a\"\nwindow = { size = \"1m\" }\nselect = [\"count() as n\"]\n";
        let src = SpecSource {
            file: "t.toml",
            text,
        };
        let plan = JobPlan::compile(&parse_spec(&src).unwrap(), &src).unwrap();
        let id = Identity {
            pipeline: "j".into(),
            process: 0,
            processes: 1,
            threads: 1,
        };
        Arc::new(Metrics::new(&plan, id))
    }

    #[test]
    fn serves_both_text_formats_and_counts_final_scrapes() {
        let metrics = metrics();
        let addr = serve("127.0.0.1:0", Arc::clone(&metrics)).unwrap();

        let plain = get(addr, "/metrics", "*/*");
        assert!(plain.starts_with("HTTP/1.1 200 OK"), "{plain}");
        assert!(
            plain.contains("Content-Type: text/plain; version=0.0.4"),
            "{plain}"
        );
        assert!(plain.contains("logflow_job_running 1"), "{plain}");
        assert!(
            !metrics.wait_final_scrape(Duration::ZERO),
            "the job still runs"
        );

        metrics.finish();
        let om = get(
            addr,
            "/metrics?x=1",
            "application/openmetrics-text;version=1.0.0",
        );
        assert!(
            om.contains("Content-Type: application/openmetrics-text"),
            "{om}"
        );
        assert!(om.trim_end().ends_with("# EOF"), "{om}");
        assert!(om.contains("logflow_job_running 0"), "{om}");
        assert!(metrics.wait_final_scrape(Duration::from_secs(5)));

        assert!(get(addr, "/nope", "*/*").starts_with("HTTP/1.1 404"));
        assert!(serve("not an address", Arc::clone(&metrics)).is_err());
    }

    #[test]
    fn health_is_live_and_ready_names_what_is_missing() {
        use crate::metrics::Readiness;
        let metrics = metrics();
        let addr = serve("127.0.0.1:0", Arc::clone(&metrics)).unwrap();
        let health = get(addr, "/health", "*/*");
        assert!(health.starts_with("HTTP/1.1 200 OK"), "{health}");
        let ready = |body: &str| {
            let (head, json) = body.split_once("\r\n\r\n").unwrap();
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            (head.split(' ').nth(1).unwrap().to_string(), v)
        };
        // One process: no peers to wait for.
        let (code, v) = ready(&get(addr, "/ready", "*/*"));
        assert_eq!(code, "503");
        assert_eq!(v["missing"], serde_json::json!(["sinks", "consumers"]));
        metrics.ready(Readiness::Sinks);
        let (code, v) = ready(&get(addr, "/ready", "*/*"));
        assert_eq!(
            (code.as_str(), &v["missing"]),
            ("503", &serde_json::json!(["consumers"]))
        );
        metrics.ready(Readiness::Consumers);
        let (code, v) = ready(&get(addr, "/ready", "*/*"));
        assert_eq!(code, "200");
        assert_eq!(v["ready"], true);
        metrics.finish();
        let (code, v) = ready(&get(addr, "/ready", "*/*"));
        assert_eq!(
            (code.as_str(), &v["missing"]),
            ("503", &serde_json::json!(["running"]))
        );
        assert!(get(addr, "/health", "*/*").starts_with("HTTP/1.1 200 OK"));
    }

    #[test]
    fn slow_and_idle_clients_do_not_stall_a_scrape() {
        let addr = serve("127.0.0.1:0", metrics()).unwrap();
        let _idle: Vec<TcpStream> = (0..3 * MAX_PENDING)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        let started = Instant::now();
        let plain = get(addr, "/metrics", "*/*");
        assert!(plain.contains("logflow_job_running 1"), "{plain}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // The slow client is cut at the request deadline, with a 400.
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut out = String::new();
        let _ = slow.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(started.elapsed() < REQUEST_DEADLINE + Duration::from_secs(1));
    }
}
