//! Partnerships: their registration with a board of every member kind, and
//! the employers they enrol, founders first and then as placements need
//! them.

use std::collections::{HashMap, VecDeque};

use rand::Rng;
use rand::rngs::StdRng;
use rotation_events::{
    EmployerEnrolled, EventData, Member, MemberKind, PartnershipRegistered, Sector, Size, Subject,
};
use uuid::Uuid;

use super::calendar::{DAY, Time, fresh_id};
use super::emission::Draft;
use super::proportions::*;
use super::reference::{Deliverer, PLACES, Place, SECTORS, SERVICE_SUFFIXES, Service};
use super::{Simulator, pick};

pub(super) struct Employer {
    pub(super) id: Uuid,
    pub(super) sector: Sector,
    size: Size,
    area: &'static str,
    name: String,
    source: String,
}

/// A rotation as the partnership sees it between placements.
pub(super) struct RotationSlot {
    pub(super) id: Uuid,
    pub(super) employer: usize,
    /// Bumped every time a placement takes the rotation up again, so that a
    /// pending close of an earlier idle spell can tell it is stale.
    pub(super) generation: u32,
    pub(super) idle: bool,
}

pub(super) struct Partnership {
    place: &'static Place,
    pub(super) slug: String,
    name: String,
    services: [String; 7],
    /// Enrolled employers, in enrolment order; never shrinks.
    pub(super) employers: Vec<Employer>,
    /// Founding employers, named on the board before they enrol.
    pub(super) founders: VecDeque<Employer>,
    /// Employer indices repeated by size, so that larger employers run
    /// more rotations.
    tickets: Vec<usize>,
    employer_target: usize,
    /// How many employers of each sector have been named, for unique names.
    named: [u32; 21],
    pub(super) rotations: HashMap<u64, RotationSlot>,
    pub(super) next_rotation: u64,
    /// Rotations whose placement has finished and which are not closed.
    pub(super) idle: Vec<u64>,
    /// Recently refused jobseekers (never reassessed).
    pub(super) refused: VecDeque<Uuid>,
    pub(super) jobseekers: u32,
    pub(super) arrived: u32,
    pub(super) arrival_from: Time,
    pub(super) arrival_span: Time,
}

impl Partnership {
    pub(super) fn source(&self, service: Service) -> &str {
        match service {
            Service::Board => &self.services[0],
            Service::Jobcentre => &self.services[1],
            Service::Advice => &self.services[2],
            Service::College => &self.services[3],
            Service::Training => &self.services[4],
            Service::UnionLearning => &self.services[5],
            Service::Evaluation => &self.services[6],
            Service::Employer(i) => &self.employers[i].source,
        }
    }

    pub(super) fn deliverer_name(&self, deliverer: Deliverer) -> &'static str {
        match deliverer {
            Deliverer::College => self.place.college,
            Deliverer::Provider => self.place.provider,
            Deliverer::University => self.place.university,
        }
    }
}

pub(super) enum SetupStep {
    Register,
    EnrolFounder,
}

impl Simulator {
    pub(super) fn new_partnership(&mut self, index: usize, jobseekers: u32) -> Partnership {
        let place = &PLACES[index % PLACES.len()];
        let round = index / PLACES.len();
        let (slug, name) = if round == 0 {
            (place.slug.to_owned(), place.name.to_owned())
        } else {
            (
                format!("{}-{}", place.slug, round + 1),
                format!("{} ({})", place.name, round + 1),
            )
        };
        let services = SERVICE_SUFFIXES.map(|suffix| format!("urn:service:{slug}-{suffix}"));
        let arrival_from = (14 * DAY).min(self.end / 10);
        let arrival_span = (self.end * 75 / 100 - arrival_from).max(1);
        let mut partnership = Partnership {
            place,
            slug,
            name,
            services,
            employers: Vec::new(),
            founders: VecDeque::new(),
            tickets: Vec::new(),
            employer_target: (jobseekers as usize / 9).max(4),
            named: [0; 21],
            rotations: HashMap::new(),
            next_rotation: 0,
            idle: Vec::new(),
            refused: VecDeque::new(),
            jobseekers,
            arrived: 0,
            arrival_from,
            arrival_span,
        };
        // The founders are a care provider, a manufacturer or retailer and a
        // logistics firm: the sectors that usually start such schemes.
        for sector in [
            Sector::Q,
            *pick(&mut self.rng, &[(Sector::C, 1), (Sector::G, 1)]),
            Sector::H,
        ] {
            let size = *pick(&mut self.rng, &[(Size::Medium, 1), (Size::Large, 2)]);
            let founder = new_employer(&mut self.rng, &mut partnership, sector, size);
            partnership.founders.push_back(founder);
        }
        partnership
    }

    pub(super) fn setup_step(&mut self, p: usize, time: Time, step: SetupStep) {
        match step {
            SetupStep::Register => {
                let partnership = &self.partnerships[p];
                let place = partnership.place;
                let mut members = vec![
                    member(place.council, MemberKind::LocalAuthority),
                    member(place.college, MemberKind::College),
                    member(place.jobcentre, MemberKind::Jobcentre),
                    member(place.advice, MemberKind::AdviceService),
                    member(place.provider, MemberKind::TrainingProvider),
                    member(&format!("UNISON {}", place.region), MemberKind::TradeUnion),
                    member(&format!("Unite {}", place.region), MemberKind::TradeUnion),
                    member(&format!("GMB {}", place.region), MemberKind::TradeUnion),
                ];
                members.extend(
                    partnership
                        .founders
                        .iter()
                        .map(|e| member(&e.name, MemberKind::Employer)),
                );
                members.push(member(place.chamber, MemberKind::Other));
                let data = EventData::PartnershipRegistered(PartnershipRegistered {
                    name: partnership.name.clone(),
                    areas: place.areas.iter().map(|a| (*a).to_owned()).collect(),
                    members,
                });
                let draft = Draft {
                    partnership: p,
                    source: Service::Board,
                    subject: Subject::Partnership(partnership.slug.clone()),
                    expected_version: Some(0),
                    correlation: None,
                    data,
                };
                self.emit(time, draft);
            }
            SetupStep::EnrolFounder => {
                if let Some(founder) = self.partnerships[p].founders.pop_front() {
                    self.enrol(p, time, founder);
                }
            }
        }
    }

    fn enrol(&mut self, p: usize, time: Time, employer: Employer) -> usize {
        let data = EventData::EmployerEnrolled(EmployerEnrolled {
            name: employer.name.clone(),
            sector: employer.sector,
            size: employer.size,
            area: employer.area.to_owned(),
        });
        let draft = Draft {
            partnership: p,
            source: Service::Board,
            subject: Subject::Employer(employer.id),
            expected_version: self.rng.random_bool(0.5).then_some(0),
            correlation: None,
            data,
        };
        self.emit(time, draft);
        let partnership = &mut self.partnerships[p];
        let index = partnership.employers.len();
        let weight = match employer.size {
            Size::Micro => 1,
            Size::Small => 2,
            Size::Medium => 3,
            Size::Large => 5,
        };
        partnership
            .tickets
            .extend(std::iter::repeat_n(index, weight));
        partnership.employers.push(employer);
        index
    }

    /// An employer for a new rotation: a new one while the partnership is
    /// still recruiting employers, else an enrolled one, larger ones more
    /// often. Enrolling writes `employer.enrolled` at `time`.
    pub(super) fn employer_for_rotation(&mut self, p: usize, time: Time) -> usize {
        let partnership = &self.partnerships[p];
        let enrolled = partnership.employers.len();
        let target = partnership.employer_target;
        let recruit = if enrolled == 0 {
            1.0
        } else if enrolled >= target {
            0.0
        } else {
            0.3 * (1.0 - enrolled as f64 / target as f64)
        };
        if self.rng.random_bool(recruit) {
            let sectors: Vec<(Sector, u32)> = SECTORS.iter().map(|(s, w, _)| (*s, *w)).collect();
            let sector = *pick(&mut self.rng, &sectors);
            let size = *pick(&mut self.rng, EMPLOYER_SIZES);
            let employer = new_employer(&mut self.rng, &mut self.partnerships[p], sector, size);
            self.enrol(p, time, employer)
        } else {
            let tickets = &self.partnerships[p].tickets;
            tickets[self.rng.random_range(0..tickets.len())]
        }
    }
}

fn new_employer(rng: &mut StdRng, p: &mut Partnership, sector: Sector, size: Size) -> Employer {
    let sector_index = Sector::ALL.iter().position(|s| *s == sector).unwrap_or(0);
    let nouns = SECTORS
        .iter()
        .find(|(s, _, _)| *s == sector)
        .map_or(&["Services"][..], |(_, _, nouns)| nouns);
    let count = p.named[sector_index] as usize;
    p.named[sector_index] += 1;
    let localities = p.place.localities;
    let locality = localities[count % localities.len()];
    let noun = nouns[(count / localities.len()) % nouns.len()];
    let round = count / (localities.len() * nouns.len());
    let suffix = match size {
        Size::Micro | Size::Small => *pick(rng, &[("Ltd", 5), ("CIC", 1)]),
        Size::Medium => *pick(rng, &[("Ltd", 3), ("Group", 1)]),
        Size::Large => *pick(rng, &[("Group", 2), ("plc", 1), ("Ltd", 1)]),
    };
    let name = if round == 0 {
        format!("{locality} {noun} {suffix}")
    } else {
        format!("{locality} {noun} {} {suffix}", round + 1)
    };
    let mut slug = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let source = format!("urn:service:{slug}-hr");
    Employer {
        id: fresh_id(rng),
        sector,
        size,
        area: p.place.areas[rng.random_range(0..p.place.areas.len())],
        name,
        source,
    }
}

fn member(organisation: &str, kind: MemberKind) -> Member {
    Member {
        organisation: organisation.to_owned(),
        kind,
    }
}
