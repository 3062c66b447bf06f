//! The control endpoint's token: every request carries it (`"token"` next to `"op"`), and a
//! request without the cluster's token is answered `unauthorized` and nothing else.
//!
//! `cluster start` reads the token from `--token-file`, or makes a random 256-bit one and
//! writes it where local clients of the same user find it: `$XDG_RUNTIME_DIR/logflow/` (else
//! `~/.logflow/`), a 0700 directory, a 0600 file named after the control address. Clients on
//! other hosts give `--token-file` or `LOGFLOW_CLUSTER_TOKEN`.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use crate::Error;

/// Environment variable holding the token itself (clients).
pub const TOKEN_ENV: &str = "LOGFLOW_CLUSTER_TOKEN";

/// The folder of the token files local clients find by address.
fn token_dir() -> Option<PathBuf> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .filter(|d| d.is_dir());
    match runtime {
        Some(d) => Some(d.join("logflow")),
        None => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".logflow")),
    }
}

/// Where the cluster bound at `addr` keeps its token unless told.
pub fn default_path(addr: &SocketAddr) -> Option<PathBuf> {
    let name = addr.to_string().replace([':', '[', ']'], "_");
    Some(token_dir()?.join(format!("cluster-{name}.token")))
}

/// A fresh token: 32 bytes from the operating system's generator, in hex.
pub fn generate() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness for the control token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `token` to `path`, readable by this user only. The file is made under a temporary
/// name with mode 0600 from the start and renamed over `path`, so it is never readable by
/// others and a symlink planted at `path` is replaced, not followed.
pub fn write(path: &Path, token: &str) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let err = |e: std::io::Error| Error::io(path, e);
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(err)?;
    f.write_all(token.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&temp, path).map_err(err)
}

/// The token in `path` (its first line, trimmed); an empty file is an error.
pub fn read(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(Error::Usage(format!(
            "{}: an empty token file",
            path.display()
        )));
    }
    Ok(token)
}

/// Compares in time independent of where the two differ, so the answer's timing tells a
/// guesser nothing about a prefix (the length is not secret: every token is 64 hex digits).
pub fn matches(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The token a client sends to the cluster at `addr`: `--token-file`, else
/// `LOGFLOW_CLUSTER_TOKEN`, else the file a cluster of this user on this host wrote for that
/// address (or for the wildcard address on its port). `None`: no token anywhere.
pub fn client_token(addr: &str, token_file: Option<&Path>) -> Result<Option<String>, Error> {
    if let Some(f) = token_file {
        return read(f).map(Some);
    }
    if let Some(t) = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(Some(t.trim().to_string()));
    }
    let Ok(resolved) = addr.to_socket_addrs() else {
        return Ok(None);
    };
    for a in resolved {
        let wildcard: SocketAddr = if a.is_ipv4() {
            ([0, 0, 0, 0], a.port()).into()
        } else {
            ([0u16; 8], a.port()).into()
        };
        for candidate in [a, wildcard] {
            if let Some(p) = default_path(&candidate).filter(|p| p.is_file()) {
                return read(&p).map(Some);
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tokens_are_random_256_bit_and_compared_whole() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(matches(&a, &a.clone()));
        assert!(!matches(&a, &b));
        assert!(!matches(&a, &a[..63]));
        assert!(!matches(&a, ""));
    }

    #[test]
    fn the_token_file_is_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("logflow-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub").join("c.token");
        write(&path, "abc").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
        assert_eq!(read(&path).unwrap(), "abc");
        assert_eq!(
            client_token("x", Some(&path)).unwrap().as_deref(),
            Some("abc")
        );
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(read(&path).unwrap_err().exit_code(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_default_file_is_named_after_the_address() {
        // HOME is set wherever the tests run.
        let p = default_path(&"127.0.0.1:7979".parse().unwrap()).unwrap();
        assert!(
            p.ends_with("cluster-127.0.0.1_7979.token"),
            "{}",
            p.display()
        );
        let p = default_path(&"[::1]:80".parse().unwrap()).unwrap();
        assert!(p.ends_with("cluster-___1__80.token"), "{}", p.display());
    }
}
