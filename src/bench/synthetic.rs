//! The synthetic events of the append and NATS figures: valid, cheap to
//! make, and deterministic for a seed.
//!
//! The log `append_batched` builds is also the one `dashboard_read`
//! reads, so its events are spread over the same [`SPAN_MONTHS`] months
//! whatever their number: the read then assembles the same rows at 1 M
//! events as at 10 M, and compares the cost of a read, not of a longer
//! history.

use chrono::{Days, NaiveDate, TimeZone, Utc};
use rotation_events::Envelope;
use serde_json::json;
use uuid::Uuid;

/// A cheap source of valid events for the append figures: one partnership,
/// then jobseekers who are registered, referred, assessed and mentored.
/// Every event passes the rules in order.
#[derive(Debug)]
pub struct Synthetic {
    seed: u64,
    partnership: String,
    emitted: u64,
    person: Uuid,
    step: u32,
    base: chrono::DateTime<Utc>,
    /// Seconds of effective time between two events.
    spacing: i64,
}

/// Events per synthetic jobseeker: registration, referral, assessment, then mentoring.
const STEPS: u32 = 12;

/// Months a spread history covers: two years of a scheme, so that the
/// board read has a monthly row for each.
pub const SPAN_MONTHS: u32 = 24;

/// Seconds in [`SPAN_MONTHS`], at the mean month's length (30.44 days), so
/// that a spread history reaches into its last month.
const WINDOW_SECONDS: u64 = SPAN_MONTHS as u64 * 2_630_016;

impl Synthetic {
    /// Events one second apart, from 6 January 2024.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            partnership: format!("bench-{seed}"),
            emitted: 0,
            person: Uuid::nil(),
            step: STEPS,
            base: Utc
                .with_ymd_and_hms(2024, 1, 6, 9, 0, 0)
                .single()
                .unwrap_or_default(),
            spacing: 1,
        }
    }

    /// `events` events spread evenly over the same months
    /// from 6 January 2024 (ending before today, as the rules want), at
    /// least a second apart.
    pub fn spanning(seed: u64, events: u64) -> Self {
        let spacing = (WINDOW_SECONDS / events.max(1)).max(1);
        Self {
            spacing: i64::try_from(spacing).unwrap_or(1),
            ..Self::new(seed)
        }
    }

    fn id(&self, n: u64) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.seed.to_be_bytes());
        bytes[8..].copy_from_slice(&n.to_be_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    pub fn take(&mut self, n: usize) -> Vec<Envelope> {
        (0..n).map(|_| self.next_event()).collect()
    }

    fn next_event(&mut self) -> Envelope {
        self.emitted += 1;
        let id = self.id(self.emitted);
        let time = self.base + chrono::TimeDelta::seconds(self.emitted as i64 * self.spacing);
        let (event_type, subject, data) = if self.emitted == 1 {
            (
                "jobrotation.partnership.registered",
                format!("partnership/{}", self.partnership),
                json!({"name": "Bench partnership", "areas": ["E06000021"], "members": [{"organisation": "Bench Jobcentre", "kind": "jobcentre"}]}),
            )
        } else {
            if self.step >= STEPS {
                self.step = 0;
                self.person = self.id(u64::MAX - self.emitted);
            }
            self.step += 1;
            let subject = format!("person/{}", self.person);
            let unemployed_since = NaiveDate::from_ymd_opt(2023, 12, 1)
                .and_then(|d| d.checked_sub_days(Days::new(self.emitted % 300)))
                .unwrap_or_default();
            match self.step {
                1 => (
                    "jobrotation.participant.registered",
                    subject,
                    json!({"role": "jobseeker", "unemployed_since": unemployed_since, "benefit": "universal_credit", "qualification_level": 2, "profile": {"birth_year": 1970 + (self.emitted % 40) as i32, "sex": "female", "disability": "no", "lone_parent": false}}),
                ),
                2 => (
                    "jobrotation.jobseeker.referred",
                    subject,
                    json!({"referred_by": "jobcentre"}),
                ),
                3 => (
                    "jobrotation.jobseeker.eligibility_assessed",
                    subject,
                    json!({"eligible": true, "reasons": []}),
                ),
                _ => (
                    "jobrotation.jobseeker.mentoring_session",
                    subject,
                    json!({"minutes": 45, "mentor": "union_learning_rep"}),
                ),
            }
        };
        let value = json!({
            "specversion": "1.0",
            "id": id,
            "source": "urn:service:bench-jobcentre",
            "type": event_type,
            "subject": subject,
            "time": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "partnership": self.partnership,
            "datacontenttype": "application/json",
            "data": data,
        });
        Envelope::from_value(value).expect("synthetic events are well-formed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rotation_events::{CommittedEvent, LedgerAttributes};
    use rotation_projections::dashboard::Dashboards;

    /// The board's months of `events` spread events, each checked as the
    /// append path checks its data and time.
    fn board_months(events: u64) -> Vec<String> {
        let mut dashboards = Dashboards::new();
        let now = Utc::now();
        for (n, envelope) in Synthetic::spanning(1, events)
            .take(events as usize)
            .into_iter()
            .enumerate()
        {
            envelope.data().expect("valid data");
            envelope.check_time(now).expect("not in the future");
            let recordedtime = envelope.time_text.clone();
            dashboards.apply(&CommittedEvent {
                envelope,
                ledger: LedgerAttributes {
                    position: n as u64 + 1,
                    streamversion: 1,
                    recordedtime,
                    prevhash: String::new(),
                    hash: String::new(),
                },
            });
        }
        let board = dashboards.board("bench-1").expect("the bench partnership");
        board["monthly"]
            .as_array()
            .expect("a monthly series")
            .iter()
            .map(|row| row["month"].as_str().expect("a month").to_owned())
            .collect()
    }

    #[test]
    fn a_spread_log_fills_the_same_months_at_any_size() {
        let small = board_months(6_000);
        // From 6 January, the span reaches into a 25th calendar month.
        assert_eq!(small.len(), SPAN_MONTHS as usize + 1, "{small:?}");
        assert_eq!(board_months(30_000), small);
    }
}
