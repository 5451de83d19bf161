//! Peak memory of a bulk run stays flat in the number of devices: manifest
//! entries are streamed and nothing per device is held (issue 15). The
//! bound is on the child's peak RSS as `wait4` reports it; nothing is timed.

#![allow(
    unsafe_code,
    reason = "wait4(2) is the only way to read a child's peak RSS"
)]

use std::process::{Command, Stdio};

/// Peak RSS allowed for 20,000 devices. A flat run of the debug build
/// peaks near 20 MB; holding every entry, certificate and PEM (as before
/// issue 15) took ~4.5 KB a device, ~90 MB here, so growth is caught with
/// room for allocator noise.
const BOUND_BYTES: u64 = 48 * 1024 * 1024;

/// Runs `cmd` and returns its peak RSS in bytes (the child's own rusage).
#[expect(
    clippy::zombie_processes,
    reason = "wait4 reaps the child (Child::wait gives no rusage)"
)]
fn peak_rss(cmd: &mut Command) -> u64 {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn pki");
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed ({status})"
    );
    // Linux reports ru_maxrss in kilobytes.
    ru.ru_maxrss as u64 * 1024
}

#[test]
fn chain_new_with_20000_devices_stays_under_the_memory_bound() {
    // tmpfs when there is one: the run writes 60,000 files.
    let parent = ["/dev/shm"]
        .iter()
        .map(std::path::Path::new)
        .find(|p| p.is_dir())
        .map_or_else(std::env::temp_dir, |p| p.to_path_buf());
    let dir = tempfile::tempdir_in(parent).unwrap();
    let rss = peak_rss(
        Command::new(env!("CARGO_BIN_EXE_pki"))
            .args([
                "chain",
                "new",
                "--quiet",
                "--no-pfx",
                "--devices",
                "20000",
                "--out",
            ])
            .arg(dir.path()),
    );
    eprintln!("peak RSS for 20,000 devices: {:.1} MB", rss as f64 / 1e6);
    let manifest = std::fs::read_to_string(dir.path().join("certs/manifest.json")).unwrap();
    assert_eq!(manifest.matches("\"role\": \"device\"").count(), 20000);
    assert!(
        rss < BOUND_BYTES,
        "peak RSS {:.1} MB for 20,000 devices, bound {:.1} MB: is something held per device?",
        rss as f64 / 1e6,
        BOUND_BYTES as f64 / 1e6
    );
}
