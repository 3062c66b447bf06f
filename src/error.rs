//! One error type for the whole program, with the exit code each kind maps to
//! (docs/design.md section 6: 2 = bad usage or bad spec, 1 = runtime failure).

use std::path::PathBuf;

/// Everything that can stop a logflow command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A spec file that does not parse or validate; names file, line and field.
    #[error("{file}:{line}:{column}: {field}: {message}")]
    Spec {
        file: String,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
    /// Bad command-line usage.
    #[error("usage: {0}")]
    Usage(String),
    /// An I/O failure on a named path.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A failure while a job runs (worker panic, sink failure, ...).
    #[error("{0}")]
    Runtime(String),
    /// An error a cluster reported for a request, with the exit code it gave it.
    #[error("{message}")]
    Remote { message: String, exit_code: i32 },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Spec { .. } | Error::Usage(_) => 2,
            Error::Io { .. } | Error::Runtime(_) => 1,
            Error::Remote { exit_code, .. } => *exit_code,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
