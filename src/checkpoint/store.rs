//! A checkpoint directory: each checkpoint `epoch` is one part per worker plus a manifest that
//! makes it complete, every file written atomically (temporary file, fsync, rename, fsync of the
//! directory) with a CRC-32 of its contents, so a crash mid-write leaves either the old file or
//! the new one, never a torn one, and a corrupt or truncated file is detected when read.
//!
//! Layout (a shared directory when the workers are on several hosts):
//!
//! ```text
//! DIR/epoch-00000000000000000042/worker-0.part
//! DIR/epoch-00000000000000000042/worker-1.part
//! DIR/epoch-00000000000000000042/STOP-1        (worker 1's process was asked to stop)
//! DIR/epoch-00000000000000000042/SAVEPOINT     (a savepoint: never pruned)
//! DIR/epoch-00000000000000000042/MANIFEST      (written last: the checkpoint is complete)
//! ```
//!
//! [`Store::latest`] returns the newest complete checkpoint whose manifest and parts all
//! verify; a damaged one is skipped with a warning naming the file, and the one before it used.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::codec::MAX_FILE_BYTES;
use crate::Error;

/// Start of every checkpoint file, then a format version.
const MAGIC: &[u8; 8] = b"LFCKPT01";
/// Magic, payload length (u64 LE), CRC-32 of the payload (u32 LE).
const HEADER: usize = 8 + 8 + 4;
const MANIFEST: &str = "MANIFEST";
/// Prefix of a stop request's file (then the worker's index).
const STOP: &str = "STOP-";
/// Marks a savepoint: kept until removed by hand.
const SAVEPOINT: &str = "SAVEPOINT";

/// A checkpoint read back: its epoch, every worker's part (index = worker), and the manifest's
/// payload (e.g. source offsets).
#[derive(Debug, PartialEq, Eq)]
pub struct Loaded {
    pub epoch: u64,
    pub manifest: Vec<u8>,
    pub parts: Vec<Vec<u8>>,
    /// Newer checkpoints that were skipped, and why (corrupt, truncated, incomplete).
    pub skipped: Vec<String>,
}

/// One checkpoint of a listing ([`Store::list`]).
pub struct Listed {
    pub epoch: u64,
    /// The manifest's payload and the parts, or why the checkpoint is not a good one.
    pub read: Result<(Vec<u8>, Vec<Vec<u8>>), String>,
    /// Its files' size on disk.
    pub bytes: u64,
    pub savepoint: bool,
}

/// A checkpoint directory.
pub struct Store {
    dir: PathBuf,
}

fn epoch_dir_name(epoch: u64) -> String {
    format!("epoch-{epoch:020}")
}

/// The directory of checkpoint `epoch` in checkpoint directory `dir`.
pub fn epoch_path(dir: &Path, epoch: u64) -> PathBuf {
    dir.join(epoch_dir_name(epoch))
}

/// Frames `payload` with the header.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of a framed file, or why it is not a good one.
fn unframe(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < HEADER {
        return Err(format!(
            "truncated ({} bytes, header is {HEADER})",
            bytes.len()
        ));
    }
    if &bytes[..8] != MAGIC {
        return Err("not a logflow checkpoint file (bad magic)".into());
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[8..16]);
    let len = u64::from_le_bytes(len);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[16..20]);
    let crc = u32::from_le_bytes(crc);
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len {
        return Err(format!(
            "truncated ({} of {len} payload bytes)",
            payload.len()
        ));
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

/// A checkpoint file's bytes, at most [`MAX_FILE_BYTES`] (a damaged or planted file must not
/// make the reader allocate without bound).
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    crate::sandbox::read_bounded(path, MAX_FILE_BYTES, "a checkpoint file")
}

/// Writes `bytes` to a temporary file beside `path` (named per process and thread, as workers
/// write side by side) and syncs it; returns its path and directory.
fn write_temp<'a>(path: &'a Path, bytes: &[u8]) -> Result<(PathBuf, &'a Path), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut f = crate::sandbox::create(&tmp, false).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    Ok((tmp, dir))
}

/// Syncs a directory, so that a name just made in it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename,
/// fsync of the directory (so the rename itself survives a crash).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let (tmp, dir) = write_temp(path, bytes)?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(dir)
}

/// Like [`write_atomic`], but never replaces an existing `path`: the temporary file is linked
/// to its name, which fails if the name exists. `false`: it existed, nothing changed.
fn write_new(path: &Path, bytes: &[u8]) -> Result<bool, Error> {
    let (tmp, dir) = write_temp(path, bytes)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_dir(dir).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

impl Store {
    /// Opens (creating it if needed) a checkpoint directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Store, Error> {
        let dir = dir.into();
        crate::sandbox::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Store { dir })
    }

    /// An existing checkpoint directory, to read only (a listing creates nothing).
    pub fn existing(dir: impl Into<PathBuf>) -> Result<Store, Error> {
        let dir = dir.into();
        if !dir.is_dir() {
            return Err(Error::Usage(format!(
                "{}: not a checkpoint directory (no such directory)",
                dir.display()
            )));
        }
        Ok(Store { dir })
    }

    /// Every checkpoint in the directory, newest first: its epoch, its manifest's payload and
    /// parts (or why it is not a good checkpoint), its size on disk and whether it is a
    /// savepoint.
    pub fn list(&self) -> Result<Vec<Listed>, Error> {
        Ok(self
            .epochs()?
            .into_iter()
            .map(|epoch| {
                let bytes = fs::read_dir(self.epoch_dir(epoch))
                    .map(|entries| {
                        entries
                            .filter_map(|e| e.ok()?.metadata().ok())
                            .map(|m| m.len())
                            .sum()
                    })
                    .unwrap_or(0);
                Listed {
                    epoch,
                    read: self.read(epoch),
                    bytes,
                    savepoint: self.is_savepoint(epoch),
                }
            })
            .collect())
    }

    fn epoch_dir(&self, epoch: u64) -> PathBuf {
        self.dir.join(epoch_dir_name(epoch))
    }

    /// Writes worker `worker`'s part of checkpoint `epoch`.
    pub fn write_part(&self, epoch: u64, worker: usize, payload: &[u8]) -> Result<(), Error> {
        let dir = self.epoch_dir(epoch);
        crate::sandbox::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        write_atomic(&dir.join(format!("worker-{worker}.part")), &frame(payload))
    }

    /// Completes checkpoint `epoch` of `workers` parts (all written before) with the manifest's
    /// payload, then removes all but the newest `keep` complete checkpoints (savepoints stay,
    /// and do not count). Several workers may see the last part land at once: the first
    /// manifest stays (`false`: another was there already, and nothing was written).
    pub fn commit(
        &self,
        epoch: u64,
        workers: usize,
        payload: &[u8],
        keep: usize,
        savepoint: bool,
    ) -> Result<bool, Error> {
        if savepoint {
            // Before the manifest: a complete savepoint is never pruned.
            let dir = self.epoch_dir(epoch);
            write_atomic(&dir.join(SAVEPOINT), &frame(&[]))?;
        }
        let mut manifest = (workers as u64).to_le_bytes().to_vec();
        manifest.extend_from_slice(payload);
        let written = write_new(&self.epoch_dir(epoch).join(MANIFEST), &frame(&manifest))?;
        if written {
            self.prune(keep.max(1))?;
        }
        Ok(written)
    }

    /// Records that worker `worker`'s job was asked to stop, before it writes its part of
    /// checkpoint `epoch`: the manifest written once every part is there sees it.
    /// `savepoint`: the checkpoint is to be kept as a savepoint (whichever process writes the
    /// manifest may not have been asked yet).
    pub fn request_stop(&self, epoch: u64, worker: usize, savepoint: bool) -> Result<(), Error> {
        let dir = self.epoch_dir(epoch);
        crate::sandbox::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let payload: &[u8] = if savepoint { &[1] } else { &[] };
        write_atomic(&dir.join(format!("{STOP}{worker}")), &frame(payload))
    }

    /// Whether a stop request for checkpoint `epoch` asked for a savepoint.
    pub fn savepoint_requested(&self, epoch: u64) -> bool {
        fs::read_dir(self.epoch_dir(epoch)).is_ok_and(|entries| {
            entries.filter_map(|e| e.ok()).any(|e| {
                e.file_name().to_str().is_some_and(|n| n.starts_with(STOP))
                    && read_bounded(&e.path()).is_ok_and(|b| unframe(&b).is_ok_and(|p| p == [1]))
            })
        })
    }

    /// Whether a worker recorded a stop request for checkpoint `epoch`
    /// ([`Store::request_stop`]).
    pub fn stop_requested(&self, epoch: u64) -> bool {
        fs::read_dir(self.epoch_dir(epoch)).is_ok_and(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(STOP)))
        })
    }

    /// Whether every one of `workers` parts of checkpoint `epoch` is written.
    pub fn has_parts(&self, epoch: u64, workers: usize) -> bool {
        let dir = self.epoch_dir(epoch);
        (0..workers).all(|w| dir.join(format!("worker-{w}.part")).exists())
    }

    /// The manifest's payload of checkpoint `epoch` once it is complete (`Ok(None)`: not yet).
    pub fn manifest(&self, epoch: u64) -> Result<Option<Vec<u8>>, Error> {
        let path = self.epoch_dir(epoch).join(MANIFEST);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = read_bounded(&path)
            .map_err(|why| Error::Checkpoint(format!("{}: {why}", path.display())))?;
        let payload = unframe(&bytes)
            .map_err(|why| Error::Checkpoint(format!("{}: {why}", path.display())))?;
        Ok(payload.get(8..).map(<[u8]>::to_vec))
    }

    /// The manifest's payload of the newest complete checkpoint after `epoch`, if any.
    pub fn newest_manifest(&self, epoch: u64) -> Result<Option<Vec<u8>>, Error> {
        for e in self.epochs()?.into_iter().take_while(|e| *e > epoch) {
            if let Some(m) = self.manifest(e)? {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }

    /// Removes every checkpoint newer than `epoch` (all of them for `None`): parts left by a
    /// run that died before completing them, or damaged ones, which a restarted run would
    /// otherwise mistake for its own when it reaches the same epochs.
    pub fn discard_after(&self, epoch: Option<u64>) -> Result<Vec<u64>, Error> {
        let mut gone = Vec::new();
        for e in self.epochs()? {
            if epoch.is_none_or(|keep| e > keep) {
                let dir = self.epoch_dir(e);
                match fs::remove_dir_all(&dir) {
                    Ok(()) => gone.push(e),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => return Err(Error::io(&dir, err)),
                }
            }
        }
        Ok(gone)
    }

    /// Whether checkpoint `epoch` is a savepoint (kept until removed).
    pub fn is_savepoint(&self, epoch: u64) -> bool {
        self.epoch_dir(epoch).join(SAVEPOINT).exists()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Epochs present in the directory, newest first.
    fn epochs(&self) -> Result<Vec<u64>, Error> {
        let mut epochs: Vec<u64> = fs::read_dir(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("epoch-"))
                    .and_then(|n| n.parse().ok())
            })
            .collect();
        epochs.sort_unstable_by(|a, b| b.cmp(a));
        Ok(epochs)
    }

    /// Reads checkpoint `epoch` if it is complete and every file verifies.
    fn read(&self, epoch: u64) -> Result<(Vec<u8>, Vec<Vec<u8>>), String> {
        let dir = self.epoch_dir(epoch);
        let read = |name: &str| -> Result<Vec<u8>, String> {
            let path = dir.join(name);
            let bytes = read_bounded(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            unframe(&bytes)
                .map(<[u8]>::to_vec)
                .map_err(|why| format!("{}: {why}", path.display()))
        };
        let manifest = read(MANIFEST)?;
        if manifest.len() < 8 {
            return Err(format!("{}: no worker count", dir.join(MANIFEST).display()));
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&manifest[..8]);
        let workers = u64::from_le_bytes(n) as usize;
        let parts = (0..workers)
            .map(|w| read(&format!("worker-{w}.part")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((manifest[8..].to_vec(), parts))
    }

    /// The newest checkpoint that is complete and verifies; older ones stand in for damaged
    /// ones (each named in `skipped`). `None` when there is no good checkpoint at all.
    pub fn latest(&self) -> Result<Option<Loaded>, Error> {
        let mut skipped = Vec::new();
        for epoch in self.epochs()? {
            match self.read(epoch) {
                Ok((manifest, parts)) => {
                    return Ok(Some(Loaded {
                        epoch,
                        manifest,
                        parts,
                        skipped,
                    }))
                }
                Err(why) => skipped.push(format!("checkpoint {epoch} skipped: {why}")),
            }
        }
        Ok(None)
    }

    /// Removes every checkpoint older than the newest `keep` that verify, and incomplete ones
    /// older than those (a crash mid-checkpoint leaves one behind).
    fn prune(&self, keep: usize) -> Result<(), Error> {
        let mut good = 0;
        for epoch in self.epochs()? {
            if self.is_savepoint(epoch) {
                continue;
            }
            if good >= keep {
                let dir = self.epoch_dir(epoch);
                fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            } else if self.read(epoch).is_ok() {
                good += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("logflow-ckpt-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn checkpoint(s: &Store, epoch: u64, keep: usize) {
        for w in 0..2 {
            s.write_part(epoch, w, format!("state {epoch}/{w}").as_bytes())
                .unwrap();
        }
        s.commit(epoch, 2, format!("offsets {epoch}").as_bytes(), keep, false)
            .unwrap();
    }

    #[test]
    fn a_stop_request_is_seen_for_its_checkpoint_only_and_is_not_a_part() {
        let d = tmp("stop");
        let s = Store::open(&d).unwrap();
        assert!(!s.stop_requested(5), "no directory yet");
        s.request_stop(5, 1, false).unwrap();
        assert!(!s.savepoint_requested(5));
        assert!(s.stop_requested(5));
        assert!(!s.stop_requested(6));
        checkpoint(&s, 5, 3);
        let l = s.latest().unwrap().unwrap();
        assert_eq!((l.epoch, l.parts.len()), (5, 2));
        assert!(l.skipped.is_empty(), "{:?}", l.skipped);
        // A request recorded for a checkpoint that never completed goes with it.
        s.request_stop(6, 0, true).unwrap();
        assert!(s.savepoint_requested(6) && !s.savepoint_requested(5));
        assert_eq!(s.discard_after(Some(5)).unwrap(), [6]);
        assert!(!s.stop_requested(6));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_newest_complete_checkpoint_is_read_back() {
        let d = tmp("newest");
        let s = Store::open(&d).unwrap();
        assert_eq!(s.latest().unwrap(), None);
        checkpoint(&s, 1, 3);
        checkpoint(&s, 2, 3);
        // Epoch 3 never completed (a crash before its manifest): ignored.
        s.write_part(3, 0, b"partial").unwrap();
        let l = s.latest().unwrap().unwrap();
        assert_eq!(l.epoch, 2);
        assert_eq!(l.manifest, b"offsets 2");
        assert_eq!(l.parts, vec![b"state 2/0".to_vec(), b"state 2/1".to_vec()]);
        assert_eq!(l.skipped.len(), 1, "{:?}", l.skipped);
        assert!(l.skipped[0].contains("MANIFEST"), "{:?}", l.skipped);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_checkpoint_falls_back_to_the_one_before() {
        let d = tmp("damaged");
        let s = Store::open(&d).unwrap();
        checkpoint(&s, 7, 3);
        checkpoint(&s, 8, 3);
        let part = d.join(epoch_dir_name(8)).join("worker-1.part");
        // A flipped byte: checksum mismatch.
        let mut bytes = fs::read(&part).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        fs::write(&part, &bytes).unwrap();
        let l = s.latest().unwrap().unwrap();
        assert_eq!(l.epoch, 7);
        assert!(
            l.skipped[0].contains("checksum mismatch"),
            "{:?}",
            l.skipped
        );
        assert!(l.skipped[0].contains("worker-1.part"), "{:?}", l.skipped);
        // Truncated: named as such.
        fs::write(&part, &bytes[..HEADER + 3]).unwrap();
        let l = s.latest().unwrap().unwrap();
        assert_eq!(l.epoch, 7);
        assert!(l.skipped[0].contains("truncated"), "{:?}", l.skipped);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn only_the_newest_good_checkpoints_are_kept() {
        let d = tmp("prune");
        let s = Store::open(&d).unwrap();
        for e in 1..=5 {
            checkpoint(&s, e, 2);
        }
        assert_eq!(s.epochs().unwrap(), vec![5, 4]);
        // A damaged newest one does not count: the two good ones before it stay.
        let part = d.join(epoch_dir_name(5)).join("worker-0.part");
        fs::write(&part, b"garbage").unwrap();
        checkpoint(&s, 6, 2);
        assert_eq!(s.epochs().unwrap(), vec![6, 5, 4]);
        assert_eq!(s.latest().unwrap().unwrap().epoch, 6);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn savepoints_outlive_keep_and_do_not_count() {
        let d = tmp("savepoint");
        let s = Store::open(&d).unwrap();
        checkpoint(&s, 1, 2);
        for w in 0..2 {
            s.write_part(2, w, b"state").unwrap();
        }
        s.commit(2, 2, b"offsets 2", 2, true).unwrap();
        for e in 3..=6 {
            checkpoint(&s, e, 2);
        }
        assert_eq!(s.epochs().unwrap(), vec![6, 5, 2]);
        assert!(s.is_savepoint(2) && !s.is_savepoint(6));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn frames_reject_other_files() {
        assert!(unframe(b"LFCKPT01").unwrap_err().contains("truncated"));
        assert!(unframe(&[0u8; 40]).unwrap_err().contains("magic"));
        assert_eq!(unframe(&frame(b"x")).unwrap(), b"x");
    }

    #[test]
    fn a_damaged_length_field_is_rejected_with_the_reason() {
        let d = tmp("length");
        let s = Store::open(&d).unwrap();
        checkpoint(&s, 1, 3);
        checkpoint(&s, 2, 3);
        let part = d.join(epoch_dir_name(2)).join("worker-0.part");
        let good = fs::read(&part).unwrap();
        for claimed in [u64::MAX, 1 << 40, 3] {
            let mut bytes = good.clone();
            bytes[8..16].copy_from_slice(&claimed.to_le_bytes());
            fs::write(&part, &bytes).unwrap();
            let l = s.latest().unwrap().unwrap();
            assert_eq!(l.epoch, 1, "{claimed}");
            let want = format!(
                "truncated ({} of {claimed} payload bytes)",
                good.len() - HEADER
            );
            assert!(l.skipped[0].ends_with(&want), "{:?}", l.skipped);
        }
        let _ = fs::remove_dir_all(&d);
    }

    mod properties {
        use super::*;
        use crate::record::Value;
        use proptest::prelude::*;

        /// The shape of a restored operator state: keys, times and accumulated bytes.
        type State = Vec<(Vec<Value>, u64, Vec<u8>)>;

        fn value() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<i64>().prop_map(Value::Int),
                any::<f64>().prop_map(Value::Float),
                "[a-z0-9.]{0,12}".prop_map(|s| Value::Str(s.as_str().into())),
            ]
        }

        proptest! {
            #![proptest_config(crate::checkpoint::codec::proptest_config())]

            #[test]
            fn garbage_files_are_rejected_without_a_panic(
                bytes in prop::collection::vec(any::<u8>(), 0..96),
                magic in any::<bool>(),
            ) {
                let mut bytes = bytes;
                if magic && bytes.len() >= 8 {
                    bytes[..8].copy_from_slice(MAGIC);
                }
                if let Ok(payload) = unframe(&bytes) {
                    // Only a frame whose length and checksum agree passes.
                    prop_assert_eq!(frame(payload), bytes.clone());
                }
                let _ = crate::checkpoint::codec::decode::<State>(&bytes);
            }

            #[test]
            fn states_round_trip_and_every_bit_flip_is_caught(
                state in prop::collection::vec(
                    (prop::collection::vec(value(), 0..3), any::<u64>(), prop::collection::vec(any::<u8>(), 0..16)),
                    0..8,
                ),
                flip in any::<usize>(),
            ) {
                let payload = crate::checkpoint::codec::encode(&state).unwrap();
                let framed = frame(&payload);
                let back: State =
                    crate::checkpoint::codec::decode(unframe(&framed).unwrap()).unwrap();
                // Floats compare by bits (NaN), through their encoding.
                prop_assert_eq!(crate::checkpoint::codec::encode(&back).unwrap(), payload);
                let bit = flip % (framed.len() * 8);
                let mut damaged = framed.clone();
                damaged[bit / 8] ^= 1 << (bit % 8);
                prop_assert!(unframe(&damaged).is_err(), "bit {} passed", bit);
            }

            #[test]
            fn damaged_states_decode_or_fail_cleanly(
                state in prop::collection::vec((prop::collection::vec(value(), 0..3), any::<u64>(), prop::collection::vec(any::<u8>(), 0..16)), 0..8),
                at in any::<usize>(),
                byte in any::<u8>(),
            ) {
                // A forged state under a valid checksum: decoding bounds every length by the
                // bytes present.
                let mut payload = crate::checkpoint::codec::encode(&state).unwrap();
                if !payload.is_empty() {
                    let i = at % payload.len();
                    payload[i] = byte;
                }
                let _ = crate::checkpoint::codec::decode::<State>(&payload);
            }
        }
    }
}
