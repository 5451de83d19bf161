//! Expiry as a CI guard: every certificate under some paths that is expired
//! or expires within a window (`pki inspect --expiring-within 30d PATH…`).
//!
//! Directories are walked recursively (symbolic links to directories are
//! not followed, so a loop cannot hang CI). In a directory, files that hold
//! no certificate (keys, JSON, PFX) are skipped; a file named on the command
//! line must hold one. Private keys are never printed.

use std::path::{Path, PathBuf};

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::cert;
use crate::error::{Error, Result};
use crate::validity::show;

/// One certificate that is expired or expires within the window.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The file, as found.
    pub file: String,
    /// 1-based position of the certificate in its file.
    pub index: usize,
    /// `CN=…` or the whole subject.
    pub subject: String,
    /// RFC 3339.
    pub not_after: String,
    /// Days from now to notAfter, to the nearest day (negative: expired
    /// that long ago). Rounded, not truncated, so a certificate issued for
    /// 10 days a second ago reads 10d, not 9d.
    pub days_left: i64,
    /// Already expired.
    pub expired: bool,
}

/// The result of a scan.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The instant the scan compared against.
    pub now: String,
    /// Certificates looked at.
    pub checked: usize,
    /// Those expired or expiring, soonest first.
    pub findings: Vec<Finding>,
}

/// Scans `paths` for certificates whose notAfter is before `now + within`.
pub fn scan(paths: &[PathBuf], now: OffsetDateTime, within: Duration) -> Result<Report> {
    let mut report = Report {
        now: show(now),
        checked: 0,
        findings: Vec::new(),
    };
    let limit = now + within;
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| Error::Read {
            path: p.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(p, now, limit, &mut report)?;
        } else {
            let n = check_file(p, now, limit, &mut report, true)?;
            if n == 0 {
                return Err(Error::input(format!(
                    "{} holds no certificate; name certificate files or directories",
                    p.display()
                )));
            }
        }
    }
    report.findings.sort_by(|a, b| {
        a.days_left
            .cmp(&b.days_left)
            .then_with(|| a.file.cmp(&b.file))
    });
    Ok(report)
}

fn walk(dir: &Path, now: OffsetDateTime, limit: OffsetDateTime, report: &mut Report) -> Result<()> {
    let rerr = |source| Error::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(rerr)?
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(rerr)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let ft = e.file_type().map_err(rerr)?;
        if ft.is_dir() {
            walk(&path, now, limit, report)?;
        } else if ft.is_file() || (ft.is_symlink() && path.is_file()) {
            check_file(&path, now, limit, report, false)?;
        }
    }
    Ok(())
}

/// Checks every certificate of one file; returns how many it holds.
fn check_file(
    path: &Path,
    now: OffsetDateTime,
    limit: OffsetDateTime,
    report: &mut Report,
    named: bool,
) -> Result<usize> {
    let data = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let what = path.display().to_string();
    let certs = match cert::read_bundle(&data, &what) {
        Ok(b) => b.certs,
        Err(e) if named => return Err(e),
        // Not a certificate file (a key, JSON, a PFX): skipped in a walk.
        Err(_) => return Ok(0),
    };
    for (i, der) in certs.iter().enumerate() {
        let x509 = match cert::parse_der(der, &what) {
            Ok(x) => x,
            Err(e) if named => return Err(e),
            Err(_) => continue,
        };
        report.checked += 1;
        let not_after = x509.validity().not_after.to_datetime();
        if not_after < limit {
            report.findings.push(Finding {
                file: what.clone(),
                index: i + 1,
                subject: x509.subject().to_string(),
                not_after: show(not_after),
                days_left: days_rounded(not_after - now),
                expired: not_after <= now,
            });
        }
    }
    Ok(certs.len())
}

impl Report {
    /// The text listing: one line per finding, then a summary line.
    pub fn render(&self, within: &str) -> String {
        let mut s = String::new();
        for f in &self.findings {
            let status = if f.expired { "EXPIRED " } else { "expiring" };
            s.push_str(&format!(
                "{status} {:>6}  {}  {}  {}{}\n",
                format!("{}d", f.days_left),
                f.not_after,
                f.subject,
                f.file,
                if f.index > 1 {
                    format!(" [{}]", f.index)
                } else {
                    String::new()
                }
            ));
        }
        let expired = self.findings.iter().filter(|f| f.expired).count();
        s.push_str(&format!(
            "{} of {} certificates expired ({expired}) or expiring within {within} (now {})\n",
            self.findings.len(),
            self.checked,
            self.now
        ));
        s
    }
}

/// A duration in days, rounded to the nearest whole day.
fn days_rounded(d: Duration) -> i64 {
    (d.whole_seconds() as f64 / 86_400.0).round() as i64
}
