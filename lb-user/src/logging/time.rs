//! Local wall-clock time in the shapes HAProxy logs use: the syslog header date, the tcplog
//! accept date and ISO 8601.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A broken-down local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    /// 1..=12.
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
    pub millis: u32,
    pub micros: u32,
    /// Offset from UTC, seconds east.
    pub gmtoff: i64,
    /// Seconds since the epoch.
    pub epoch: i64,
}

/// Now, in the local time zone.
pub fn now_local() -> LocalTime {
    local(SystemTime::now())
}

/// `t` in the local time zone (UTC when the zone cannot be read).
pub fn local(t: SystemTime) -> LocalTime {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as libc::time_t;
    // SAFETY: localtime_r writes into the zeroed struct we pass and reads `secs`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::localtime_r(&raw const secs, &raw mut tm) };
    LocalTime {
        year: tm.tm_year + 1900,
        month: (tm.tm_mon + 1).clamp(1, 12) as u32,
        day: tm.tm_mday as u32,
        hour: tm.tm_hour as u32,
        min: tm.tm_min as u32,
        sec: tm.tm_sec as u32,
        millis: d.subsec_millis(),
        micros: d.subsec_micros(),
        gmtoff: tm.tm_gmtoff,
        epoch: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
    }
}

impl LocalTime {
    /// The instant as a log-format string reads it.
    pub fn stamp(&self) -> crate::log_format::Stamp {
        crate::log_format::Stamp {
            epoch: self.epoch,
            micros: self.micros,
            gmtoff: self.gmtoff,
        }
    }

    fn mon(&self) -> &'static str {
        MONTHS[(self.month as usize).clamp(1, 12) - 1]
    }

    /// RFC 3164 header date: `Aug  5 18:04:02` (day padded with a space).
    pub fn syslog(&self) -> String {
        format!(
            "{} {:2} {:02}:{:02}:{:02}",
            self.mon(),
            self.day,
            self.hour,
            self.min,
            self.sec
        )
    }

    /// tcplog `%t`: `05/Aug/2020:18:04:02.387`.
    pub fn accept_date(&self) -> String {
        format!(
            "{:02}/{}/{:04}:{:02}:{:02}:{:02}.{:03}",
            self.day,
            self.mon(),
            self.year,
            self.hour,
            self.min,
            self.sec,
            self.millis
        )
    }

    /// ISO 8601 with microseconds and offset: `2020-08-05T18:04:02.387123+02:00`.
    pub fn iso(&self) -> String {
        let sign = if self.gmtoff < 0 { '-' } else { '+' };
        let off = self.gmtoff.unsigned_abs();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}{sign}{:02}:{:02}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.min,
            self.sec,
            self.micros,
            off / 3600,
            off % 3600 / 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let t = LocalTime {
            year: 2020,
            month: 12,
            day: 25,
            hour: 1,
            min: 2,
            sec: 3,
            millis: 4,
            micros: 4005,
            gmtoff: -3600 * 5 - 1800,
            epoch: 0,
        };
        assert_eq!(t.syslog(), "Dec 25 01:02:03");
        assert_eq!(t.accept_date(), "25/Dec/2020:01:02:03.004");
        assert_eq!(t.iso(), "2020-12-25T01:02:03.004005-05:30");
    }

    #[test]
    fn now_is_plausible() {
        let t = now_local();
        assert!(t.year >= 2024 && (1..=31).contains(&t.day));
    }
}
