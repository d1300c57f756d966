//! The dashboard's named counts: the totals and the rows of `by_sector`,
//! `by_group` and `monthly`, each with an enum that names its counts so
//! that the fold can address a count as a value, and the total each
//! breakdown adds up to.

use serde::Serialize;

/// Defines a struct of named counts together with an enum naming each of
/// them, so that the fold can address a count as a value and the JSON
/// keeps the field names.
macro_rules! counts {
    (
        $(#[$meta:meta])*
        $name:ident, $measure:ident {
            $( $(#[$fmeta:meta])* $field:ident => $variant:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
        pub struct $name { $( $(#[$fmeta])* pub $field: u64, )* }

        /// One count of the struct of the same stem, by name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub(crate) enum $measure { $( $variant, )* }

        impl $measure {
            /// Every count, in the order of the struct's fields.
            pub(crate) const ALL: &'static [$measure] = &[ $( $measure::$variant, )* ];

            /// The count's name in the JSON.
            pub(crate) fn name(self) -> &'static str {
                match self { $( Self::$variant => stringify!($field), )* }
            }
        }

        impl $name {
            pub(crate) fn get(&self, measure: $measure) -> u64 {
                match measure { $( $measure::$variant => self.$field, )* }
            }

            pub(super) fn slot(&mut self, measure: $measure) -> &mut u64 {
                match measure { $( $measure::$variant => &mut self.$field, )* }
            }
        }
    };
}

counts! {
    /// The partnership's totals: the contract's counts, then the extras the
    /// board page's funnel and the disclosure equations use.
    Totals, Total {
        /// Employers with a live enrolment.
        employers_enrolled => EmployersEnrolled,
        /// `rotation.agreed` events.
        rotations_agreed => RotationsAgreed,
        /// `rotation.closed` events.
        rotations_closed => RotationsClosed,
        /// `release_started` events.
        releases_started => ReleasesStarted,
        /// Releases started and not ended by `release_ended`.
        releases_active => ReleasesActive,
        /// `release_ended` events.
        releases_ended => ReleasesEnded,
        /// `training_completed` events.
        training_completed => TrainingCompleted,
        /// `training_left` events.
        training_left => TrainingLeft,
        /// `substitution_started` events.
        substitutions_started => SubstitutionsStarted,
        /// Substitutions started and not ended by `substitution_ended`.
        substitutions_active => SubstitutionsActive,
        /// `substitution_ended` events, whatever the reason.
        substitutions_ended => SubstitutionsEnded,
        /// Substitutions ended `completed`.
        substitutions_completed => SubstitutionsCompleted,
        /// Substitutions ended `left_early`.
        substitutions_left_early => SubstitutionsLeftEarly,
        /// Substitutions ended `hired_by_employer`.
        substitutes_hired_by_employer => SubstitutesHiredByEmployer,
        /// Substitutions ended `dismissed`.
        substitutions_dismissed => SubstitutionsDismissed,
        /// Ended substitutions whose substitute went into work within six
        /// months of the end ([`crate::outcomes::into_work`]).
        substitutions_into_work => SubstitutionsIntoWork,
        /// `jobseeker.referred` events.
        referrals => Referrals,
        /// People referred at least once.
        jobseekers_referred => JobseekersReferred,
        /// People whose latest eligibility assessment found them eligible.
        jobseekers_eligible => JobseekersEligible,
        /// People who completed pre-employment preparation.
        preparation_completed => PreparationCompleted,
        /// People who started at least one substitution.
        jobseekers_placed => JobseekersPlaced,
        /// People with at least one ended substitution that led into work.
        substitutes_into_work => SubstitutesIntoWork,
        /// `jobseeker.mentoring_session` events.
        mentoring_sessions => MentoringSessions,
        /// `person.progressed` events, of employees and substitutes alike.
        progressions => Progressions,
    }
}

counts! {
    /// The counts of one SIC section: rotation events filed under the
    /// sector of the rotation's employer.
    SectorCounts, SectorMeasure {
        employers_enrolled => EmployersEnrolled,
        rotations_agreed => RotationsAgreed,
        releases_started => ReleasesStarted,
        training_completed => TrainingCompleted,
        training_left => TrainingLeft,
        substitutions_started => SubstitutionsStarted,
    }
}

counts! {
    /// The people counts of one category of one `by_group` dimension.
    GroupCounts, GroupMeasure {
        /// Referred at least once (of `jobseekers_referred`).
        referred => Referred,
        /// Eligible at the latest assessment (of `jobseekers_eligible`).
        eligible => Eligible,
        /// Completed preparation (of `preparation_completed`).
        preparation_completed => PreparationCompleted,
        /// Started at least one substitution (of `jobseekers_placed`).
        placed => Placed,
        /// Went into work after a substitution (of `substitutes_into_work`).
        into_work => IntoWork,
    }
}

counts! {
    /// The events of one month, by the month of their effective time.
    MonthCounts, MonthMeasure {
        referrals => Referrals,
        releases_started => ReleasesStarted,
        substitutions_started => SubstitutionsStarted,
        training_completed => TrainingCompleted,
        progressions => Progressions,
    }
}

impl SectorMeasure {
    /// The total this column adds up to.
    pub(crate) fn total(self) -> Total {
        match self {
            Self::EmployersEnrolled => Total::EmployersEnrolled,
            Self::RotationsAgreed => Total::RotationsAgreed,
            Self::ReleasesStarted => Total::ReleasesStarted,
            Self::TrainingCompleted => Total::TrainingCompleted,
            Self::TrainingLeft => Total::TrainingLeft,
            Self::SubstitutionsStarted => Total::SubstitutionsStarted,
        }
    }
}

impl GroupMeasure {
    /// The total every dimension of this measure adds up to.
    pub(crate) fn total(self) -> Total {
        match self {
            Self::Referred => Total::JobseekersReferred,
            Self::Eligible => Total::JobseekersEligible,
            Self::PreparationCompleted => Total::PreparationCompleted,
            Self::Placed => Total::JobseekersPlaced,
            Self::IntoWork => Total::SubstitutesIntoWork,
        }
    }
}

impl MonthMeasure {
    /// The total this column adds up to.
    pub(crate) fn total(self) -> Total {
        match self {
            Self::Referrals => Total::Referrals,
            Self::ReleasesStarted => Total::ReleasesStarted,
            Self::SubstitutionsStarted => Total::SubstitutionsStarted,
            Self::TrainingCompleted => Total::TrainingCompleted,
            Self::Progressions => Total::Progressions,
        }
    }
}
