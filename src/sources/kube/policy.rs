//! When a Stork schedule policy runs, reduced to what the "no recent success" alert needs: the
//! longest time between two runs (`pxbackup_backup_schedule_interval_seconds`). It follows
//! Stork's own trigger logic (`pkg/schedule/schedule.go`), not what the policy seems to say.
//!
//! - interval: every `intervalMinutes`;
//! - daily: 24 h; weekly: 7 days (whatever the day and time);
//! - monthly: Stork computes each month's run as `time.Date(year, month, date, ...)`, which
//!   moves a day the month does not have into the next month, where that month's own run
//!   comes first: the month is skipped. So dates 1 to 28 run every month (longest gap 31
//!   days), 29 skips February in common years (59 days), 30 skips every February (60 days,
//!   January 30 to March 30 in a leap year) and 31 runs in seven months only (61 days, e.g.
//!   March 31 to May 31);
//! - several of them in one policy: each triggers its own runs, so the longest gap is at
//!   most the shortest of theirs, which is what is exported.
//!
//! Stork runs in its container's local time zone (UTC as a rule); a daylight saving change
//! there can stretch one daily gap to 25 h, which the alert's window (1.1 x the gap + 1 h) absorbs.
//!
//! A policy Stork refuses (`ValidateSchedulePolicy`: an interval under a minute, a time that
//! is not `3:04PM`, an unknown day, a date outside 1-31) triggers nothing at all: its schedules
//! never run, so they get no interval and the alert falls back to its default window.

use super::crd::SchedulePolicyItem;

const MINUTE: u64 = 60;
const DAY: u64 = 86_400;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("interval.intervalMinutes {0} is under 1")]
    IntervalMinutes(i64),
    #[error("{part}.time {value:?} is not a time like 3:04PM or 3:04pm")]
    Time { part: &'static str, value: String },
    #[error("weekly.day {0:?} is not a day of the week (Sunday, Sun, sunday, sun, ...)")]
    Day(String),
    #[error("monthly.date {0} is not between 1 and 31")]
    Date(i64),
}

/// The longest time between two runs of `policy`, in seconds; `None` when it sets no
/// schedule at all. An error names what Stork refuses (it then runs nothing).
pub fn longest_gap_seconds(policy: &SchedulePolicyItem) -> Result<Option<u64>, PolicyError> {
    let mut gaps = Vec::new();
    if let Some(interval) = &policy.interval {
        let minutes = interval.interval_minutes.unwrap_or(0);
        let minutes = u64::try_from(minutes)
            .ok()
            .filter(|m| *m >= 1)
            .ok_or(PolicyError::IntervalMinutes(minutes))?;
        gaps.push(minutes.saturating_mul(MINUTE));
    }
    if let Some(daily) = &policy.daily {
        check_time("daily", daily.time.as_deref())?;
        gaps.push(DAY);
    }
    if let Some(weekly) = &policy.weekly {
        check_time("weekly", weekly.time.as_deref())?;
        let day = weekly.day.as_deref().unwrap_or("");
        if !STORK_DAYS.contains(&day) {
            return Err(PolicyError::Day(day.to_owned()));
        }
        gaps.push(7 * DAY);
    }
    if let Some(monthly) = &policy.monthly {
        check_time("monthly", monthly.time.as_deref())?;
        let date = monthly.date.unwrap_or(0);
        let day = u32::try_from(date)
            .ok()
            .filter(|d| (1..=31).contains(d))
            .ok_or(PolicyError::Date(date))?;
        gaps.push(longest_monthly_gap_days(day) * DAY);
    }
    Ok(gaps.into_iter().min())
}

/// The day names Stork accepts (`v1alpha1.Days`), exactly.
const STORK_DAYS: [&str; 32] = [
    "Sunday",
    "Sun",
    "sunday",
    "sun",
    "Monday",
    "Mon",
    "monday",
    "mon",
    "Tuesday",
    "Tue",
    "tuesday",
    "tue",
    "Wednesday",
    "Wed",
    "wednesday",
    "wed",
    "Thursday",
    "Thu",
    "Thur",
    "Thurs",
    "thursday",
    "thu",
    "thur",
    "thurs",
    "Friday",
    "Fri",
    "friday",
    "fri",
    "Saturday",
    "Sat",
    "saturday",
    "sat",
];

fn check_time(part: &'static str, value: Option<&str>) -> Result<(), PolicyError> {
    let value = value.unwrap_or("");
    if is_kitchen_time(value) {
        Ok(())
    } else {
        Err(PolicyError::Time {
            part,
            value: value.to_owned(),
        })
    }
}

/// What Go's `time.Parse(time.Kitchen, s)` (then with the layout lower-cased) accepts: an
/// hour of one or two digits up to 12, `:`, two digits of minutes, then `AM`/`PM` or
/// `am`/`pm`, and nothing else.
fn is_kitchen_time(s: &str) -> bool {
    let Some((hour, rest)) = s.split_once(':') else {
        return false;
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let hour_ok =
        (1..=2).contains(&hour.len()) && digits(hour) && hour.parse::<u32>().is_ok_and(|h| h <= 12);
    let (minute, meridiem) = (rest.get(..2).unwrap_or(""), rest.get(2..).unwrap_or(""));
    let minute_ok =
        minute.len() == 2 && digits(minute) && minute.parse::<u32>().is_ok_and(|m| m <= 59);
    hour_ok && minute_ok && matches!(meridiem, "AM" | "PM" | "am" | "pm")
}

/// Longest gap, in days, between two monthly runs on day `date` (1-31) of every month that has
/// it. 2023-2029 holds both kinds of February (and 2100, not a leap year, is a common year).
fn longest_monthly_gap_days(date: u32) -> u64 {
    let mut previous: Option<i64> = None;
    let mut longest = 0;
    for year in 2023..=2029 {
        for month in 1..=12 {
            if date > days_in_month(year, month) {
                continue;
            }
            let day = days_from_civil(year, month, date);
            if let Some(p) = previous {
                longest = longest.max(day - p);
            }
            previous = Some(day);
        }
    }
    u64::try_from(longest).unwrap_or(0)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::kube::crd::{DailyPolicy, IntervalPolicy, MonthlyPolicy, WeeklyPolicy};

    fn interval(minutes: i64) -> Option<IntervalPolicy> {
        Some(IntervalPolicy {
            interval_minutes: Some(minutes),
        })
    }
    fn daily(time: &str) -> Option<DailyPolicy> {
        Some(DailyPolicy {
            time: Some(time.into()),
        })
    }
    fn weekly(day: &str, time: &str) -> Option<WeeklyPolicy> {
        Some(WeeklyPolicy {
            day: Some(day.into()),
            time: Some(time.into()),
        })
    }
    fn monthly(date: i64, time: &str) -> Option<MonthlyPolicy> {
        Some(MonthlyPolicy {
            date: Some(date),
            time: Some(time.into()),
        })
    }

    #[test]
    fn each_kind_of_policy_has_its_longest_gap() {
        let gap = |p: SchedulePolicyItem| longest_gap_seconds(&p);
        assert_eq!(
            gap(SchedulePolicyItem {
                interval: interval(90),
                ..Default::default()
            }),
            Ok(Some(5_400))
        );
        assert_eq!(
            gap(SchedulePolicyItem {
                daily: daily("11:15pm"),
                ..Default::default()
            }),
            Ok(Some(DAY))
        );
        assert_eq!(
            gap(SchedulePolicyItem {
                weekly: weekly("Thurs", "1:05AM"),
                ..Default::default()
            }),
            Ok(Some(7 * DAY))
        );
        for (date, days) in [(1, 31), (15, 31), (28, 31), (29, 59), (30, 60), (31, 61)] {
            assert_eq!(
                gap(SchedulePolicyItem {
                    monthly: monthly(date, "12:00AM"),
                    ..Default::default()
                }),
                Ok(Some(days * DAY)),
                "monthly on day {date}"
            );
        }
        // Daily and weekly together: a run at least every day.
        assert_eq!(
            gap(SchedulePolicyItem {
                daily: daily("1:00AM"),
                weekly: weekly("Sunday", "2:00AM"),
                ..Default::default()
            }),
            Ok(Some(DAY))
        );
        assert_eq!(gap(SchedulePolicyItem::default()), Ok(None), "never runs");
    }

    #[test]
    fn what_stork_refuses_is_an_error_naming_the_field() {
        let err = |p: SchedulePolicyItem| longest_gap_seconds(&p).unwrap_err().to_string();
        assert!(err(SchedulePolicyItem {
            interval: interval(0),
            ..Default::default()
        })
        .contains("intervalMinutes 0"));
        assert!(err(SchedulePolicyItem {
            interval: Some(IntervalPolicy::default()),
            ..Default::default()
        })
        .contains("intervalMinutes"));
        assert!(err(SchedulePolicyItem {
            daily: daily("25:15am"),
            ..Default::default()
        })
        .contains("daily.time \"25:15am\""));
        assert!(err(SchedulePolicyItem {
            weekly: weekly("Caturday", "1:00PM"),
            ..Default::default()
        })
        .contains("\"Caturday\""));
        assert!(err(SchedulePolicyItem {
            monthly: monthly(32, "1:00PM"),
            ..Default::default()
        })
        .contains("monthly.date 32"));
        // One bad part spoils the whole policy, as in Stork.
        assert!(longest_gap_seconds(&SchedulePolicyItem {
            interval: interval(60),
            monthly: monthly(0, "1:00PM"),
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn times_follow_go_kitchen_layout() {
        for ok in ["3:04PM", "03:04PM", "12:00am", "0:30pm", "11:59AM"] {
            assert!(is_kitchen_time(ok), "{ok}");
        }
        for bad in [
            "", "3:04", "3:4PM", "13:00PM", "3:60PM", "3:04Pm", "3:04 PM", "15:04", "3:04PMx",
            "123:04PM", "a:04PM",
        ] {
            assert!(!is_kitchen_time(bad), "{bad}");
        }
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 11, 23), 1_795_395_600 / 86_400);
        assert_eq!(
            days_from_civil(2024, 3, 1) - days_from_civil(2024, 2, 1),
            29
        );
    }
}
