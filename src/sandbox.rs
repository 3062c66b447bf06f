//! The directories a cluster's jobs may touch, checked again where each file is opened.
//!
//! A cluster process ([`confine`]d at start with its `--allow-dir`s) checks a submitted job's
//! paths at submission, but a symlink in an allowed directory can be swapped between that
//! check and the open. So every file a job opens goes through here, and in a confined
//! process the check is made on what was actually opened, not on the name:
//! - a file read is opened (without blocking, so a FIFO swapped in cannot hang the worker),
//!   then its real path (`/proc/self/fd`) must be under an allowed directory and it must be
//!   a regular file;
//! - a file written is created inside a directory that was opened and checked the same way,
//!   by name relative to that open directory and without following a symlink
//!   (`openat(O_NOFOLLOW)`), so neither a swapped directory nor a planted link can redirect
//!   it.
//!
//! A process that is not confined (`run`, `launch`) opens files as the operating system
//! does: its paths are the operator's own.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

static ROOTS: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// Confines this process's jobs to `roots` (canonical directories), for the rest of its life.
/// The first call wins: a process is confined once, at start.
pub fn confine(roots: Vec<PathBuf>) {
    let _ = ROOTS.set(roots);
}

fn roots() -> Option<&'static [PathBuf]> {
    ROOTS.get().map(Vec::as_slice)
}

fn outside(real: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "refused: as opened it is `{}`, outside the allowed directories (a symlink \
             changed since the job was submitted?)",
            real.display()
        ),
    )
}

/// Where the open file `f` really is.
fn real_path(f: &File) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

/// The open file `f` must be under `roots`.
fn check_opened(f: &File, roots: &[PathBuf]) -> io::Result<()> {
    let real = real_path(f)?;
    if roots.iter().any(|r| real.starts_with(r)) {
        Ok(())
    } else {
        Err(outside(&real))
    }
}

/// Opens `path` for reading (see the module docs).
pub fn open_read(path: &Path) -> io::Result<File> {
    open_read_in(path, roots())
}

/// All of `path` (see [`open_read`]), which must be a regular file of at most `limit` bytes,
/// `what` naming it in the error: a device, an endless pipe or a damaged file must not make
/// the reader allocate without bound. The file may grow after the look at its size, so no
/// more than the limit is read either.
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = open_read(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > limit {
        return Err(format!(
            "{} bytes, more than the {limit} {what} may have",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("more than the {limit} bytes {what} may have"));
    }
    Ok(bytes)
}

fn open_read_in(path: &Path, roots: Option<&[PathBuf]>) -> io::Result<File> {
    let Some(roots) = roots else {
        return File::open(path);
    };
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)?;
    check_opened(&f, roots)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refused: not a regular file",
        ));
    }
    // O_NONBLOCK means nothing for a regular file's reads, so it may stay set.
    Ok(f)
}

/// Makes `dir` and its missing parents; in a confined process the directory, once made, must
/// resolve under an allowed directory.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if let Some(roots) = roots() {
        check_opened(&File::open(dir)?, roots)?;
    }
    Ok(())
}

/// Creates (truncating) or, with `append`, opens for appending the file `path`, made if
/// missing (see the module docs).
pub fn create(path: &Path, append: bool) -> io::Result<File> {
    create_in(path, append, roots())
}

fn create_in(path: &Path, append: bool, roots: Option<&[PathBuf]>) -> io::Result<File> {
    let Some(roots) = roots else {
        let mut o = std::fs::OpenOptions::new();
        o.create(true);
        if append {
            o.append(true);
        } else {
            o.write(true).truncate(true);
        }
        return o.open(path);
    };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refused: not a file name",
        ));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let dir = File::open(parent)?;
    check_opened(&dir, roots)?;
    let mut flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    flags |= if append {
        OFlag::O_APPEND
    } else {
        OFlag::O_TRUNC
    };
    let fd = openat(&dir, name, flags, Mode::from_bits_truncate(0o644))?;
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the roots given: the process-wide confinement is set once and would leak into
    /// other tests.
    #[test]
    fn a_symlink_swapped_after_the_check_does_not_escape() {
        let base = std::env::temp_dir().join(format!("logflow-sandbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (ok, other) = (base.join("ok"), base.join("other"));
        std::fs::create_dir_all(ok.join("out")).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(ok.join("in"), "x").unwrap();
        std::fs::write(other.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(ok.join("in"), ok.join("inside")).unwrap();
        let roots = vec![ok.canonicalize().unwrap()];
        let r = Some(roots.as_slice());

        // Reads: a link inside is fine; swapped to point outside, refused as opened.
        open_read_in(&ok.join("inside"), r).unwrap();
        std::fs::remove_file(ok.join("inside")).unwrap();
        std::os::unix::fs::symlink(other.join("secret"), ok.join("inside")).unwrap();
        let e = open_read_in(&ok.join("inside"), r).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("other/secret"), "{e}");
        // A FIFO swapped in is refused at once, not waited on.
        nix::unistd::mkfifo(&ok.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        let e = open_read_in(&ok.join("fifo"), r).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        // Unconfined, the link is followed as the operating system does.
        open_read_in(&ok.join("inside"), None).unwrap();

        // Writes: into a directory swapped for a link outside, or onto a planted link, refused;
        // the file outside is left as it was.
        create_in(&ok.join("out/a.jsonl"), false, r).unwrap();
        std::fs::remove_dir_all(ok.join("out")).unwrap();
        std::os::unix::fs::symlink(&other, ok.join("out")).unwrap();
        let e = create_in(&ok.join("out/a.jsonl"), false, r).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(!other.join("a.jsonl").exists());
        std::os::unix::fs::symlink(other.join("secret"), ok.join("planted")).unwrap();
        assert!(create_in(&ok.join("planted"), false, r).is_err());
        assert!(create_in(&ok.join("planted"), true, r).is_err());
        assert_eq!(std::fs::read_to_string(other.join("secret")).unwrap(), "s");
        // Appending within the allowed directory works.
        use std::io::Write;
        create_in(&ok.join("b"), true, r)
            .unwrap()
            .write_all(b"1")
            .unwrap();
        create_in(&ok.join("b"), true, r)
            .unwrap()
            .write_all(b"2")
            .unwrap();
        assert_eq!(std::fs::read_to_string(ok.join("b")).unwrap(), "12");
        let _ = std::fs::remove_dir_all(&base);
    }
}
