//! Simulated time: seconds since the period's first day, office hours on
//! weekdays, and the ids drawn at a time. Every moment comes from the seeded
//! generator, never from the clock, so the same scenario gives the same
//! bytes.

use chrono::{Days, NaiveDate};
use rand::Rng;
use rand::rngs::StdRng;
use uuid::{Builder, Uuid};

use super::Simulator;

/// Simulated time: seconds since `start` at 00:00 UTC.
pub(super) type Time = i64;
pub(super) const MINUTE: Time = 60;
pub(super) const HOUR: Time = 3_600;
pub(super) const DAY: Time = 86_400;

impl Simulator {
    pub(super) fn date(&self, day: i64) -> NaiveDate {
        self.start + Days::new(day.max(0) as u64)
    }

    /// The first weekday on or after `day`.
    pub(super) fn weekday_on_or_after(&self, day: i64) -> i64 {
        match (self.start_weekday + day).rem_euclid(7) {
            5 => day + 2,
            6 => day + 1,
            _ => day,
        }
    }

    /// A moment in office hours on the first weekday on or after `day`.
    pub(super) fn work_time(&mut self, day: i64) -> Time {
        self.weekday_on_or_after(day) * DAY
            + self.rng.random_range(8 * HOUR..17 * HOUR + 30 * MINUTE)
    }

    /// A moment in office hours on the last weekday on or before `day`.
    pub(super) fn work_time_back(&mut self, day: i64) -> Time {
        let day = match (self.start_weekday + day).rem_euclid(7) {
            5 => day - 1,
            6 => day - 2,
            _ => day,
        };
        day * DAY + self.rng.random_range(8 * HOUR..17 * HOUR + 30 * MINUTE)
    }

    /// A moment in office hours `min..=max` days after `t`, and strictly
    /// after it, so that steps that depend on each other stay in order.
    pub(super) fn after(&mut self, t: Time, min_days: i64, max_days: i64) -> Time {
        let day = t.div_euclid(DAY) + self.rng.random_range(min_days..=max_days.max(min_days));
        let candidate = self.work_time(day);
        if candidate > t {
            candidate
        } else {
            t + self.rng.random_range(5 * MINUTE..2 * HOUR)
        }
    }

    /// A v7 event id from the effective time and random bytes.
    pub(super) fn event_id(rng: &mut StdRng, start_unix: i64, time: Time) -> Uuid {
        let millis = (start_unix + time).max(0) as u64 * 1000 + rng.random_range(0..1000);
        Builder::from_unix_timestamp_millis(millis, &rng.random()).into_uuid()
    }
}

pub(super) fn fresh_id(rng: &mut StdRng) -> Uuid {
    Builder::from_random_bytes(rng.random()).into_uuid()
}
