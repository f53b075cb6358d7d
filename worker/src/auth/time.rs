//! Time restrictions on tokens, without a time-zone database.
//!
//! - `business_hours_only`: local time inside `TOKEN_BUSINESS_HOURS` (default
//!   09:00–17:00, end exclusive) in `TOKEN_TIME_ZONE` (default UTC).
//! - `weekdays_only`: Monday to Friday in that same zone.
//! - `start_time`/`end_time` (`HH:MM[:SS]`, both inclusive, wrapping past midnight
//!   when start > end), `days` (`Monday`…), `timezone` (default UTC): the window
//!   ContextForge checks at verification. `timezone` must be UTC or a fixed offset
//!   (`+02:00`); a zone name, a half window, an unknown day or a bad time refuses
//!   the request (fail closed).

use super::claims::TimeRestrictions;
use fleetgate_shared::config::{AuthConfig, UtcOffset};

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Local (weekday 0 = Monday, second of the day) of `now` at `offset`.
fn local(now: u64, offset: UtcOffset) -> (usize, u32) {
    let t = i64::try_from(now).unwrap_or(i64::MAX) + i64::from(offset.minutes) * 60;
    // 1970-01-01 was a Thursday (3 with Monday = 0).
    let weekday = (t.div_euclid(86_400) + 3).rem_euclid(7) as usize;
    (weekday, t.rem_euclid(86_400) as u32)
}

/// `HH:MM` or `HH:MM:SS` → seconds since midnight.
fn parse_clock(s: &str) -> Option<u32> {
    let mut parts = s.split(':');
    let mut field = |max: u32| -> Option<u32> {
        let p = parts.next()?;
        let ok = (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| p.parse::<u32>().ok())
            .flatten()
            .filter(|v| *v <= max)
    };
    let (h, m) = (field(23)?, field(59)?);
    let s = match parts.next() {
        None => 0,
        Some(p) if p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u32>().ok().filter(|s| *s <= 59)?
        }
        Some(_) => return None,
    };
    parts.next().is_none().then_some(h * 3600 + m * 60 + s)
}

/// Whether a token with these restrictions may be used at `now` (Unix seconds).
pub fn time_allowed(restrictions: &TimeRestrictions, now: u64, cfg: &AuthConfig) -> bool {
    let r = restrictions;
    let (weekday, second) = local(now, cfg.time_zone);
    if r.business_hours_only && !cfg.business_hours.contains((second / 60) as u16) {
        return false;
    }
    if r.weekdays_only && weekday >= 5 {
        return false;
    }
    let start = r.start_time.as_deref().filter(|s| !s.is_empty());
    let end = r.end_time.as_deref().filter(|s| !s.is_empty());
    if start.is_none() && end.is_none() && r.days.is_empty() {
        return true;
    }
    let Ok(offset) = UtcOffset::parse(r.timezone.as_deref().unwrap_or("UTC")) else {
        return false;
    };
    let (weekday, second) = local(now, offset);
    if r.days.iter().any(|d| !DAYS.contains(&d.as_str())) {
        return false;
    }
    if !r.days.is_empty() && !r.days.iter().any(|d| d == DAYS[weekday]) {
        return false;
    }
    match (start, end) {
        (None, None) => true,
        (Some(s), Some(e)) => match (parse_clock(s), parse_clock(e)) {
            (Some(s), Some(e)) if s <= e => (s..=e).contains(&second),
            (Some(s), Some(e)) => second >= s || second <= e,
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::config_tests::cfg;

    // 2026-11-23 is a Monday; 2026-11-21 a Saturday.
    const MONDAY_0000_UTC: u64 = 1_795_392_000;
    const H: u64 = 3600;

    fn flags(business: bool, weekdays: bool) -> TimeRestrictions {
        TimeRestrictions {
            business_hours_only: business,
            weekdays_only: weekdays,
            ..Default::default()
        }
    }

    #[test]
    fn civil_time() {
        assert_eq!(local(MONDAY_0000_UTC, UtcOffset::UTC), (0, 0));
        assert_eq!(local(0, UtcOffset::UTC), (3, 0));
        assert_eq!(
            local(MONDAY_0000_UTC, UtcOffset { minutes: -60 }),
            (6, 23 * 3600)
        );
        assert_eq!(parse_clock("09:30"), Some(9 * 3600 + 30 * 60));
        assert_eq!(parse_clock("9:05:07"), Some(9 * 3600 + 5 * 60 + 7));
        for bad in ["24:00", "9", "09:60", "x:00", "09:00:00:00", "09:00:5"] {
            assert_eq!(parse_clock(bad), None, "{bad}");
        }
    }

    #[test]
    fn business_hours_and_weekdays() {
        let c = cfg(&[]);
        let bh = flags(true, false);
        assert!(time_allowed(&flags(false, false), MONDAY_0000_UTC, &c));
        assert!(!time_allowed(&bh, MONDAY_0000_UTC + 8 * H, &c));
        assert!(time_allowed(&bh, MONDAY_0000_UTC + 9 * H, &c));
        assert!(time_allowed(&bh, MONDAY_0000_UTC + 17 * H - 1, &c));
        assert!(!time_allowed(&bh, MONDAY_0000_UTC + 17 * H, &c));
        let wd = flags(false, true);
        assert!(time_allowed(&wd, MONDAY_0000_UTC + 4 * 24 * H, &c)); // Friday
        assert!(!time_allowed(&wd, MONDAY_0000_UTC + 5 * 24 * H, &c)); // Saturday
        assert!(!time_allowed(&wd, MONDAY_0000_UTC - 1, &c)); // Sunday 23:59:59
    }

    #[test]
    fn configured_window_and_offset() {
        let c = cfg(&[
            ("TOKEN_BUSINESS_HOURS", "08:00-12"),
            ("TOKEN_TIME_ZONE", "+02:00"),
        ]);
        let bh = flags(true, true);
        // 06:00 UTC is 08:00 at +02:00
        assert!(time_allowed(&bh, MONDAY_0000_UTC + 6 * H, &c));
        assert!(!time_allowed(&bh, MONDAY_0000_UTC + 10 * H, &c));
        // Sunday 23:00 UTC is Monday 01:00 local: a weekday, outside the window
        assert!(!time_allowed(&bh, MONDAY_0000_UTC - H, &c));
        assert!(time_allowed(&flags(false, true), MONDAY_0000_UTC - H, &c));
    }

    #[test]
    fn explicit_windows() {
        let c = cfg(&[]);
        let w = |start: &str, end: &str, tz: Option<&str>, days: &[&str]| TimeRestrictions {
            start_time: Some(start.into()).filter(|s: &String| !s.is_empty()),
            end_time: Some(end.into()).filter(|s: &String| !s.is_empty()),
            timezone: tz.map(Into::into),
            days: days.iter().map(|d| d.to_string()).collect(),
            ..Default::default()
        };
        let at = |r: &TimeRestrictions, secs: u64| time_allowed(r, MONDAY_0000_UTC + secs, &c);
        assert!(at(&w("09:00", "17:00", None, &[]), 17 * H));
        assert!(!at(&w("09:00", "17:00", None, &[]), 17 * H + 1));
        assert!(at(&w("22:00", "06:00", None, &[]), 23 * H));
        assert!(!at(&w("22:00", "06:00", None, &[]), 12 * H));
        assert!(at(
            &w("10:00", "11:00", Some("UTC-05:00"), &[]),
            15 * H + 30 * 60
        ));
        assert!(at(&w("", "", None, &["Monday"]), 0));
        assert!(!at(&w("", "", None, &["Tuesday", "Friday"]), 0));
        // fail closed
        assert!(!at(&w("", "", None, &["Funday"]), 0));
        assert!(!at(&w("09:00", "", None, &[]), 10 * H));
        assert!(!at(&w("9am", "5pm", None, &[]), 10 * H));
        assert!(!at(
            &w("09:00", "17:00", Some("America/New_York"), &[]),
            10 * H
        ));
    }
}
