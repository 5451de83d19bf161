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
//! A batch keeps no list of its files while staging, so a million devices
//! stage in flat memory: a file bound for `<base>/certs/x.pem` is staged as
//! `<lane>/certs/x.pem`, and the commit walks the lanes to find them (the
//! commit's journal then lists every file, as crash recovery needs).
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
    moves: Mutex<Vec<(Option<PathBuf>, PathBuf)>>,
    committed: bool,
}

/// The journal of a commit in progress (`<base>/.pki-journal.json`): what
/// moves where and where each replaced file was put aside, so the next run
/// rolls an interrupted commit back (or, once `committed`, forward).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Journal {
    /// The staging directory (holds the new files and the backups).
    dir: PathBuf,
    /// Every step, in order.
    moves: Vec<JournalMove>,
    /// Set once every new file is in place: only cleanup remains.
    committed: bool,
}

/// The journal without its steps.
#[derive(serde::Deserialize)]
struct JournalHead {
    dir: PathBuf,
    committed: bool,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct JournalMove {
    /// The staged file (`None`: the destination is only removed).
    tmp: Option<PathBuf>,
    /// Where it goes.
    dest: PathBuf,
    /// Where the file it replaces was put aside, if there was one.
    backup: Option<PathBuf>,
}

const JOURNAL: &str = ".pki-journal.json";

/// Test-only fault injection, documented here so nobody sets it by accident:
/// `PKI_TEST_FAIL_AT_RENAME=N` makes the Nth rename of a commit fail (the
/// commit rolls back in process), `PKI_TEST_CRASH_AT_RENAME=N` ends the
/// process before it, as a kill -9 would (the next run rolls back). The
/// kill-point sweep in tests/issue13.rs uses them.
fn injected_fault(n: usize) -> std::io::Result<()> {
    // Read once per process (tests set them on the child): two getenv
    // calls per rename were a visible share of a bulk commit.
    static AT: std::sync::OnceLock<(Option<usize>, Option<usize>)> = std::sync::OnceLock::new();
    let (crash, fail) = *AT.get_or_init(|| {
        let at = |var: &str| {
            std::env::var(var)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
        };
        (
            at("PKI_TEST_CRASH_AT_RENAME"),
            at("PKI_TEST_FAIL_AT_RENAME"),
        )
    });
    if crash == Some(n) {
        std::process::exit(86);
    }
    if fail == Some(n) {
        return Err(std::io::Error::other(
            "injected failure (PKI_TEST_FAIL_AT_RENAME)",
        ));
    }
    Ok(())
}

/// Finishes a commit an earlier run left half done (killed, power lost):
/// rolls it back to the complete old state, or forward when every new file
/// was already in place. Called before a run looks at the directory.
pub fn recover(base: &Path) -> Result<()> {
    if !base.is_dir() {
        // Nothing was ever committed there (or it is a file: refused later).
        return Ok(());
    }
    let path = base.join(JOURNAL);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(Error::Read { path, source }),
    };
    let damaged = |e: serde_json::Error| {
        Error::input(format!(
            "{} is damaged ({e}); it records an interrupted pki run: check the directory by hand, then delete it",
            path.display()
        ))
    };
    // A committed journal needs only cleaning up: its steps (one per file
    // of the batch) are skipped, not parsed into memory.
    let head: JournalHead = serde_json::from_slice(&data).map_err(damaged)?;
    let journal: Journal = if head.committed {
        Journal {
            dir: head.dir,
            moves: Vec::new(),
            committed: true,
        }
    } else {
        serde_json::from_slice(&data).map_err(damaged)?
    };
    drop(data);
    let werr = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Write { path: p, source }
    };
    if !journal.committed {
        for m in journal.moves.iter().rev() {
            let dest = base.join(&m.dest);
            // Undo "new file moved in": the staged file is gone and the
            // destination is the new one.
            if let Some(tmp) = m.tmp.as_ref().map(|t| base.join(t))
                && !tmp.exists()
                && dest.exists()
            {
                fs::rename(&dest, &tmp).map_err(werr(&dest))?;
            }
            // Undo "old file put aside".
            if let Some(b) = m.backup.as_ref().map(|b| base.join(b))
                && b.exists()
            {
                fs::rename(&b, &dest).map_err(werr(&dest))?;
            }
        }
    }
    let _ = fs::remove_dir_all(base.join(&journal.dir));
    fs::remove_file(&path).map_err(werr(&path))?;
    sync_dir(base)
}

impl Staging {
    /// Starts a batch for files under `base`, first clearing the staging
    /// directories of earlier runs that were killed (their process is gone).
    pub fn new(base: &Path) -> Result<Staging> {
        recover(base)?;
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
        if let Some(rel) = below(&self.base, dest)
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
            .push((Some(tmp), dest.to_path_buf()));
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

    /// Removes `dest` as part of the batch (if it exists at commit time).
    pub fn remove(&self, dest: &Path) -> Result<()> {
        self.moves
            .lock()
            .map_err(|_| Error::failed("a writer thread panicked"))?
            .push((None, dest.to_path_buf()));
        Ok(())
    }

    /// Moves every staged file into place and flushes them to disk, all or
    /// nothing, even across a crash.
    ///
    /// Destinations are checked first (a directory in the way, a directory
    /// that is not writable), so the usual reasons a rename fails stop the
    /// batch before anything is replaced. Then a journal is written, each
    /// file being replaced is put aside into the staging directory, and the
    /// new files are moved in. A failure rolls back at once; a kill leaves
    /// the journal, and the next run ([`recover`]) rolls back.
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
        // Paths relative to `base`, so any process can recover, whatever
        // its working directory.
        let rel = |p: &Path| below(&self.base, p).unwrap_or(p).to_path_buf();
        let old = self.dir.join("old");
        // The journal's steps are made straight from the lanes (staged under
        // a mirror of their destination, with no list kept while staging),
        // one small entry per file; listed files come after them, so a later
        // write of the same destination wins.
        let mut journal = Journal {
            dir: rel(&self.dir),
            moves: Vec::new(),
            committed: false,
        };
        let mut dirs: std::collections::BTreeSet<PathBuf> = std::collections::BTreeSet::new();
        // Files come directory by directory: the last parent seen spares
        // most lookups in `dirs`.
        let mut last_parent = PathBuf::new();
        let mut step = |tmp: Option<&Path>, dest: &Path, journal: &mut Journal| -> Result<()> {
            // One stat answers both "is it a directory" and "does it exist"
            // (both follow symlinks, as `is_dir` and `exists` did).
            let found = fs::metadata(dest).ok();
            if found.as_ref().is_some_and(fs::Metadata::is_dir) {
                return Err(in_the_way(dest));
            }
            if let Some(parent) = dest.parent()
                && parent.as_os_str() != last_parent.as_os_str()
            {
                if !dirs.contains(parent) {
                    dirs.insert(parent.to_path_buf());
                }
                parent.clone_into(&mut last_parent);
            }
            let i = journal.moves.len();
            journal.moves.push(JournalMove {
                tmp: tmp.map(rel),
                dest: rel(dest),
                backup: found.map(|_| rel(&old.join(i.to_string()))),
            });
            Ok(())
        };
        self.each_laned(&mut |tmp, dest| step(Some(tmp), dest, &mut journal), false)?;
        for (tmp, dest) in &moves {
            step(tmp.as_deref(), dest, &mut journal)?;
        }
        drop(moves);
        for d in &dirs {
            check_writable(d)?;
        }
        fs::create_dir(&old).map_err(|source| Error::Write {
            path: old.clone(),
            source,
        })?;
        let journal_path = self.base.join(JOURNAL);
        write_journal(&journal_path, &journal)?;
        if let Err(e) = apply(&self.base, &journal) {
            // Put everything back now; recover() does the same after a kill.
            recover(&self.base)?;
            self.committed = true;
            return Err(e);
        }
        journal.committed = true;
        // A committed journal is only cleaned up (`recover` reads its head,
        // never its steps), so the steps are not written a second time.
        journal.moves = Vec::new();
        write_journal(&journal_path, &journal)?;
        drop(journal);
        self.committed = true;
        recover(&self.base)
    }
}

/// `p` relative to `base`, `None` when it is not below it. Paths made by
/// joining onto `base` start with its bytes: testing that skips
/// `strip_prefix`'s component walk, which runs for every file of a bulk
/// batch (twice at commit); anything unusual takes the general path.
fn below<'a>(base: &Path, p: &'a Path) -> Option<&'a Path> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        // (An empty base is a prefix of every path, relative or not.)
        if !base.as_os_str().is_empty()
            && let Some(rest) = p
                .as_os_str()
                .as_bytes()
                .strip_prefix(base.as_os_str().as_bytes())
            && let Some(rest) = rest.strip_prefix(b"/")
            && !rest.is_empty()
            && !rest.starts_with(b"/")
            && !rest.starts_with(b"./")
        {
            return Some(Path::new(std::ffi::OsStr::from_bytes(rest)));
        }
    }
    p.strip_prefix(base).ok()
}

/// The renames of a commit: put every replaced file aside, then move every
/// new file in.
fn apply(base: &Path, journal: &Journal) -> Result<()> {
    let mut n = 0;
    let mut rename = |from: &Path, to: &Path| {
        n += 1;
        injected_fault(n)
            .and_then(|()| fs::rename(from, to))
            .map_err(|source| Error::Write {
                path: to.to_path_buf(),
                source,
            })
    };
    for m in &journal.moves {
        if let Some(b) = &m.backup {
            rename(&base.join(&m.dest), &base.join(b))?;
        }
    }
    for m in &journal.moves {
        if let Some(tmp) = &m.tmp {
            rename(&base.join(tmp), &base.join(&m.dest))?;
        }
    }
    Ok(())
}

/// Writes the journal atomically, encoded straight into the file: a
/// million-file journal is never held as one buffer.
fn write_journal(path: &Path, journal: &Journal) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        "{}.tmp-{}-{}",
        JOURNAL,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let werr = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let written = (|| -> std::io::Result<()> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let mut out = std::io::BufWriter::new(file);
        serde_json::to_writer(&mut out, journal).map_err(std::io::Error::other)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        return Err(werr(source));
    }
    sync_dir(dir)
}

/// Refuses a directory this process cannot create files in, before the
/// first rename (e.g. a read-only `certs/` beside a writable `private/`).
fn check_writable(dir: &Path) -> Result<()> {
    // A probe file rather than access(2): it needs no unsafe code and it
    // also catches what access(2) does not (a read-only mount, an ACL).
    let probe = dir.join(format!(".pki-write-probe-{}", std::process::id()));
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Left by a killed run of this very pid number: the directory
            // is writable, since the file got there.
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(_) => Err(Error::input(format!(
            "{} is not writable, so pki cannot replace files in it; nothing was changed: fix its permissions and run again",
            dir.display()
        ))),
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
        // The crate's one unsafe block (Cargo.toml denies unsafe_code elsewhere).
        #[allow(unsafe_code)]
        // SAFETY: syncfs only reads the file descriptor, which `d` keeps open.
        if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
            return Err(werr(std::io::Error::last_os_error()));
        }
    }
    #[cfg(not(target_os = "linux"))]
    d.sync_all().map_err(werr)?;
    Ok(())
}

/// Creates `dir` (and its parents) if needed; a `Mode::Secret` directory
/// is created 0700. An existing directory is left as it is (never chmod-ed:
/// it may be the user's).
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
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(werr)?;
    }
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    if mode == Mode::Secret {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    #[cfg(not(unix))]
    let _ = mode;
    match builder.create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(werr(e)),
        _ => Ok(()),
    }
}

/// [`ensure_dir`] for a directory `pki` owns inside the output directory
/// (`certs/`, `private/`): a symlink there is refused rather than followed,
/// since its target is someone else's (pass that target as `--out`).
pub fn ensure_own_dir(dir: &Path, mode: Mode) -> Result<()> {
    if fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::input(format!(
            "{} is a symbolic link; pki does not write through it: pass the directory that holds the real certs/ and private/ as --out",
            dir.display()
        )));
    }
    ensure_dir(dir, mode)
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
    fn below_equals_strip_prefix() {
        for base in ["", ".", "out", "out/", "/tmp/x", "./a//b", "/"] {
            let base = Path::new(base);
            for rel in ["certs/d.pem", "./certs/d.pem", "/certs", ""] {
                let p = base.join(rel);
                assert_eq!(below(base, &p), p.strip_prefix(base).ok(), "{base:?} {p:?}");
            }
            let other = Path::new("/elsewhere/f");
            assert_eq!(
                below(base, other),
                other.strip_prefix(base).ok(),
                "{base:?}"
            );
        }
    }

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
