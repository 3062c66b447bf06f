//! One error type for the whole program, by domain, with the exit code each maps to
//! (docs/design.md: 2 = bad usage or bad spec, 1 = runtime failure) and a retry hint.
//!
//! The domains follow where a failure comes from, so a caller can tell "fix the spec" from
//! "the broker is down, try again" without reading the text: [`Error::is_retryable`] says
//! whether the same command, run again unchanged, may succeed. Every message is the text the
//! user reads (tests read some of them), so each variant displays its message as is.

use std::path::PathBuf;

/// Everything that can stop a logflow command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A spec file that does not parse or validate; names file, line and field.
    #[error("{file}:{line}:{column}: {field}: {message}")]
    Spec {
        /// The spec file as given.
        file: String,
        /// 1-based line of the offending value.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The key, as a dotted path (`source.kind`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// Bad command-line usage.
    #[error("usage: {0}")]
    Usage(String),
    /// An I/O failure on a named path.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// An input that cannot be read (a socket, a watched directory, a lookup table).
    #[error("{0}")]
    Input(String),
    /// A Kafka request that failed, and why.
    #[error("{message}")]
    Kafka {
        /// Unreachable brokers, a missing topic, or another client failure.
        cause: KafkaCause,
        /// The error as the user reads it, secrets redacted.
        message: String,
    },
    /// Writing or restoring a checkpoint.
    #[error("{0}")]
    Checkpoint(String),
    /// A checkpoint whose saved state does not fit the spec restoring it: the source changed,
    /// or an analysis kept its name but changed what its state depends on (each named, with
    /// what changed).
    #[error("{0}")]
    SpecChange(String),
    /// Writing results (a sink's delivery).
    #[error("{0}")]
    Sink(String),
    /// Another process of the job or cluster: connecting to it, or its failure or silence.
    #[error("{0}")]
    Peer(String),
    /// A listening endpoint of this process (metrics, control, peer or launch ports) that
    /// could not be set up.
    #[error("{0}")]
    Endpoint(String),
    /// A graceful stop cut short: its timeout passed, or a second signal came, before every
    /// job had stopped; names what had not.
    #[error("{0}")]
    Stop(String),
    /// A failure of logflow itself: a worker that panicked, a thread that could not start,
    /// records unaccounted for.
    #[error("{0}")]
    Internal(String),
    /// An error a cluster reported for a request, with the exit code it gave it.
    #[error("{message}")]
    Remote {
        /// The cluster's message.
        message: String,
        /// The exit code the cluster mapped it to.
        exit_code: i32,
    },
}

/// Why a Kafka request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KafkaCause {
    /// No broker answered in time, or the connection failed (refused, TLS, login).
    Unreachable,
    /// The brokers answer but do not have the topic (topics are never auto-created).
    MissingTopic,
    /// Any other client failure (a rejected setting, a produce or transaction error).
    Client,
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Spec { .. } | Error::Usage(_) | Error::SpecChange(_) => 2,
            Error::Remote { exit_code, .. } => *exit_code,
            _ => 1,
        }
    }

    /// Whether running the same command again, unchanged, may succeed: the cause lies outside
    /// the job and can pass (brokers or peers down, a timeout). A bad spec, a missing topic,
    /// a corrupt checkpoint or a crash needs someone to change something first.
    pub fn is_retryable(&self) -> bool {
        use std::io::ErrorKind as K;
        match self {
            Error::Kafka { cause, .. } => *cause == KafkaCause::Unreachable,
            Error::Peer(_) => true,
            Error::Io { source, .. } => matches!(
                source.kind(),
                K::Interrupted
                    | K::TimedOut
                    | K::WouldBlock
                    | K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
            ),
            _ => false,
        }
    }

    /// Writing stdout failed because its reader went away (`logflow run ... | head`): for a
    /// Unix filter that is the end of the output, not a failure.
    pub fn is_closed_stdout(&self) -> bool {
        matches!(self, Error::Io { path, source }
            if path.as_os_str() == "stdout" && source.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// An [`Error::Io`] on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The same error with `what` (`reading file x`) in front of its message, in the same
    /// domain; an I/O error becomes an [`Error::Input`].
    pub fn context(self, what: &str) -> Error {
        let with = |m: String| format!("{what}: {m}");
        match self {
            Error::Input(m) => Error::Input(with(m)),
            Error::Kafka { cause, message } => Error::kafka(cause, with(message)),
            Error::Checkpoint(m) => Error::Checkpoint(with(m)),
            Error::Sink(m) => Error::Sink(with(m)),
            Error::Peer(m) => Error::Peer(with(m)),
            Error::Endpoint(m) => Error::Endpoint(with(m)),
            Error::Internal(m) => Error::Internal(with(m)),
            Error::Stop(m) => Error::Stop(with(m)),
            Error::SpecChange(m) => Error::SpecChange(with(m)),
            e @ (Error::Spec { .. } | Error::Usage(_) | Error::Remote { .. }) => e,
            e @ Error::Io { .. } => Error::Input(with(e.to_string())),
        }
    }

    /// An [`Error::Kafka`] of `cause`.
    pub fn kafka(cause: KafkaCause, message: impl Into<String>) -> Self {
        Error::Kafka {
            cause,
            message: message.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_retry_hints_follow_the_domain() {
        let io = |kind| Error::io("x", std::io::Error::from(kind));
        let cases = [
            (Error::Usage("u".into()), 2, false),
            (Error::kafka(KafkaCause::Unreachable, "down"), 1, true),
            (Error::kafka(KafkaCause::MissingTopic, "no topic"), 1, false),
            (Error::kafka(KafkaCause::Client, "bad setting"), 1, false),
            (Error::Peer("process 1 went silent".into()), 1, true),
            (Error::Checkpoint("corrupt".into()), 1, false),
            (
                Error::SpecChange("analysis a: window changed".into()),
                2,
                false,
            ),
            (Error::Sink("delivery failed".into()), 1, false),
            (Error::Input("socket".into()), 1, false),
            (Error::Internal("panic".into()), 1, false),
            (Error::Endpoint("in use".into()), 1, false),
            (io(std::io::ErrorKind::TimedOut), 1, true),
            (io(std::io::ErrorKind::NotFound), 1, false),
            (
                Error::Remote {
                    message: "m".into(),
                    exit_code: 2,
                },
                2,
                false,
            ),
        ];
        for (e, code, retry) in cases {
            assert_eq!((e.exit_code(), e.is_retryable()), (code, retry), "{e:?}");
        }
        let pipe = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(Error::io("stdout", pipe()).is_closed_stdout());
        assert!(!Error::io("out.jsonl", pipe()).is_closed_stdout());
        assert!(!io(std::io::ErrorKind::TimedOut).is_closed_stdout());
        let e = Error::kafka(KafkaCause::Unreachable, "down").context("reading kafka t/0");
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "reading kafka t/0: down");
        // The message is shown as is, whatever the domain.
        assert_eq!(
            Error::kafka(KafkaCause::MissingTopic, "kafka topic `t`").to_string(),
            "kafka topic `t`"
        );
    }
}
