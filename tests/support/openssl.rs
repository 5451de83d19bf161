//! `openssl` CLI helpers: reading certificates the way an independent tool
//! does, and making a CA the way certGen.sh does (with openssl), in every key
//! format it can leave behind.

use super::*;

/// `openssl x509 -noout -text` of a certificate file.
pub fn x509_text(path: &str) -> String {
    openssl(&["x509", "-in", path, "-noout", "-text"])
        .ok()
        .stdout
}

/// One `openssl x509 -noout -<field>` line, with the `field=` prefix removed.
pub fn x509_field(path: &str, field: &str) -> String {
    let out = openssl(&["x509", "-in", path, "-noout", &format!("-{field}")])
        .ok()
        .stdout;
    let line = out.trim();
    match line.split_once('=') {
        Some((_, v)) => v.trim().to_string(),
        None => line.to_string(),
    }
}

/// `openssl x509 -fingerprint -sha1|-sha256` as upper-case hex without colons.
pub fn fingerprint(path: &str, alg: &str) -> String {
    let out = openssl(&[
        "x509",
        "-in",
        path,
        "-noout",
        "-fingerprint",
        &format!("-{alg}"),
    ])
    .ok()
    .stdout;
    out.trim()
        .split_once('=')
        .expect("fingerprint line")
        .1
        .replace(':', "")
        .to_uppercase()
}

/// The PEM certificate blocks of a file, in order.
pub fn pem_blocks(path: &str) -> Vec<String> {
    let text = fs::read_to_string(path).expect("read PEM");
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("-----BEGIN CERTIFICATE-----") {
            cur = Some(String::new());
        }
        if let Some(c) = cur.as_mut() {
            c.push_str(line);
            c.push('\n');
        }
        if line.starts_with("-----END CERTIFICATE-----") {
            blocks.extend(cur.take());
        }
    }
    blocks
}

/// The contents of a certificate file (one PEM block, LF).
pub fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Unix permission bits of a path.
pub fn mode(path: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .permissions()
        .mode()
        & 0o777
}

/// Every file below `dir` (relative path → contents), for "nothing changed" checks.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.insert(path.strip_prefix(base).unwrap().join(""), b"<dir>".to_vec());
                walk(base, &path, out);
            } else {
                out.insert(
                    path.strip_prefix(base).unwrap().to_path_buf(),
                    fs::read(&path).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Asserts no file or directory name below `dir` looks like a temp file.
pub fn assert_no_temp_files(dir: &Path) {
    for path in snapshot(dir).keys() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            !name.contains(".tmp") && !name.starts_with('.'),
            "temp file left behind: {}",
            path.display()
        );
    }
}

/// Extracts the value of one `X509v3 …:` extension block from `openssl x509 -text`:
/// (header line, following value lines joined).
pub fn extension(text: &str, name: &str) -> Option<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.trim_start().starts_with(&format!("{name}:")))?;
    let header = lines[i].trim().to_string();
    let indent = lines[i].len() - lines[i].trim_start().len();
    let mut value = Vec::new();
    for l in &lines[i + 1..] {
        let ind = l.len() - l.trim_start().len();
        if ind <= indent {
            break;
        }
        value.push(l.trim());
    }
    Some((header, value.join(" ")))
}

/// `openssl verify -x509_strict` (and without it) of `leaf` against `root` with `untrusted`.
#[track_caller]
pub fn assert_verifies(root: &str, untrusted: Option<&str>, leaf: &str) {
    for strict in [false, true] {
        let mut args = vec!["verify"];
        if strict {
            args.push("-x509_strict");
        }
        args.extend(["-CAfile", root]);
        if let Some(u) = untrusted {
            args.extend(["-untrusted", u]);
        }
        args.push(leaf);
        let out = openssl(&args);
        assert!(
            out.code == Some(0) && out.stdout.contains(": OK"),
            "openssl {} failed:\n{}{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
    }
}

/// Parses an `openssl x509 -dates`-style time (`Nov 28 17:53:27 2026 GMT`) into
/// seconds since the Unix epoch.
pub fn parse_openssl_time(t: &str) -> i64 {
    let parts: Vec<&str> = t.split_whitespace().collect();
    assert_eq!(parts.len(), 5, "unexpected time {t:?}");
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[0])
    .expect("month") as i64
        + 1;
    let day: i64 = parts[1].parse().unwrap();
    let hms: Vec<i64> = parts[2].split(':').map(|x| x.parse().unwrap()).collect();
    let year: i64 = parts[3].parse().unwrap();
    days_from_civil(year, month, day) * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2]
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// notBefore and notAfter of a certificate, as epoch seconds.
pub fn validity(path: &str) -> (i64, i64) {
    (
        parse_openssl_time(&x509_field(path, "startdate")),
        parse_openssl_time(&x509_field(path, "enddate")),
    )
}

/// The serial number of a certificate, upper-case hex (openssl's spelling).
pub fn serial(path: &str) -> String {
    x509_field(path, "serial").to_uppercase()
}

/// How a CA key made by openssl is stored on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OsslKey {
    /// `genrsa -aes256 -traditional`: `BEGIN RSA PRIVATE KEY` + `Proc-Type: 4,ENCRYPTED`
    /// (OpenSSL 1.x certGen.sh).
    RsaLegacyEncrypted,
    /// `genrsa -aes256` (OpenSSL 3): `BEGIN ENCRYPTED PRIVATE KEY`.
    RsaPkcs8Encrypted,
    /// `genrsa -traditional`, no password: `BEGIN RSA PRIVATE KEY` (PKCS#1).
    RsaPkcs1Plain,
    /// `ecparam -genkey`: `BEGIN EC PRIVATE KEY` (SEC1), no password.
    EcSec1Plain,
}

impl OsslKey {
    pub fn encrypted(self) -> bool {
        matches!(
            self,
            OsslKey::RsaLegacyEncrypted | OsslKey::RsaPkcs8Encrypted
        )
    }

    /// The PEM header the key file must start with.
    pub fn header(self) -> &'static str {
        match self {
            OsslKey::RsaLegacyEncrypted | OsslKey::RsaPkcs1Plain => {
                "-----BEGIN RSA PRIVATE KEY-----"
            }
            OsslKey::RsaPkcs8Encrypted => "-----BEGIN ENCRYPTED PRIVATE KEY-----",
            OsslKey::EcSec1Plain => "-----BEGIN EC PRIVATE KEY-----",
        }
    }
}

/// certGen.sh's openssl_root_ca.cnf, cut down to what `req` and `x509 -req` use.
const CERTGEN_CNF: &str = "\
[ req ]
default_bits = 2048
distinguished_name = req_distinguished_name
string_mask = utf8only
default_md = sha256
x509_extensions = v3_ca

[ req_distinguished_name ]
commonName = Common Name

[ v3_ca ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer
basicConstraints = critical, CA:true
keyUsage = critical, digitalSignature, cRLSign, keyCertSign

[ v3_intermediate_ca ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer
basicConstraints = critical, CA:true
keyUsage = critical, digitalSignature, cRLSign, keyCertSign
";

fn genkey(dir: &Path, kind: OsslKey, bits: u32, out: &str) {
    let bits = bits.to_string();
    let run = match kind {
        OsslKey::RsaLegacyEncrypted => openssl_in(
            dir,
            &[
                "genrsa",
                "-aes256",
                "-traditional",
                "-passout",
                "pass:1234",
                "-out",
                out,
                &bits,
            ],
        ),
        OsslKey::RsaPkcs8Encrypted => openssl_in(
            dir,
            &[
                "genrsa",
                "-aes256",
                "-passout",
                "pass:1234",
                "-out",
                out,
                &bits,
            ],
        ),
        OsslKey::RsaPkcs1Plain => openssl_in(dir, &["genrsa", "-traditional", "-out", out, &bits]),
        OsslKey::EcSec1Plain => openssl_in(
            dir,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                out,
            ],
        ),
    };
    run.ok();
    let text = fs::read_to_string(dir.join(out)).unwrap();
    assert!(
        text.starts_with(kind.header()),
        "openssl wrote an unexpected key format for {kind:?}:\n{}",
        text.lines().take(3).collect::<Vec<_>>().join("\n")
    );
    if kind == OsslKey::RsaLegacyEncrypted {
        assert!(text.contains("Proc-Type: 4,ENCRYPTED"), "{text}");
    }
}

/// Makes a root and an intermediate CA in `dir` with the openssl CLI the way
/// certGen.sh's `create_root_and_intermediate` does (its file names, CNs,
/// v3_ca / v3_intermediate_ca extensions, 30 days, password 1234 when
/// encrypted), with keys stored as `kind`.
pub fn make_openssl_ca(dir: &Path, kind: OsslKey, bits: u32) {
    fs::create_dir_all(dir.join("certs")).unwrap();
    fs::create_dir_all(dir.join("private")).unwrap();
    fs::create_dir_all(dir.join("csr")).unwrap();
    fs::write(dir.join("openssl_root_ca.cnf"), CERTGEN_CNF).unwrap();
    let pass: &[&str] = if kind.encrypted() {
        &["-passin", "pass:1234"]
    } else {
        &[]
    };
    genkey(dir, kind, bits, ROOT_KEY);
    let mut args = vec![
        "req",
        "-new",
        "-x509",
        "-config",
        "openssl_root_ca.cnf",
        "-key",
        ROOT_KEY,
    ];
    args.extend_from_slice(pass);
    args.extend([
        "-subj",
        "/CN=Azure IoT Hub CA Cert Test Only",
        "-days",
        "30",
        "-sha256",
        "-extensions",
        "v3_ca",
        "-out",
        ROOT_CERT,
    ]);
    openssl_in(dir, &args).ok();

    genkey(dir, kind, bits, INT_KEY);
    let mut args = vec![
        "req",
        "-new",
        "-sha256",
        "-config",
        "openssl_root_ca.cnf",
        "-key",
        INT_KEY,
    ];
    args.extend_from_slice(pass);
    args.extend([
        "-subj",
        "/CN=Azure IoT Hub Intermediate Cert Test Only",
        "-out",
        "csr/azure-iot-test-only.intermediate.csr.pem",
    ]);
    openssl_in(dir, &args).ok();
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        "csr/azure-iot-test-only.intermediate.csr.pem",
        "-CA",
        ROOT_CERT,
        "-CAkey",
        ROOT_KEY,
    ];
    args.extend_from_slice(pass);
    args.extend([
        "-set_serial",
        "0x1001",
        "-days",
        "30",
        "-sha256",
        "-extfile",
        "openssl_root_ca.cnf",
        "-extensions",
        "v3_intermediate_ca",
        "-out",
        INT_CERT,
    ]);
    openssl_in(dir, &args).ok();
    let chain = read(&p(dir, INT_CERT)) + &read(&p(dir, ROOT_CERT));
    fs::write(dir.join(CHAIN_CERT), chain).unwrap();
    openssl_in(dir, &["verify", "-CAfile", ROOT_CERT, INT_CERT]).ok();
}

/// Facts about a certificate from one `openssl x509` call.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Upper-case hex serial.
    pub serial: String,
    /// RFC 2253 subject and issuer (`CN=…`).
    pub subject: String,
    pub issuer: String,
    /// Epoch seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Upper-case hex SHA-1 fingerprint, no colons.
    pub sha1: String,
}

/// Serial, subject, issuer, validity and SHA-1 fingerprint in one openssl call.
pub fn facts(path: &str) -> Facts {
    let out = openssl(&[
        "x509",
        "-in",
        path,
        "-noout",
        "-serial",
        "-subject",
        "-issuer",
        "-startdate",
        "-enddate",
        "-fingerprint",
        "-sha1",
        "-nameopt",
        "RFC2253",
    ])
    .ok()
    .stdout;
    let get = |prefix: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {out}"))
            .trim()
            .to_string()
    };
    Facts {
        serial: get("serial=").to_uppercase(),
        subject: get("subject="),
        issuer: get("issuer="),
        not_before: parse_openssl_time(&get("notBefore=")),
        not_after: parse_openssl_time(&get("notAfter=")),
        sha1: get("sha1 Fingerprint=").replace(':', "").to_uppercase(),
    }
}

/// SHA-1 or SHA-256 of the DER of many PEM certificate files, with one
/// `openssl dgst` run (the same digest `openssl x509 -fingerprint` shows).
pub fn der_digests(paths: &[String], alg: &str) -> Vec<String> {
    use base64::Engine;
    let dir = tmp();
    let mut ders = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let text = read(path);
        let b64: String = text
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("PEM base64");
        let out = dir.path().join(format!("{i}.der"));
        fs::write(&out, der).unwrap();
        ders.push(s(&out).to_string());
    }
    let mut args = vec!["dgst".to_string(), format!("-{alg}"), "-r".to_string()];
    args.extend(ders.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = openssl(&args).ok().stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), paths.len(), "{out}");
    lines
        .iter()
        .zip(&ders)
        .map(|(l, d)| {
            let (hash, file) = l.split_once(' ').expect("dgst -r line");
            assert!(file.trim_start_matches('*') == d.as_str(), "{l}");
            hash.to_uppercase()
        })
        .collect()
}
