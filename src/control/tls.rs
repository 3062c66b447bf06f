//! TLS on the control port: `cluster start --tls-cert FILE --tls-key FILE` serves it, clients
//! give `--tls-ca FILE` (the CA that signed the cluster's certificate) and check the
//! certificate against the address they dial. rustls, TLS 1.2 and 1.3 only.
//!
//! A port with TLS answers a client that speaks plain JSON with one plain error line saying
//! so; a port without TLS closes a connection that opens with a TLS handshake. So a client
//! configured the other way round gets a clear error at once instead of a timeout.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned,
};

use crate::metrics::listener::Socket;
use crate::Error;

/// Environment variable naming the CA file clients trust (instead of `--tls-ca`).
pub const CA_ENV: &str = "LOGFLOW_CLUSTER_TLS_CA";

/// The first byte of a TLS record carrying a handshake (a ClientHello).
pub const HANDSHAKE: u8 = 0x16;

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// rustls with *ring*: deprecated by rustls for lacking post-quantum key exchange, which its
/// default (aws-lc-rs) has at the price of a cmake build of a C library; the control port
/// carries a token and specs, not data that must stay secret for decades.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A PEM error names the file, never a line of it (a key file's lines are the secret).
fn pem_error(flag: &str, path: &Path, what: &str, e: pem::Error) -> Error {
    match e {
        pem::Error::Io(e) => Error::io(path, e),
        _ => Error::Usage(format!(
            "{flag} {}: not a PEM file with {what}",
            path.display()
        )),
    }
}

fn certificates(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let what = "a certificate";
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(flag, path, what, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(flag, path, what, e))?;
    if certs.is_empty() {
        return Err(pem_error(flag, path, what, pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// The control port's TLS: the certificate chain in `cert` (the cluster's first) and its
/// private key in `key` (PKCS#8, PKCS#1 or SEC1), both PEM.
pub fn server(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, Error> {
    let chain = certificates("--tls-cert", cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| pem_error("--tls-key", key, "a private key", e))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| Error::Internal(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| Error::Usage(format!("--tls-cert/--tls-key: {e}")))?;
    Ok(Arc::new(config))
}

/// A client's TLS: trusts the certificates in `ca` (PEM) and nothing else.
pub fn client(ca: &Path) -> Result<Arc<ClientConfig>, Error> {
    let mut roots = RootCertStore::empty();
    for c in certificates("--tls-ca", ca)? {
        roots
            .add(c)
            .map_err(|e| Error::Usage(format!("--tls-ca {}: {e}", ca.display())))?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| Error::Internal(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name the cluster's certificate must carry: the host part of `addr` (a DNS name or an
/// IP address).
pub fn server_name(addr: &str) -> Result<ServerName<'static>, Error> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| {
        Error::Usage(format!(
            "--cluster {addr}: no name to check TLS against ({e})"
        ))
    })
}

/// One accepted control connection, plain or TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Conn {
    /// Ends the reply: TLS says `close_notify`, so the client knows the reply is whole.
    pub fn finish(&mut self) {
        if let Conn::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
    }
}

impl Socket for Conn {
    fn socket(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// A client's connection to the cluster at `addr`, with TLS by `config` if given: the
/// handshake is done here, so a certificate the client does not trust fails with its own
/// error before anything (the token) is sent.
pub fn connect(
    addr: &str,
    tcp: TcpStream,
    config: Option<&Arc<ClientConfig>>,
) -> Result<Box<dyn ReadWrite>, Error> {
    let Some(config) = config else {
        return Ok(Box::new(tcp));
    };
    let conn = ClientConnection::new(Arc::clone(config), server_name(addr)?)
        .map_err(|e| Error::Internal(format!("TLS to the cluster at {addr}: {e}")))?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        if let Err(e) = s.conn.complete_io(&mut s.sock) {
            return Err(handshake_error(addr, &e));
        }
    }
    Ok(Box::new(s))
}

fn handshake_error(addr: &str, e: &io::Error) -> Error {
    let hint = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(_)) => {
            "the cluster's certificate is not signed by --tls-ca, or is not for this address"
        }
        _ if e.kind() == io::ErrorKind::UnexpectedEof => {
            "the cluster closed the connection: does it serve TLS (cluster start --tls-cert)?"
        }
        _ => "does the cluster serve TLS (cluster start --tls-cert)?",
    };
    Error::Peer(format!(
        "TLS handshake with the cluster at {addr} failed: {e} ({hint})"
    ))
}

/// A connection a client can read its reply from and write its request to.
pub trait ReadWrite: Read + Write {}

impl<T: Read + Write> ReadWrite for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_checked_is_the_host_of_the_address() {
        for (addr, name) in [
            ("cluster.example:7979", "cluster.example"),
            ("10.0.0.1:7979", "10.0.0.1"),
            ("[::1]:7979", "::1"),
        ] {
            let got = server_name(addr).unwrap();
            let want = ServerName::try_from(name.to_string()).unwrap();
            assert_eq!(got, want, "{addr}");
        }
        assert_eq!(server_name("bad name:1").unwrap_err().exit_code(), 2);
    }

    #[test]
    fn files_that_are_not_pem_are_named_without_their_contents() {
        let dir = std::env::temp_dir().join(format!("logflow-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key.pem");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nhunter2-not-base64!\n").unwrap();
        let e = server(&key, &key).unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.exit_code(), 2, "{msg}");
        assert!(
            msg.contains("--tls-cert") && msg.contains("key.pem"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        let e = client(&dir.join("missing.pem")).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
