//! Requests from the command line to a cluster and its replies: one JSON object per line over
//! TCP, one request per connection (`{"op":"jobs"}` -> `{"reply":"jobs","jobs":[...]}`), so
//! scripts can talk to a cluster with `nc` as well. Every request carries the cluster's token
//! next to its `op` (`{"op":"jobs","token":"..."}`, see [`super::auth`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::table::JobStatus;
use crate::spec::overrides::Overrides;
use crate::Error;

/// Where `submit`, `jobs`, `cancel` and `cluster stop` find the cluster when not told.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7979";
/// Environment variable naming the cluster's control address.
pub const ADDR_ENV: &str = "LOGFLOW_CLUSTER";
/// Longest reply line (a job list is a few hundred bytes a job, and the table keeps at most
/// [`super::table::KEEP_ENDED`] ended jobs).
pub const MAX_LINE: u64 = 16 * 1024 * 1024;
/// Longest request line: a spec is a few KB.
pub const MAX_REQUEST: usize = 1024 * 1024;
/// The reply to a request without the cluster's token: this word and nothing else.
pub const UNAUTHORIZED: &str = "unauthorized";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Run a job: the spec's text, the path it was read from (for error messages and relative
    /// paths), and the flags that replace its settings.
    Submit {
        spec: String,
        path: String,
        #[serde(default)]
        overrides: Overrides,
    },
    Jobs,
    Cancel {
        job: u64,
    },
    /// Stop a job gracefully: stop reading, take the final checkpoint, flush the sinks; with
    /// `savepoint`, that checkpoint is kept until removed (`logflow savepoint`).
    Stop {
        job: u64,
        #[serde(default)]
        savepoint: bool,
    },
    /// Stop the cluster: every job stops gracefully (as `stop` stops one), then every process
    /// exits; with `now`, every job is cancelled at once instead.
    Shutdown {
        #[serde(default)]
        now: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Submitted {
        job: u64,
        name: String,
    },
    Jobs {
        jobs: Vec<JobStatus>,
    },
    Cancelled {
        job: u64,
    },
    /// The job was asked to stop (`logflow jobs` shows it `stopped` once it did); a
    /// savepoint goes into `checkpoint_dir`.
    StopRequested {
        job: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checkpoint_dir: Option<String>,
    },
    Stopping,
    /// The request failed; `exit_code` follows docs/design.md (2: bad spec or usage, 1: runtime).
    Error {
        message: String,
        exit_code: i32,
    },
}

impl Reply {
    pub fn error(e: &Error) -> Reply {
        Reply::Error {
            message: e.to_string(),
            exit_code: e.exit_code(),
        }
    }
}

/// The cluster's control address: the flag, then `LOGFLOW_CLUSTER`, then the default.
pub fn address(flag: Option<&str>) -> String {
    flag.map(String::from)
        .or_else(|| std::env::var(ADDR_ENV).ok().filter(|a| !a.is_empty()))
        .unwrap_or_else(|| DEFAULT_ADDR.to_string())
}

/// `req` as its line on the wire, with `token`.
pub fn request_line(req: &Request, token: Option<&str>) -> Result<Vec<u8>, Error> {
    let mut v = serde_json::to_value(req).map_err(|e| Error::Internal(e.to_string()))?;
    if let (Some(t), Some(o)) = (token, v.as_object_mut()) {
        o.insert("token".into(), t.into());
    }
    let mut line = serde_json::to_vec(&v).map_err(|e| Error::Internal(e.to_string()))?;
    line.push(b'\n');
    Ok(line)
}

/// Splits a request line into its token and its request; `None` for anything that is not a
/// JSON object with a string `token`.
pub fn parse_line(line: &[u8]) -> Option<(String, Result<Request, serde_json::Error>)> {
    let mut v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let token = v.as_object_mut()?.remove("token")?;
    let token = token.as_str()?.to_string();
    Some((token, serde_json::from_value(v)))
}

/// How a client reaches the cluster: its address, its token, TLS.
#[derive(Clone, Default)]
pub struct Target {
    pub addr: String,
    pub token: Option<String>,
    /// TLS trusting the cluster's CA; `None`: plain TCP.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Send the token in clear to an address that is not loopback (a network the operator
    /// trusts); otherwise that is refused.
    pub insecure_plaintext: bool,
}

/// Sends `req` to the cluster `to` and waits up to `timeout` for its reply. A reply of kind
/// `error` becomes an [`Error`] with the same exit code.
pub fn call(to: &Target, req: &Request, timeout: Duration) -> Result<Reply, Error> {
    let addr = to.addr.as_str();
    let unreachable = |e: std::io::Error| {
        Error::Peer(format!(
            "cannot reach the cluster at {addr}: {e} (is `logflow cluster start` running? \
             --cluster or {ADDR_ENV} give its address)"
        ))
    };
    let target = addr
        .to_socket_addrs()
        .map_err(|e| Error::Usage(format!("--cluster {addr}: not a HOST:PORT address ({e})")))?
        .next()
        .ok_or_else(|| Error::Usage(format!("--cluster {addr}: no address")))?;
    if to.tls.is_none()
        && to.token.is_some()
        && !target.ip().is_loopback()
        && !to.insecure_plaintext
    {
        return Err(Error::Usage(format!(
            "refusing to send the cluster's token in clear to {addr}, which is not a loopback \
             address: give --tls-ca FILE for a cluster started with --tls-cert, reach it through \
             a tunnel to a local port, or pass --insecure-plaintext on a network you trust"
        )));
    }
    let stream =
        TcpStream::connect_timeout(&target, Duration::from_secs(5)).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(unreachable)?;
    let mut conn = super::tls::connect(addr, stream, to.tls.as_ref())?;
    conn.write_all(&request_line(req, to.token.as_deref())?)
        .and_then(|()| conn.flush())
        .map_err(unreachable)?;
    let mut answer = String::new();
    BufReader::new(conn.take(MAX_LINE))
        .read_line(&mut answer)
        .map_err(|e| Error::Peer(format!("no answer from the cluster at {addr}: {e}")))?;
    if answer.is_empty() {
        return Err(Error::Peer(format!(
            "the cluster at {addr} closed the connection without an answer{}",
            if to.tls.is_none() {
                " (does it take TLS only? --tls-ca)"
            } else {
                ""
            }
        )));
    }
    let reply: Reply = serde_json::from_str(answer.trim()).map_err(|e| {
        Error::Peer(format!(
            "the cluster at {addr} answered something that is not a reply ({e})"
        ))
    })?;
    match reply {
        Reply::Error { message, .. } if message == UNAUTHORIZED => Err(Error::Usage(format!(
            "the cluster at {addr} refused the request: {UNAUTHORIZED} (its token: --token-file \
             FILE or {} on other hosts; on its own host, the file `cluster start` wrote for \
             this address)",
            super::auth::TOKEN_ENV
        ))),
        Reply::Error { message, exit_code } => Err(Error::Remote { message, exit_code }),
        r => Ok(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_line_each() {
        let r = Request::Cancel { job: 3 };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"op":"cancel","job":3}"#
        );
        let parsed: Request = serde_json::from_str(r#"{"op":"jobs"}"#).unwrap();
        assert_eq!(parsed, Request::Jobs);
        let submit: Request =
            serde_json::from_str(r#"{"op":"submit","spec":"name = 1","path":"/x.toml"}"#).unwrap();
        assert!(
            matches!(submit, Request::Submit { overrides, .. } if overrides == Overrides::default())
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"cancel","job":1,"x":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"run"}"#).is_err());
        // A client that predates `now` asks for the graceful stop.
        let stop: Request = serde_json::from_str(r#"{"op":"shutdown"}"#).unwrap();
        assert_eq!(stop, Request::Shutdown { now: false });
    }

    #[test]
    fn the_token_travels_next_to_the_op() {
        let line = request_line(&Request::Jobs, Some("t0k")).unwrap();
        assert_eq!(line, b"{\"op\":\"jobs\",\"token\":\"t0k\"}\n");
        let (token, req) = parse_line(&line).unwrap();
        assert_eq!((token.as_str(), req.unwrap()), ("t0k", Request::Jobs));
        assert!(parse_line(&request_line(&Request::Jobs, None).unwrap()).is_none());
        assert!(parse_line(br#"{"op":"jobs","token":3}"#).is_none());
        assert!(parse_line(b"[1]").is_none());
        let (_, req) = parse_line(br#"{"op":"nope","token":"t"}"#).unwrap();
        assert!(req.is_err());
    }

    #[test]
    fn an_unreachable_cluster_is_named() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let to = Target {
            addr: addr.clone(),
            ..Target::default()
        };
        let err = call(&to, &Request::Jobs, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains(&addr), "{err}");
        assert_eq!(err.exit_code(), 1);
    }

    #[test]
    fn the_token_is_not_sent_in_clear_beyond_loopback() {
        // TEST-NET-1: never reached, as the refusal comes before any connection.
        let to = Target {
            addr: "192.0.2.1:7979".into(),
            token: Some("t0k".into()),
            ..Target::default()
        };
        let err = call(&to, &Request::Jobs, Duration::from_secs(1)).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.exit_code(), 2, "{msg}");
        assert!(
            msg.contains("--tls-ca") && msg.contains("--insecure-plaintext"),
            "{msg}"
        );
        assert!(!msg.contains("t0k"), "{msg}");
        // With the flag it is sent (here: the connection to TEST-NET-1 fails instead).
        let to = Target {
            insecure_plaintext: true,
            ..to
        };
        let err = call(&to, &Request::Jobs, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("cannot reach"), "{err}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn request() -> impl Strategy<Value = Request> {
            prop_oneof![
                Just(Request::Jobs),
                any::<bool>().prop_map(|now| Request::Shutdown { now }),
                any::<u64>().prop_map(|job| Request::Cancel { job }),
                (any::<u64>(), any::<bool>())
                    .prop_map(|(job, savepoint)| Request::Stop { job, savepoint }),
                (".{0,64}", ".{0,32}").prop_map(|(spec, path)| Request::Submit {
                    spec,
                    path,
                    overrides: Overrides::default(),
                }),
            ]
        }

        proptest! {
            #![proptest_config(crate::checkpoint::codec::proptest_config())]

            #[test]
            fn any_line_decodes_or_is_refused_without_a_panic(
                line in prop::collection::vec(any::<u8>(), 0..200),
            ) {
                let _ = parse_line(&line);
            }

            #[test]
            fn json_shaped_lines_decode_or_are_refused(
                line in r#"\{("(op|token|job|spec|path|overrides)":("[a-z]{0,6}"|[0-9]{1,20}|-1|null|\[\]|\{\}|true),?){0,5}\}"#,
            ) {
                let _ = parse_line(line.as_bytes());
            }

            #[test]
            fn requests_round_trip_with_their_token(req in request(), token in "[ -~]{0,40}") {
                let line = request_line(&req, Some(&token)).unwrap();
                let (t, back) = parse_line(&line[..line.len() - 1]).unwrap();
                prop_assert_eq!(t, token);
                prop_assert_eq!(back.unwrap(), req);
            }
        }
    }
}
