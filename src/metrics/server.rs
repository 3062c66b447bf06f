//! The `/metrics` endpoint: a small HTTP/1.1 listener on one thread, binding exactly the
//! address `--metrics-addr` gives. A scrape is a short GET answered and closed; requests are
//! served one at a time with socket timeouts, so a stuck client cannot pile up threads.
//!
//! Content negotiation: a scraper that accepts OpenMetrics (Prometheus does) gets it, anyone
//! else (curl, a browser) the classic Prometheus text format.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;

use super::Metrics;
use crate::Error;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Longest request head read (a scrape request is a few hundred bytes).
const MAX_HEAD: usize = 16 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` and serves `metrics` from a background thread; returns the bound address
/// (useful with port 0).
pub fn serve(addr: &str, metrics: Arc<Metrics>) -> Result<SocketAddr, Error> {
    let (listener, local) = bind_exactly("--metrics-addr", addr)?;
    let registry = metrics.registry();
    std::thread::Builder::new()
        .name("logflow-metrics".into())
        .spawn(move || {
            // A failed connection or request only affects that client.
            for stream in listener.incoming().flatten() {
                let _ = handle(stream, &registry, &metrics);
            }
        })
        .map_err(|e| Error::Runtime(format!("metrics listener thread: {e}")))?;
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
        .map_err(|e| Error::Runtime(format!("{flag} {addr}: cannot listen: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Runtime(format!("{flag} {addr}: {e}")))?;
    Ok((listener, local))
}

struct Request {
    method: String,
    path: String,
    openmetrics: bool,
}

fn read_request(stream: &mut TcpStream) -> io::Result<Option<Request>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let (Some(method), Some(target)) = (first.next(), first.next()) else {
        return Ok(None);
    };
    let path = target.split(['?', '#']).next().unwrap_or("").to_string();
    let openmetrics = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("accept") && v.contains("application/openmetrics-text")
        })
    });
    Ok(Some(Request {
        method: method.to_string(),
        path,
        openmetrics,
    }))
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

fn handle(mut stream: TcpStream, registry: &Registry, metrics: &Metrics) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let Some(req) = read_request(&mut stream)? else {
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
        (true, "/") => respond(
            &mut stream,
            "200 OK",
            "text/plain; charset=utf-8",
            "logflow: metrics at /metrics\n",
            head_only,
        ),
        (false, "/metrics" | "/") => respond(
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

    #[test]
    fn serves_both_text_formats_and_counts_final_scrapes() {
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
        let metrics = Arc::new(Metrics::new(&plan, id));
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
}
