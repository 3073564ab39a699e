//! Time in policy: durations (`90s`, `15m`, `4h`, `7d`) and freeze windows
//! (weekdays and a daily `HH:MM` window at a UTC offset, and/or absolute
//! start and end).

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset, Weekday};

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().map_err(|_| {
        format!("duration `{text}`: expected a number and a unit, e.g. 30m, 4h, 7d")
    })?;
    let d = match unit {
        "s" => Duration::seconds(n),
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        _ => return Err(format!("duration `{text}`: the unit must be s, m, h or d")),
    };
    if d <= Duration::ZERO {
        return Err(format!("duration `{text}` must be longer than zero"));
    }
    Ok(d)
}

fn parse_clock(text: &str) -> Result<u16, String> {
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| format!("time `{text}`: expected HH:MM"))?;
    let (h, m): (u16, u16) = (
        h.parse()
            .map_err(|_| format!("time `{text}`: expected HH:MM"))?,
        m.parse()
            .map_err(|_| format!("time `{text}`: expected HH:MM"))?,
    );
    if h > 24 || m > 59 || (h == 24 && m > 0) {
        return Err(format!(
            "time `{text}` is not a time of day (00:00 to 24:00)"
        ));
    }
    Ok(h * 60 + m)
}

fn parse_day(text: &str) -> Result<Weekday, String> {
    Ok(match text.to_ascii_lowercase().get(..3) {
        Some("mon") => Weekday::Monday,
        Some("tue") => Weekday::Tuesday,
        Some("wed") => Weekday::Wednesday,
        Some("thu") => Weekday::Thursday,
        Some("fri") => Weekday::Friday,
        Some("sat") => Weekday::Saturday,
        Some("sun") => Weekday::Sunday,
        _ => {
            return Err(format!(
                "`{text}` is not a weekday; use mon, tue, wed, thu, fri, sat, sun"
            ));
        }
    })
}

fn parse_offset(text: &str) -> Result<UtcOffset, String> {
    let bad = || format!("utc_offset `{text}`: expected +HH:MM or -HH:MM");
    let sign = match text.chars().next() {
        Some('+') => 1,
        Some('-') => -1,
        _ => return Err(bad()),
    };
    let mins = parse_clock(&text[1..]).map_err(|_| bad())? as i32 * sign;
    UtcOffset::from_whole_seconds(mins * 60).map_err(|_| bad())
}

#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    days: Vec<Weekday>,
    from: u16,
    to: u16,
    offset: UtcOffset,
    start: Option<OffsetDateTime>,
    end: Option<OffsetDateTime>,
}

impl Window {
    pub fn parse(
        days: &[String],
        from: Option<&str>,
        to: Option<&str>,
        offset: Option<&str>,
        start: Option<&str>,
        end: Option<&str>,
    ) -> Result<Self, String> {
        let instant = |s: &str| {
            OffsetDateTime::parse(s, &Rfc3339)
                .map_err(|_| format!("`{s}` is not an RFC 3339 time, e.g. 2026-12-24T00:00:00Z"))
        };
        let w = Self {
            days: days
                .iter()
                .map(|d| parse_day(d))
                .collect::<Result<_, _>>()?,
            from: from.map(parse_clock).transpose()?.unwrap_or(0),
            to: to.map(parse_clock).transpose()?.unwrap_or(24 * 60),
            offset: offset
                .map(parse_offset)
                .transpose()?
                .unwrap_or(UtcOffset::UTC),
            start: start.map(instant).transpose()?,
            end: end.map(instant).transpose()?,
        };
        if let (Some(s), Some(e)) = (w.start, w.end)
            && e <= s
        {
            return Err("the freeze ends before it starts".into());
        }
        if w.from == w.to {
            return Err("`from` and `to` are the same time: the window would be empty".into());
        }
        Ok(w)
    }

    pub fn contains(&self, now: OffsetDateTime) -> bool {
        if self.start.is_some_and(|s| now < s) || self.end.is_some_and(|e| now >= e) {
            return false;
        }
        let local = now.to_offset(self.offset);
        let minute = u16::from(local.hour()) * 60 + u16::from(local.minute());
        let day_ok = |d: Weekday| self.days.is_empty() || self.days.contains(&d);
        if self.from < self.to {
            day_ok(local.weekday()) && minute >= self.from && minute < self.to
        } else {
            // Overnight: it belongs to the day it began.
            (minute >= self.from && day_ok(local.weekday()))
                || (minute < self.to && day_ok(local.weekday().previous()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::seconds(90)));
        assert_eq!(parse_duration("4h"), Ok(Duration::hours(4)));
        assert_eq!(parse_duration("7d"), Ok(Duration::days(7)));
        assert!(parse_duration("4 hours").is_err());
        assert!(parse_duration("0m").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn friday_after_four_in_berlin() {
        let w = Window::parse(
            &["fri".into()],
            Some("16:00"),
            None,
            Some("+01:00"),
            None,
            None,
        )
        .expect("window");
        // 2026-11-20 is a Friday.
        assert!(w.contains(datetime!(2026-11-20 15:30 UTC)), "16:30 local");
        assert!(!w.contains(datetime!(2026-11-20 14:59 UTC)), "15:59 local");
        assert!(!w.contains(datetime!(2026-11-21 10:00 UTC)), "saturday");
        assert!(
            !w.contains(datetime!(2026-11-20 23:30 UTC)),
            "00:30 saturday local"
        );
    }

    #[test]
    fn overnight_and_absolute_windows() {
        let w = Window::parse(
            &["fri".into()],
            Some("22:00"),
            Some("06:00"),
            None,
            None,
            None,
        )
        .expect("window");
        assert!(w.contains(datetime!(2026-11-20 23:00 UTC)));
        assert!(
            w.contains(datetime!(2026-11-21 05:00 UTC)),
            "saturday morning, begun friday"
        );
        assert!(
            !w.contains(datetime!(2026-11-22 05:00 UTC)),
            "sunday morning, begun saturday"
        );
        let holiday = Window::parse(
            &[],
            None,
            None,
            None,
            Some("2026-12-24T00:00:00Z"),
            Some("2027-01-02T00:00:00Z"),
        )
        .expect("window");
        assert!(holiday.contains(datetime!(2026-12-31 12:00 UTC)));
        assert!(!holiday.contains(datetime!(2027-01-02 00:00 UTC)));
        assert!(Window::parse(&["friday".into()], None, None, None, None, None).is_ok());
        assert!(Window::parse(&["fry".into()], None, None, None, None, None).is_err());
        assert!(Window::parse(&[], Some("25:00"), None, None, None, None).is_err());
    }
}
