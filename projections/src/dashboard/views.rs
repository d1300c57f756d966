//! The views: what each employer, rotation and person adds to the
//! dashboard, derived from the live facts alone, and the scheme-rule check
//! of each started substitution.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use rotation_events::{EndReason, Sector};
use uuid::Uuid;

use super::cells::{Category, Cell, Month};
use super::counts::{GroupMeasure, MonthMeasure, SectorMeasure, Total};
use super::facts::{
    Facts, PersonFact, Registration, ReleaseStart, RotationFact, SubstitutionStart,
};
use super::fold::Partnership;
use crate::flags::{FlagRule, SubstitutionCheck};
use crate::outcomes::{self, AgeBand, Observation, StatusRecord, into_work};

/// What a rotation adds to the dashboard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct RotationView {
    pub(super) cells: Vec<(Cell, u64)>,
    pub(super) checks: Vec<SubstitutionCheck>,
}

impl RotationView {
    pub(super) fn is_empty(&self) -> bool {
        self.cells.is_empty() && self.checks.is_empty()
    }
}

/// What a person adds to the dashboard, kept compact because a partnership
/// has tens of thousands of people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PersonView {
    pub(super) referred: bool,
    pub(super) eligible: bool,
    pub(super) prepared: bool,
    pub(super) placed: bool,
    pub(super) into_work: bool,
    pub(super) groups: [Category; 5],
    pub(super) referral_months: Vec<Month>,
    pub(super) progression_months: Vec<Month>,
    pub(super) mentoring_sessions: u64,
}

impl PersonView {
    pub(super) fn is_empty(&self) -> bool {
        !(self.referred || self.eligible || self.prepared || self.placed || self.into_work)
            && self.referral_months.is_empty()
            && self.progression_months.is_empty()
            && self.mentoring_sessions == 0
    }

    pub(super) fn cells(&self, mut emit: impl FnMut(Cell, u64)) {
        let people = [
            (
                self.referred,
                Total::JobseekersReferred,
                GroupMeasure::Referred,
            ),
            (
                self.eligible,
                Total::JobseekersEligible,
                GroupMeasure::Eligible,
            ),
            (
                self.prepared,
                Total::PreparationCompleted,
                GroupMeasure::PreparationCompleted,
            ),
            (self.placed, Total::JobseekersPlaced, GroupMeasure::Placed),
            (
                self.into_work,
                Total::SubstitutesIntoWork,
                GroupMeasure::IntoWork,
            ),
        ];
        for (yes, total, measure) in people {
            if yes {
                emit(Cell::Total(total), 1);
                for category in self.groups {
                    emit(Cell::Group(category, measure), 1);
                }
            }
        }
        emit(
            Cell::Total(Total::Referrals),
            self.referral_months.len() as u64,
        );
        for &month in &self.referral_months {
            emit(Cell::Month(month, MonthMeasure::Referrals), 1);
        }
        emit(
            Cell::Total(Total::Progressions),
            self.progression_months.len() as u64,
        );
        for &month in &self.progression_months {
            emit(Cell::Month(month, MonthMeasure::Progressions), 1);
        }
        emit(
            Cell::Total(Total::MentoringSessions),
            self.mentoring_sessions,
        );
    }
}

/// The cells an enrolled employer adds.
pub(super) fn employer_cells(sector: Sector) -> [(Cell, u64); 2] {
    [
        (Cell::Total(Total::EmployersEnrolled), 1),
        (
            Cell::Sector(Some(sector), SectorMeasure::EmployersEnrolled),
            1,
        ),
    ]
}

impl Partnership {
    /// The sector an employer counts under: that of its latest live
    /// enrolment; `None` if it has none.
    pub(super) fn sector_of(&self, employer: Uuid) -> Option<Sector> {
        self.employers
            .get(&employer)?
            .live
            .values()
            .next_back()
            .copied()
    }

    /// A person's latest live registration.
    pub(super) fn registration(&self, person: Uuid) -> Option<&Registration> {
        self.people
            .get(&person)?
            .live
            .values()
            .rev()
            .find_map(|fact| match fact {
                PersonFact::Registered(registration) => Some(registration),
                _ => None,
            })
    }

    /// The ends (position, date and reason) of every substitution in
    /// which `person` is the substitute, in every rotation.
    pub(super) fn substitution_ends_of(&self, person: Uuid) -> Vec<(u64, NaiveDate, EndReason)> {
        let mut ends = Vec::new();
        let Some(rotations) = self.derived.rotations_by_substitute.get(&person) else {
            return ends;
        };
        for rotation in rotations {
            let Some(facts) = self.rotations.get(rotation) else {
                continue;
            };
            let starts = substitution_starts(facts);
            for (&position, fact) in &facts.live {
                if let RotationFact::SubstitutionEnded {
                    substitution,
                    reason,
                    date,
                } = fact
                    && starts.get(substitution).map(|s| s.substitute) == Some(person)
                {
                    ends.push((position, *date, *reason));
                }
            }
        }
        ends
    }

    /// A person's observations, observed and implied (contract section 8),
    /// given the ends of their substitutions.
    pub(super) fn observations(
        &self,
        person: Uuid,
        ends: &[(u64, NaiveDate, EndReason)],
    ) -> Vec<Observation> {
        let recorded = self.people.get(&person).into_iter().flat_map(|facts| {
            facts
                .live
                .iter()
                .filter_map(|(&position, fact)| match *fact {
                    PersonFact::Observed { status, date } => {
                        Some((position, date, StatusRecord::Observed(status)))
                    }
                    PersonFact::Progressed { kind, date } => {
                        Some((position, date, StatusRecord::Progressed(kind)))
                    }
                    _ => None,
                })
        });
        let ended = ends.iter().map(|&(position, date, reason)| {
            (position, date, StatusRecord::SubstitutionEnded(reason))
        });
        outcomes::observations(recorded.chain(ended))
    }

    pub(super) fn person_view(&self, person: Uuid) -> PersonView {
        let mut registration = None;
        let mut first_referral: Option<NaiveDate> = None;
        let mut eligible = None;
        let mut view = PersonView {
            referred: false,
            eligible: false,
            prepared: false,
            placed: self.derived.rotations_by_substitute.contains_key(&person),
            into_work: false,
            groups: [
                Category::AgeBand(None),
                Category::Sex(None),
                Category::Disability(None),
                Category::Ethnicity(None),
                Category::LoneParent(None),
            ],
            referral_months: Vec::new(),
            progression_months: Vec::new(),
            mentoring_sessions: 0,
        };
        if let Some(facts) = self.people.get(&person) {
            for fact in facts.live.values() {
                match fact {
                    PersonFact::Registered(r) => registration = Some(r),
                    PersonFact::Referred { date } => {
                        view.referral_months.push(Month::of(*date));
                        first_referral = Some(first_referral.map_or(*date, |d| d.min(*date)));
                    }
                    PersonFact::Assessed { eligible: e } => eligible = Some(*e),
                    PersonFact::PreparationCompleted => view.prepared = true,
                    PersonFact::Mentored => view.mentoring_sessions += 1,
                    PersonFact::Progressed { date, .. } => {
                        view.progression_months.push(Month::of(*date));
                    }
                    PersonFact::Observed { .. } | PersonFact::Erased => {}
                }
            }
        }
        view.referred = first_referral.is_some();
        view.eligible = eligible == Some(true);
        if view.placed {
            let ends = self.substitution_ends_of(person);
            let observations = self.observations(person, &ends);
            view.into_work = ends
                .iter()
                .any(|&(_, date, reason)| into_work(date, reason, &observations));
        }
        if let Some(r) = registration {
            view.groups = [
                Category::AgeBand(AgeBand::at_referral(r.birth_year, first_referral)),
                Category::Sex(r.sex),
                Category::Disability(r.disability),
                Category::Ethnicity(r.ethnicity),
                Category::LoneParent(r.lone_parent),
            ];
        }
        view
    }

    pub(super) fn rotation_view(&self, rotation: Uuid) -> RotationView {
        let Some(facts) = self.rotations.get(&rotation) else {
            return RotationView::default();
        };
        let sector = self
            .derived
            .links
            .get(&rotation)
            .and_then(|links| links.employer)
            .and_then(|employer| self.sector_of(employer));
        let mut releases: BTreeMap<Uuid, &ReleaseStart> = BTreeMap::new();
        let mut ended_releases = BTreeSet::new();
        let mut ends: BTreeMap<Uuid, NaiveDate> = BTreeMap::new();
        for fact in facts.live.values() {
            match fact {
                RotationFact::ReleaseStarted(start) => {
                    releases.insert(start.release, start);
                }
                RotationFact::ReleaseEnded { release } => {
                    ended_releases.insert(*release);
                }
                RotationFact::SubstitutionEnded {
                    substitution, date, ..
                } => {
                    ends.insert(*substitution, *date);
                }
                _ => {}
            }
        }
        let starts = substitution_starts(facts);
        let mut cells: BTreeMap<Cell, u64> = BTreeMap::new();
        let mut count = |total: Total,
                         by_sector: Option<SectorMeasure>,
                         by_month: Option<(NaiveDate, MonthMeasure)>| {
            *cells.entry(Cell::Total(total)).or_default() += 1;
            if let Some(measure) = by_sector {
                *cells.entry(Cell::Sector(sector, measure)).or_default() += 1;
            }
            if let Some((date, measure)) = by_month {
                *cells
                    .entry(Cell::Month(Month::of(date), measure))
                    .or_default() += 1;
            }
        };
        let mut checks = Vec::new();
        // The flags each start earns under the partnership's limits are
        // cells like any other, so that they are released on the cadence.
        let mut flagged: Vec<Cell> = Vec::new();
        for fact in facts.live.values() {
            match fact {
                RotationFact::Agreed { .. } => {
                    count(
                        Total::RotationsAgreed,
                        Some(SectorMeasure::RotationsAgreed),
                        None,
                    );
                }
                RotationFact::Closed => count(Total::RotationsClosed, None, None),
                RotationFact::ReleaseStarted(start) => {
                    count(
                        Total::ReleasesStarted,
                        Some(SectorMeasure::ReleasesStarted),
                        Some((start.date, MonthMeasure::ReleasesStarted)),
                    );
                    if !ended_releases.contains(&start.release) {
                        count(Total::ReleasesActive, None, None);
                    }
                }
                RotationFact::ReleaseEnded { .. } => count(Total::ReleasesEnded, None, None),
                RotationFact::TrainingCompleted { date, .. } => count(
                    Total::TrainingCompleted,
                    Some(SectorMeasure::TrainingCompleted),
                    Some((*date, MonthMeasure::TrainingCompleted)),
                ),
                RotationFact::TrainingLeft { .. } => {
                    count(Total::TrainingLeft, Some(SectorMeasure::TrainingLeft), None);
                }
                RotationFact::SubstitutionStarted(start) => {
                    count(
                        Total::SubstitutionsStarted,
                        Some(SectorMeasure::SubstitutionsStarted),
                        Some((start.date, MonthMeasure::SubstitutionsStarted)),
                    );
                    let end = ends.get(&start.substitution).copied();
                    if end.is_none() {
                        count(Total::SubstitutionsActive, None, None);
                    }
                    let check = self.check(rotation, start, &releases, end);
                    flagged.extend(
                        FlagRule::ALL
                            .iter()
                            .filter(|&&rule| check.breaks(rule, &self.limits))
                            .map(|&rule| Cell::Flag(Month::of(start.date), rule)),
                    );
                    checks.push(check);
                }
                RotationFact::SubstitutionEnded {
                    substitution,
                    reason,
                    date,
                } => {
                    count(Total::SubstitutionsEnded, None, None);
                    count(
                        match reason {
                            EndReason::Completed => Total::SubstitutionsCompleted,
                            EndReason::LeftEarly => Total::SubstitutionsLeftEarly,
                            EndReason::HiredByEmployer => Total::SubstitutesHiredByEmployer,
                            EndReason::Dismissed => Total::SubstitutionsDismissed,
                        },
                        None,
                        None,
                    );
                    // An end whose start is not known (retracted) has no
                    // substitute to observe; only a hire can show work.
                    let observations = match starts.get(substitution) {
                        Some(start) => {
                            let ends = self.substitution_ends_of(start.substitute);
                            self.observations(start.substitute, &ends)
                        }
                        None => Vec::new(),
                    };
                    if into_work(*date, *reason, &observations) {
                        count(Total::SubstitutionsIntoWork, None, None);
                    }
                }
            }
        }
        for cell in flagged {
            *cells.entry(cell).or_default() += 1;
        }
        RotationView {
            cells: cells.into_iter().collect(),
            checks,
        }
    }

    /// The scheme-rule check of one started substitution.
    pub(super) fn check(
        &self,
        rotation: Uuid,
        start: &SubstitutionStart,
        releases: &BTreeMap<Uuid, &ReleaseStart>,
        end: Option<NaiveDate>,
    ) -> SubstitutionCheck {
        SubstitutionCheck {
            rotation,
            substitution: start.substitution,
            unemployed_weeks: self
                .registration(start.substitute)
                .and_then(|r| r.unemployed_since)
                .map(|since| (start.date - since).num_days().div_euclid(7)),
            planned_days: (start.planned_end - start.date).num_days(),
            actual_days: end.map(|end| (end - start.date).num_days()),
            hours_milli: start.hours_milli,
            month: Month::of(start.date).to_string(),
            covered_milli: start
                .covers
                .iter()
                .map(|release| releases.get(release).map(|r| r.hours_milli))
                .sum(),
        }
    }
}

/// The live start of each substitution in a rotation, by substitution id;
/// the latest wins should a substitution have been started twice.
pub(super) fn substitution_starts(
    facts: &Facts<RotationFact>,
) -> BTreeMap<Uuid, &SubstitutionStart> {
    facts
        .live
        .values()
        .filter_map(|fact| match fact {
            RotationFact::SubstitutionStarted(start) => Some((start.substitution, start)),
            _ => None,
        })
        .collect()
}
