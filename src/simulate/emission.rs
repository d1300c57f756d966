//! Emission: a draft becomes a line with its id and time, is perhaps
//! reported late or later retracted, and is perhaps followed by a bad line.

use chrono::{Datelike, NaiveDate};
use rand::Rng;
use rotation_events::{EventData, EventType, Retracted, Subject};
use uuid::Uuid;

use super::calendar::{DAY, HOUR, MINUTE, Time};
use super::queue::Task;
use super::reference::{RETRACTION_REASONS, Service};
use super::{Expected, Simulated, Simulator, choose};

/// The share of leaf events (mentoring, outcomes, progressions) reported late.
const LATE_REPORT_RATE: f64 = 0.03;
/// The share of retractable events later retracted. Retractable events are
/// about half of all, which makes retractions about 0.2 % of the log.
const RETRACTION_RATE: f64 = 0.004;

/// An event about to be written, before it gets its id.
#[derive(Clone, Debug)]
pub(super) struct Draft {
    pub(super) partnership: usize,
    pub(super) source: Service,
    pub(super) subject: Subject,
    pub(super) expected_version: Option<u64>,
    pub(super) correlation: Option<Uuid>,
    pub(super) data: EventData,
}

impl Simulator {
    /// Writes a good event at `time`, or queues it as a late report.
    pub(super) fn emit(&mut self, time: Time, draft: Draft) {
        if time >= self.end {
            return;
        }
        if is_leaf(draft.data.event_type()) && self.rng.random_bool(LATE_REPORT_RATE) {
            let delay = self.rng.random_range(7 * DAY..=56 * DAY);
            self.push(time + delay, Task::Late(Box::new((time, draft))));
            return;
        }
        self.commit(time, time, draft);
    }

    /// Writes a good event with effective time `time`, submitted at
    /// `submitted`, and perhaps a bad line after it.
    pub(super) fn commit(&mut self, time: Time, submitted: Time, draft: Draft) {
        let id = Self::event_id(&mut self.rng, self.start_unix, time);
        let line = self.render(&draft, id, time);
        let event_type = draft.data.event_type();
        if is_retractable(event_type) && self.rng.random_bool(RETRACTION_RATE) {
            let at = self.after(submitted, 1, 21);
            if at < self.end {
                let reason = *choose(&mut self.rng, RETRACTION_REASONS);
                let retraction = Draft {
                    partnership: draft.partnership,
                    source: draft.source,
                    subject: draft.subject.clone(),
                    expected_version: None,
                    correlation: draft.correlation,
                    data: EventData::Retracted(Retracted {
                        event_id: id,
                        reason: reason.to_owned(),
                    }),
                };
                self.push(at, Task::Retraction(Box::new(retraction)));
            }
        }
        let bad = self.invalid_rate > 0.0 && self.bad_rng.random_bool(self.invalid_rate);
        let bad = bad.then(|| self.bad_line(&draft, id, time, &line));
        self.out.push_back(Simulated {
            line,
            expected: Expected::Accepted,
        });
        if let Some(bad) = bad {
            self.out.push_back(bad);
        }
    }

    /// The line a partner service would send: the attributes in the order
    /// `Envelope` writes them. Every attribute is made of characters that
    /// JSON needs no escape for (UUIDs, slugs, URNs built from slugs, RFC
    /// 3339 times), so they are written as they are, which is much faster
    /// than a serialiser; `data` goes through serde from the catalogue types.
    pub(super) fn render(&self, draft: &Draft, id: Uuid, time: Time) -> String {
        let partnership = &self.partnerships[draft.partnership];
        let mut line = Vec::with_capacity(640);
        line.extend_from_slice(br#"{"specversion":"1.0","id":""#);
        push_uuid(&mut line, id);
        line.extend_from_slice(br#"","source":""#);
        line.extend_from_slice(partnership.source(draft.source).as_bytes());
        line.extend_from_slice(br#"","type":""#);
        line.extend_from_slice(draft.data.event_type().as_str().as_bytes());
        line.extend_from_slice(br#"","subject":""#);
        match &draft.subject {
            Subject::Partnership(slug) => {
                line.extend_from_slice(b"partnership/");
                line.extend_from_slice(slug.as_bytes());
            }
            other => {
                line.extend_from_slice(other.kind().as_str().as_bytes());
                line.push(b'/');
                push_uuid(&mut line, other.uuid().unwrap_or_default());
            }
        }
        line.extend_from_slice(br#"","time":""#);
        push_time(
            &mut line,
            self.date(time.div_euclid(DAY)),
            time.rem_euclid(DAY),
        );
        line.extend_from_slice(br#"","partnership":""#);
        line.extend_from_slice(partnership.slug.as_bytes());
        line.push(b'"');
        if let Some(version) = draft.expected_version {
            line.extend_from_slice(br#","expectedversion":"#);
            line.extend_from_slice(version.to_string().as_bytes());
        }
        if let Some(correlation) = draft.correlation {
            line.extend_from_slice(br#","correlationid":""#);
            push_uuid(&mut line, correlation);
            line.push(b'"');
        }
        line.extend_from_slice(br#","data":"#);
        serde_json::to_writer(&mut line, &draft.data).expect("event data always serialises");
        line.push(b'}');
        String::from_utf8(line).expect("a rendered event is UTF-8")
    }
}

/// Events nothing else depends on: they may arrive late or be retracted.
pub(super) fn is_leaf(event_type: EventType) -> bool {
    matches!(
        event_type,
        EventType::MentoringSession | EventType::OutcomeObserved | EventType::PersonProgressed
    )
}

fn is_retractable(event_type: EventType) -> bool {
    is_leaf(event_type) || event_type == EventType::PreparationLeft
}

fn push_uuid(line: &mut Vec<u8>, id: Uuid) {
    let mut buffer = Uuid::encode_buffer();
    line.extend_from_slice(id.hyphenated().encode_lower(&mut buffer).as_bytes());
}

/// RFC 3339 in UTC with whole seconds, e.g. `2024-03-04T09:30:12Z`.
fn push_time(line: &mut Vec<u8>, date: NaiveDate, seconds: i64) {
    let digits = |line: &mut Vec<u8>, value: i64, width: u32| {
        for place in (0..width).rev() {
            line.push(b'0' + (value / 10_i64.pow(place) % 10) as u8);
        }
    };
    digits(line, i64::from(date.year()), 4);
    line.push(b'-');
    digits(line, i64::from(date.month()), 2);
    line.push(b'-');
    digits(line, i64::from(date.day()), 2);
    line.push(b'T');
    digits(line, seconds / HOUR, 2);
    line.push(b':');
    digits(line, seconds % HOUR / MINUTE, 2);
    line.push(b':');
    digits(line, seconds % MINUTE, 2);
    line.push(b'Z');
}
