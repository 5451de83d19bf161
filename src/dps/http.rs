//! HTTP plumbing shared by the DPS service client, the device registration
//! client and the ARM (management plane) client.
//!
//! - One reqwest client per command, rustls with the aws-lc-rs provider, the
//!   platform's trust store plus any `--ca-file` certificates (so the same
//!   binary talks to Azure and to `pki emulator`), optional TLS client
//!   identity (device registration), connect and request timeouts.
//! - [`Http::send`] retries, with exponential backoff and jitter, on 429
//!   (honouring `Retry-After`), 5xx and connection errors, a bounded number
//!   of times. It re-builds the request for every attempt so a SAS token is
//!   re-signed each time.
//! - Failures become a typed [`HttpError`] whose message is one line:
//!   `DPS error 401002: Unauthorized (tracking id …)` plus a hint. No message
//!   ever contains request headers, so SAS tokens and bearer tokens never leak.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use crate::error::{Error, Result};

/// `User-Agent` sent with every request.
pub const USER_AGENT: &str = concat!("pki/", env!("CARGO_PKG_VERSION"));

/// Longest `Retry-After` we honour; a bigger value is clamped so a confused
/// server cannot park the CLI for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How a command's HTTP client is set up.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Extra trusted roots (PEM), e.g. the emulator's TLS CA.
    pub ca_file: Option<PathBuf>,
    /// Attempts per request, first try included (at least 1).
    pub attempts: u32,
    /// First backoff delay; doubles per retry, with jitter.
    pub backoff: Duration,
    /// Per-request timeout (connect + response).
    pub timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            ca_file: None,
            attempts: 4,
            backoff: Duration::from_millis(300),
            timeout: Duration::from_secs(30),
        }
    }
}

/// What went wrong with a request. Displayed as one line with a hint.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The service answered with an error status.
    #[error("{}", status_message(.service, *.status, .detail.as_ref(), .hint.as_deref()))]
    Status {
        /// "DPS" or "Azure management API".
        service: &'static str,
        /// HTTP status.
        status: StatusCode,
        /// Parsed error body, if it had a known shape.
        detail: Option<ErrorDetail>,
        /// How to fix it, when we know.
        hint: Option<String>,
        /// Raw body (kept for callers that need more, never printed whole).
        body: String,
    },
    /// The server's TLS certificate is not trusted.
    #[error(
        "the TLS certificate of {host} is not trusted ({reason}); if it is the emulator or another private CA, pass its CA certificate with --ca-file PEM (or set SSL_CERT_FILE)"
    )]
    Untrusted { host: String, reason: String },
    /// No connection could be made (after retries).
    #[error(
        "cannot reach {host} after {attempts} attempt(s): {reason}; check the host name and port"
    )]
    Unreachable {
        host: String,
        attempts: u32,
        reason: String,
    },
    /// The request timed out (after retries).
    #[error("{host} did not answer within {secs} s (after {attempts} attempt(s))")]
    Timeout {
        host: String,
        secs: u64,
        attempts: u32,
    },
    /// An `https://` request reached a port that does not speak TLS
    /// (rustls's "received corrupt message of type InvalidContentType").
    #[error(
        "{host} does not speak TLS (its reply is not a TLS handshake, as from a plain-HTTP port): check the host and port, which must be the HTTPS one (the emulator prints it as `listening on https://…`)"
    )]
    NotTls { host: String },
    /// An `http://` request (`--insecure-http`) reached a TLS port (hyper's
    /// "invalid HTTP version parsed": the TLS alert is not HTTP).
    #[error(
        "{host} speaks TLS, not plain HTTP: it is an HTTPS port (as the emulator's is); use https://{host} and drop --insecure-http"
    )]
    NotHttp { host: String },
    /// Anything else reqwest reports (malformed response, protocol error).
    #[error("request to {host} failed: {reason}")]
    Other { host: String, reason: String },
}

impl HttpError {
    /// The HTTP status, for errors that have one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<HttpError> for Error {
    fn from(e: HttpError) -> Self {
        Error::Service(e.to_string())
    }
}

/// The fields of a service error body, in any of the shapes DPS and ARM use
/// (dps-protocol.md §5.1): `{errorCode, trackingId, message}`, the gateway's
/// `{Message, ExceptionMessage}` and ARM's `{"error": {code, message}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorDetail {
    /// `errorCode` (DPS: 6 digits) or ARM's `code`.
    pub code: Option<String>,
    /// Human message.
    pub message: Option<String>,
    /// `trackingId`, or the gateway's `ExceptionMessage` (which holds it).
    pub tracking_id: Option<String>,
}

impl ErrorDetail {
    /// Parses an error body; `None` if it has none of the known shapes.
    pub fn parse(body: &str) -> Option<ErrorDetail> {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        let text = |v: Option<&serde_json::Value>| -> Option<String> {
            match v? {
                serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let d = if let Some(err) = v.get("error").filter(|e| e.is_object()) {
            ErrorDetail {
                code: text(err.get("code")),
                message: text(err.get("message")),
                tracking_id: None,
            }
        } else {
            ErrorDetail {
                code: text(v.get("errorCode")).or_else(|| text(v.get("code"))),
                message: text(v.get("message")).or_else(|| text(v.get("Message"))),
                tracking_id: text(v.get("trackingId")).or_else(|| text(v.get("ExceptionMessage"))),
            }
        };
        (d.code.is_some() || d.message.is_some()).then_some(d)
    }
}

fn status_message(
    service: &str,
    status: StatusCode,
    detail: Option<&ErrorDetail>,
    hint: Option<&str>,
) -> String {
    let mut s = match detail {
        Some(d) => {
            let code = d
                .code
                .clone()
                .unwrap_or_else(|| status.as_u16().to_string());
            let mut s = format!(
                "{service} error {code}: {}",
                d.message.as_deref().unwrap_or("(no message)")
            );
            if let Some(t) = &d.tracking_id {
                s.push_str(&format!(" (tracking id {t})"));
            }
            s
        }
        None => format!("{service} answered HTTP {status}"),
    };
    if let Some(h) = hint {
        s.push_str("; ");
        s.push_str(h);
    }
    s
}

/// A successful reply, body read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (`null` for an empty body).
    pub fn json(&self) -> Result<serde_json::Value> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::Service(format!("the service sent a body that is not JSON: {e}")))
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Retry-After` in seconds, if present (clamped to [`MAX_RETRY_AFTER`]).
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    // DPS sends whole seconds; an HTTP date is legal but never seen, so it
    // falls back to our own backoff.
    let secs: f64 = v
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)?;
    Some(Duration::from_secs_f64(secs).min(MAX_RETRY_AFTER))
}

/// A configured HTTP client.
#[derive(Clone, Debug)]
pub struct Http {
    client: reqwest::Client,
    opts: HttpOptions,
    service: &'static str,
}

/// The TLS client identity for device registration: the key (PKCS#8 PEM)
/// followed by the certificate chain (PEM, leaf first).
pub struct ClientIdentity {
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIdentity([secret elided])")
    }
}

/// Installs aws-lc-rs as rustls' process-wide provider (reqwest is built
/// with `rustls-no-provider`). Idempotent: a second call is a no-op.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Reads a PEM bundle of trusted roots for `--ca-file`.
pub fn load_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>> {
    let data = crate::fsio::read_input(path)?;
    let certs = reqwest::Certificate::from_pem_bundle(&data).map_err(|_| {
        Error::input(format!(
            "{} is not a PEM certificate bundle (--ca-file wants the CA certificate in PEM)",
            path.display()
        ))
    })?;
    if certs.is_empty() {
        return Err(Error::input(format!(
            "{} holds no certificate (--ca-file wants the CA certificate in PEM)",
            path.display()
        )));
    }
    Ok(certs)
}

impl Http {
    /// Builds a client. `service` names the other side in error messages.
    pub fn new(
        service: &'static str,
        opts: HttpOptions,
        identity: Option<ClientIdentity>,
    ) -> Result<Http> {
        install_crypto_provider();
        let mut b = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
            .timeout(opts.timeout)
            .tls_backend_rustls();
        if let Some(path) = &opts.ca_file {
            b = b.tls_certs_merge(load_ca_file(path)?);
        }
        if let Some(id) = identity {
            let id = reqwest::Identity::from_pem(&id.pem).map_err(|_| {
                Error::input("the device certificate chain or key cannot be used for TLS")
            })?;
            b = b.identity(id);
        }
        let client = b
            .build()
            .map_err(|e| Error::failed(format!("cannot set up the HTTPS client: {e}")))?;
        Ok(Http {
            client,
            opts,
            service,
        })
    }

    /// The underlying client, for building requests.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends the request made by `build`, retrying transient failures.
    ///
    /// `build` is called once per attempt (fresh SAS token each time).
    /// Returns the reply for any 2xx status; every other status is an
    /// [`HttpError::Status`] (with `hint_for` consulted for the hint).
    pub async fn send<F>(
        &self,
        host: &str,
        build: F,
        hint_for: &dyn Fn(StatusCode) -> Option<String>,
    ) -> Result<Reply, HttpError>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let attempts = self.opts.attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= attempts;
            let result = build(&self.client).send().await;
            let delay = match result {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let body = match resp.bytes().await {
                        Ok(b) => b.to_vec(),
                        Err(e) if !last && is_transient(&e) => {
                            tokio::time::sleep(self.backoff(attempt)).await;
                            continue;
                        }
                        Err(e) => return Err(self.transport_error(host, e, attempt)),
                    };
                    if status.is_success() {
                        return Ok(Reply {
                            status,
                            headers,
                            body,
                        });
                    }
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS
                        || status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED;
                    if !retryable || last {
                        let body = String::from_utf8_lossy(&body).into_owned();
                        let mut hint = hint_for(status).or_else(|| default_hint(status));
                        if retryable && attempts > 1 {
                            let tries = format!("gave up after {attempts} attempts");
                            hint = Some(match hint {
                                Some(h) => format!("{h} ({tries})"),
                                None => tries,
                            });
                        }
                        return Err(HttpError::Status {
                            service: self.service,
                            status,
                            detail: ErrorDetail::parse(&body),
                            hint,
                            body,
                        });
                    }
                    retry_after(&headers).unwrap_or_else(|| self.backoff(attempt))
                }
                Err(e) => {
                    if last || !is_transient(&e) {
                        return Err(self.transport_error(host, e, attempt));
                    }
                    self.backoff(attempt)
                }
            };
            tokio::time::sleep(delay).await;
        }
    }

    /// Exponential backoff with full jitter in [base/2, base] × 2^(attempt-1).
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .opts
            .backoff
            .saturating_mul(1u32 << (attempt - 1).min(6));
        let mut b = [0u8; 2];
        // Jitter need not be cryptographic; if the RNG fails use the midpoint.
        let r = aws_lc_rs::rand::fill(&mut b)
            .map(|()| u16::from_le_bytes(b))
            .unwrap_or(u16::MAX / 2);
        base / 2 + base.mul_f64(f64::from(r) / f64::from(u16::MAX) / 2.0)
    }

    fn transport_error(&self, host: &str, e: reqwest::Error, attempts: u32) -> HttpError {
        let host = host.to_string();
        if let Some(reason) = untrusted_reason(&e) {
            return HttpError::Untrusted { host, reason };
        }
        match protocol_mismatch(&e) {
            Some(Mismatch::NotTls) => return HttpError::NotTls { host },
            Some(Mismatch::NotHttp) => return HttpError::NotHttp { host },
            None => {}
        }
        if e.is_timeout() {
            return HttpError::Timeout {
                host,
                secs: self.opts.timeout.as_secs(),
                attempts,
            };
        }
        let reason = innermost(&e);
        if e.is_connect() {
            HttpError::Unreachable {
                host,
                attempts,
                reason,
            }
        } else {
            HttpError::Other { host, reason }
        }
    }
}

/// Whether a transport error is worth retrying: connection failures and
/// timeouts, but not TLS trust failures or the wrong protocol on the port
/// (those never fix themselves).
fn is_transient(e: &reqwest::Error) -> bool {
    untrusted_reason(e).is_none()
        && protocol_mismatch(e).is_none()
        && (e.is_connect() || e.is_timeout() || e.is_request())
}

/// The other side speaks the other protocol than the URL's scheme.
enum Mismatch {
    /// `https://` to a port that answers without TLS.
    NotTls,
    /// `http://` to a port that answers with TLS.
    NotHttp,
}

fn protocol_mismatch(e: &reqwest::Error) -> Option<Mismatch> {
    let errors = chain(e);
    // rustls reads the first bytes of a plain-HTTP reply ("HTTP/1.1 400")
    // as a TLS record of an unknown content type.
    if errors.iter().any(|err| {
        matches!(
            err.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidMessage(_))
        )
    }) {
        return Some(Mismatch::NotTls);
    }
    // A TLS server answers a plain request with an alert record, which
    // hyper cannot parse as a status line.
    let plain = e.url().is_some_and(|u| u.scheme() == "http");
    let unparsable = errors.iter().any(|err| {
        err.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
    });
    (plain && unparsable).then_some(Mismatch::NotHttp)
}

/// Walks an error's sources, looking inside `io::Error`s too (their
/// `source()` skips the wrapped error, which is where rustls' error lives).
fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        out.push(err);
        cur = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner),
            None => err.source(),
        };
        if out.len() > 16 {
            break;
        }
    }
    out
}

/// If the error is a TLS certificate verification failure, why.
fn untrusted_reason(e: &reqwest::Error) -> Option<String> {
    for err in chain(e) {
        if let Some(rustls::Error::InvalidCertificate(c)) = err.downcast_ref::<rustls::Error>() {
            return Some(certificate_problem(c));
        }
        // Through some layers only the text survives: "invalid peer
        // certificate: UnknownIssuer".
        let text = err.to_string();
        if let Some((_, why)) = text.split_once("invalid peer certificate: ") {
            let why = why.trim();
            return Some(problem_by_name(why).map_or_else(|| why.to_string(), str::to_string));
        }
    }
    None
}

/// Why a server certificate was refused, in words: rustls prints most
/// [`rustls::CertificateError`] variants as their Rust names (`UnknownIssuer`).
pub fn certificate_problem(c: &rustls::CertificateError) -> String {
    let text = c.to_string();
    // The variants with context print as sentences already.
    match problem_by_name(&text) {
        Some(words) => words.to_string(),
        None => text,
    }
}

/// [`certificate_problem`] of a variant printed by its name.
fn problem_by_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "UnknownIssuer" => "it is issued by a CA this client does not trust",
        "BadSignature" => "its signature does not verify",
        "BadEncoding" => "it is malformed",
        "Expired" => "it has expired",
        "NotValidYet" => "it is not valid yet",
        "Revoked" => "it is revoked",
        "NotValidForName" => "it is not valid for this host name",
        "InvalidPurpose" => "it is not a TLS server certificate",
        "UnhandledCriticalExtension" => "it has a critical extension this client does not know",
        "UnknownRevocationStatus" => "its revocation status is unknown",
        "ExpiredRevocationList" => "the revocation list for it has expired",
        "ApplicationVerificationFailure" => "the TLS verifier refused it",
        _ => return None,
    })
}

/// The most specific message in an error chain (e.g. "Connection refused").
fn innermost(e: &reqwest::Error) -> String {
    chain(e)
        .last()
        .map(|e| e.to_string())
        .unwrap_or_else(|| e.to_string())
}

fn default_hint(status: StatusCode) -> Option<String> {
    match status.as_u16() {
        429 => Some("DPS is throttling requests; wait and try again".into()),
        _ => None,
    }
}

/// The host (and port) part of a base URL, for messages.
pub fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or(url)
        .to_string()
}

/// Checks an endpoint URL that credentials (a bearer token) are sent to:
/// `https://` only, or `http://` to a loopback host when `insecure_http`
/// is set, which returns a warning to print.
pub fn check_endpoint(url: &str, flag: &str, insecure_http: bool) -> Result<Option<String>> {
    let parsed = reqwest::Url::parse(url).map_err(|_| {
        Error::input(format!(
            "{flag} must be a URL such as https://management.azure.com"
        ))
    })?;
    match parsed.scheme() {
        "https" => Ok(None),
        "http" => {
            let host = parsed.host_str().unwrap_or("");
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = bare.eq_ignore_ascii_case("localhost")
                || bare
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(Error::input(format!(
                    "{flag} is plain http to a host that is not loopback: the bearer token would travel in clear; use https://"
                )));
            }
            if !insecure_http {
                return Err(Error::input(format!(
                    "{flag} is plain http: the bearer token would travel in clear; use https://, or pass --insecure-http for a local test server"
                )));
            }
            Ok(Some(format!(
                "{flag} is plain http (--insecure-http): the bearer token is sent unencrypted to {}",
                parsed.host_str().unwrap_or("")
            )))
        }
        _ => Err(Error::input(format!(
            "{flag} must be an https:// URL such as https://management.azure.com"
        ))),
    }
}

/// Percent-encodes one path segment the way the Node SDK's
/// `encodeURIComponent` does.
pub fn encode_segment(s: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'!')
        .remove(b'~')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    utf8_percent_encode(s, KEEP).to_string()
}

/// The request method, re-exported so callers need not name reqwest.
pub type HttpMethod = Method;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_error_shapes() {
        let d = ErrorDetail::parse(
            r#"{"errorCode":401002,"trackingId":"t-1","message":"Unauthorized","timestampUtc":"x"}"#,
        )
        .unwrap();
        assert_eq!(d.code.as_deref(), Some("401002"));
        assert_eq!(d.tracking_id.as_deref(), Some("t-1"));
        let msg = status_message("DPS", StatusCode::UNAUTHORIZED, Some(&d), None);
        assert_eq!(msg, "DPS error 401002: Unauthorized (tracking id t-1)");

        let d = ErrorDetail::parse(r#"{"error":{"code":"InvalidCertificate","message":"bad"}}"#)
            .unwrap();
        assert_eq!(d.code.as_deref(), Some("InvalidCertificate"));

        let d = ErrorDetail::parse(
            r#"{"Message":"ErrorCode:ArgumentInvalid;Unknown api version","ExceptionMessage":"Tracking ID:abc"}"#,
        )
        .unwrap();
        assert!(d.message.unwrap().contains("Unknown api version"));
        assert!(ErrorDetail::parse("<html>").is_none());
    }

    #[test]
    fn retry_after_is_seconds_and_clamped() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after", "99999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn segments_are_encoded_like_node() {
        assert_eq!(encode_segment("a:b c/d"), "a%3Ab%20c%2Fd");
        assert_eq!(encode_segment("grp-1.x_y"), "grp-1.x_y");
    }
}
