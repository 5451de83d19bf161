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
//! `<lane>/certs/x.pem`, and the commit walks the lanes to find them. The
//! commit is all or nothing across crashes: it streams a journal of every
//! move to disk first (a line per file, never a list in memory), puts the
//! files it replaces aside, and the next run rolls an interrupted commit
//! back ([`recover`]).
//!
//! Durability (surviving power loss, not just interruption) costs an fsync.
//! Single files get one each; a batch is flushed once with `syncfs`, because
//! an fsync per file made 1000 devices take 2.6 s instead of 0.2 s.

use std::collections::{BTreeSet, HashMap};
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
/// Each writer thread gets its own subdirectory (a lane): file creation
/// takes the directory's lock, and one shared directory made two threads
/// spend most of their time spinning on it (`rwsem_spin_on_owner` in a
/// profile). A file bound for `<base>/certs/x.pem` is staged as
/// `<lane>/certs/x.pem`, so the batch needs no list of its files; only the
/// few that cannot mirror their destination (outside `base`, staged twice,
/// written in pieces) and the removals are listed.
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
/// rolls an interrupted commit back.
///
/// It is written as a stream, one line per file, so a million devices need
/// no list in memory: the first line is this head (JSON); then a line per
/// laned file, `<lane> <b|-> <path>`: the file staged at
/// `<dir>/<lane>/<path>` goes to `<base>/<path>`, and with `b` the file it
/// replaces is put aside at `<dir>/old/<lane>/<path>` (`\` and newline in
/// `<path>` escaped as `\\` and `\n`); then a line per listed step (a
/// [`JournalMove`] as JSON, starting with `{`). The journal is complete and
/// on disk before it is renamed into place, and removing it is the commit
/// point.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct JournalHead {
    /// The staging directory (holds the new files and the backups).
    dir: PathBuf,
    /// Steps held in the head itself (journals of earlier versions, which
    /// were one JSON document); new journals list them on their own lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    moves: Vec<JournalMove>,
    /// Earlier versions: set once every new file was in place (only
    /// cleanup remained). Now the journal is removed at that point instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
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
/// kill-point sweep in tests/reliability.rs uses them.
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
/// One step of a journal, with paths relative to `base` (absolute for a
/// destination outside it).
/// The paths are borrowed from buffers `read_journal` reuses line after
/// line: a bulk batch's journal has three lines a device, and owned paths
/// were a dozen allocations each.
struct Step<'a> {
    tmp: Option<&'a Path>,
    dest: &'a Path,
    backup: Option<&'a Path>,
}

/// `parts` joined in `buf`, reusing its allocation.
fn joined<'b>(buf: &'b mut PathBuf, parts: &[&Path]) -> &'b Path {
    buf.as_mut_os_string().clear();
    for p in parts {
        buf.push(p);
    }
    buf
}

/// Reads the journal at `path` step by step (never all of it at once):
/// `f` gets each step, in the order written. Returns the head.
fn read_journal(
    path: &Path,
    f: &mut dyn FnMut(&JournalHead, Step<'_>) -> Result<()>,
) -> Result<JournalHead> {
    use std::io::BufRead;
    let rerr = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let damaged = |e: &dyn std::fmt::Display| {
        Error::input(format!(
            "{} is damaged ({e}); it records an interrupted pki run: check the directory by hand, then delete it",
            path.display()
        ))
    };
    let mut r = std::io::BufReader::new(fs::File::open(path).map_err(rerr)?);
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).map_err(rerr)?;
    let mut head: JournalHead = serde_json::from_slice(&line).map_err(|e| damaged(&e))?;
    for m in std::mem::take(&mut head.moves) {
        f(
            &head,
            Step {
                tmp: m.tmp.as_deref(),
                dest: &m.dest,
                backup: m.backup.as_deref(),
            },
        )?;
    }
    let lanes = head.dir.clone();
    let old = head.dir.join("old");
    let (mut rel_buf, mut tmp, mut backup) = (Vec::new(), PathBuf::new(), PathBuf::new());
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).map_err(rerr)? == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.first() == Some(&b'{') {
            let m: JournalMove = serde_json::from_slice(text).map_err(|e| damaged(&e))?;
            f(
                &head,
                Step {
                    tmp: m.tmp.as_deref(),
                    dest: &m.dest,
                    backup: m.backup.as_deref(),
                },
            )?;
            continue;
        }
        let mut parts = text.splitn(3, |&b| b == b' ');
        let (Some(lane), Some(flag), Some(rel)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(damaged(&"a line without its three fields"));
        };
        let lane = std::str::from_utf8(lane)
            .ok()
            .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| damaged(&"a lane that is not a number"))?;
        let rel = unescape(rel, &mut rel_buf)
            .ok_or_else(|| damaged(&"a path that is not escaped right"))?;
        if rel.is_absolute() || !plain(rel) {
            return Err(damaged(&"a path outside the directory"));
        }
        let backup = match flag {
            b"b" => Some(joined(&mut backup, &[&old, Path::new(lane), rel])),
            b"-" => None,
            _ => return Err(damaged(&"an unknown backup flag")),
        };
        f(
            &head,
            Step {
                tmp: Some(joined(&mut tmp, &[&lanes, Path::new(lane), rel])),
                backup,
                dest: rel,
            },
        )?;
    }
    Ok(head)
}

/// Writes `p` for a journal line: `\` and newline escaped.
fn escape(p: &Path, out: &mut Vec<u8>) {
    for &b in p.as_os_str().as_encoded_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

fn unescape<'b>(bytes: &[u8], out: &'b mut Vec<u8>) -> Option<&'b Path> {
    out.clear();
    let mut it = bytes.iter();
    while let Some(&b) = it.next() {
        if b == b'\\' {
            match it.next() {
                Some(b'\\') => out.push(b'\\'),
                Some(b'n') => out.push(b'\n'),
                _ => return None,
            }
        } else {
            out.push(b);
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Some(Path::new(std::ffi::OsStr::from_bytes(out)))
    }
    #[cfg(not(unix))]
    std::str::from_utf8(out).ok().map(Path::new)
}

/// Finishes a commit an earlier run left half done (killed, power lost):
/// rolls it back to the complete old state. Called before a run looks at
/// the directory.
pub fn recover(base: &Path) -> Result<()> {
    if !base.is_dir() {
        // Nothing was ever committed there (or it is a file: refused later).
        return Ok(());
    }
    let path = base.join(JOURNAL);
    if let Err(e) = fs::symlink_metadata(&path) {
        if e.kind() == std::io::ErrorKind::NotFound {
            return Ok(());
        }
        return Err(Error::Read { path, source: e });
    }
    let werr = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Write { path: p, source }
    };
    // Each step is undone on its own: a batch never stages two files for
    // one destination, so the order does not matter, and undoing a step
    // twice (a kill during recovery) changes nothing the second time.
    // (A journal of an earlier version marked `committed` only needs its
    // cleanup.)
    let mut undo = |head: &JournalHead, s: Step<'_>| -> Result<()> {
        if head.committed {
            return Ok(());
        }
        let dest = base.join(s.dest);
        // Undo "new file moved in": the staged file is gone and the
        // destination is the new one.
        if let Some(tmp) = s.tmp.map(|t| base.join(t))
            && fs::symlink_metadata(&tmp).is_err()
            && fs::symlink_metadata(&dest).is_ok()
        {
            fs::rename(&dest, &tmp).map_err(werr(&dest))?;
        }
        // Undo "old file put aside".
        if let Some(b) = s.backup.map(|b| base.join(b))
            && fs::symlink_metadata(&b).is_ok()
        {
            fs::rename(&b, &dest).map_err(werr(&dest))?;
        }
        Ok(())
    };
    let head = read_journal(&path, &mut undo)?;
    // The old state is on disk before the journal that restores it goes;
    // a kill after that leaves only a staging directory, which the next
    // batch clears (its process is gone).
    sync_dir(base)?;
    fs::remove_file(&path).map_err(werr(&path))?;
    let _ = fs::remove_dir_all(base.join(&head.dir));
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
            && plain(rel)
        {
            // One allocation of the right size (`join` grows it twice).
            let lane = self.lane();
            let mut tmp =
                PathBuf::with_capacity(lane.as_os_str().len() + rel.as_os_str().len() + 1);
            tmp.push(lane);
            tmp.push(rel);
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
        self.record(Some(tmp), dest)
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
        self.record(Some(tmp), dest)?;
        Ok(file)
    }

    /// Removes `dest` as part of the batch (if it exists at commit time).
    pub fn remove(&self, dest: &Path) -> Result<()> {
        self.record(None, dest)
    }

    /// A fresh name for a listed file, beside (never clashing with) the
    /// lanes, `old/` and the journal.
    fn listed_path(&self) -> PathBuf {
        self.dir
            .join(format!("f{}", COUNTER.fetch_add(1, Ordering::Relaxed)))
    }

    fn record(&self, tmp: Option<PathBuf>, dest: &Path) -> Result<()> {
        self.moves
            .lock()
            .map_err(|_| Error::failed("a writer thread panicked"))?
            .push((tmp, dest.to_path_buf()));
        Ok(())
    }

    /// Moves every staged file into place and flushes them to disk, all or
    /// nothing, even across a crash.
    ///
    /// Destinations are checked first (a directory in the way, a directory
    /// that is not writable), so the usual reasons a rename fails stop the
    /// batch before anything is replaced; the same pass streams the journal
    /// into the staging directory, walking the lanes (memory stays flat in
    /// the number of files). Then the journal is moved into place, each
    /// file being replaced is put aside into the staging directory, and the
    /// new files are moved in. A failure rolls back at once; a kill leaves
    /// the journal, and the next run ([`recover`]) rolls back.
    pub fn commit(mut self) -> Result<()> {
        let listed = std::mem::take(
            &mut *self
                .moves
                .lock()
                .map_err(|_| Error::failed("a writer thread panicked"))?,
        );
        // One step per destination: a later listed step wins over an
        // earlier one and over the laned file (which was staged first).
        let mut last: HashMap<PathBuf, usize> = HashMap::new();
        for (i, (_, dest)) in listed.iter().enumerate() {
            last.insert(dest.clone(), i);
        }
        let mut steps = Vec::new();
        for (i, (tmp, dest)) in listed.into_iter().enumerate() {
            if last.get(&dest) == Some(&i) {
                steps.push((tmp, dest));
            } else if let Some(tmp) = tmp {
                let _ = fs::remove_file(tmp);
            }
        }

        let old = self.dir.join("old");
        let journal_tmp = self.dir.join("journal");
        let werr = |p: &Path| {
            let p = p.to_path_buf();
            move |source| Error::Write { path: p, source }
        };
        fs::create_dir(&old).map_err(werr(&old))?;
        let mut journal = JournalWriter {
            out: std::io::BufWriter::with_capacity(
                64 * 1024,
                fs::File::create_new(&journal_tmp).map_err(werr(&journal_tmp))?,
            ),
            path: &journal_tmp,
            line: Vec::new(),
        };
        // Paths relative to `base`, so any process can recover, whatever
        // its working directory.
        let base = self.base.clone();
        let rel = |p: &Path| below(&base, p).unwrap_or(p).to_path_buf();
        let mut head = serde_json::to_vec(&JournalHead {
            dir: rel(&self.dir),
            moves: Vec::new(),
            committed: false,
        })
        .map_err(|e| Error::failed(format!("cannot encode the commit journal: {e}")))?;
        head.push(b'\n');
        journal.raw(&head)?;

        // Every directory a file moves into or out of, checked once (the
        // lane walk notes each directory once, not each file).
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        let mut backups = 0usize;
        for (i, lane) in self.lanes.iter().enumerate() {
            let lane_old = old.join(i.to_string());
            let mut visit = |tmp: &Path, dest: &Path, rel_dest: &Path| -> Result<()> {
                // (Most batches list nothing: skip hashing every path.)
                if !last.is_empty() && last.contains_key(dest) {
                    // Staged again later, in the list: that one wins.
                    let _ = fs::remove_file(tmp);
                    return Ok(());
                }
                let replaced = existing(dest)?;
                if replaced {
                    backups += 1;
                    let aside = lane_old.join(rel_dest);
                    if let Some(parent) = aside.parent()
                        && !parent.is_dir()
                    {
                        fs::create_dir_all(parent).map_err(werr(parent))?;
                    }
                }
                journal.laned(i, replaced, rel_dest)
            };
            walk_lane(
                &mut lane.clone(),
                &mut self.base.clone(),
                &mut PathBuf::new(),
                &mut dirs,
                &mut visit,
            )?;
        }
        drop(last);
        let mut last_parent = PathBuf::new();
        for (n, (tmp, dest)) in steps.iter().enumerate() {
            let backup = existing(dest)?.then(|| {
                backups += 1;
                rel(&old.join(format!("f{n}")))
            });
            if let Some(parent) = dest.parent()
                && parent.as_os_str() != last_parent.as_os_str()
            {
                if !dirs.contains(parent) {
                    dirs.insert(parent.to_path_buf());
                }
                parent.clone_into(&mut last_parent);
            }
            journal.listed(&JournalMove {
                tmp: tmp.as_deref().map(rel),
                dest: rel(dest),
                backup,
            })?;
        }
        drop(steps);
        journal.finish()?;
        for d in &dirs {
            check_writable(d)?;
        }
        drop(dirs);

        // The journal in place (and, with the batch, on disk) is the
        // intent: from here on a kill is rolled back by the next run.
        let journal_path = self.base.join(JOURNAL);
        fs::rename(&journal_tmp, &journal_path).map_err(werr(&journal_path))?;
        // From here on the staging directory holds what the journal names
        // (recovery takes a missing staged file for one moved in): it is
        // left for recovery, never dropped with the batch.
        self.committed = true;
        sync_dir(&self.base)?;
        if let Err(e) = apply(&self.base, &journal_path, backups > 0) {
            // Put everything back now; recover() does the same after a kill.
            recover(&self.base)?;
            return Err(e);
        }
        // Every new file is in place and on disk; removing the journal is
        // the commit point. The backups go with the staging directory (a
        // kill before that leaves it to the next batch's cleanup).
        sync_dir(&self.base)?;
        fs::remove_file(&journal_path).map_err(werr(&journal_path))?;
        let _ = fs::remove_dir_all(&self.dir);
        sync_dir(&self.base)
    }
}

/// Whether every component of `rel` (a path below the base) is a plain
/// name, so that the lane mirrors it; a byte scan, not a component walk.
fn plain(rel: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        rel.as_os_str()
            .as_bytes()
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
    }
    #[cfg(not(unix))]
    rel.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Whether `dest` exists (a file or a link to be replaced); a directory
/// there is refused.
fn existing(dest: &Path) -> Result<bool> {
    match fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() || (m.file_type().is_symlink() && dest.is_dir()) => {
            Err(Error::input(format!(
                "{} is a directory, where pki needs to write a file; move it away and run again",
                dest.display()
            )))
        }
        Ok(_) => Ok(true),
        Err(_) => Ok(false),
    }
}

/// Shortens `p` to its first `len` bytes, a length it had before a push.
fn truncate(p: &mut PathBuf, len: usize) {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt as _;
        let mut bytes = std::mem::take(p).into_os_string().into_vec();
        bytes.truncate(len);
        *p = PathBuf::from(std::ffi::OsString::from_vec(bytes));
    }
    #[cfg(not(unix))]
    p.pop();
}

/// Calls `visit(staged, destination, relative destination)` for every file
/// staged under `from` (a lane, or a directory in it, mirroring
/// `dest`, which is `<base>/<rel>`), and adds each destination directory
/// to `dirs`. Reads
/// the directories only; nothing is moved while they are read.
fn walk_lane(
    from: &mut PathBuf,
    dest: &mut PathBuf,
    rel: &mut PathBuf,
    dirs: &mut BTreeSet<PathBuf>,
    visit: &mut dyn FnMut(&Path, &Path, &Path) -> Result<()>,
) -> Result<()> {
    // The three paths grow and shrink by one name per entry in buffers the
    // whole walk shares: joining fresh paths was most of a bulk commit's
    // allocations.
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Write { path, source }
    };
    let entries = match fs::read_dir(&*from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(werr(from)(source)),
    };
    let mut noted = false;
    for entry in entries {
        let entry = entry.map_err(werr(from))?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir && !noted {
            dirs.insert(dest.clone());
            noted = true;
        }
        let name = entry.file_name();
        let lens = [&*from, &*dest, &*rel].map(|p| p.as_os_str().len());
        from.push(&name);
        dest.push(&name);
        rel.push(&name);
        let done = if is_dir {
            walk_lane(from, dest, rel, dirs, visit)
        } else {
            visit(from, dest, rel)
        };
        // Cut back to the saved lengths (`pop` walks the components).
        for (p, len) in [&mut *from, &mut *dest, &mut *rel].into_iter().zip(lens) {
            truncate(p, len);
        }
        done?;
    }
    Ok(())
}

/// The journal being written into the staging directory (see [`JournalHead`]).
struct JournalWriter<'a> {
    out: std::io::BufWriter<fs::File>,
    path: &'a Path,
    line: Vec<u8>,
}

impl JournalWriter<'_> {
    fn laned(&mut self, lane: usize, replaced: bool, rel: &Path) -> Result<()> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        // (No `to_string`: this runs for every file of a batch.)
        let _ = write!(line, "{lane}");
        line.extend_from_slice(if replaced { b" b " } else { b" - " });
        escape(rel, &mut line);
        line.push(b'\n');
        let result = self.raw(&line);
        self.line = line;
        result
    }

    fn listed(&mut self, m: &JournalMove) -> Result<()> {
        let mut json = serde_json::to_vec(m)
            .map_err(|e| Error::failed(format!("cannot encode the commit journal: {e}")))?;
        json.push(b'\n');
        self.raw(&json)
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|source| Error::Write {
            path: self.path.to_path_buf(),
            source,
        })
    }

    /// Flushes the journal and syncs it to disk.
    fn finish(self) -> Result<()> {
        let path = self.path.to_path_buf();
        self.out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .map_err(|source| Error::Write { path, source })
    }
}

/// The renames of a commit, read back from the journal: put every replaced
/// file aside (a pass only when there is one), then move every new file in.
fn apply(base: &Path, journal: &Path, backups: bool) -> Result<()> {
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
    let (mut from, mut to) = (PathBuf::new(), PathBuf::new());
    if backups {
        read_journal(journal, &mut |_, s| match s.backup {
            Some(b) => rename(
                joined(&mut from, &[base, s.dest]),
                joined(&mut to, &[base, b]),
            ),
            None => Ok(()),
        })?;
    }
    read_journal(journal, &mut |_, s| match s.tmp {
        Some(tmp) => rename(
            joined(&mut from, &[base, tmp]),
            joined(&mut to, &[base, s.dest]),
        ),
        None => Ok(()),
    })?;
    Ok(())
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
    fn journal_paths_round_trip_through_escaping() {
        for name in [
            "certs/a.pem",
            "certs/back\\slash\\n",
            "certs/new\nline",
            "x y  z",
        ] {
            let mut line = Vec::new();
            escape(Path::new(name), &mut line);
            assert!(!line.contains(&b'\n'), "{name:?}");
            assert_eq!(unescape(&line, &mut Vec::new()).unwrap(), Path::new(name));
        }
        assert!(unescape(b"bad\\x", &mut Vec::new()).is_none());
    }

    #[test]
    fn a_commit_killed_half_way_is_rolled_back_from_the_streamed_journal() {
        // The state a kill leaves after three renames: certs/old.pem put
        // aside and replaced, certs/added.pem moved in, the listed manifest's
        // old file put aside but the new one not yet moved in.
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        let st = base.join(".pki-staging-0-1");
        for d in [
            "certs",
            ".pki-staging-0-1/0/certs",
            ".pki-staging-0-1/old/0/certs",
        ] {
            fs::create_dir_all(base.join(d)).unwrap();
        }
        fs::write(base.join("certs/old.pem"), b"new").unwrap();
        fs::write(st.join("old/0/certs/old.pem"), b"old").unwrap();
        fs::write(base.join("certs/added.pem"), b"added").unwrap();
        fs::write(st.join("f1"), b"new list").unwrap();
        fs::write(st.join("old/f0"), b"old list").unwrap();
        fs::write(
            base.join(JOURNAL),
            concat!(
                "{\"dir\":\".pki-staging-0-1\"}\n",
                "0 b certs/old.pem\n",
                "0 - certs/added.pem\n",
                "{\"tmp\":\".pki-staging-0-1/f1\",\"dest\":\"certs/listed.json\",",
                "\"backup\":\".pki-staging-0-1/old/f0\"}\n",
            ),
        )
        .unwrap();
        recover(base).unwrap();
        assert_eq!(fs::read(base.join("certs/old.pem")).unwrap(), b"old");
        assert!(!base.join("certs/added.pem").exists());
        assert_eq!(
            fs::read(base.join("certs/listed.json")).unwrap(),
            b"old list"
        );
        assert_eq!(
            fs::read_dir(base).unwrap().count(),
            1,
            "only certs/ is left"
        );
        // Recovering again finds nothing to do.
        recover(base).unwrap();
    }

    #[test]
    fn a_journal_of_the_earlier_one_document_format_is_still_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        fs::create_dir_all(base.join(".pki-staging-0-2/old")).unwrap();
        fs::create_dir(base.join(".pki-staging-0-2/0")).unwrap();
        fs::create_dir(base.join("certs")).unwrap();
        fs::write(base.join("certs/a.pem"), b"new").unwrap();
        fs::write(base.join(".pki-staging-0-2/old/0"), b"old").unwrap();
        fs::write(
            base.join(JOURNAL),
            r#"{"dir":".pki-staging-0-2","moves":[{"tmp":".pki-staging-0-2/0/7","dest":"certs/a.pem","backup":".pki-staging-0-2/old/0"}],"committed":false}"#,
        )
        .unwrap();
        recover(base).unwrap();
        assert_eq!(fs::read(base.join("certs/a.pem")).unwrap(), b"old");
        assert_eq!(fs::read_dir(base).unwrap().count(), 1);
    }

    #[test]
    fn a_batch_replacing_files_commits_whole_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        fs::create_dir(base.join("certs")).unwrap();
        fs::write(base.join("certs/old.pem"), b"old").unwrap();
        fs::write(base.join("certs/gone.pem"), b"gone").unwrap();
        let staging = Staging::new(base).unwrap();
        let w =
            |name: &str, data: &[u8]| staging.write(&base.join(name), data, Mode::Public).unwrap();
        w("certs/old.pem", b"first");
        // Staged twice: the later write wins.
        w("certs/old.pem", b"new");
        w("certs/added.pem", b"added");
        let mut f = staging
            .create(&base.join("certs/list.json"), Mode::Public)
            .unwrap();
        f.write_all(b"list").unwrap();
        drop(f);
        staging.remove(&base.join("certs/gone.pem")).unwrap();
        staging.commit().unwrap();
        assert_eq!(fs::read(base.join("certs/old.pem")).unwrap(), b"new");
        assert_eq!(fs::read(base.join("certs/added.pem")).unwrap(), b"added");
        assert_eq!(fs::read(base.join("certs/list.json")).unwrap(), b"list");
        assert!(!base.join("certs/gone.pem").exists());
        assert_eq!(
            fs::read_dir(base).unwrap().count(),
            1,
            "only certs/ is left"
        );
    }

    #[test]
    fn a_committed_journal_of_the_earlier_format_is_only_cleaned_up() {
        // The previous version marked a finished commit `committed` (with
        // no steps) before cleaning up: the new files stay.
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        fs::create_dir_all(base.join(".pki-staging-0-3/old")).unwrap();
        fs::create_dir(base.join("certs")).unwrap();
        fs::write(base.join("certs/a.pem"), b"new").unwrap();
        fs::write(base.join(".pki-staging-0-3/old/0"), b"old").unwrap();
        fs::write(
            base.join(JOURNAL),
            r#"{"dir":".pki-staging-0-3","moves":[],"committed":true}"#,
        )
        .unwrap();
        recover(base).unwrap();
        assert_eq!(fs::read(base.join("certs/a.pem")).unwrap(), b"new");
        assert_eq!(fs::read_dir(base).unwrap().count(), 1);
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
