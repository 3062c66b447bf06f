//! The directories a submitted job may read and write (`cluster start --allow-dir`, default:
//! the directory the cluster was started in). Every path a job names (input, directory
//! source, output directory, lookup tables, checkpoint directory) must resolve, as the
//! operating system resolves it (`..` and symlinks followed), to a place under one of them.
//!
//! The check runs at submission, before any worker opens anything. A symlink swapped in
//! between the check and the open is not caught: the allowed directories are the operator's,
//! so whoever can write there is trusted as far as they are.

use std::path::{Component, Path, PathBuf};

use crate::spec::plan::{FileConfig, JobPlan, SinkConfig, SourceConfig};
use crate::Error;

#[derive(Clone, Debug)]
pub struct AllowDirs(Vec<PathBuf>);

impl AllowDirs {
    /// `dirs` resolved (each must be a directory); none: the current directory.
    pub fn new(dirs: &[PathBuf]) -> Result<AllowDirs, Error> {
        let dirs = if dirs.is_empty() {
            vec![std::env::current_dir().map_err(|e| Error::io(".", e))?]
        } else {
            dirs.to_vec()
        };
        let mut roots = Vec::new();
        for d in dirs {
            let root = d.canonicalize().map_err(|e| Error::io(&d, e))?;
            if !root.is_dir() {
                return Err(Error::Usage(format!(
                    "--allow-dir {}: not a directory",
                    d.display()
                )));
            }
            roots.push(root);
        }
        Ok(AllowDirs(roots))
    }

    /// Refuses `path` (named `what` in the error) unless it resolves under an allowed
    /// directory. A path that does not exist yet (an output directory) is judged by its
    /// nearest existing ancestor, and the rest of it must not climb out with `..`.
    pub fn check(&self, what: &str, path: &Path) -> Result<(), Error> {
        let refuse = |why: &str| {
            Error::Usage(format!(
                "{what} `{}`: {why}; a job may use only files under {} (cluster start --allow-dir)",
                path.display(),
                self.describe()
            ))
        };
        let absolute = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
        let mut existing = absolute.as_path();
        let mut rest = Vec::new();
        // symlink_metadata: a dangling symlink exists here, and resolving it fails below
        // instead of letting the job create its target wherever it points.
        while existing.symlink_metadata().is_err() {
            match (existing.components().next_back(), existing.parent()) {
                (Some(Component::Normal(name)), Some(parent)) => {
                    rest.push(name.to_owned());
                    existing = parent;
                }
                // `..` after a part that does not exist: the OS would refuse it, a mkdir -p
                // would not.
                (Some(Component::ParentDir), _) => return Err(refuse("it climbs out with `..`")),
                _ => return Err(refuse("no part of it exists")),
            }
        }
        let mut resolved = existing
            .canonicalize()
            .map_err(|_| refuse("it cannot be resolved (a dangling symlink?)"))?;
        resolved.extend(rest.iter().rev());
        if self.0.iter().any(|root| resolved.starts_with(root)) {
            Ok(())
        } else if resolved == absolute {
            Err(refuse("outside the allowed directories"))
        } else {
            Err(refuse(&format!(
                "it resolves to `{}` (through `..` or a symlink), outside the allowed directories",
                resolved.display()
            )))
        }
    }

    /// Checks every file and directory `plan` reads or writes.
    pub fn check_plan(&self, plan: &JobPlan) -> Result<(), Error> {
        match &plan.source.kind {
            SourceConfig::File(FileConfig { path }) if path != "-" => {
                self.check("input", Path::new(path))?
            }
            SourceConfig::Directory(d) => self.check("source directory", Path::new(&d.path))?,
            _ => {}
        }
        if let SinkConfig::Files { dir } = &plan.sink {
            self.check("output directory", Path::new(dir))?;
        }
        for l in &plan.lookups {
            self.check(&format!("lookup `{}`", l.name), &l.path)?;
        }
        if let Some(c) = &plan.checkpoint {
            self.check("checkpoint directory", Path::new(&c.dir))?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let names: Vec<String> = self.0.iter().map(|r| r.display().to_string()).collect();
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_or_escaping_the_allowed_directories_are_refused() {
        let base = std::env::temp_dir().join(format!("logflow-confine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (ok, other) = (base.join("ok"), base.join("other"));
        std::fs::create_dir_all(ok.join("sub")).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(ok.join("in.log"), "x").unwrap();
        std::fs::write(other.join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(other.join("secret"), ok.join("link")).unwrap();
        std::os::unix::fs::symlink(&other, ok.join("dirlink")).unwrap();
        std::os::unix::fs::symlink(other.join("nothing"), ok.join("dangling")).unwrap();
        std::os::unix::fs::symlink(ok.join("in.log"), ok.join("inside-link")).unwrap();
        let allow = AllowDirs::new(std::slice::from_ref(&ok)).unwrap();

        for fine in [
            "in.log",
            "sub",
            "new/deeper/out",
            "inside-link",
            "sub/../in.log",
        ] {
            allow.check("input", &ok.join(fine)).unwrap();
        }
        for (bad, why) in [
            (other.join("secret"), "outside"),
            (ok.join("../other/secret"), "resolves to"),
            (ok.join("link"), "resolves to"),
            (ok.join("dirlink/new-out"), "resolves to"),
            (ok.join("dangling"), "dangling"),
            (ok.join("new/../../other/x"), "climbs out"),
            (PathBuf::from("/proc/self/environ"), "outside"),
        ] {
            let e = allow.check("input", &bad).unwrap_err();
            let msg = e.to_string();
            assert_eq!(e.exit_code(), 2, "{msg}");
            assert!(msg.contains(&bad.display().to_string()), "{msg}");
            assert!(msg.contains(why), "{msg}");
        }
        let _ = std::fs::remove_dir_all(&base);
    }
}
