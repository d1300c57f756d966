//! The catalogue: every event type of the contract, its stream kind, and its
//! typed data, with the semantic checks that serde alone cannot express
//! (ranges, an end before its start) and the upcasting of older shapes.

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::envelope::{InvalidEvent, SubjectKind};

macro_rules! catalogue {
    ($( $variant:ident => $name:literal, $kind:expr; )*) => {
        /// Every event type of the contract's catalogue.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType { $( $variant, )* }

        /// The typed data of an event, one variant per [`EventType`].
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum EventData { $( $variant($variant), )* }

        impl EventType {
            /// Every type, in catalogue order.
            pub const ALL: &'static [EventType] = &[ $( EventType::$variant, )* ];

            /// The CloudEvents `type`, e.g. `jobrotation.rotation.release_started`.
            pub fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $name, )* }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $( $name => Some(Self::$variant), )* _ => None }
            }

            /// The kind of stream events of this type belong to; `None` for
            /// retractions, which belong to the stream of the event they retract.
            pub fn subject_kind(self) -> Option<SubjectKind> {
                match self { $( Self::$variant => $kind, )* }
            }

            /// The JSON Schema of this type's `data`.
            pub fn data_schema(self) -> schemars::Schema {
                match self { $( Self::$variant => schemars::schema_for!($variant), )* }
            }
        }

        impl EventData {
            pub fn event_type(&self) -> EventType {
                match self { $( Self::$variant(_) => EventType::$variant, )* }
            }

            // Data that reads is read without tracking the path; only data
            // that does not is read again, tracking it, to name the field.
            fn decode(event_type: EventType, value: &Value) -> Result<Self, InvalidEvent> {
                match event_type {
                    $( EventType::$variant => $variant::deserialize(value)
                        .or_else(|_| serde_path_to_error::deserialize(value))
                        .map(Self::$variant).map_err(data_error), )*
                }
            }

            fn decode_str(event_type: EventType, json: &str) -> Result<Self, InvalidEvent> {
                match event_type {
                    $( EventType::$variant => serde_json::from_str::<$variant>(json)
                        .or_else(|_| serde_path_to_error::deserialize(
                            &mut serde_json::Deserializer::from_str(json),
                        ))
                        .map(Self::$variant).map_err(data_error), )*
                }
            }
        }
    };
}

/// A refusal of `data` that names the field at fault.
fn data_error(e: serde_path_to_error::Error<serde_json::Error>) -> InvalidEvent {
    let path = e.path().to_string();
    if path == "." {
        InvalidEvent::new(format!("data: {}", e.into_inner()))
    } else {
        InvalidEvent::new(format!("data.{path}: {}", e.into_inner()))
    }
}

use SubjectKind::{Employer as E, Partnership as P, Person as H, Rotation as R};

catalogue! {
    PartnershipRegistered => "jobrotation.partnership.registered", Some(P);
    EmployerEnrolled => "jobrotation.employer.enrolled", Some(E);
    ParticipantRegistered => "jobrotation.participant.registered", Some(H);
    JobseekerReferred => "jobrotation.jobseeker.referred", Some(H);
    EligibilityAssessed => "jobrotation.jobseeker.eligibility_assessed", Some(H);
    PreparationStarted => "jobrotation.jobseeker.preparation_started", Some(H);
    PreparationCompleted => "jobrotation.jobseeker.preparation_completed", Some(H);
    PreparationLeft => "jobrotation.jobseeker.preparation_left", Some(H);
    MentoringSession => "jobrotation.jobseeker.mentoring_session", Some(H);
    RotationAgreed => "jobrotation.rotation.agreed", Some(R);
    ReleaseStarted => "jobrotation.rotation.release_started", Some(R);
    SubstitutionStarted => "jobrotation.rotation.substitution_started", Some(R);
    TrainingCompleted => "jobrotation.rotation.training_completed", Some(R);
    TrainingLeft => "jobrotation.rotation.training_left", Some(R);
    ReleaseEnded => "jobrotation.rotation.release_ended", Some(R);
    SubstitutionEnded => "jobrotation.rotation.substitution_ended", Some(R);
    RotationClosed => "jobrotation.rotation.closed", Some(R);
    PersonProgressed => "jobrotation.person.progressed", Some(H);
    OutcomeObserved => "jobrotation.person.outcome_observed", Some(H);
    PersonErased => "jobrotation.person.erased", Some(H);
    Retracted => "jobrotation.ledger.retracted", None;
}

impl EventType {
    /// `<noun>.<verb>`, the tail of the NATS subject the event is published on.
    pub fn noun_verb(self) -> &'static str {
        self.as_str()
            .strip_prefix("jobrotation.")
            .expect("every type starts with jobrotation.")
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EventData {
    /// Reads `data` for `event_type`, upcasting older shapes first.
    pub fn from_value(event_type: EventType, value: &Value) -> Result<Self, InvalidEvent> {
        match upcast(event_type, value) {
            Some(current) => Self::decode(event_type, &current),
            None => Self::decode(event_type, value),
        }
    }

    /// [`EventData::from_value`] straight from JSON text, without building
    /// a [`Value`] tree first unless an older shape must be upcast: for
    /// whole-log replays, where building the tree is most of the cost.
    pub fn from_json_str(event_type: EventType, json: &str) -> Result<Self, InvalidEvent> {
        if may_need_upcast(event_type, json) {
            let value: Value =
                serde_json::from_str(json).map_err(|e| InvalidEvent::new(format!("data: {e}")))?;
            return Self::from_value(event_type, &value);
        }
        Self::decode_str(event_type, json)
    }

    /// The checks serde cannot express. `date` is the UTC date of the
    /// event's effective time.
    pub fn check(&self, date: NaiveDate) -> Result<(), InvalidEvent> {
        match self {
            Self::PartnershipRegistered(d) => {
                non_empty("data.name", &d.name)?;
                for (i, area) in d.areas.iter().enumerate() {
                    check_area(&format!("data.areas[{i}]"), area)?;
                }
                for (i, m) in d.members.iter().enumerate() {
                    non_empty(&format!("data.members[{i}].organisation"), &m.organisation)?;
                }
                Ok(())
            }
            Self::EmployerEnrolled(d) => {
                non_empty("data.name", &d.name)?;
                check_area("data.area", &d.area)
            }
            Self::ParticipantRegistered(d) => {
                match d.role {
                    Role::Employee => {
                        if d.employer.is_none() {
                            return Err(InvalidEvent::new("data.employer: required for employees"));
                        }
                    }
                    Role::Jobseeker => match d.unemployed_since {
                        None => {
                            return Err(InvalidEvent::new(
                                "data.unemployed_since: required for jobseekers",
                            ));
                        }
                        Some(since) if since > date => {
                            return Err(InvalidEvent::new(
                                "data.unemployed_since: lies after the event's time",
                            ));
                        }
                        Some(_) => {}
                    },
                }
                if let Some(level) = d.qualification_level {
                    rqf("data.qualification_level", level)?;
                }
                if d.profile.is_some() && d.sealed_profile.is_some() {
                    return Err(InvalidEvent::new(
                        "data.sealed_profile: not allowed beside data.profile",
                    ));
                }
                if let Some(sealed) = &d.sealed_profile {
                    sealed.check()?;
                }
                if let Some(year) = d.profile.as_ref().and_then(|p| p.birth_year) {
                    use chrono::Datelike;
                    if !(1900..=date.year()).contains(&year) {
                        return Err(InvalidEvent::new(format!(
                            "data.profile.birth_year: {year} is not a plausible birth year"
                        )));
                    }
                }
                Ok(())
            }
            Self::PreparationStarted(d) => {
                non_empty("data.provider", &d.provider)?;
                if d.planned_weeks == 0 {
                    return Err(InvalidEvent::new("data.planned_weeks: must be at least 1"));
                }
                Ok(())
            }
            Self::PreparationCompleted(d) => non_empty("data.provider", &d.provider),
            Self::PreparationLeft(d) => non_empty("data.reason", &d.reason),
            Self::MentoringSession(d) => {
                if d.minutes == 0 {
                    return Err(InvalidEvent::new("data.minutes: must be at least 1"));
                }
                Ok(())
            }
            Self::RotationAgreed(d) => {
                if d.planned_end < d.planned_start {
                    return Err(InvalidEvent::new(
                        "data.planned_end: lies before data.planned_start",
                    ));
                }
                Ok(())
            }
            Self::ReleaseStarted(d) => {
                non_empty("data.course.title", &d.course.title)?;
                non_empty("data.course.provider", &d.course.provider)?;
                rqf("data.course.rqf_level", d.course.rqf_level)?;
                hours("data.course.hours_per_week", d.course.hours_per_week)?;
                end_after("data.planned_end", d.planned_end, date)
            }
            Self::SubstitutionStarted(d) => {
                if d.covers.is_empty() {
                    return Err(InvalidEvent::new(
                        "data.covers: names at least one release_id",
                    ));
                }
                hours("data.hours_per_week", d.hours_per_week)?;
                end_after("data.planned_end", d.planned_end, date)
            }
            Self::TrainingLeft(d) => non_empty("data.reason", &d.reason),
            Self::OutcomeObserved(d) => match d.hours_per_week {
                Some(h) => hours("data.hours_per_week", h),
                None => Ok(()),
            },
            Self::Retracted(d) => non_empty("data.reason", &d.reason),
            Self::PersonErased(d) => {
                non_empty("data.reason", &d.reason)?;
                if d.reason.chars().count() > PersonErased::MAX_REASON {
                    return Err(InvalidEvent::new(format!(
                        "data.reason: longer than {} characters",
                        PersonErased::MAX_REASON
                    )));
                }
                Ok(())
            }
            Self::JobseekerReferred(_)
            | Self::EligibilityAssessed(_)
            | Self::TrainingCompleted(_)
            | Self::ReleaseEnded(_)
            | Self::SubstitutionEnded(_)
            | Self::RotationClosed(_)
            | Self::PersonProgressed(_) => Ok(()),
        }
    }
}

impl SealedProfile {
    /// The shape's checks: every part present, the bytes in base64url
    /// without padding. Whether they open is for the holder of the key.
    fn check(&self) -> Result<(), InvalidEvent> {
        non_empty("data.sealed_profile.alg", &self.alg)?;
        non_empty("data.sealed_profile.kid", &self.kid)?;
        base64url("data.sealed_profile.nonce", &self.nonce)?;
        base64url("data.sealed_profile.ciphertext", &self.ciphertext)
    }
}

fn base64url(field: &str, value: &str) -> Result<(), InvalidEvent> {
    let alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    // A length of 1 modulo 4 is no whole number of bytes.
    if value.is_empty() || value.len() % 4 == 1 || !value.as_bytes().iter().all(alphabet) {
        Err(InvalidEvent::new(format!(
            "{field}: not base64url without padding"
        )))
    } else {
        Ok(())
    }
}

fn non_empty(field: &str, value: &str) -> Result<(), InvalidEvent> {
    if value.trim().is_empty() {
        Err(InvalidEvent::new(format!("{field}: must not be empty")))
    } else {
        Ok(())
    }
}

fn rqf(field: &str, level: u8) -> Result<(), InvalidEvent> {
    if level > 8 {
        Err(InvalidEvent::new(format!(
            "{field}: RQF levels run from 0 to 8, not {level}"
        )))
    } else {
        Ok(())
    }
}

fn hours(field: &str, value: f64) -> Result<(), InvalidEvent> {
    if value.is_finite() && (0.0..=168.0).contains(&value) {
        Ok(())
    } else {
        Err(InvalidEvent::new(format!(
            "{field}: {value} is not between 0 and 168 hours"
        )))
    }
}

fn end_after(field: &str, end: NaiveDate, start: NaiveDate) -> Result<(), InvalidEvent> {
    if end < start {
        Err(InvalidEvent::new(format!(
            "{field}: {end} lies before the event's date {start}"
        )))
    } else {
        Ok(())
    }
}

/// ONS local authority codes: a country letter and eight digits, e.g. `E06000021`.
fn check_area(field: &str, code: &str) -> Result<(), InvalidEvent> {
    let bytes = code.as_bytes();
    let ok = bytes.len() == 9
        && matches!(bytes[0], b'E' | b'W' | b'S' | b'N')
        && bytes[1..].iter().all(u8::is_ascii_digit);
    if ok {
        Ok(())
    } else {
        Err(InvalidEvent::new(format!(
            "{field}: `{code}` is not an ONS local authority code (e.g. E06000021)"
        )))
    }
}

/// Upcasting: the data shapes of earlier versions of a type, read as the
/// current one. Stored events are never rewritten (the hash chain covers
/// them as committed); they are upcast every time they are read.
///
/// Whether `json` might hold an older shape of `event_type`'s data: a cheap
/// test that lets the current shape skip [`upcast`]. It may say yes to a
/// current shape (the upcast then finds nothing to do), never no to an
/// older one.
fn may_need_upcast(event_type: EventType, json: &str) -> bool {
    match event_type {
        // A key may be spelt with escapes; those go the slow way too.
        EventType::SubstitutionStarted => json.contains("release_id") || json.contains("\\u"),
        _ => false,
    }
}

/// Returns `None` when `value` already has the current shape.
fn upcast(event_type: EventType, value: &Value) -> Option<Value> {
    match event_type {
        // Version 1 of `substitution_started` covered exactly one release and
        // named it `release_id`; version 2 covers one or more, in `covers`.
        EventType::SubstitutionStarted => {
            let object = value.as_object()?;
            if object.contains_key("covers") || !object.contains_key("release_id") {
                return None;
            }
            let mut current = object.clone();
            let release = current.remove("release_id")?;
            current.insert("covers".to_owned(), Value::Array(vec![release]));
            Some(Value::Object(current))
        }
        _ => None,
    }
}

macro_rules! data_enum {
    ($(#[$meta:meta])* $name:ident { $( $variant:ident = $text:literal ),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        pub enum $name { $( #[serde(rename = $text)] $variant, )* }

        impl $name {
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )* ];

            /// The contract's spelling.
            pub fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $text, )* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

data_enum!(
    /// The kind of organisation on a partnership board.
    MemberKind { Employer = "employer", TradeUnion = "trade_union", LocalAuthority = "local_authority",
    College = "college", Jobcentre = "jobcentre", AdviceService = "advice_service",
    TrainingProvider = "training_provider", Other = "other" }
);
data_enum!(
    /// SIC 2007 section.
    Sector { A = "A", B = "B", C = "C", D = "D", E = "E", F = "F", G = "G", H = "H", I = "I",
    J = "J", K = "K", L = "L", M = "M", N = "N", O = "O", P = "P", Q = "Q", R = "R", S = "S",
    T = "T", U = "U" }
);
data_enum!(
    /// Employer size band.
    Size { Micro = "micro", Small = "small", Medium = "medium", Large = "large" }
);
data_enum!(
    /// A participant's role in the scheme.
    Role { Employee = "employee", Jobseeker = "jobseeker" }
);
data_enum!(
    /// The benefit a participant receives at registration.
    Benefit { UniversalCredit = "universal_credit", Jsa = "jsa", Esa = "esa", None = "none", Other = "other" }
);
data_enum!(
    Sex { Female = "female", Male = "male", Other = "other", PreferNotToSay = "prefer_not_to_say" }
);
data_enum!(
    Ethnicity { Asian = "asian", Black = "black", Mixed = "mixed", White = "white", Other = "other",
    PreferNotToSay = "prefer_not_to_say" }
);
data_enum!(
    /// Answers to yes/no questions that a person may decline.
    YesNo { Yes = "yes", No = "no", PreferNotToSay = "prefer_not_to_say" }
);
data_enum!(
    ReferredBy { Jobcentre = "jobcentre", AdviceService = "advice_service", TradeUnion = "trade_union",
    SelfReferral = "self", Other = "other" }
);
data_enum!(
    Mentor { UnionLearningRep = "union_learning_rep", Employer = "employer", Provider = "provider", Other = "other" }
);
data_enum!(
    /// Why a substitution ended.
    EndReason { Completed = "completed", LeftEarly = "left_early", HiredByEmployer = "hired_by_employer",
    Dismissed = "dismissed" }
);
data_enum!(
    ProgressionKind { Promotion = "promotion", PayRise = "pay_rise", NewRole = "new_role",
    Qualification = "qualification", PermanentJob = "permanent_job", OtherJob = "other_job",
    Education = "education", SelfEmployment = "self_employment" }
);
data_enum!(
    /// Labour market status, observed or implied.
    Status { Employed = "employed", SelfEmployed = "self_employed", Education = "education",
    Unemployed = "unemployed", Inactive = "inactive", Unknown = "unknown" }
);
data_enum!(
    ObservationSource { Survey = "survey", Employer = "employer", AdminData = "admin_data" }
);

impl ProgressionKind {
    /// The status a progression implies (contract section 8), if any.
    pub fn implied_status(self) -> Option<Status> {
        match self {
            Self::PermanentJob | Self::OtherJob => Some(Status::Employed),
            Self::SelfEmployment => Some(Status::SelfEmployed),
            Self::Education => Some(Status::Education),
            _ => None,
        }
    }
}

macro_rules! data_struct {
    ($(#[$meta:meta])* $name:ident { $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name { $( $(#[$fmeta])* pub $field: $ty, )* }
    };
}

data_struct!(Member {
    organisation: String,
    kind: MemberKind
});
data_struct!(PartnershipRegistered { name: String, areas: Vec<String>, members: Vec<Member> });
data_struct!(EmployerEnrolled {
    name: String,
    sector: Sector,
    size: Size,
    area: String
});
data_struct!(
    /// Personal data: the only place in the ledger where it lives.
    Profile {
        #[serde(default, skip_serializing_if = "Option::is_none")] birth_year: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")] sex: Option<Sex>,
        #[serde(default, skip_serializing_if = "Option::is_none")] ethnicity: Option<Ethnicity>,
        #[serde(default, skip_serializing_if = "Option::is_none")] disability: Option<YesNo>,
        #[serde(default, skip_serializing_if = "Option::is_none")] lone_parent: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")] health_condition: Option<YesNo>,
    }
);
data_struct!(ParticipantRegistered {
    role: Role,
    /// Employees: the employer's id.
    #[serde(default, skip_serializing_if = "Option::is_none")] employer: Option<Uuid>,
    /// Jobseekers: since when unemployed.
    #[serde(default, skip_serializing_if = "Option::is_none")] unemployed_since: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")] benefit: Option<Benefit>,
    #[serde(default, skip_serializing_if = "Option::is_none")] qualification_level: Option<u8>,
    /// The profile in clear, as a partner submits it. The ledger commits it
    /// only as `sealed_profile`; events committed before sealing keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")] profile: Option<Profile>,
    /// The profile sealed under the person's own data key, as committed.
    #[serde(default, skip_serializing_if = "Option::is_none")] sealed_profile: Option<SealedProfile>,
});
data_struct!(
    /// A profile sealed under its person's data key (contract section 9):
    /// an AEAD's output with the event's `id` and `subject` as associated
    /// data. This crate knows only the shape; the ledger seals and opens.
    SealedProfile {
        /// The AEAD, e.g. `XChaCha20-Poly1305`.
        alg: String,
        /// Names the person's data key without revealing the person.
        kid: String,
        /// base64url without padding.
        nonce: String,
        /// base64url without padding; the tag included.
        ciphertext: String,
    }
);

impl ParticipantRegistered {
    /// Whether a profile was given, in clear or sealed.
    pub fn has_profile(&self) -> bool {
        self.profile.is_some() || self.sealed_profile.is_some()
    }
}
data_struct!(JobseekerReferred {
    referred_by: ReferredBy
});
data_struct!(EligibilityAssessed { eligible: bool, #[serde(default)] reasons: Vec<String> });
data_struct!(PreparationStarted {
    provider: String,
    planned_weeks: u32
});
data_struct!(PreparationCompleted { provider: String });
data_struct!(PreparationLeft { reason: String });
data_struct!(MentoringSession {
    minutes: u32,
    mentor: Mentor
});
data_struct!(RotationAgreed {
    employer: Uuid,
    planned_start: NaiveDate,
    planned_end: NaiveDate
});
data_struct!(Course {
    title: String,
    provider: String,
    rqf_level: u8,
    hours_per_week: f64
});
data_struct!(ReleaseStarted {
    release_id: Uuid,
    employee: Uuid,
    course: Course,
    planned_end: NaiveDate
});
data_struct!(SubstitutionStarted {
    substitution_id: Uuid, substitute: Uuid, covers: Vec<Uuid>, hours_per_week: f64, planned_end: NaiveDate,
});
data_struct!(TrainingCompleted {
    release_id: Uuid,
    qualification_achieved: bool
});
data_struct!(TrainingLeft {
    release_id: Uuid,
    reason: String
});
data_struct!(ReleaseEnded { release_id: Uuid });
data_struct!(SubstitutionEnded {
    substitution_id: Uuid,
    reason: EndReason
});
data_struct!(RotationClosed {});
data_struct!(PersonProgressed {
    kind: ProgressionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")] employer: Option<Uuid>,
});
data_struct!(OutcomeObserved {
    status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")] hours_per_week: Option<f64>,
    source: ObservationSource,
});
data_struct!(
    /// `jobrotation.person.erased`: the person's profile was erased (its
    /// key destroyed). Committed by the ledger itself, never by a partner.
    PersonErased { reason: String }
);
impl PersonErased {
    /// The longest reason, in characters.
    pub const MAX_REASON: usize = 500;
}
data_struct!(
    /// `jobrotation.ledger.retracted`: the named event leaves every
    /// projection and dataset, and stays in the log.
    Retracted { event_id: Uuid, reason: String }
);
