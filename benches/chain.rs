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

fn main() {
    let write = std::env::args().any(|a| a == "--write");
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
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
        let old = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            "# Benchmarks\n\nFigures measured on this project's 2-core machine; each section names the command that produced it.\n".into()
        });
        let (start, end) = ("<!-- chain-bench:start -->", "<!-- chain-bench:end -->");
        let new = match (old.find(start), old.find(end)) {
            (Some(a), Some(b)) => format!(
                "{}{}{}",
                &old[..a],
                section.trim_end(),
                &old[b + end.len()..]
            ),
            _ => format!("{}\n\n{section}", old.trim_end()),
        };
        std::fs::write(&path, new).expect("write BENCHMARKS.md");
        eprintln!("updated {}", path.display());
    }
}
