//! The reference data the history is drawn from: the city regions that run
//! partnerships, the sectors employers belong to, the courses employees are
//! released for, the reasons people give, and the partner services that
//! publish.

use rotation_events::Sector;

/// A city region that runs a partnership, with the organisations a board
/// there would have.
pub(super) struct Place {
    pub(super) slug: &'static str,
    pub(super) name: &'static str,
    /// ONS local authority codes.
    pub(super) areas: &'static [&'static str],
    pub(super) region: &'static str,
    pub(super) council: &'static str,
    pub(super) college: &'static str,
    pub(super) jobcentre: &'static str,
    pub(super) advice: &'static str,
    pub(super) provider: &'static str,
    pub(super) university: &'static str,
    pub(super) chamber: &'static str,
    /// Local names that employers take theirs from.
    pub(super) localities: &'static [&'static str],
}

#[rustfmt::skip]
pub(super) const PLACES: &[Place] = &[
    Place {
        slug: "stoke", name: "Stoke-on-Trent Job Rotation Partnership",
        areas: &["E06000021"], region: "West Midlands",
        council: "Stoke-on-Trent City Council", college: "Stoke-on-Trent College",
        jobcentre: "Jobcentre Plus Hanley", advice: "Citizens Advice North Staffordshire",
        provider: "Potteries Training Partnership", university: "Staffordshire University",
        chamber: "Staffordshire Chambers of Commerce",
        localities: &["Hanley", "Burslem", "Longton", "Fenton", "Tunstall", "Stoke", "Trentham",
            "Meir", "Etruria", "Potteries"],
    },
    Place {
        slug: "greater-manchester", name: "Greater Manchester Job Rotation Partnership",
        areas: &["E08000001", "E08000002", "E08000003", "E08000004", "E08000005", "E08000006",
            "E08000007", "E08000008", "E08000009", "E08000010"],
        region: "North West",
        council: "Greater Manchester Combined Authority", college: "The Manchester College",
        jobcentre: "Jobcentre Plus Greater Manchester", advice: "Citizens Advice Manchester",
        provider: "Greater Manchester Skills Partnership",
        university: "Manchester Metropolitan University",
        chamber: "Greater Manchester Chamber of Commerce",
        localities: &["Bolton", "Bury", "Oldham", "Rochdale", "Salford", "Stockport", "Tameside",
            "Trafford", "Wigan", "Ancoats", "Irwell", "Pennine"],
    },
    Place {
        slug: "leeds", name: "Leeds Job Rotation Partnership",
        areas: &["E08000035"], region: "Yorkshire and the Humber",
        council: "Leeds City Council", college: "Leeds City College",
        jobcentre: "Jobcentre Plus Leeds City", advice: "Citizens Advice Leeds",
        provider: "Leeds Skills Partnership", university: "Leeds Beckett University",
        chamber: "West and North Yorkshire Chamber of Commerce",
        localities: &["Armley", "Headingley", "Holbeck", "Kirkstall", "Seacroft", "Horsforth",
            "Morley", "Aire Valley", "Pudsey", "Otley"],
    },
    Place {
        slug: "liverpool-city-region", name: "Liverpool City Region Job Rotation Partnership",
        areas: &["E08000011", "E08000012", "E08000013", "E08000014", "E08000015", "E06000006"],
        region: "North West",
        council: "Liverpool City Region Combined Authority",
        college: "The City of Liverpool College",
        jobcentre: "Jobcentre Plus Liverpool", advice: "Citizens Advice Liverpool",
        provider: "Merseyside Training Network", university: "Liverpool John Moores University",
        chamber: "Liverpool Chamber of Commerce",
        localities: &["Bootle", "Birkenhead", "Huyton", "St Helens", "Wallasey", "Kirkby",
            "Garston", "Mersey", "Widnes", "Runcorn"],
    },
    Place {
        slug: "birmingham", name: "Birmingham Job Rotation Partnership",
        areas: &["E08000025"], region: "West Midlands",
        council: "Birmingham City Council", college: "Birmingham Metropolitan College",
        jobcentre: "Jobcentre Plus Birmingham", advice: "Citizens Advice Birmingham",
        provider: "Midlands Training Partnership", university: "Birmingham City University",
        chamber: "Greater Birmingham Chambers of Commerce",
        localities: &["Aston", "Digbeth", "Edgbaston", "Erdington", "Handsworth", "Kings Heath",
            "Selly Oak", "Sparkbrook", "Yardley", "Moseley"],
    },
    Place {
        slug: "newcastle", name: "Newcastle Job Rotation Partnership",
        areas: &["E08000021"], region: "Northern",
        council: "Newcastle City Council", college: "Newcastle College",
        jobcentre: "Jobcentre Plus Newcastle", advice: "Citizens Advice Newcastle",
        provider: "Tyneside Training Partnership", university: "Northumbria University",
        chamber: "North East England Chamber of Commerce",
        localities: &["Byker", "Gosforth", "Jesmond", "Heaton", "Walker", "Benwell", "Kenton",
            "Tyne", "Quayside", "Elswick"],
    },
    Place {
        slug: "bristol", name: "Bristol Job Rotation Partnership",
        areas: &["E06000023"], region: "South West",
        council: "Bristol City Council", college: "City of Bristol College",
        jobcentre: "Jobcentre Plus Bristol", advice: "Citizens Advice Bristol",
        provider: "Avon Skills Partnership", university: "University of the West of England",
        chamber: "Business West",
        localities: &["Bedminster", "Clifton", "Easton", "Filton", "Fishponds", "Hartcliffe",
            "Knowle", "Southmead", "Avonmouth", "Redcliffe"],
    },
    Place {
        slug: "cardiff", name: "Cardiff Job Rotation Partnership",
        areas: &["W06000015"], region: "Wales",
        council: "Cardiff Council", college: "Cardiff and Vale College",
        jobcentre: "Jobcentre Plus Cardiff", advice: "Citizens Advice Cardiff and Vale",
        provider: "Taff Training Partnership", university: "Cardiff Metropolitan University",
        chamber: "Cardiff Chamber of Commerce",
        localities: &["Butetown", "Canton", "Cathays", "Ely", "Grangetown", "Llanishen", "Splott",
            "Roath", "Rumney", "Taff"],
    },
];

/// The sectors employers are drawn from, with their weights (per cent) and
/// the nouns their names are made of. Care dominates, as it does in the
/// UK pilots.
#[rustfmt::skip]
pub(super) const SECTORS: &[(Sector, u32, &[&str])] = &[
    (Sector::Q, 26, &["Care Homes", "Home Care", "Community Health", "Supported Living",
        "Nursing Home", "Medical Centre", "Hospice", "Dental Practice"]),
    (Sector::C, 12, &["Ceramics", "Engineering", "Precision Components", "Foods", "Packaging",
        "Print", "Plastics", "Metal Finishing"]),
    (Sector::G, 12, &["Retail", "Wholesale", "Superstore", "Motor Parts", "Pharmacy",
        "Builders Merchants"]),
    (Sector::H, 10, &["Logistics", "Distribution", "Transport", "Freight", "Couriers", "Buses"]),
    (Sector::I, 9, &["Hotels", "Catering", "Hospitality", "Restaurants", "Event Catering"]),
    (Sector::N, 8, &["Facilities Management", "Cleaning Services", "Security Services",
        "Contact Centre"]),
    (Sector::P, 8, &["Academy Trust", "Nursery", "Learning Trust", "Primary School"]),
    (Sector::F, 7, &["Construction", "Building Services", "Roofing", "Electrical Contractors"]),
    (Sector::J, 2, &["Digital", "Software"]),
    (Sector::K, 1, &["Credit Union"]),
    (Sector::M, 2, &["Surveyors", "Architects"]),
    (Sector::R, 2, &["Leisure Trust", "Arts Centre"]),
    (Sector::S, 1, &["Community Trust"]),
];

/// Who delivers a course.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Deliverer {
    College,
    Provider,
    University,
}

/// A course an employee can be released for: title, RQF level, the sectors
/// it suits (`*` for every sector) and who delivers it.
#[rustfmt::skip]
pub(super) const COURSES: &[(&str, u8, &str, Deliverer)] = &[
    ("Level 2 Diploma in Care", 2, "Q", Deliverer::College),
    ("Level 3 Diploma in Adult Care", 3, "Q", Deliverer::College),
    ("Level 3 Senior Healthcare Support Worker", 3, "Q", Deliverer::College),
    ("Level 4 Certificate in Principles of Leadership and Management for Adult Care", 4, "Q",
        Deliverer::Provider),
    ("Level 5 Diploma in Leadership and Management for Adult Care", 5, "Q", Deliverer::Provider),
    ("Nursing Associate Foundation Degree", 5, "Q", Deliverer::University),
    ("Level 2 Certificate in Retail Knowledge", 2, "G", Deliverer::College),
    ("Level 3 Retail Team Leader", 3, "G", Deliverer::Provider),
    ("Level 2 Certificate in Customer Service", 2, "GIN", Deliverer::College),
    ("Level 2 Certificate in Improving Operational Performance", 2, "C", Deliverer::Provider),
    ("Level 3 Diploma in Engineering Maintenance", 3, "C", Deliverer::College),
    ("Higher National Certificate in Engineering", 4, "C", Deliverer::College),
    ("Level 3 Award in Supervising Food Safety", 3, "CI", Deliverer::Provider),
    ("Level 2 Certificate in Warehousing and Storage", 2, "HG", Deliverer::Provider),
    ("LGV Category C Licence and Driver CPC", 2, "H", Deliverer::Provider),
    ("Level 3 Certificate in Logistics and Transport", 3, "H", Deliverer::Provider),
    ("Level 2 Diploma in Professional Cookery", 2, "I", Deliverer::College),
    ("Level 3 Diploma in Hospitality Supervision and Leadership", 3, "I", Deliverer::College),
    ("Level 2 Certificate in Cleaning Principles", 2, "N", Deliverer::Provider),
    ("Level 3 Diploma in Business Administration", 3, "NJKMRS", Deliverer::College),
    ("Level 3 Certificate in Supporting Teaching and Learning", 3, "P", Deliverer::College),
    ("Level 3 Diploma for the Early Years Workforce", 3, "P", Deliverer::College),
    ("Level 5 Diploma in Education and Training", 5, "P", Deliverer::University),
    ("Level 2 Diploma in Bricklaying", 2, "F", Deliverer::College),
    ("Level 3 Diploma in Electrotechnical Installation", 3, "F", Deliverer::College),
    ("Level 3 NVQ Diploma in Occupational Work Supervision (Construction)", 3, "F",
        Deliverer::Provider),
    ("Level 4 Data Analyst", 4, "JKM", Deliverer::University),
    ("Level 3 Certificate in Team Leading", 3, "*", Deliverer::Provider),
    ("Level 5 Diploma in Management and Leadership", 5, "*", Deliverer::University),
    ("Level 2 Certificate in IT User Skills", 2, "*", Deliverer::College),
    ("Functional Skills Mathematics Level 2", 2, "*", Deliverer::College),
];

pub(super) const PREPARATION_LEFT_REASONS: &[&str] = &[
    "found other work",
    "health reasons",
    "caring responsibilities",
    "moved out of the area",
    "lost contact",
    "did not want to continue",
];
pub(super) const TRAINING_LEFT_REASONS: &[&str] = &[
    "left the employer",
    "health reasons",
    "caring responsibilities",
    "course too demanding",
    "course withdrawn by the provider",
    "pressure of work",
];
pub(super) const REFUSAL_REASONS: &[&str] = &[
    "in paid work of 16 hours or more a week",
    "lives outside the partnership area",
    "no right to work in the UK",
    "in full-time education",
    "not available for the placement hours",
];
pub(super) const RETRACTION_REASONS: &[&str] = &[
    "entered in error",
    "recorded against the wrong person",
    "duplicate of an entry from another system",
    "wrong date recorded",
];

/// The partner services that publish, per partnership.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Service {
    Board,
    Jobcentre,
    Advice,
    College,
    Training,
    UnionLearning,
    Evaluation,
    /// An employer's HR system, by index in the partnership's employers.
    Employer(usize),
}

pub(super) const SERVICE_SUFFIXES: [&str; 7] = [
    "board",
    "jobcentre",
    "advice",
    "college",
    "training",
    "unionlearn",
    "evaluation",
];
