//! Benchmark: `pki chain new --devices 1000` against a certGen.sh-style
//! openssl CLI loop making the same devices, side by side in one run.
//!
//! Run with `cargo bench --bench chain` (add `-- --write` to update
//! BENCHMARKS.md). It times, in a fresh temp directory each run:
//!
//! - `pki chain new --devices 1000 --no-pfx` with ec-p256 and rsa-2048
//!   device keys, and with PFX files, for the PFX cost;
//! - the openssl loop certGen.sh runs per device (genpkey, req, sign with
//!   the intermediate, cat the full chain), on a sample of devices because
//!   it is ~100x slower; its cost is reported per device.
//!
//! Each pki figure is the median of `RUNS` runs. The machine's other load
//! matters, so both sides are measured in the same run.
//!
//! The same run then measures scale (the `chain-scale` section): 10,000 and
//! 100,000 devices (1,000,000 with `-- --million`) on a tmpfs and on the
//! disk, each child's user and system CPU, wall time and peak RSS from
//! `wait4`'s rusage, beside two yardsticks measured in this process and run:
//! the crypto backend alone (N P-256 key generations and N signatures, no
//! files) and `openssl speed ecdsap256`. CPU time and peak RSS are the robust
//! figures on a shared machine; wall time is the median of the runs.
//! `-- --scale-only` skips the 1,000-device comparison above; `-- --yardsticks`
//! prints only the backend's keygen and sign costs (no pki runs).
//!
//! The tmpfs is `PKI_BENCH_TMPFS` (default `/dev/shm`); the benchmark checks
//! with statfs that it is one. The disk directory is `PKI_BENCH_DIR` (default
//! the temp directory).

#![allow(
    unsafe_code,
    reason = "wait4/getrusage/statfs: the child's rusage and the filesystem type"
)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DEVICES: usize = 1000;
const RUNS: usize = 5;
const OPENSSL_SAMPLE_EC: usize = 100;
const OPENSSL_SAMPLE_RSA: usize = 40;

fn pki() -> &'static str {
    env!("CARGO_BIN_EXE_pki")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Times `pki chain new` with `extra` arguments, median of RUNS fresh runs.
///
/// Output directories are kept until the whole benchmark ends: deleting
/// thousands of files between runs makes ext4's inode allocator skip the
/// recently freed inodes (`recently_deleted` in a profile), which slowed the
/// next run's file creation several-fold and measured the file system, not pki.
fn time_pki(base: &Path, extra: &[&str]) -> Duration {
    let times = (0..RUNS)
        .map(|i| {
            let dir = base.join(format!("pki-{}-{i}", extra.join("_").replace('-', "")));
            settle();
            let start = Instant::now();
            run(Command::new(pki())
                .args(["chain", "new", "--quiet", "--out"])
                .arg(&dir)
                .args(["--devices", &DEVICES.to_string()])
                .args(extra));
            start.elapsed()
        })
        .collect();
    median(times)
}

/// Flushes dirty pages left by earlier runs, so a run does not pay for them.
fn settle() {
    let _ = Command::new("sync").status();
}

/// The certGen.sh device pipeline with the openssl CLI, `n` devices, keys of `alg`.
fn time_openssl(base: &Path, rsa: bool, n: usize) -> Duration {
    let dir = base.join(if rsa { "openssl-rsa" } else { "openssl-ec" });
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::create_dir_all(dir.join("private")).unwrap();
    // The CA (not timed), made by pki: the loop below is what certGen.sh runs per device.
    run(Command::new(pki())
        .args(["chain", "new", "--quiet", "--devices", "0", "--out"])
        .arg(&dir)
        .args(["--key", if rsa { "rsa-2048" } else { "ec-p256" }]));
    let keygen = if rsa {
        "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048"
    } else {
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256"
    };
    let script = format!(
        r#"set -e
cd "{dir}"
cat > ext.cnf <<EOF
[usr_cert]
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
for i in $(seq -w 1 {n}); do
  id=device-$i
  {keygen} -out private/$id.key.pem 2>/dev/null
  openssl req -new -sha256 -key private/$id.key.pem -subj "/CN=$id" -out $id.csr.pem
  openssl x509 -req -in $id.csr.pem -CA certs/azure-iot-test-only.intermediate.cert.pem \
    -CAkey private/azure-iot-test-only.intermediate.key.pem -set_serial 0x$(openssl rand -hex 15) \
    -days 365 -sha256 -extfile ext.cnf -extensions usr_cert -out certs/$id.cert.pem 2>/dev/null
  cat certs/$id.cert.pem certs/azure-iot-test-only.intermediate.cert.pem \
    certs/azure-iot-test-only.root.ca.cert.pem > certs/$id-full-chain.cert.pem
done
"#,
        dir = dir.display()
    );
    settle();
    let start = Instant::now();
    run(Command::new("bash").arg("-c").arg(&script));
    let t = start.elapsed();
    // Sanity: the loop made verifiable devices.
    run(Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(dir.join("certs/azure-iot-test-only.root.ca.cert.pem"))
        .arg("-untrusted")
        .arg(dir.join("certs/azure-iot-test-only.intermediate.cert.pem"))
        .arg(dir.join(format!(
            "certs/device-{:0w$}.cert.pem",
            1,
            w = n.to_string().len()
        ))));
    let _ = std::fs::remove_dir_all(&dir);
    t
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What `wait4` reports about one child.
#[derive(Clone, Copy, Debug)]
struct Usage {
    wall: Duration,
    user: Duration,
    sys: Duration,
    /// Peak resident set size, bytes.
    max_rss: u64,
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// Runs `cmd` to completion and returns its resource use (its own, not this
/// process's: `wait4` reports the child alone).
#[expect(
    clippy::zombie_processes,
    reason = "wait4 reaps the child (Child::wait gives no rusage)"
)]
fn run_measured(cmd: &mut Command) -> Usage {
    let start = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
    let wall = start.elapsed();
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed ({status})"
    );
    Usage {
        wall,
        user: timeval(ru.ru_utime),
        sys: timeval(ru.ru_stime),
        max_rss: ru.ru_maxrss as u64 * 1024,
    }
}

/// This process's user CPU so far.
fn self_user() -> Duration {
    // SAFETY: as in run_measured.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    timeval(ru.ru_utime)
}

/// The file system type of `dir` as statfs names it.
fn fs_type(dir: &Path) -> &'static str {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).expect("path");
    // SAFETY: statfs fills the struct for a NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown";
    }
    match st.f_type as i64 {
        0x0102_1994 => "tmpfs",
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x794C_7630 => "overlayfs",
        _ => "other",
    }
}

/// User CPU of one P-256 key generation and one signature of a
/// certificate-sized message in aws-lc-rs, the backend pki uses: `n` of each,
/// one thread, no files.
fn crypto_baseline(n: usize) -> (Duration, Duration) {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    let alg = &ECDSA_P256_SHA256_ASN1_SIGNING;
    let ca = EcdsaKeyPair::generate(alg).expect("keygen");
    let rng = SystemRandom::new();
    let tbs = [0x5a_u8; 400];
    let t0 = self_user();
    let mut keep = 0usize;
    for _ in 0..n {
        let k = EcdsaKeyPair::generate(alg).expect("keygen");
        keep += aws_lc_rs::signature::KeyPair::public_key(&k).as_ref().len();
    }
    let t1 = self_user();
    for _ in 0..n {
        keep += ca.sign(&rng, &tbs).expect("sign").as_ref().len();
    }
    let t2 = self_user();
    assert!(keep > 0);
    ((t1 - t0) / n as u32, (t2 - t1) / n as u32)
}

/// User CPU of one RSA key generation in aws-lc-rs, median of `n`.
fn rsa_keygen(n: usize) -> Duration {
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    let times = (0..n)
        .map(|_| {
            let t0 = self_user();
            let k = KeyPair::generate(KeySize::Rsa2048).expect("rsa keygen");
            drop(k);
            self_user() - t0
        })
        .collect();
    median(times)
}

/// One P-256 signature's time from `openssl speed ecdsap256`, this run.
fn openssl_speed() -> Duration {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "3", "ecdsap256"])
        .output()
        .expect("openssl speed");
    let text = String::from_utf8_lossy(&out.stdout);
    // "256 bits ecdsa (nistp256)   0.0000s   0.0001s  54209.0  16983.8"
    let per_s: f64 = text
        .lines()
        .find(|l| l.contains("nistp256"))
        .and_then(|l| l.split_whitespace().rev().nth(1).map(str::to_string))
        .and_then(|v| v.parse().ok())
        .expect("openssl speed output");
    Duration::from_secs_f64(1.0 / per_s)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// One scale row: `runs` fresh runs of `n` devices under `base`.
fn scale_row(base: &Path, n: usize, runs: usize, extra: &[&str], keep: bool) -> Vec<Usage> {
    (0..runs)
        .map(|i| {
            let dir = base.join(format!("scale-{n}-{i}-{}", extra.join("_")));
            settle();
            let u = run_measured(
                Command::new(pki())
                    .args(["chain", "new", "--quiet", "--no-pfx", "--out"])
                    .arg(&dir)
                    .args(["--devices", &n.to_string()])
                    .args(extra),
            );
            eprintln!(
                "  {n} devices {extra:?} in {}: wall {:.2} s, user {:.2} s, sys {:.2} s, peak RSS {:.1} MB",
                base.display(),
                u.wall.as_secs_f64(),
                u.user.as_secs_f64(),
                u.sys.as_secs_f64(),
                u.max_rss as f64 / 1e6
            );
            if !keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
            u
        })
        .collect()
}

fn med<T: Ord + Copy>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

/// The `chain-scale` section: devices at scale, with the yardsticks.
fn scale(disk_parent: &Path, million: bool) -> String {
    let tmpfs_parent = std::env::var_os("PKI_BENCH_TMPFS")
        .map_or_else(|| PathBuf::from("/dev/shm"), PathBuf::from);
    assert_eq!(
        fs_type(&tmpfs_parent),
        "tmpfs",
        "{} is not a tmpfs: set PKI_BENCH_TMPFS to one (e.g. `mount -t tmpfs -o size=8g tmpfs /mnt/pki-bench`)",
        tmpfs_parent.display()
    );
    let tmpfs = tempfile::tempdir_in(&tmpfs_parent).expect("tmpfs dir");
    let disk = tempfile::tempdir_in(disk_parent).expect("disk dir");
    let disk_fs = fs_type(disk_parent);
    let load_before = load_average();

    eprintln!("scale: yardsticks…");
    let ossl = openssl_speed();
    let (keygen, sign) = crypto_baseline(20_000);
    let rsa_gen = rsa_keygen(9);
    let mut sizes = vec![(10_000usize, 3usize), (100_000, 3)];
    if million {
        sizes.push((1_000_000, 1));
    }
    let mut rows = Vec::new();
    for (where_, base, keep) in [("tmpfs", tmpfs.path(), false), (disk_fs, disk.path(), true)] {
        for &(n, runs) in &sizes {
            eprintln!("scale: {n} devices on {where_}…");
            rows.push((where_, n, scale_row(base, n, runs, &[], keep)));
        }
    }
    let rsa_n = 200;
    eprintln!("scale: {rsa_n} rsa-2048 devices on tmpfs…");
    let rsa = scale_row(tmpfs.path(), rsa_n, 1, &["--device-key", "rsa-2048"], false);
    let (ossl_again, load_after) = (openssl_speed(), load_average());
    // The backend again after the rows: the faster of the two is the
    // yardstick (the stricter one for pki's ratio), as with openssl's.
    let (keygen_again, sign_again) = crypto_baseline(20_000);
    let (keygen, sign) = if keygen_again + sign_again < keygen + sign {
        (keygen_again, sign_again)
    } else {
        (keygen, sign)
    };
    drop(disk);
    drop(tmpfs);

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mut table = String::from(
        "| devices | file system | runs | wall (median) | user CPU | sys CPU | user CPU per device | peak RSS |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut user_100k = None;
    for (where_, n, usages) in &rows {
        let wall = med(usages.iter().map(|u| u.wall).collect());
        let user = med(usages.iter().map(|u| u.user).collect());
        let sys = med(usages.iter().map(|u| u.sys).collect());
        let rss = usages.iter().map(|u| u.max_rss).max().unwrap_or(0);
        let per = us(user) / *n as f64;
        if *n == 100_000 && *where_ == "tmpfs" {
            user_100k = Some(per);
        }
        let _ = writeln!(
            table,
            "| {n} | {where_} | {} | {:.2} s | {:.2} s | {:.2} s | {per:.1} µs | {:.1} MB |",
            usages.len(),
            wall.as_secs_f64(),
            user.as_secs_f64(),
            sys.as_secs_f64(),
            rss as f64 / 1e6
        );
    }
    let rsa_per = rsa[0].user.as_secs_f64() * 1e3 / rsa_n as f64;
    let ossl_us = us(ossl.min(ossl_again));
    let base_us = us(keygen) + us(sign);
    let per = user_100k.unwrap_or(f64::NAN);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "<!-- chain-scale:start -->\n## Certificate chains at scale\n\n\
         Command: `cargo bench --bench chain -- --write` (the same run as the section above; \
         `-- --scale-only` runs only this one, `-- --million` adds 1,000,000-device rows, which need \
         ~12 GB of tmpfs). {cores} cores, **shared with other work** (load average {load_before} before, \
         {load_after} after), so wall times are noisy: user/sys CPU and peak RSS are the child's own \
         (`wait4` rusage) and hold under load. Each row is `pki chain new --quiet --no-pfx --devices N` \
         (ec-p256, one intermediate) into a fresh directory on a tmpfs (`{}` here; set `PKI_BENCH_TMPFS`, \
         for example to a `mount -t tmpfs -o size=8g tmpfs /mnt/pki-bench`) and on the {disk_fs} disk \
         (`{}`); CPU and wall are medians of the runs, peak RSS the largest.\n\n{table}\n\
         Yardsticks in the same run: `openssl speed ecdsap256` signs in **{ossl_us:.1} µs** (the faster \
         of a run before and after the rows); the backend alone (aws-lc-rs, one thread, no files, the faster of a run before and after the \
         rows) takes {:.1} µs per P-256 key generation and {:.1} µs per signature, **{base_us:.1} µs** per device's \
         cryptography.\n\n\
         At 100,000 devices on tmpfs pki spends **{per:.1} µs of user CPU per device: {:.2}× an openssl \
         signature** (target ≤ 2.5×) and **{:.2}× the backend's keygen + sign** (target ≤ 1.5×).\n\n\
         RSA devices are bound by key generation: {rsa_n} rsa-2048 devices took {rsa_per:.1} ms of user \
         CPU each, where the backend's own RSA-2048 key generation takes {:.1} ms (median of 9, user CPU; \
         its time varies widely with the primes found), so the rest of the device costs next to nothing.\n\
         <!-- chain-scale:end -->\n",
        tmpfs_parent.display(),
        disk_parent.display(),
        us(keygen),
        us(sign),
        per / ossl_us,
        per / base_us,
        rsa_gen.as_secs_f64() * 1e3,
    )
}

/// Replaces the `name` section of BENCHMARKS.md (or appends it).
fn write_section(name: &str, section: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        "# Benchmarks\n\nFigures measured on this project's 2-core machine; each section names the command that produced it.\n".into()
    });
    let (start, end) = (
        format!("<!-- {name}:start -->"),
        format!("<!-- {name}:end -->"),
    );
    let new = match (old.find(&start), old.find(&end)) {
        (Some(a), Some(b)) => format!(
            "{}{}{}",
            &old[..a],
            section.trim_end(),
            &old[b + end.len()..]
        ),
        _ => format!("{}\n\n{section}", old.trim_end()),
    };
    std::fs::write(&path, new).expect("write BENCHMARKS.md");
    eprintln!("updated {} ({name})", path.display());
}

fn main() {
    let write = std::env::args().any(|a| a == "--write");
    let million = std::env::args().any(|a| a == "--million");
    if std::env::args().any(|a| a == "--yardsticks") {
        // Only the backend's own costs, for comparing hand-run rows on a
        // shared machine where the full scale run is too heavy.
        let (keygen, sign) = crypto_baseline(20_000);
        let rsa = rsa_keygen(9);
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "aws-lc-rs, one thread, user CPU: P-256 keygen {:.1} µs, sign {:.1} µs, keygen + sign {:.1} µs; RSA-2048 keygen {:.1} ms (median of 9)",
            us(keygen),
            us(sign),
            us(keygen + sign),
            rsa.as_secs_f64() * 1e3
        );
        return;
    }
    if std::env::args().any(|a| a == "--scale-only") {
        let parent =
            std::env::var_os("PKI_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let section = scale(&parent, million);
        println!("{section}");
        if write {
            write_section("chain-scale", &section);
        }
        return;
    }
    let parent = std::env::var_os("PKI_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let base: PathBuf = tempfile::tempdir_in(parent).expect("temp dir").keep();
    let openssl_version = String::from_utf8_lossy(
        &Command::new("openssl")
            .arg("version")
            .output()
            .expect("openssl")
            .stdout,
    )
    .trim()
    .to_string();

    eprintln!("timing pki (median of {RUNS} runs of {DEVICES} devices each)…");
    let pki_ec = time_pki(&base, &["--no-pfx"]);
    let pki_ec_pfx = time_pki(&base, &[]);
    let pki_rsa = time_pki(&base, &["--no-pfx", "--device-key", "rsa-2048"]);
    eprintln!(
        "timing the openssl loop ({OPENSSL_SAMPLE_EC} EC and {OPENSSL_SAMPLE_RSA} RSA devices)…"
    );
    let ossl_ec = time_openssl(&base, false, OPENSSL_SAMPLE_EC);
    let ossl_rsa = time_openssl(&base, true, OPENSSL_SAMPLE_RSA);
    let _ = std::fs::remove_dir_all(&base);

    let per = |d: Duration, n: usize| ms(d) / n as f64;
    let (pe, pp, pr) = (
        per(pki_ec, DEVICES),
        per(pki_ec_pfx, DEVICES),
        per(pki_rsa, DEVICES),
    );
    let (oe, or) = (
        per(ossl_ec, OPENSSL_SAMPLE_EC),
        per(ossl_rsa, OPENSSL_SAMPLE_RSA),
    );
    let rows = [
        format!(
            "| ec-p256 | openssl CLI loop ({OPENSSL_SAMPLE_EC} devices) | {:.0} ms | {oe:.2} ms | 1× |",
            ms(ossl_ec)
        ),
        format!(
            "| ec-p256 | `pki chain new --devices {DEVICES} --no-pfx` | {:.0} ms | {pe:.3} ms | **{:.0}×** |",
            ms(pki_ec),
            oe / pe
        ),
        format!(
            "| ec-p256 + PFX | `pki chain new --devices {DEVICES}` | {:.0} ms | {pp:.3} ms (PFX adds {:.3} ms) | {:.0}× |",
            ms(pki_ec_pfx),
            pp - pe,
            oe / pp
        ),
        format!(
            "| rsa-2048 | openssl CLI loop ({OPENSSL_SAMPLE_RSA} devices) | {:.0} ms | {or:.2} ms | 1× |",
            ms(ossl_rsa)
        ),
        format!(
            "| rsa-2048 | `pki chain new --devices {DEVICES} --no-pfx --device-key rsa-2048` | {:.0} ms | {pr:.3} ms | **{:.0}×** |",
            ms(pki_rsa),
            or / pr
        ),
    ];
    let mut table = String::from(
        "| devices | tool | total | per device | speed-up over the loop |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(table, "{r}");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let env = std::env::var("PKI_BENCH_DIR")
        .map(|d| format!("PKI_BENCH_DIR={d} "))
        .unwrap_or_default();
    let section = format!(
        "<!-- chain-bench:start -->\n## Certificate chains: `pki chain new` vs the certGen.sh openssl loop\n\n\
         Command: `{env}cargo bench --bench chain -- --write` (benches/chain.rs). {cores} cores, {openssl_version}, \
         temp directory under `{}`. pki figures are the median of {RUNS} runs of {DEVICES} devices \
         (process start, CA creation and file writing included); the openssl loop runs certGen.sh's per-device \
         steps (genpkey, req, x509 -req with the intermediate, cat the full chain) on a sample.\n\n{table}\n\
         Targets: ec-p256 ≥ 100× faster than the loop and ≤ 0.15 ms a device; PFX adds ≤ 1 ms a device.\n\n\
         File creation dominates pki's time, so the file system's state matters: in a directory where many \
         thousands of files were just deleted (`/tmp` right after the test suite), ext4's inode allocator \
         (`recently_deleted` in a profile) made the same EC run take 0.6–1.0 s instead of 0.15 s. \
         `PKI_BENCH_DIR` picks the directory; the figures above name it.\n\
         <!-- chain-bench:end -->\n",
        base.parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    println!("{section}");
    if write {
        write_section("chain-bench", &section);
    }
    let scaled = scale(base.parent().unwrap_or(Path::new("/tmp")), million);
    println!("{scaled}");
    if write {
        write_section("chain-scale", &scaled);
    }
}
