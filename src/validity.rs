//! Validity windows: when a certificate starts and stops being valid.
//!
//! One type, [`Validity`], carries what the user asked for on any issuing
//! command (`--not-before`, `--not-after`, `--days`, the `--expired` and
//! `--not-yet-valid` shortcuts, the two `--allow-…-issuer` overrides) and the
//! instant that stands for "now" (the real clock, or `--epoch`).
//! [`crate::issue`] turns it into a [`Window`] against the issuer, the one
//! place validity is decided. The same parsers serve `pki inspect
//! --expiring-within` and the emulator's `--clock`.

use std::fmt;
use std::str::FromStr;

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};

/// How far notBefore is back-dated by default, so devices with a slow clock
/// accept new certificates.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// An instant, absolute or relative to "now": `2026-01-01T00:00:00Z`,
/// `-1d`, `+10m`, `90d` (no sign means later).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSpec {
    /// An RFC 3339 instant.
    At(OffsetDateTime),
    /// An offset from now.
    Offset(Duration),
}

impl TimeSpec {
    /// The instant this stands for when "now" is `now`.
    pub fn resolve(self, now: OffsetDateTime) -> Result<OffsetDateTime> {
        match self {
            TimeSpec::At(t) => Ok(t),
            TimeSpec::Offset(d) => now
                .checked_add(d)
                .filter(|t| (1..10000).contains(&t.year()))
                .ok_or_else(|| {
                    Error::input(format!("{} from now is out of range", show_duration(d)))
                }),
        }
    }
}

impl FromStr for TimeSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
            return Ok(TimeSpec::At(t));
        }
        parse_signed_duration(s).map(TimeSpec::Offset).map_err(|_| {
            format!(
                "`{s}` is neither an RFC 3339 instant (2026-01-01T00:00:00Z) nor an offset from now (-1d, +10m, 90d; units s, m, h, d, w, y)"
            )
        })
    }
}

/// Parses `30d`, `12h`, `1d12h`, `90m`, `2w`, `1y` (365 days); no sign.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    if s.starts_with(['+', '-']) {
        return Err(format!(
            "`{s}` is a length of time: give it without a sign (30d)"
        ));
    }
    parse_signed_duration(s).map_err(|()| {
        format!("`{s}` is not a length of time (30d, 12h, 1d12h; units s, m, h, d, w, y)")
    })
}

/// A duration with an optional sign: `-1d`, `+10m`, `1d12h`.
fn parse_signed_duration(s: &str) -> std::result::Result<Duration, ()> {
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest.is_empty() {
        return Err(());
    }
    let mut total = Duration::ZERO;
    let mut digits = String::new();
    for c in rest.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().map_err(|_| ())?;
        digits.clear();
        let unit = match c {
            's' => Duration::seconds(1),
            'm' => Duration::minutes(1),
            'h' => Duration::hours(1),
            'd' => Duration::days(1),
            'w' => Duration::weeks(1),
            'y' => Duration::days(365),
            _ => return Err(()),
        };
        let part = unit
            .checked_mul(i32::try_from(n).map_err(|_| ())?)
            .ok_or(())?;
        total = total.checked_add(part).ok_or(())?;
    }
    if !digits.is_empty() {
        // A bare number has no unit: refuse rather than guess.
        return Err(());
    }
    Ok(if neg { -total } else { total })
}

/// `3d 4h` style, for messages.
pub fn show_duration(d: Duration) -> String {
    let sign = if d.is_negative() { "-" } else { "" };
    let d = d.abs();
    let (days, hours, minutes) = (d.whole_days(), d.whole_hours() % 24, d.whole_minutes() % 60);
    match (days, hours, minutes) {
        (0, 0, m) => format!("{sign}{m}m"),
        (0, h, 0) => format!("{sign}{h}h"),
        (0, h, m) => format!("{sign}{h}h{m}m"),
        (d, 0, _) => format!("{sign}{d}d"),
        (d, h, _) => format!("{sign}{d}d{h}h"),
    }
}

/// RFC 3339 with seconds, as every message and the manifest show instants.
pub fn show(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// What an issuing command was asked for, and its "now".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validity {
    /// The instant that stands for now: signing time, and the base of offsets.
    pub now: OffsetDateTime,
    /// Start (default: now minus [`CLOCK_SKEW`]).
    pub not_before: Option<TimeSpec>,
    /// End (default: the start, or now when the start is the default, plus `days`).
    pub not_after: Option<TimeSpec>,
    /// Length in days when `not_after` is not given.
    pub days: u32,
    /// Let the child end after its issuer (otherwise it is cut to the issuer's end).
    pub allow_outliving_issuer: bool,
    /// Let an issuer that has expired (at `now`) sign.
    pub allow_expired_issuer: bool,
}

/// A resolved notBefore/notAfter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// notBefore.
    pub not_before: OffsetDateTime,
    /// notAfter.
    pub not_after: OffsetDateTime,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to {}", show(self.not_before), show(self.not_after))
    }
}

/// The system clock, whole seconds (certificates hold no fractions).
pub fn now_utc() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

impl Validity {
    /// `days` from the real now, nothing else asked.
    pub fn days(days: u32) -> Validity {
        Validity {
            now: now_utc(),
            not_before: None,
            not_after: None,
            days,
            allow_outliving_issuer: false,
            allow_expired_issuer: false,
        }
    }

    /// The same request with another default length (CAs vs devices).
    pub fn with_days(&self, days: u32) -> Validity {
        Validity {
            days,
            ..self.clone()
        }
    }

    /// The window asked for, before any issuer is considered. Refuses a
    /// window that ends at or before its start, 0 days and dates past 9999.
    pub fn window(&self) -> Result<Window> {
        let not_before = match self.not_before {
            Some(t) => t.resolve(self.now)?,
            None => self.now - CLOCK_SKEW,
        };
        let not_after = match self.not_after {
            Some(t) => t.resolve(self.now)?,
            None => {
                if self.days == 0 {
                    return Err(Error::input("validity must be at least 1 day"));
                }
                let start = if self.not_before.is_some() {
                    not_before
                } else {
                    self.now
                };
                start
                    .checked_add(Duration::days(i64::from(self.days)))
                    .filter(|t| t.year() < 10000)
                    .ok_or_else(|| {
                        Error::input(format!("{} days is too long a validity", self.days))
                    })?
            }
        };
        if not_after.year() >= 10000 || not_before.year() < 1 {
            return Err(Error::input(
                "validity must stay within the years 1 to 9999 (X.509 GeneralizedTime)",
            ));
        }
        if not_after <= not_before {
            return Err(Error::input(format!(
                "the validity window ends ({}) at or before it starts ({}): give a --not-after later than --not-before",
                show(not_after),
                show(not_before)
            )));
        }
        Ok(Window {
            not_before,
            not_after,
        })
    }

    /// Whether a window was asked for explicitly (not just a length).
    pub fn is_explicit(&self) -> bool {
        self.not_before.is_some() || self.not_after.is_some()
    }
}

/// The decision for one certificate under an issuer.
#[derive(Clone, Debug)]
pub struct Decided {
    /// The window to sign.
    pub window: Window,
    /// notAfter was cut to the issuer's by more than an hour.
    pub capped: bool,
    /// Loud notes: an override was used.
    pub warnings: Vec<String>,
}

/// Fits the window asked for under an issuer `(CN, window)`: refuses an
/// expired issuer unless allowed, cuts an outliving child unless allowed.
pub fn decide(v: &Validity, subject: &str, issuer: Option<(&str, Window)>) -> Result<Decided> {
    let mut window = v.window()?;
    let mut capped = false;
    let mut warnings = Vec::new();
    if let Some((cn, iw)) = issuer {
        if iw.not_after <= v.now {
            if !v.allow_expired_issuer {
                return Err(Error::input(format!(
                    "the issuing CA `{cn}` expired at {} (now is {}); roll it with `pki ca roll`, make a new chain with `pki chain new --force`, or pass --allow-expired-issuer to sign with it anyway",
                    show(iw.not_after),
                    show(v.now)
                )));
            }
            warnings.push(format!(
                "`{subject}` is signed by the expired CA `{cn}` (expired at {}), as --allow-expired-issuer asks",
                show(iw.not_after)
            ));
        }
        if window.not_after > iw.not_after {
            if v.allow_outliving_issuer {
                warnings.push(format!(
                    "`{subject}` outlives its issuer `{cn}` (until {}, the issuer until {}), as --allow-outliving-issuer asks",
                    show(window.not_after),
                    show(iw.not_after)
                ));
            } else {
                // A CA made seconds earlier in the same run with the same
                // validity ends a few seconds before the child would: cut it,
                // but that is no news.
                capped = window.not_after - iw.not_after > Duration::hours(1);
                window.not_after = iw.not_after;
                if window.not_after <= window.not_before {
                    return Err(Error::input(format!(
                        "`{subject}` would start ({}) after its issuer `{cn}` ends ({}); pass --allow-outliving-issuer to issue it anyway",
                        show(window.not_before),
                        show(iw.not_after)
                    )));
                }
            }
        }
    }
    Ok(Decided {
        window,
        capped,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_instants_parse() {
        assert_eq!("-1d".parse(), Ok(TimeSpec::Offset(Duration::days(-1))));
        assert_eq!("+10m".parse(), Ok(TimeSpec::Offset(Duration::minutes(10))));
        assert_eq!("90d".parse(), Ok(TimeSpec::Offset(Duration::days(90))));
        assert_eq!("1d12h".parse(), Ok(TimeSpec::Offset(Duration::hours(36))));
        assert!(matches!(
            "2026-01-01T00:00:00Z".parse::<TimeSpec>(),
            Ok(TimeSpec::At(_))
        ));
        for bad in ["", "-", "10", "1x", "d", "tomorrow", "2026-01-01"] {
            assert!(bad.parse::<TimeSpec>().is_err(), "{bad}");
        }
        assert_eq!(parse_duration("30d"), Ok(Duration::days(30)));
        assert!(parse_duration("-30d").is_err());
    }

    #[test]
    fn windows_resolve_and_refuse() {
        let now = OffsetDateTime::parse("2026-01-01T00:00:00Z", &Rfc3339).unwrap();
        let v = Validity {
            now,
            ..Validity::days(30)
        };
        let w = v.window().unwrap();
        assert_eq!(w.not_before, now - CLOCK_SKEW);
        assert_eq!(w.not_after, now + Duration::days(30));
        let later = Validity {
            not_before: Some(TimeSpec::Offset(Duration::days(1))),
            ..v.clone()
        };
        assert_eq!(later.window().unwrap().not_after, now + Duration::days(31));
        let bad = Validity {
            not_before: Some(TimeSpec::Offset(Duration::days(1))),
            not_after: Some(TimeSpec::Offset(Duration::hours(1))),
            ..v.clone()
        };
        assert!(bad.window().is_err());
        // An issuer ending in 10 days cuts a 30-day child unless allowed.
        let iw = Window {
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(10),
        };
        let d = decide(&v, "dev", Some(("ca", iw))).unwrap();
        assert!(d.capped && d.warnings.is_empty());
        assert_eq!(d.window.not_after, iw.not_after);
        let allowed = Validity {
            allow_outliving_issuer: true,
            ..v.clone()
        };
        let d = decide(&allowed, "dev", Some(("ca", iw))).unwrap();
        assert_eq!(d.window.not_after, now + Duration::days(30));
        assert_eq!(d.warnings.len(), 1);
        // An expired issuer refuses unless allowed.
        let expired = Window {
            not_before: now - Duration::days(10),
            not_after: now - Duration::days(1),
        };
        let err = decide(&v, "dev", Some(("old", expired))).unwrap_err();
        assert!(
            err.to_string().contains("expired at 2025-12-31T00:00:00Z"),
            "{err}"
        );
    }
}
