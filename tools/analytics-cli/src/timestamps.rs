//! Timestamp cells in the file's own format (`--timestamp-format`,
//! `--timezone`), turned into the RFC 3339 UTC text the API takes.

use std::str::FromStr;

use chrono::format::{Item, ParseErrorKind, StrftimeItems};
use chrono::{DateTime, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// How the timestamp column is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampFormat {
    /// RFC 3339 (or what the server also takes): sent as it is.
    AsIs,
    /// Seconds since 1970 (fractions allowed).
    Unix,
    /// Milliseconds since 1970.
    UnixMs,
    /// A strftime pattern such as `%b %d %Y` or `%d/%m/%Y %H:%M`; a pattern
    /// without a time of day means midnight, one without an offset the `--timezone`.
    Pattern(String),
}

impl FromStr for TimestampFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<TimestampFormat, String> {
        match text.trim() {
            "" | "rfc3339" => Ok(TimestampFormat::AsIs),
            "unix" => Ok(TimestampFormat::Unix),
            "unix_ms" => Ok(TimestampFormat::UnixMs),
            pattern if pattern.contains('%') => {
                if StrftimeItems::new(pattern).any(|item| matches!(item, Item::Error)) {
                    return Err(format!("`{pattern}` is not a valid strftime pattern"));
                }
                Ok(TimestampFormat::Pattern(pattern.to_string()))
            }
            other => Err(format!("`{other}` is not a timestamp format: give rfc3339, unix, unix_ms or a strftime pattern such as `%Y-%m-%d %H:%M:%S`")),
        }
    }
}

/// The time zone of timestamps written without an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Fixed(FixedOffset),
    Named(chrono_tz::Tz),
}

impl Default for Zone {
    fn default() -> Zone {
        Zone::Fixed(FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!("0 is a valid offset")))
    }
}

impl FromStr for Zone {
    type Err = String;

    /// `UTC`, an offset such as `+05:30` or `-0800`, or an IANA name such as `Europe/Paris`.
    fn from_str(text: &str) -> Result<Zone, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("utc") || text.eq_ignore_ascii_case("z") {
            return Ok(Zone::default());
        }
        if text.starts_with(['+', '-']) {
            let parsed = DateTime::parse_from_str(&format!("2000-01-01 00:00 {text}"), "%Y-%m-%d %H:%M %z");
            return parsed.map(|t| Zone::Fixed(*t.offset())).map_err(|_| format!("`{text}` is not an offset like +05:30"));
        }
        text.parse::<chrono_tz::Tz>()
            .map(Zone::Named)
            .map_err(|_| format!("`{text}` is not a time zone: give UTC, an offset like +05:30, or an IANA name like Europe/Paris"))
    }
}

/// Why a cell is not a timestamp: a sentence naming the cell.
pub type CellError = String;

/// The cell as RFC 3339 UTC text with milliseconds (`AsIs` returns it trimmed).
pub fn convert(cell: &str, format: &TimestampFormat, zone: Zone) -> Result<String, CellError> {
    let cell = cell.trim();
    let utc = match format {
        TimestampFormat::AsIs => return Ok(cell.to_string()),
        TimestampFormat::Unix => epoch(cell, 1_000.0, "seconds")?,
        TimestampFormat::UnixMs => epoch(cell, 1.0, "milliseconds")?,
        TimestampFormat::Pattern(pattern) => pattern_time(cell, pattern, zone)?,
    };
    Ok(utc.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

fn epoch(cell: &str, ms_per_unit: f64, unit: &str) -> Result<DateTime<Utc>, CellError> {
    let not = || format!("`{cell}` is not a number of {unit} since 1970");
    let number: f64 = cell.parse().map_err(|_| not())?;
    if !number.is_finite() {
        return Err(not());
    }
    let ms = (number * ms_per_unit).round();
    if ms.abs() > 1e17 {
        return Err(format!("`{cell}` is too far from 1970 to be a date"));
    }
    DateTime::from_timestamp_millis(ms as i64).ok_or_else(|| format!("`{cell}` is too far from 1970 to be a date"))
}

fn pattern_time(cell: &str, pattern: &str, zone: Zone) -> Result<DateTime<Utc>, CellError> {
    let mismatch = || format!("`{cell}` does not match the format `{pattern}`");
    // A pattern with an offset says where it is; the zone is not needed.
    if let Ok(t) = DateTime::parse_from_str(cell, pattern) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = match NaiveDateTime::parse_from_str(cell, pattern) {
        Ok(naive) => naive,
        // Only a date: midnight.
        Err(e) if e.kind() == ParseErrorKind::NotEnough => {
            NaiveDate::parse_from_str(cell, pattern).map_err(|_| mismatch())?.and_hms_opt(0, 0, 0).ok_or_else(mismatch)?
        }
        Err(_) => return Err(mismatch()),
    };
    let local = match zone {
        Zone::Fixed(offset) => offset.from_local_datetime(&naive).map(|t| t.with_timezone(&Utc)),
        Zone::Named(tz) => tz.from_local_datetime(&naive).map(|t| t.with_timezone(&Utc)),
    };
    match local {
        LocalResult::Single(t) => Ok(t),
        // A clock set back: the first of the two instants.
        LocalResult::Ambiguous(first, _) => Ok(first),
        LocalResult::None => Err(format!("`{cell}` does not exist in {} (the clocks skipped it)", zone_name(zone))),
    }
}

fn zone_name(zone: Zone) -> String {
    match zone {
        Zone::Fixed(offset) => offset.to_string(),
        Zone::Named(tz) => tz.name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> TimestampFormat {
        p.parse().unwrap()
    }

    #[test]
    fn formats_and_zones_parse_or_say_why_not() {
        assert_eq!("unix".parse::<TimestampFormat>().unwrap(), TimestampFormat::Unix);
        assert_eq!("unix_ms".parse::<TimestampFormat>().unwrap(), TimestampFormat::UnixMs);
        assert_eq!("rfc3339".parse::<TimestampFormat>().unwrap(), TimestampFormat::AsIs);
        assert!("%Y-%".parse::<TimestampFormat>().unwrap_err().contains("not a valid strftime pattern"));
        assert!("dd/mm/yyyy".parse::<TimestampFormat>().unwrap_err().contains("strftime pattern"));
        assert_eq!("+05:30".parse::<Zone>().unwrap(), Zone::Fixed(FixedOffset::east_opt(19_800).unwrap()));
        assert_eq!("-0800".parse::<Zone>().unwrap(), Zone::Fixed(FixedOffset::west_opt(28_800).unwrap()));
        assert_eq!("utc".parse::<Zone>().unwrap(), Zone::default());
        assert_eq!("America/Los_Angeles".parse::<Zone>().unwrap(), Zone::Named(chrono_tz::America::Los_Angeles));
        assert!("Mars/Olympus".parse::<Zone>().unwrap_err().contains("IANA name"));
    }

    #[test]
    fn dates_like_the_public_data_sets_write_them() {
        let utc = Zone::default();
        assert_eq!(convert("Jan 1 2000", &pattern("%b %d %Y"), utc).unwrap(), "2000-01-01T00:00:00.000Z");
        assert_eq!(convert("Mar 31 2010", &pattern("%b %d %Y"), utc).unwrap(), "2010-03-31T00:00:00.000Z");
        assert_eq!(convert("2012-01-01", &pattern("%Y-%m-%d"), utc).unwrap(), "2012-01-01T00:00:00.000Z");
        assert_eq!(convert("31/12/1999 23:59", &pattern("%d/%m/%Y %H:%M"), utc).unwrap(), "1999-12-31T23:59:00.000Z");
        assert_eq!(convert("2026-06-01 12:00 +0200", &pattern("%Y-%m-%d %H:%M %z"), utc).unwrap(), "2026-06-01T10:00:00.000Z");
        let err = convert("2012-13-01", &pattern("%Y-%m-%d"), utc).unwrap_err();
        assert_eq!(err, "`2012-13-01` does not match the format `%Y-%m-%d`");
    }

    #[test]
    fn local_times_follow_the_zone_and_its_clock_changes() {
        let paris: Zone = "Europe/Paris".parse().unwrap();
        let f = pattern("%Y-%m-%d %H:%M");
        assert_eq!(convert("2026-01-15 09:00", &f, paris).unwrap(), "2026-01-15T08:00:00.000Z");
        assert_eq!(convert("2026-07-15 09:00", &f, paris).unwrap(), "2026-07-15T07:00:00.000Z");
        // 2026-10-25 02:30 happens twice in Paris: the first (summer time) is taken.
        assert_eq!(convert("2026-10-25 02:30", &f, paris).unwrap(), "2026-10-25T00:30:00.000Z");
        let gap = convert("2026-03-29 02:30", &f, paris).unwrap_err();
        assert!(gap.contains("does not exist in Europe/Paris"), "{gap}");
        let fixed: Zone = "+05:30".parse().unwrap();
        assert_eq!(convert("2026-01-15 09:00", &f, fixed).unwrap(), "2026-01-15T03:30:00.000Z");
    }

    #[test]
    fn epoch_numbers() {
        let utc = Zone::default();
        assert_eq!(convert("946684800", &TimestampFormat::Unix, utc).unwrap(), "2000-01-01T00:00:00.000Z");
        assert_eq!(convert("946684800.25", &TimestampFormat::Unix, utc).unwrap(), "2000-01-01T00:00:00.250Z");
        assert_eq!(convert("946684800123", &TimestampFormat::UnixMs, utc).unwrap(), "2000-01-01T00:00:00.123Z");
        assert!(convert("soon", &TimestampFormat::Unix, utc).unwrap_err().contains("not a number of seconds"));
        assert!(convert("NaN", &TimestampFormat::UnixMs, utc).is_err());
        assert!(convert("1e300", &TimestampFormat::Unix, utc).unwrap_err().contains("too far"));
        assert_eq!(convert(" 2026-01-01T00:00:00Z ", &TimestampFormat::AsIs, utc).unwrap(), "2026-01-01T00:00:00Z");
    }
}
