//! Crash-safe file output.
//!
//! Every file `pki` writes goes to a temporary file and is then renamed over
//! the target, so an interrupted run never leaves a truncated key or
//! certificate behind: a file is either whole or absent. Secret files are
//! created with mode 0600 from the start (never chmod-ed after the fact), and
//! their directories with 0700.
//!
//! A run that writes many files (`pki chain new`, `pki device new`) uses a
//! [`Staging`] batch: every file is written into a private directory first,
//! and only when all of them are written are they renamed into place. A run
//! that fails half-way (a bad password, a full disk, a directory where a key
//! should go) therefore leaves the existing CA and devices untouched.
//!
//! A batch keeps no list of its files, so a million devices stage in flat
//! memory: a file bound for `<base>/certs/x.pem` is staged as
//! `<lane>/certs/x.pem`, and the commit walks the lanes to find them.
//!
//! Durability (surviving power loss, not just interruption) costs an fsync.
//! Single files get one each; a batch is flushed once with `syncfs`, because
//! an fsync per file made 1000 devices take 2.6 s instead of 0.2 s.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Who may read a file we write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Certificates and other public material: 0644.
    Public,
    /// Private keys, PFX files and other secrets: 0600.
    Secret,
}

impl Mode {
    #[cfg(unix)]
    fn bits(self) -> u32 {
        match self {
            Mode::Public => 0o644,
            Mode::Secret => 0o600,
        }
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `data` to `path` atomically (temp file + fsync + rename).
pub fn write_atomic(path: &Path, data: &[u8], mode: Mode) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::input(format!("{} is not a file name", path.display())))?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_new(&tmp, data, mode, true).and_then(|()| fs::rename(&tmp, path));
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

/// Creates `path` (which must not exist) with `mode` and writes `data`.
fn write_new(path: &Path, data: &[u8], mode: Mode, fsync: bool) -> std::io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode.bits());
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    if fsync {
        f.sync_all()?;
    }
    Ok(())
}

/// Files that appear together or not at all (see the module docs).
///
/// Writes go into a 0700 directory under `base` (so on the same file
/// system as their destinations); [`Staging::commit`] renames them into
/// place. Dropping an uncommitted batch deletes what it staged.
///
/// Each writer thread gets its own subdirectory: file creation takes the
/// directory's lock, and one shared directory made two threads spend most
/// of their time spinning on it (`rwsem_spin_on_owner` in a profile).
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    lanes: Vec<PathBuf>,
    base: PathBuf,
    moves: Mutex<Vec<(PathBuf, PathBuf)>>,
    committed: bool,
}

impl Staging {
    /// Starts a batch for files under `base`, first clearing the staging
    /// directories of earlier runs that were killed (their process is gone).
    pub fn new(base: &Path) -> Result<Staging> {
        remove_abandoned(base);
        let dir = base.join(format!(
            ".pki-staging-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let lanes: Vec<PathBuf> = (0..std::thread::available_parallelism().map_or(1, |n| n.get()))
            .map(|i| dir.join(i.to_string()))
            .collect();
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&dir).map_err(|source| Error::Write {
            path: dir.clone(),
            source,
        })?;
        // From here on, Drop cleans up whatever was created.
        let staging = Staging {
            dir,
            lanes,
            base: base.to_path_buf(),
            moves: Mutex::new(Vec::new()),
            committed: false,
        };
        for lane in &staging.lanes {
            builder.create(lane).map_err(|source| Error::Write {
                path: lane.clone(),
                source,
            })?;
        }
        Ok(staging)
    }

    /// This thread's staging subdirectory: threads take lanes in turn.
    fn lane(&self) -> &Path {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        thread_local! {
            static TICKET: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        let n = self.lanes.len().max(1) as u64;
        let i = TICKET.with(|t| *t % n) as usize;
        self.lanes
            .get(i)
            .map_or(self.dir.as_path(), PathBuf::as_path)
    }

    /// Stages `data` for `dest` (safe to call from several threads).
    pub fn write(&self, dest: &Path, data: &[u8], mode: Mode) -> Result<()> {
        let werr = |source| Error::Write {
            path: dest.to_path_buf(),
            source,
        };
        // Under the base, the staged path mirrors the destination and needs
        // no record. Elsewhere, or when this batch already staged `dest`
        // (the later write wins, as the list keeps it later), it is listed.
        if let Ok(rel) = dest.strip_prefix(&self.base)
            && rel.file_name().is_some()
        {
            let tmp = self.lane().join(rel);
            let mut result = write_new(&tmp, data, mode, false);
            if let (Err(e), Some(parent)) = (&result, tmp.parent())
                && e.kind() == std::io::ErrorKind::NotFound
            {
                // The first file of this directory in this lane.
                let mut builder = fs::DirBuilder::new();
                builder.recursive(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::DirBuilderExt;
                    builder.mode(0o700);
                }
                builder.create(parent).map_err(werr)?;
                result = write_new(&tmp, data, mode, false);
            }
            match result {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                other => return other.map_err(werr),
            }
        }
        let tmp = self.listed_path();
        write_new(&tmp, data, mode, false).map_err(werr)?;
        self.record(tmp, dest)
    }

    /// Creates a staged file for `dest` to be written in pieces; it is moved
    /// into place after every [`Staging::write`] file, so a manifest lands
    /// last. Safe to call from several threads.
    pub fn create(&self, dest: &Path, mode: Mode) -> Result<fs::File> {
        let tmp = self.listed_path();
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode.bits());
        }
        let file = opts.open(&tmp).map_err(|source| Error::Write {
            path: dest.to_path_buf(),
            source,
        })?;
        self.record(tmp, dest)?;
        Ok(file)
    }

    /// A fresh name for a listed file, beside (never clashing with) the lanes.
    fn listed_path(&self) -> PathBuf {
        self.dir
            .join(format!("f{}", COUNTER.fetch_add(1, Ordering::Relaxed)))
    }

    fn record(&self, tmp: PathBuf, dest: &Path) -> Result<()> {
        self.moves
            .lock()
            .map_err(|_| Error::failed("a writer thread panicked"))?
            .push((tmp, dest.to_path_buf()));
        Ok(())
    }

    /// Calls `f(staged, destination)` for every file staged in the lanes.
    ///
    /// Reads each directory again after a pass, until a pass finds nothing
    /// to do or `f` leaves the files alone: whether readdir returns every
    /// entry while `f` renames entries out of the directory is unspecified.
    fn each_laned(
        &self,
        f: &mut dyn FnMut(&Path, &Path) -> Result<()>,
        moving: bool,
    ) -> Result<()> {
        fn walk(
            dir: &Path,
            dest: &Path,
            f: &mut dyn FnMut(&Path, &Path) -> Result<()>,
            moving: bool,
        ) -> Result<()> {
            loop {
                let entries = match fs::read_dir(dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(source) => {
                        return Err(Error::Write {
                            path: dir.to_path_buf(),
                            source,
                        });
                    }
                };
                let mut files = 0usize;
                for entry in entries {
                    let entry = entry.map_err(|source| Error::Write {
                        path: dir.to_path_buf(),
                        source,
                    })?;
                    let (from, to) = (entry.path(), dest.join(entry.file_name()));
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        walk(&from, &to, f, moving)?;
                    } else {
                        files += 1;
                        f(&from, &to)?;
                    }
                }
                if files == 0 || !moving {
                    return Ok(());
                }
            }
        }
        for lane in &self.lanes {
            walk(lane, &self.base, f, moving)?;
        }
        Ok(())
    }

    /// Moves every staged file into place and flushes them to disk.
    ///
    /// Destinations are checked first, so the usual reasons a rename fails
    /// (a directory in the way) stop the batch before anything is replaced.
    pub fn commit(mut self) -> Result<()> {
        let moves = std::mem::take(
            &mut *self
                .moves
                .lock()
                .map_err(|_| Error::failed("a writer thread panicked"))?,
        );
        let in_the_way = |dest: &Path| {
            Error::input(format!(
                "{} is a directory, where pki needs to write a file; move it away and run again",
                dest.display()
            ))
        };
        if let Some((_, dest)) = moves.iter().find(|(_, d)| d.is_dir()) {
            return Err(in_the_way(dest));
        }
        self.each_laned(
            &mut |_, dest| {
                if dest.is_dir() {
                    return Err(in_the_way(dest));
                }
                Ok(())
            },
            false,
        )?;
        self.each_laned(
            &mut |tmp, dest| {
                fs::rename(tmp, dest).map_err(|source| Error::Write {
                    path: dest.to_path_buf(),
                    source,
                })
            },
            true,
        )?;
        for (tmp, dest) in &moves {
            fs::rename(tmp, dest).map_err(|source| Error::Write {
                path: dest.clone(),
                source,
            })?;
        }
        self.committed = true;
        let _ = fs::remove_dir_all(&self.dir);
        sync_dir(&self.base)
    }
}

/// Deletes `.pki-staging-<pid>-<n>` directories under `base` whose process no
/// longer runs (a run killed with SIGKILL cannot clean up after itself).
fn remove_abandoned(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(".pki-staging-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        // Without /proc (not Linux) we cannot tell: leave it alone.
        if !alive && Path::new("/proc/self").exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Flushes the filesystem holding `dir` to disk (syncfs on Linux; an fsync
/// of the directory elsewhere), completing a [`Staging`] batch.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let werr = |source| Error::Write {
        path: dir.to_path_buf(),
        source,
    };
    let d = fs::File::open(dir).map_err(werr)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs only reads the file descriptor, which `d` keeps open.
        if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
            return Err(werr(std::io::Error::last_os_error()));
        }
    }
    #[cfg(not(target_os = "linux"))]
    d.sync_all().map_err(werr)?;
    Ok(())
}

/// Creates `dir` (and its parents) if needed; `Mode::Secret` directories get 0700.
pub fn ensure_dir(dir: &Path, mode: Mode) -> Result<()> {
    let werr = |source| Error::Write {
        path: dir.to_path_buf(),
        source,
    };
    if let Some(file) = dir.ancestors().find(|a| a.is_file()) {
        return Err(Error::input(format!(
            "{} is a file, not a directory; pass a directory (it is created if missing)",
            file.display()
        )));
    }
    fs::create_dir_all(dir).map_err(werr)?;
    #[cfg(unix)]
    if mode == Mode::Secret {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(werr)?;
    }
    Ok(())
}

/// Largest input file `pki` reads: certificates, keys and bundles are
/// kilobytes; anything this big is the wrong file (or /dev/zero).
pub const MAX_INPUT: u64 = 16 * 1024 * 1024;

/// Reads a file the user named; a failure is an input error (exit code 2).
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    let file = fs::File::open(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    read_bounded(file, path)
}

/// Reads a file, or standard input when `path` is `-`.
pub fn read_input_or_stdin(path: &Path) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        read_bounded(std::io::stdin(), path)
    } else {
        read_input(path)
    }
}

fn read_bounded(source: impl std::io::Read, path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut source.take(MAX_INPUT + 1), &mut buf).map_err(|source| {
        Error::Read {
            path: path.to_path_buf(),
            source,
        }
    })?;
    if buf.len() as u64 > MAX_INPUT {
        return Err(Error::input(format!(
            "{} is larger than {} MiB; pass a certificate, key or PEM bundle file",
            path.display(),
            MAX_INPUT / (1024 * 1024)
        )));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_0600_and_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        write_atomic(&p, b"one", Mode::Secret).unwrap();
        write_atomic(&p, b"two", Mode::Secret).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        // No temp files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_uncommitted_batch_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.pem");
        {
            let staging = Staging::new(dir.path()).unwrap();
            staging.write(&dest, b"new", Mode::Public).unwrap();
            // Dropped without commit: as if a later step failed.
        }
        assert!(!dest.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let staging = Staging::new(dir.path()).unwrap();
        staging.write(&dest, b"new", Mode::Secret).unwrap();
        staging.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn staging_left_by_a_killed_run_is_cleared() {
        let dir = tempfile::tempdir().unwrap();
        // pid 0 never names a user process.
        let stale = dir.path().join(".pki-staging-0-7");
        fs::create_dir_all(stale.join("0")).unwrap();
        fs::write(stale.join("0/1"), b"half a key").unwrap();
        let staging = Staging::new(dir.path()).unwrap();
        assert!(!stale.exists());
        staging.commit().unwrap();
    }
}
