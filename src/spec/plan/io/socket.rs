//! `kind = "socket"`: lines from a TCP server.

use super::super::compile::Ctx;
use crate::spec::SourceSpec;
use crate::Error;

/// `[source]` settings of `kind = "socket"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketConfig {
    /// The line server's host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Connect again when the server closes the connection (else the input ends).
    pub reconnect: bool,
}

impl SocketConfig {
    /// The `[source]` keys this kind takes besides `kind`, `format` and `max_record_bytes`.
    pub(super) const KEYS: &'static [&'static str] = &["host", "port", "reconnect"];

    pub(super) fn compile(s: &SourceSpec, cx: &Ctx<'_>) -> Result<SocketConfig, Error> {
        let Some(port) = &s.port else {
            return cx.err(s.kind.span(), "source.port", "a socket source needs `port`");
        };
        Ok(SocketConfig {
            host: s
                .host
                .as_ref()
                .map_or("127.0.0.1".into(), |h| h.get_ref().clone()),
            port: *port.get_ref(),
            reconnect: s.reconnect.as_ref().is_some_and(|r| *r.get_ref()),
        })
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// What `logflow check` says it reads.
    pub fn describe(&self) -> String {
        format!(
            "socket: lines from the TCP server {}{}",
            self.address(),
            if self.reconnect {
                " (reconnects when closed)"
            } else {
                " (ends when it closes)"
            }
        )
    }
}
