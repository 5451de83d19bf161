//! The emulator's clock: the one "now" every validity check uses.
//!
//! Device chain validity, SAS token expiry (service and device) and the
//! validity of certificates issued for CSRs all read [`Clock::now`], never
//! the system clock directly. The clock is real time plus an offset held in
//! an atomic, so `pki emulator --clock INSTANT|OFFSET` and
//! `PUT /emulator/clock` can move it while requests are in flight; it keeps
//! ticking from wherever it was set.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};
use crate::validity::{TimeSpec, show, show_duration};

/// Real time plus an offset (whole seconds).
#[derive(Debug, Default)]
pub struct Clock {
    offset_secs: AtomicI64,
    /// Whether the clock was ever set (`--clock` or `PUT`), for messages.
    set: AtomicBool,
}

/// What `GET /emulator/clock` answers and `PUT` echoes.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClockView {
    /// The emulator's now, RFC 3339.
    pub now: String,
    /// Offset from real time in seconds (negative: in the past).
    pub offset_seconds: i64,
    /// The offset as `+30d`, `-1d2h`, `0m`.
    pub offset: String,
    /// Whether the clock follows real time (offset 0).
    pub real_time: bool,
}

/// The body of `PUT /emulator/clock`: exactly one of `now` and `offset`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockRequest {
    /// An RFC 3339 instant, or an offset from real time (`-1d`).
    pub now: Option<String>,
    /// An offset from real time (`+30d`, `0s` for real time).
    pub offset: Option<String>,
}

impl ClockRequest {
    /// The instant or offset asked for; `Err` is a one-line reason.
    pub fn spec(&self) -> std::result::Result<TimeSpec, String> {
        match (&self.now, &self.offset) {
            (Some(n), None) => n.parse(),
            (None, Some(o)) => match o.parse::<TimeSpec>()? {
                TimeSpec::Offset(d) => Ok(TimeSpec::Offset(d)),
                TimeSpec::At(_) => Err(format!(
                    "`offset` `{o}` is an instant: send it as {{\"now\":\"{o}\"}}"
                )),
            },
            _ => Err(
                "send exactly one of {\"now\":\"2027-01-01T00:00:00Z\"} and {\"offset\":\"+30d\"}"
                    .into(),
            ),
        }
    }
}

fn real_now() -> OffsetDateTime {
    crate::validity::now_utc()
}

impl Clock {
    /// A clock at `spec` (an instant, or an offset from real time); `None`: real time.
    pub fn new(spec: Option<TimeSpec>) -> Result<Clock> {
        let c = Clock::default();
        if let Some(s) = spec {
            c.set(s)?;
        }
        Ok(c)
    }

    /// Moves the clock to `spec`; it keeps ticking from there.
    pub fn set(&self, spec: TimeSpec) -> Result<()> {
        let real = real_now();
        let target = spec.resolve(real)?;
        if !(1..10000).contains(&target.year()) {
            return Err(Error::input(
                "the clock must stay within the years 1 to 9999",
            ));
        }
        let offset = (target - real).whole_seconds();
        self.offset_secs.store(offset, Ordering::SeqCst);
        self.set.store(offset != 0, Ordering::SeqCst);
        Ok(())
    }

    /// The offset from real time.
    pub fn offset(&self) -> Duration {
        Duration::seconds(self.offset_secs.load(Ordering::SeqCst))
    }

    /// Whether the clock differs from real time.
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// The emulator's now, whole seconds.
    pub fn now(&self) -> OffsetDateTime {
        let real = real_now();
        real.checked_add(self.offset()).unwrap_or(real)
    }

    /// The emulator's now as seconds since the Unix epoch (0 before 1970).
    pub fn now_unix(&self) -> u64 {
        u64::try_from(self.now().unix_timestamp()).unwrap_or(0)
    }

    /// `2027-01-01T00:00:00Z` (or `… (real time)`), for refusal messages.
    pub fn describe(&self) -> String {
        let now = show(self.now());
        if self.is_set() {
            now
        } else {
            format!("{now} (real time)")
        }
    }

    /// The JSON view of the clock.
    pub fn view(&self) -> ClockView {
        let offset = self.offset();
        let sign = if offset.is_negative() { "" } else { "+" };
        ClockView {
            now: show(self.now()),
            offset_seconds: offset.whole_seconds(),
            offset: format!("{sign}{}", show_duration(offset)),
            real_time: offset.is_zero(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_instants_move_the_clock() {
        let c = Clock::new(None).expect("clock");
        assert!(!c.is_set());
        assert!(c.describe().ends_with("(real time)"));
        c.set("+30d".parse().expect("spec")).expect("set");
        assert!(c.is_set());
        let d = c.now() - real_now();
        assert!((d - Duration::days(30)).abs() <= Duration::seconds(2));
        c.set("2027-01-01T00:00:00Z".parse().expect("spec"))
            .expect("set");
        let now = c.now();
        assert_eq!(now.year(), 2027);
        assert!(c.view().now.starts_with("2027-01-01T00:00:0"));
        c.set("0s".parse().expect("spec")).expect("set");
        assert!(c.view().real_time);
    }

    #[test]
    fn requests_need_exactly_one_field() {
        let r = |n: Option<&str>, o: Option<&str>| ClockRequest {
            now: n.map(str::to_string),
            offset: o.map(str::to_string),
        };
        assert!(r(Some("2027-01-01T00:00:00Z"), None).spec().is_ok());
        assert!(r(None, Some("+30d")).spec().is_ok());
        assert!(r(None, Some("2027-01-01T00:00:00Z")).spec().is_err());
        assert!(r(None, None).spec().is_err());
        assert!(r(Some("1d"), Some("1d")).spec().is_err());
        assert!(r(Some("tomorrow"), None).spec().is_err());
    }
}
