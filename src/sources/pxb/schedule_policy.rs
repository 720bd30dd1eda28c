//! A schedule policy's interval: the longest gap between two runs it triggers, which is what
//! `pxbackup_backup_schedule_interval_seconds` means ("no success within 1.1 x the interval + 1 h"
//! must not fire on a policy whose runs are uneven, such as "Monday and Tuesday").
//!
//! Interval policies run every N minutes, daily ones every day. Weekly and monthly ones are
//! laid out on the calendar of 2024-2031 (two leap years, every weekday on every date) and the
//! longest gap is measured; the time of day is the same for every run, so it does not change
//! a gap. A policy whose days or months cannot be read has no interval (`None`), and the
//! schedule exports none.

use super::wire::{
    MonthlyPolicy, RelativeMonthlyPolicy, SchedulePolicyInfo, WeeklyIndex, WeeklyPolicy, WireEnum,
};

const DAY: u64 = 86_400;
const FIRST_YEAR: i64 = 2024;
const LAST_YEAR: i64 = 2031;

/// The longest gap between two runs of `policy`, in seconds.
pub fn interval_seconds(policy: &SchedulePolicyInfo) -> Option<u64> {
    if let Some(i) = &policy.interval {
        return u64::try_from(i.minutes)
            .ok()
            .filter(|m| *m > 0)
            .map(|m| m * 60);
    }
    if policy.daily.is_some() {
        return Some(DAY);
    }
    if let Some(w) = &policy.weekly {
        return weekly(w);
    }
    if let Some(m) = &policy.monthly {
        return monthly(m);
    }
    None
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// 0 = Sunday ... 6 = Saturday.
fn weekday(days: i64) -> i64 {
    (days + 4).rem_euclid(7)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    days_from_civil(if month == 12 { year + 1 } else { year }, month % 12 + 1, 1)
        - days_from_civil(year, month, 1)
}

/// `sun`, `Sunday`, `SUN` ... -> 0 ... 6.
fn parse_weekday(s: &str) -> Option<i64> {
    const DAYS: [&str; 7] = [
        "sunday",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
    ];
    let s = s.trim().to_ascii_lowercase();
    if s.len() < 3 {
        return None;
    }
    DAYS.iter()
        .position(|d| d.starts_with(&s) && (s.len() == 3 || s.len() == d.len()))
        .map(|i| i as i64)
}

/// `jan`, `January` ... -> 1 ... 12.
fn parse_month(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    let s = s.trim().to_ascii_lowercase();
    if s.len() < 3 {
        return None;
    }
    MONTHS
        .iter()
        .position(|m| m.starts_with(&s) && (s.len() == 3 || s.len() == m.len()))
        .map(|i| i as i64 + 1)
}

/// Every item of a comma-separated list, parsed; `None` if any is not understood.
fn parse_list(s: &str, parse: fn(&str) -> Option<i64>) -> Option<Vec<i64>> {
    let mut out: Vec<i64> = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(parse)
        .collect::<Option<_>>()?;
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// The longest gap between consecutive run days.
fn longest_gap(days: &[i64]) -> Option<u64> {
    days.windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .and_then(|d| u64::try_from(d).ok())
        .map(|d| d * DAY)
}

fn weekly(w: &WeeklyPolicy) -> Option<u64> {
    let days = parse_list(&w.day, parse_weekday)?;
    let period = if w.bi_weekly { 14 } else { 7 };
    let (first, last) = (*days.first()?, *days.last()?);
    // Within a week the gaps are between listed days; across the week boundary, from the
    // last listed day to the first one of the next (or the one after, bi-weekly).
    let within = days.windows(2).map(|p| p[1] - p[0]).max().unwrap_or(0);
    let across = first + period - last;
    u64::try_from(within.max(across)).ok().map(|d| d * DAY)
}

fn monthly(m: &MonthlyPolicy) -> Option<u64> {
    if let Some(r) = &m.relative {
        return relative_monthly(r);
    }
    let (date, months) = match &m.selective {
        Some(s) => (s.date, s.months.as_str()),
        None => (m.date, ""),
    };
    if !(1..=31).contains(&date) {
        return None;
    }
    let months = match parse_list(months, parse_month)? {
        all if all.is_empty() => (1..=12).collect(),
        some => some,
    };
    // A date a month does not have (the 31st in April) is skipped in that month.
    let runs: Vec<i64> = (FIRST_YEAR..=LAST_YEAR)
        .flat_map(|y| months.iter().map(move |&mo| (y, mo)))
        .filter(|&(y, mo)| date <= days_in_month(y, mo))
        .map(|(y, mo)| days_from_civil(y, mo, date))
        .collect();
    longest_gap(&runs)
}

fn relative_monthly(r: &RelativeMonthlyPolicy) -> Option<u64> {
    let wanted = parse_weekday(&r.day)?;
    let index = match r.weekly_index {
        WireEnum::Known(WeeklyIndex::Invalid) | WireEnum::Unknown(_) => return None,
        WireEnum::Known(i) => i,
    };
    let runs: Vec<i64> = (FIRST_YEAR..=LAST_YEAR)
        .flat_map(|y| (1..=12).map(move |mo| (y, mo)))
        .map(|(y, mo)| {
            let first = days_from_civil(y, mo, 1);
            let first_match = first + (wanted - weekday(first)).rem_euclid(7);
            match index {
                WeeklyIndex::last => {
                    let next_month = first + days_in_month(y, mo);
                    next_month - 1 - (weekday(next_month - 1) - wanted).rem_euclid(7)
                }
                n => first_match + 7 * (n.value() - 1),
            }
        })
        .collect();
    longest_gap(&runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::pxb::wire::{
        DailyPolicy, IntervalPolicy, SelectiveMonthlyPolicy, WeeklyIndex,
    };

    fn weekly_policy(day: &str, bi_weekly: bool) -> SchedulePolicyInfo {
        SchedulePolicyInfo {
            weekly: Some(WeeklyPolicy {
                day: day.into(),
                bi_weekly,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn calendar_helpers() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(weekday(days_from_civil(2026, 11, 23)), 1); // a Monday
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2025, 2), 28);
        assert_eq!(days_in_month(2025, 12), 31);
        assert_eq!(parse_weekday("Sun"), Some(0));
        assert_eq!(parse_weekday("saturday"), Some(6));
        assert_eq!(parse_weekday("satur"), None);
        assert_eq!(parse_month("Feb"), Some(2));
    }

    #[test]
    fn interval_and_daily() {
        let p = SchedulePolicyInfo {
            interval: Some(IntervalPolicy { minutes: 15 }),
            ..Default::default()
        };
        assert_eq!(interval_seconds(&p), Some(900));
        let p = SchedulePolicyInfo {
            interval: Some(IntervalPolicy { minutes: 0 }),
            ..Default::default()
        };
        assert_eq!(interval_seconds(&p), None);
        let p = SchedulePolicyInfo {
            daily: Some(DailyPolicy {
                time: "10:00PM".into(),
            }),
            ..Default::default()
        };
        assert_eq!(interval_seconds(&p), Some(DAY));
        assert_eq!(interval_seconds(&SchedulePolicyInfo::default()), None);
    }

    #[test]
    fn weekly_takes_the_longest_gap() {
        assert_eq!(
            interval_seconds(&weekly_policy("sun", false)),
            Some(7 * DAY)
        );
        assert_eq!(
            interval_seconds(&weekly_policy("Mon", true)),
            Some(14 * DAY)
        );
        // Monday and Tuesday: 1 day, then 6.
        assert_eq!(
            interval_seconds(&weekly_policy("mon,tue", false)),
            Some(6 * DAY)
        );
        // Monday and Wednesday every other week: 2 days, then 12.
        assert_eq!(
            interval_seconds(&weekly_policy("monday,wednesday", true)),
            Some(12 * DAY)
        );
        assert_eq!(interval_seconds(&weekly_policy("funday", false)), None);
        assert_eq!(interval_seconds(&weekly_policy("", false)), None);
    }

    #[test]
    fn monthly_on_the_calendar() {
        let selective = |date, months: &str| SchedulePolicyInfo {
            monthly: Some(MonthlyPolicy {
                selective: Some(SelectiveMonthlyPolicy {
                    date,
                    months: months.into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(interval_seconds(&selective(1, "")), Some(31 * DAY));
        // The 31st is skipped in 30-day months: from Mar 31 to May 31 is 61 days.
        assert_eq!(interval_seconds(&selective(31, "")), Some(61 * DAY));
        assert_eq!(interval_seconds(&selective(1, "jan,jul")), Some(184 * DAY));
        assert_eq!(interval_seconds(&selective(0, "")), None);
        let relative = |day: &str, index| SchedulePolicyInfo {
            monthly: Some(MonthlyPolicy {
                relative: Some(RelativeMonthlyPolicy {
                    day: day.into(),
                    weekly_index: WireEnum::Known(index),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            interval_seconds(&relative("sun", WeeklyIndex::first)),
            Some(35 * DAY)
        );
        assert_eq!(
            interval_seconds(&relative("fri", WeeklyIndex::last)),
            Some(35 * DAY)
        );
        assert_eq!(
            interval_seconds(&relative("fri", WeeklyIndex::Invalid)),
            None
        );
        // The legacy date field alone.
        let legacy = SchedulePolicyInfo {
            monthly: Some(MonthlyPolicy {
                date: 15,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(interval_seconds(&legacy), Some(31 * DAY));
    }
}
