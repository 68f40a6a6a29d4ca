//! Time: timestamps in Unix milliseconds, and the bucket hierarchy that
//! aggregates and listings are kept in: second, minute, hour, day, then
//! blocks of 64 days and eras of 64 blocks (4 096 days, about 11 years), so
//! a window of any length is covered by a few hundred buckets at most.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

pub const MS_PER_SECOND: i64 = 1_000;

/// Earliest accepted timestamp: 1970-01-01T00:00:00Z.
pub const EARLIEST_MS: i64 = 0;
/// Latest representable timestamp we accept (year 9999).
pub const LATEST_MS: i64 = 253_402_300_799_999;

/// A level of the bucket hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Second,
    Minute,
    Hour,
    Day,
    /// 64 days.
    Block,
    /// 64 blocks: 4 096 days.
    Era,
}

impl Level {
    /// Finest first.
    pub const ALL: [Level; 6] = [Level::Second, Level::Minute, Level::Hour, Level::Day, Level::Block, Level::Era];
    /// The coarsest: the all-time aggregate lists the buckets of this level that hold data.
    pub const TOP: Level = Level::Era;

    pub fn seconds(self) -> i64 {
        match self {
            Level::Second => 1,
            Level::Minute => 60,
            Level::Hour => 3_600,
            Level::Day => 86_400,
            Level::Block => 64 * 86_400,
            Level::Era => 64 * 64 * 86_400,
        }
    }

    /// One letter, used in storage keys.
    pub fn tag(self) -> char {
        match self {
            Level::Second => 's',
            Level::Minute => 'm',
            Level::Hour => 'h',
            Level::Day => 'd',
            Level::Block => 'b',
            Level::Era => 'e',
        }
    }

    /// The next finer level.
    pub fn finer(self) -> Option<Level> {
        match self {
            Level::Second => None,
            Level::Minute => Some(Level::Second),
            Level::Hour => Some(Level::Minute),
            Level::Day => Some(Level::Hour),
            Level::Block => Some(Level::Day),
            Level::Era => Some(Level::Block),
        }
    }

    /// The next coarser level.
    pub fn coarser(self) -> Option<Level> {
        match self {
            Level::Second => Some(Level::Minute),
            Level::Minute => Some(Level::Hour),
            Level::Hour => Some(Level::Day),
            Level::Day => Some(Level::Block),
            Level::Block => Some(Level::Era),
            Level::Era => None,
        }
    }

    /// How many buckets of the finer level one bucket holds (60, 60, 24, 64 or 64).
    pub fn children(self) -> i64 {
        self.finer().map_or(0, |f| self.seconds() / f.seconds())
    }
}

/// One bucket: a level and its index, `floor(unix_seconds / level.seconds())`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bucket {
    pub level: Level,
    pub index: i64,
}

impl Bucket {
    /// The bucket of `level` holding the instant `ms`.
    pub fn containing(level: Level, ms: i64) -> Bucket {
        Bucket {
            level,
            index: ms.div_euclid(MS_PER_SECOND).div_euclid(level.seconds()),
        }
    }

    pub fn start_second(self) -> i64 {
        self.index * self.level.seconds()
    }

    /// Which child of its parent this bucket is (0..60, 0..24 or 0..64), if it has a parent.
    pub fn position_in_parent(self) -> Option<(Bucket, u32)> {
        let parent_level = self.level.coarser()?;
        let per_parent = parent_level.seconds() / self.level.seconds();
        Some((
            Bucket {
                level: parent_level,
                index: self.index.div_euclid(per_parent),
            },
            self.index.rem_euclid(per_parent) as u32,
        ))
    }

    /// The `n`-th child (by position) of this bucket.
    pub fn child(self, n: u32) -> Option<Bucket> {
        let level = self.level.finer()?;
        Some(Bucket {
            level,
            index: self.index * self.level.children() + n as i64,
        })
    }
}

/// Covers the seconds `[from, to)` with the fewest buckets: whole eras in
/// the middle, then blocks, days, hours, minutes and seconds toward the
/// edges. The result is at most 2·(63 + 63 + 23 + 59 + 59) buckets plus one
/// per whole era (about 11 years), whatever the window's length.
pub fn decompose(from_second: i64, to_second: i64) -> Vec<Bucket> {
    let mut out = Vec::new();
    cover(from_second, to_second, Level::TOP, &mut out);
    out
}

fn cover(from: i64, to: i64, level: Level, out: &mut Vec<Bucket>) {
    if from >= to {
        return;
    }
    let size = level.seconds();
    let first_full = from.div_euclid(size) * size + if from.rem_euclid(size) == 0 { 0 } else { size };
    let last_full = to.div_euclid(size) * size;
    match level.finer() {
        Some(finer) if first_full >= last_full => cover(from, to, finer, out),
        finer => {
            if let Some(finer) = finer {
                cover(from, first_full, finer, out);
            }
            out.extend((first_full / size..last_full / size).map(|index| Bucket { level, index }));
            if let Some(finer) = finer {
                cover(last_full, to, finer, out);
            }
        }
    }
}

/// Parses RFC 3339; a timestamp without an offset is taken as UTC. Sub-millisecond digits are dropped.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let parsed = match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dt%H:%M:%S%.f"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
            .map(|naive| naive.and_utc())
            .ok_or_else(|| format!("`{text}` is not an RFC 3339 timestamp like 2026-02-18T12:00:00Z"))?,
    };
    let ms = parsed.timestamp_millis();
    if !(EARLIEST_MS..=LATEST_MS).contains(&ms) {
        return Err(format!("`{text}` is outside 1970-01-01 .. 9999-12-31"));
    }
    Ok(ms)
}

/// The latest bound a query may give: 9998-12-31T23:59:59.999Z, so that a
/// window rounded outward, or a calendar interval holding it, still ends
/// within year 9999 and prints as RFC 3339.
pub const LATEST_QUERY_MS: i64 = 253_370_764_799_999;

/// A query bound, as Prometheus' HTTP API takes it: RFC 3339, or Unix
/// seconds (fractions allowed); from 1970 to the end of year 9998.
pub fn parse_instant(text: &str) -> Result<i64, String> {
    let ms = match text.trim().parse::<f64>() {
        Ok(seconds) if seconds.is_finite() => (seconds * 1_000.0).round() as i64,
        _ => parse_timestamp(text)?,
    };
    if (EARLIEST_MS..=LATEST_QUERY_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(format!("`{text}` is outside 1970-01-01 .. 9998-12-31"))
    }
}

/// A duration as Prometheus writes them (`30s`, `5m`, `1h30m`, `1d`, `1w`,
/// `1y` = 365 days), or plain seconds; in whole seconds, at least one.
pub fn parse_step(text: &str) -> Result<i64, String> {
    let bad = || format!("`{text}` is not a duration like 30s, 5m, 1h, 1d or 1y (or a number of seconds)");
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return if seconds >= 1.0 && seconds.fract() == 0.0 && seconds < 1e12 { Ok(seconds as i64) } else { Err(bad()) };
    }
    let (mut total, mut number) = (0i64, String::new());
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            'y' => 365 * 86_400,
            _ => return Err(bad()),
        };
        let n: i64 = number.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() || total < 1 {
        return Err(bad());
    }
    Ok(total)
}

/// RFC 3339 in UTC with `Z`, with milliseconds only when non-zero.
pub fn format_timestamp(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds_covered(buckets: &[Bucket]) -> Vec<i64> {
        let mut secs: Vec<i64> = buckets
            .iter()
            .flat_map(|b| b.start_second()..b.start_second() + b.level.seconds())
            .collect();
        secs.sort();
        secs
    }

    #[test]
    fn decomposition_covers_exactly_the_window_once() {
        for (from, to) in [(0, 1), (59, 61), (3_599, 90_061), (86_399, 2 * 86_400 + 1), (1_000_000, 1_000_000), (17, 3_600 * 50 + 3)] {
            let buckets = decompose(from, to);
            assert_eq!(seconds_covered(&buckets), (from..to).collect::<Vec<_>>(), "[{from}, {to})");
        }
    }

    #[test]
    fn decomposition_uses_coarse_buckets_in_the_middle() {
        // 30 days plus a little at each edge.
        let day = 86_400;
        let buckets = decompose(10 * day - 61, 40 * day + 3_661);
        assert!(buckets.len() <= 2 * (59 + 59 + 23) + 30, "{}", buckets.len());
        assert_eq!(buckets.iter().filter(|b| b.level == Level::Day).count(), 30);
    }

    #[test]
    fn a_window_of_decades_is_a_few_hundred_buckets() {
        let year = 365 * 86_400;
        let from = parse_timestamp("1999-03-07T11:13:17Z").unwrap() / 1000;
        for years in [1, 12, 20, 80, 500] {
            let buckets = decompose(from, from + years * year + 4_321);
            let eras = buckets.iter().filter(|b| b.level == Level::Era).count() as i64;
            assert!(buckets.len() as i64 <= 2 * (63 + 63 + 23 + 59 + 59) + eras, "{years} years: {}", buckets.len());
            assert!(eras <= years * 365 / 4_096 + 1);
            let mut spans: Vec<(i64, i64)> = buckets.iter().map(|b| (b.start_second(), b.start_second() + b.level.seconds())).collect();
            spans.sort();
            assert_eq!(spans[0].0, from);
            assert!(spans.windows(2).all(|w| w[0].1 == w[1].0), "contiguous, no overlap");
            assert_eq!(spans[spans.len() - 1].1, from + years * year + 4_321);
        }
    }

    #[test]
    fn buckets_know_their_parents_and_children() {
        let second = Bucket::containing(Level::Second, 3_661_500);
        assert_eq!(second.index, 3_661);
        let (minute, pos) = second.position_in_parent().unwrap();
        assert_eq!((minute, pos), (Bucket { level: Level::Minute, index: 61 }, 1));
        assert_eq!(minute.child(1), Some(second));
        let (hour, pos) = minute.position_in_parent().unwrap();
        assert_eq!((hour.index, pos), (1, 1));
        assert_eq!(hour.position_in_parent().unwrap(), (Bucket { level: Level::Day, index: 0 }, 1));
        let day = Bucket { level: Level::Day, index: 64 * 64 + 65 };
        let (block, pos) = day.position_in_parent().unwrap();
        assert_eq!((block, pos), (Bucket { level: Level::Block, index: 65 }, 1));
        assert_eq!(block.child(1), Some(day));
        assert_eq!(block.position_in_parent().unwrap(), (Bucket { level: Level::Era, index: 1 }, 1));
        assert_eq!(Bucket { level: Level::Era, index: 1 }.position_in_parent(), None);
    }

    #[test]
    fn timestamps_parse_with_or_without_offsets() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:01Z"), Ok(1_000));
        assert_eq!(parse_timestamp("1970-01-01T01:00:01+01:00"), Ok(1_000));
        assert_eq!(parse_timestamp("1970-01-01T00:00:01.25"), Ok(1_250));
        assert_eq!(parse_timestamp("1970-01-01 00:00:01"), Ok(1_000));
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("1969-12-31T23:59:59Z").is_err());
        assert!(parse_timestamp("2026-02-30T00:00:00Z").is_err());
    }

    #[test]
    fn instants_and_steps_parse_the_prometheus_way() {
        assert_eq!(parse_instant("1.5"), Ok(1_500));
        assert_eq!(parse_instant("1970-01-01T00:00:02Z"), Ok(2_000));
        assert!(parse_instant("-5").is_err());
        assert!(parse_instant("9999-06-01T00:00:00Z").is_err());
        assert_eq!(format_timestamp(LATEST_QUERY_MS + 1), "9999-01-01T00:00:00Z");
        assert_eq!(parse_step("30"), Ok(30));
        assert_eq!(parse_step("5m"), Ok(300));
        assert_eq!(parse_step("1h30m"), Ok(5_400));
        assert_eq!(parse_step("1d"), Ok(86_400));
        assert_eq!(parse_step("1y"), Ok(365 * 86_400));
        for bad in ["0", "0.5", "5x", "m", "", "1.5m", "-3"] {
            assert!(parse_step(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_format_in_utc() {
        assert_eq!(format_timestamp(1_000), "1970-01-01T00:00:01Z");
        assert_eq!(format_timestamp(1_250), "1970-01-01T00:00:01.250Z");
        let ms = parse_timestamp("2026-02-18T13:00:00+01:00").unwrap();
        assert_eq!(format_timestamp(ms), "2026-02-18T12:00:00Z");
    }
}
