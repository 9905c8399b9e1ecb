//! Printing timestamps and ages for evidence lines (UTC, no time-zone
//! database needed).

use rekey_core::model::Timestamp;

/// One minute in milliseconds.
pub(crate) const MINUTE_MS: i64 = 60_000;
/// One day in milliseconds.
pub(crate) const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

/// `2025-06-01T12:30:00Z` for a timestamp (to the second, UTC).
#[must_use]
pub(crate) fn iso8601(t: Timestamp) -> String {
    let secs = t.as_millis().div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// `3 days`, `5 min`, `12 s`: how long ago `then` was at `now` (`in the
/// future` when the clock disagrees).
#[must_use]
pub(crate) fn age(now: Timestamp, then: Timestamp) -> String {
    let ms = now.as_millis().saturating_sub(then.as_millis());
    if ms < 0 {
        return "in the future".to_owned();
    }
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(iso8601(Timestamp(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            iso8601(Timestamp(1_748_781_000_000)),
            "2025-06-01T12:30:00Z"
        );
        assert_eq!(iso8601(Timestamp(951_782_400_000)), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn ages() {
        let now = Timestamp(10 * DAY_MS);
        assert_eq!(age(now, Timestamp(10 * DAY_MS - 5_000)), "5 s ago");
        assert_eq!(
            age(now, Timestamp(10 * DAY_MS - 10 * MINUTE_MS)),
            "10 min ago"
        );
        assert_eq!(age(now, Timestamp(0)), "10 days ago");
        assert_eq!(age(now, Timestamp(11 * DAY_MS)), "in the future");
    }
}
