//! The synthetic events of the append and NATS figures: valid, cheap to
//! make, and deterministic for a seed.

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
}

/// Events per synthetic jobseeker: registration, referral, assessment, then mentoring.
const STEPS: u32 = 12;

impl Synthetic {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            partnership: format!("bench-{seed}"),
            emitted: 0,
            person: Uuid::nil(),
            step: STEPS,
            base: Utc
                .with_ymd_and_hms(2025, 1, 6, 9, 0, 0)
                .single()
                .unwrap_or_default(),
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
        let time = self.base + chrono::TimeDelta::seconds(self.emitted as i64);
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
            let unemployed_since = NaiveDate::from_ymd_opt(2024, 3, 1)
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
