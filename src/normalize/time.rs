//! RFC 3339 timestamps to OCSF `timestamp_t` (milliseconds since the epoch).
//!
//! Hand-written because it is on the hot path of every record and the input
//! shapes are few: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.

/// Parses an RFC 3339 timestamp to milliseconds since the Unix epoch.
/// Invalid dates (month 0, Feb 30, ...) are errors, never a zero time.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = digits(b, 0, 4)? as i64;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let min = digits(b, 14, 2)?;
    let sec = digits(b, 17, 2)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_secs = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = digits(b, i + 1, 2)? as i64;
            let om = digits(b, i + 4, 2)? as i64;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour as i64 * 3600 + min as i64 * 60 + sec.min(59) as i64 - offset_secs;
    Some(secs * 1000 + millis)
}

/// `YYYYMMDD` of a millisecond timestamp, in UTC (for `eventDay=` partitions).
pub fn event_day(ms: i64) -> u32 {
    let days = ms.div_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    (y as u32) * 10_000 + m * 100 + d
}

/// `YYYY-MM-DDTHH:MM:SSZ` (whole seconds, UTC), the form CloudTrail digests use.
pub fn format_rfc3339_s(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", t / 3600, t / 60 % 60, t % 60)
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(at..at + n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

// Howard Hinnant's civil calendar algorithms.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cloudtrail_and_kubernetes_shapes() {
        assert_eq!(parse_rfc3339_ms("2016-07-14T19:15:45Z"), Some(1_468_523_745_000));
        assert_eq!(parse_rfc3339_ms("2023-09-21T22:22:52Z"), Some(1_695_334_972_000));
        assert_eq!(parse_rfc3339_ms("2023-09-21T22:22:52.123456Z"), Some(1_695_334_972_123));
        assert_eq!(parse_rfc3339_ms("2023-09-21T22:22:52.5Z"), Some(1_695_334_972_500));
        assert_eq!(parse_rfc3339_ms("2023-09-22T00:22:52+02:00"), Some(1_695_334_972_000));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59Z"), Some(-1000));
        assert_eq!(parse_rfc3339_ms("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
    }

    #[test]
    fn rejects_invalid_dates() {
        for s in [
            "2000-00-00T00:00:00Z",
            "2021-00-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2023-09-21T24:00:00Z",
            "2023-09-21 22:22:52 UTC",
            "2023-09-21T22:22:52",
            "2023-09-21T22:22:52.Z",
            "not a time",
            "",
        ] {
            assert_eq!(parse_rfc3339_ms(s), None, "{s}");
        }
    }

    #[test]
    fn event_days() {
        assert_eq!(event_day(1_468_523_745_000), 20160714);
        assert_eq!(event_day(0), 19700101);
        assert_eq!(event_day(-1), 19691231);
    }
}
