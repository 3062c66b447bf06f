//! Requests from the command line to a cluster and its replies: one JSON object per line over
//! TCP, one request per connection (`{"op":"jobs"}` -> `{"reply":"jobs","jobs":[...]}`), so
//! scripts can talk to a cluster with `nc` as well.

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
/// Longest request or reply line (a spec is a few KB; a job list a few hundred bytes a job).
pub const MAX_LINE: u64 = 16 * 1024 * 1024;

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
    /// Cancel every job and stop the cluster's processes.
    Shutdown,
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

/// Sends `req` to the cluster at `addr` and waits up to `timeout` for its reply. A reply of
/// kind `error` becomes an [`Error`] with the same exit code.
pub fn call(addr: &str, req: &Request, timeout: Duration) -> Result<Reply, Error> {
    let unreachable = |e: std::io::Error| {
        Error::Runtime(format!(
            "cannot reach the cluster at {addr}: {e} (is `logflow cluster start` running? \
             --cluster or {ADDR_ENV} give its address)"
        ))
    };
    let target = addr
        .to_socket_addrs()
        .map_err(|e| Error::Usage(format!("--cluster {addr}: not a HOST:PORT address ({e})")))?
        .next()
        .ok_or_else(|| Error::Usage(format!("--cluster {addr}: no address")))?;
    let mut stream =
        TcpStream::connect_timeout(&target, Duration::from_secs(5)).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(unreachable)?;
    let mut line = serde_json::to_vec(req).map_err(|e| Error::Runtime(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(unreachable)?;
    let mut answer = String::new();
    BufReader::new(stream.take(MAX_LINE))
        .read_line(&mut answer)
        .map_err(|e| Error::Runtime(format!("no answer from the cluster at {addr}: {e}")))?;
    let reply: Reply = serde_json::from_str(answer.trim()).map_err(|e| {
        Error::Runtime(format!(
            "the cluster at {addr} answered something that is not a reply ({e})"
        ))
    })?;
    match reply {
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
    }

    #[test]
    fn an_unreachable_cluster_is_named() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let err = call(&addr, &Request::Jobs, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains(&addr), "{err}");
        assert_eq!(err.exit_code(), 1);
    }
}
