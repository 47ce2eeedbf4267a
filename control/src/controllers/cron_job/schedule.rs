//! Cron schedules as the CronJob controller reads them (robfig/cron's standard parser): five
//! fields (minute, hour, day of month, month, day of week) of lists, ranges, steps and `*` or
//! `?`, month and weekday names, and the macros `@yearly`, `@annually`, `@monthly`, `@weekly`,
//! `@daily`, `@midnight` and `@hourly`. When both day fields are restricted a day matching
//! either runs, as in cron.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule: the allowed values of each field as bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether a day field was `*` or `?`: then both day fields must match, not either.
    any_day: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Schedule {
    /// Parses a schedule; the error reads as upstream's parser's does.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(format!("unrecognized descriptor: {other}"));
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {spec}",
                fields.len()
            ));
        }
        let (minutes, _) = field(fields[0], 0, 59, &[])?;
        let (hours, _) = field(fields[1], 0, 23, &[])?;
        let (days, days_star) = field(fields[2], 1, 31, &[])?;
        let (months, _) = field(fields[3], 1, 12, &MONTHS)?;
        let (weekdays, weekdays_star) = field(fields[4], 0, 6, &WEEKDAYS)?;
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            any_day: days_star || weekdays_star,
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        let day = self.days & (1 << date.day()) != 0;
        let weekday = self.weekdays & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.any_day {
            day && weekday
        } else {
            day || weekday
        }
    }

    /// The first time after `after` the schedule names, in `tz`; none within five years.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = tz.to_datetime(after);
        let mut t = local
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = local.year() + 5;
        while t.year() <= limit {
            if self.months & (1 << t.month()) == 0 {
                let first = t.date().first_of_month().checked_add(1.month()).ok()?;
                t = DateTime::from_parts(first, Time::midnight());
                continue;
            }
            if !self.day_matches(t.date()) {
                t = DateTime::from_parts(t.date().tomorrow().ok()?, Time::midnight());
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            // A time skipped by a clock change runs at the first instant after the gap.
            let at = tz.to_ambiguous_timestamp(t).compatible().ok()?;
            if at > after {
                return Some(at);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

/// One field: the allowed values as bits, and whether it was `*` or `?`.
fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| format!("failed to parse int from {step}"))?;
                if step == 0 {
                    return Err(format!("step of range should be a positive number: {part}"));
                }
                (range, Some(step))
            }
            None => (part, None),
        };
        let (start, end) = if range == "*" || range == "?" {
            star = step.is_none_or(|s| s == 1);
            (min, max)
        } else {
            let value = |v: &str| -> Result<u32, String> {
                if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
                    return Ok(min + i as u32);
                }
                v.parse()
                    .map_err(|_| format!("failed to parse int from {v}"))
            };
            match range.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `N/step` runs from N to the end.
                None if step.is_some() => (value(range)?, max),
                None => {
                    let v = value(range)?;
                    (v, v)
                }
            }
        };
        if start < min {
            return Err(format!(
                "beginning of range ({start}) below minimum ({min}): {part}"
            ));
        }
        if end > max {
            return Err(format!(
                "end of range ({end}) above maximum ({max}): {part}"
            ));
        }
        if start > end {
            return Err(format!(
                "beginning of range ({start}) beyond end of range ({end}): {part}"
            ));
        }
        let step = step.unwrap_or(1);
        bits |= (start..=end)
            .step_by(step as usize)
            .fold(0, |b, v| b | 1 << v);
    }
    Ok((bits, star))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn schedules_step_through_their_times() {
        let utc = TimeZone::UTC;
        let every_minute = Schedule::parse("* * * * *").unwrap();
        assert_eq!(
            every_minute.next_after(at("2026-01-01T10:00:30Z"), &utc),
            Some(at("2026-01-01T10:01:00Z"))
        );
        let quarter = Schedule::parse("*/15 9-17 * * MON-FRI").unwrap();
        // 2026-01-03 is a Saturday: the next run is Monday 09:00.
        assert_eq!(
            quarter.next_after(at("2026-01-02T17:50:00Z"), &utc),
            Some(at("2026-01-05T09:00:00Z"))
        );
        assert_eq!(
            Schedule::parse("@monthly")
                .unwrap()
                .next_after(at("2026-01-31T00:00:00Z"), &utc),
            Some(at("2026-02-01T00:00:00Z"))
        );
        assert_eq!(
            Schedule::parse("@yearly").unwrap(),
            Schedule::parse("0 0 1 jan *").unwrap()
        );
    }

    #[test]
    fn restricted_day_fields_match_either_day() {
        // The 13th, or any Friday.
        let s = Schedule::parse("0 0 13 * 5").unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T00:00:00Z"), &TimeZone::UTC),
            Some(at("2026-01-02T00:00:00Z")),
            "2026-01-02 is a Friday"
        );
        let s = Schedule::parse("0 0 13 * *").unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T00:00:00Z"), &TimeZone::UTC),
            Some(at("2026-01-13T00:00:00Z"))
        );
    }

    #[test]
    fn time_zones_place_the_runs() {
        let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
        let s = Schedule::parse("0 9 * * *").unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T00:00:00Z"), &tokyo),
            Some(at("2026-01-02T00:00:00Z")),
            "09:00 in Tokyo is midnight UTC"
        );
    }

    #[test]
    fn bad_schedules_are_refused_with_the_parsers_words() {
        assert_eq!(
            Schedule::parse("* * *").unwrap_err(),
            "expected exactly 5 fields, found 3: * * *"
        );
        assert_eq!(
            Schedule::parse("61 * * * *").unwrap_err(),
            "end of range (61) above maximum (59): 61"
        );
        assert!(Schedule::parse("@fortnightly").is_err());
        assert!(Schedule::parse("* * * * 7").is_err());
    }
}
