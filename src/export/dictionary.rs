//! The data dictionary: every column of the three files, its type, allowed
//! values and meaning, written once in [`TABLES`]. The descriptor's fields
//! and the column tables of `docs/datasets.md` ([`data_dictionary`]) are
//! both generated from it.

use rotation_events::{
    Benefit, EndReason, Ethnicity, ProgressionKind, ReferredBy, Sector, Sex, Size, Status, YesNo,
};
use rotation_projections::dataset::TrainingOutcome;
use rotation_projections::outcomes::AgeBand;
use rotation_projections::outcomes::FollowUp;
use serde::Serialize;

use super::pseudonym::PSEUDONYMISED;

/// A column type of the Frictionless Table Schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Integer,
    Number,
    Boolean,
    Date,
}

impl ColumnType {
    fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Date => "date",
        }
    }
}

/// One column of one file.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnType,
    /// The values an enumerated column may take, in the contract's spelling.
    pub values: Option<fn() -> Vec<&'static str>>,
    /// Whether the column is filled in every row.
    pub required: bool,
    /// Inclusive bounds of a numeric column.
    pub range: Option<(i64, i64)>,
    /// What the column means: the data dictionary's text.
    pub description: &'static str,
}

/// One file of the package.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// The resource's name, also the file's name without `.csv`.
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub columns: &'static [Column],
    /// The primary key column, by which rows are sorted.
    pub key: &'static str,
    /// `(column, table)`: the column holds a key of that table.
    pub references: &'static [(&'static str, &'static str)],
}

impl Table {
    pub(super) fn file(&self) -> String {
        format!("{}.csv", self.name)
    }
}

fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> Vec<&'static str> {
    all.iter().map(|v| name(*v)).collect()
}

const fn column(name: &'static str, kind: ColumnType, description: &'static str) -> Column {
    Column {
        name,
        kind,
        values: None,
        required: false,
        range: None,
        description,
    }
}

const fn required(column: Column) -> Column {
    Column {
        required: true,
        ..column
    }
}

const fn one_of(values: fn() -> Vec<&'static str>, column: Column) -> Column {
    Column {
        values: Some(values),
        ..column
    }
}

const fn within(low: i64, high: i64, column: Column) -> Column {
    Column {
        range: Some((low, high)),
        ..column
    }
}

use ColumnType::{Boolean, Date, Integer, Number, String as Text};

macro_rules! status_description {
    ($months:literal) => {
        concat!(
            "Labour market status ",
            $months,
            " calendar months after the end date of the ",
            "jobseeker's last ended substitution: the status of the latest observation dated ",
            "within 31 days either side of that day (latest by date, then by order of ",
            "recording). Observations are outcome_observed events and implied ones: ",
            "hired_by_employer means employed at the substitution's end date; the progressions ",
            "permanent_job and other_job mean employed, self_employment self_employed and ",
            "education education, at their dates. not_due when the window's last day is after ",
            "the reference date; unknown when nothing was observed in the window; empty when no ",
            "substitution has ended."
        )
    };
}

fn status_values() -> Vec<&'static str> {
    let mut values = names(Status::ALL, Status::as_str);
    values.push(FollowUp::NotDue.as_str());
    values
}

/// The three files, their columns and what each column means.
pub const TABLES: [Table; 3] = [
    Table {
        name: "jobseekers",
        title: "Jobseekers",
        description: "One row per person registered as a jobseeker, whether or not they were referred, prepared or placed as a substitute.",
        key: "pid",
        references: &[],
        columns: &[
            required(column(
                "pid",
                Text,
                "The jobseeker's pseudonym. A person has the same pseudonym in every file of an export and in every export under the same key.",
            )),
            required(column(
                "partnership",
                Text,
                "The slug of the partnership (the scheme) the jobseeker belongs to.",
            )),
            one_of(
                || names(AgeBand::ALL, AgeBand::as_str),
                column(
                    "age_band",
                    Text,
                    "Age band at referral: the year of referred_on minus the birth year, as 16-24, 25-49 or 50+. Empty when the birth year or the referral is missing, or when the difference is under 16.",
                ),
            ),
            one_of(
                || names(Sex::ALL, Sex::as_str),
                column("sex", Text, "Sex, as given at registration."),
            ),
            one_of(
                || names(Ethnicity::ALL, Ethnicity::as_str),
                column("ethnicity", Text, "Ethnic group, as given at registration."),
            ),
            one_of(
                || names(YesNo::ALL, YesNo::as_str),
                column(
                    "disability",
                    Text,
                    "Whether the jobseeker reported a disability at registration.",
                ),
            ),
            column(
                "lone_parent",
                Boolean,
                "Whether the jobseeker is a lone parent, as given at registration.",
            ),
            one_of(
                || names(YesNo::ALL, YesNo::as_str),
                column(
                    "health_condition",
                    Text,
                    "Whether the jobseeker reported a health condition at registration.",
                ),
            ),
            one_of(
                || names(Benefit::ALL, Benefit::as_str),
                column(
                    "benefit",
                    Text,
                    "The benefit the jobseeker received at registration.",
                ),
            ),
            within(
                0,
                i64::MAX,
                column(
                    "unemployed_weeks_at_referral",
                    Integer,
                    "Whole weeks (rounded down) from the unemployed_since date given at registration to referred_on. Empty when the jobseeker was not referred, or when referred_on lies before unemployed_since.",
                ),
            ),
            column(
                "referred_on",
                Date,
                "The date of the jobseeker's earliest referral.",
            ),
            one_of(
                || names(ReferredBy::ALL, ReferredBy::as_str),
                column("referred_by", Text, "Who made that referral."),
            ),
            column(
                "eligible",
                Boolean,
                "The result of the latest eligibility assessment (latest by date, then by order of recording). Empty when the jobseeker was never assessed.",
            ),
            required(column(
                "preparation_completed",
                Boolean,
                "Whether a completion of pre-employment preparation was recorded.",
            )),
            required(within(
                0,
                i64::MAX,
                column(
                    "mentoring_sessions",
                    Integer,
                    "The number of mentoring sessions recorded.",
                ),
            )),
            column(
                "first_substitution_start",
                Date,
                "The start date of the jobseeker's first substitution. Empty when none has started.",
            ),
            required(within(
                0,
                i64::MAX,
                column(
                    "substitutions",
                    Integer,
                    "The number of substitutions the jobseeker started.",
                ),
            )),
            required(column(
                "substitution_days",
                Integer,
                "The sum of days (see days in substitutions.csv) over the jobseeker's ended substitutions; 0 when none has ended.",
            )),
            one_of(
                || names(EndReason::ALL, EndReason::as_str),
                column(
                    "last_end_reason",
                    Text,
                    "The end reason of the jobseeker's last ended substitution (latest end date, then latest recorded). Empty when no substitution has ended.",
                ),
            ),
            column(
                "hired_by_host_employer",
                Boolean,
                "Whether any of the jobseeker's substitutions ended with hired_by_employer. Empty when no substitution has ended.",
            ),
            one_of(
                status_values,
                column("status_3m", Text, status_description!("3")),
            ),
            one_of(
                status_values,
                column("status_6m", Text, status_description!("6")),
            ),
            one_of(
                status_values,
                column("status_12m", Text, status_description!("12")),
            ),
            column(
                "progressed",
                Boolean,
                "Whether a progression of the jobseeker (any kind) is dated on or after first_substitution_start and on or before the reference date. Empty when no substitution has started.",
            ),
        ],
    },
    Table {
        name: "releases",
        title: "Releases",
        description: "One row per release: an employee released from work for training while a substitute covers.",
        key: "rid",
        // The released employee is not a jobseeker, so releases.pid refers
        // to no row of jobseekers.csv, and the contract keeps the package to
        // three files: the column links one employee's releases instead.
        references: &[],
        columns: &[
            required(column("rid", Text, "The release's pseudonym.")),
            required(column(
                "pid",
                Text,
                "The released employee's pseudonym. Employees are not jobseekers, so it refers to no row of jobseekers.csv; it links the releases of one employee, and a person who was both has the same pseudonym in both files.",
            )),
            column(
                "employer",
                Text,
                "The pseudonym of the employer that agreed the rotation. Empty when the rotation's agreement is not in the export.",
            ),
            one_of(
                || names(Sector::ALL, Sector::as_str),
                column(
                    "sector",
                    Text,
                    "The employer's SIC 2007 section, as given at enrolment.",
                ),
            ),
            one_of(
                || names(Size::ALL, Size::as_str),
                column(
                    "size",
                    Text,
                    "The employer's size band, as given at enrolment.",
                ),
            ),
            required(within(
                0,
                8,
                column(
                    "rqf_level",
                    Integer,
                    "The RQF level of the course the employee was released for.",
                ),
            )),
            required(within(
                0,
                168,
                column("hours_per_week", Number, "Hours of training per week."),
            )),
            required(column(
                "release_start",
                Date,
                "The date the release started.",
            )),
            column(
                "release_end",
                Date,
                "The date the release ended (the employee back at work). Empty while the release runs.",
            ),
            one_of(
                || names(TrainingOutcome::ALL, TrainingOutcome::as_str),
                column(
                    "training_outcome",
                    Text,
                    "completed or left when training_completed or training_left was recorded; ongoing when neither was and the release has not ended. Empty when the release ended with no training outcome recorded.",
                ),
            ),
            column(
                "qualification_achieved",
                Boolean,
                "Whether the completed training led to the qualification. Empty unless training_outcome is completed.",
            ),
            required(column(
                "progressed_12m",
                Boolean,
                "Whether a progression of the employee is dated from release_start to 12 calendar months after release_end (to the reference date while the release runs), and not after the reference date.",
            )),
            one_of(
                || names(ProgressionKind::ALL, ProgressionKind::as_str),
                column(
                    "progression_kind",
                    Text,
                    "The kind of the earliest such progression (earliest by date, then by order of recording). Empty when progressed_12m is false.",
                ),
            ),
        ],
    },
    Table {
        name: "substitutions",
        title: "Substitutions",
        description: "One row per substitution: a jobseeker working as the substitute for one or more released employees.",
        key: "sid",
        references: &[("pid", "jobseekers")],
        columns: &[
            required(column("sid", Text, "The substitution's pseudonym.")),
            required(column(
                "pid",
                Text,
                "The substitute's pseudonym; refers to pid in jobseekers.csv.",
            )),
            column(
                "employer",
                Text,
                "The pseudonym of the host employer, who agreed the rotation. Empty when the rotation's agreement is not in the export.",
            ),
            one_of(
                || names(Sector::ALL, Sector::as_str),
                column(
                    "sector",
                    Text,
                    "The host employer's SIC 2007 section, as given at enrolment.",
                ),
            ),
            required(column("start", Date, "The date the substitution started.")),
            column(
                "end",
                Date,
                "The date the substitution ended. Empty while it runs.",
            ),
            column(
                "days",
                Integer,
                "end minus start, in days. Empty while the substitution runs.",
            ),
            required(within(
                0,
                168,
                column(
                    "hours_per_week",
                    Number,
                    "Hours per week the substitute works.",
                ),
            )),
            one_of(
                || names(EndReason::ALL, EndReason::as_str),
                column(
                    "end_reason",
                    Text,
                    "Why the substitution ended. Empty while it runs.",
                ),
            ),
            required(within(
                0,
                i64::MAX,
                column(
                    "covers",
                    Integer,
                    "How many releases the substitution covers (distinct releases, retracted ones left out).",
                ),
            )),
        ],
    },
];

/// The column tables of the data dictionary in `docs/datasets.md`, as
/// Markdown, generated from [`TABLES`].
pub fn data_dictionary() -> String {
    let mut out = String::new();
    for table in &TABLES {
        out.push_str(&format!(
            "### `{}`\n\n{}\n\n",
            table.file(),
            table.description
        ));
        out.push_str(&format!(
            "Key: `{}`, one row per value, rows sorted by it.",
            table.key
        ));
        for (column, target) in table.references {
            out.push_str(&format!(" `{column}` refers to `{target}.{column}`."));
        }
        out.push_str("\n\n| column | type | values | always filled | description |\n");
        out.push_str("|---|---|---|---|---|\n");
        for c in table.columns {
            let values = match (c.values, c.range) {
                (Some(values), _) => values()
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                (None, Some((low, i64::MAX))) => format!("{low} or more"),
                (None, Some((low, high))) => format!("{low} to {high}"),
                (None, None) if PSEUDONYMISED.contains(&c.name) => "16 hex characters".to_owned(),
                (None, None) => String::new(),
            };
            let filled = if c.required { "yes" } else { "" };
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                c.name,
                c.kind.as_str(),
                values,
                filled,
                c.description
            ));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;

    /// The column tables in `docs/datasets.md` are generated from
    /// [`TABLES`]. Run with `UPDATE_DOCS=1` to rewrite them after changing a
    /// column.
    #[test]
    fn the_data_dictionary_in_the_docs_is_current() {
        const START: &str =
            "<!-- columns: generated from src/export/dictionary.rs, do not edit -->\n";
        const END: &str = "<!-- end of columns -->";
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/datasets.md");
        let docs = fs::read_to_string(&path).expect("docs/datasets.md");
        let (before, rest) = docs.split_once(START).expect("the start marker");
        let (current, after) = rest.split_once(END).expect("the end marker");
        let wanted = data_dictionary();
        if current != wanted {
            if std::env::var_os("UPDATE_DOCS").is_some() {
                fs::write(&path, format!("{before}{START}{wanted}{END}{after}"))
                    .expect("write docs");
                return;
            }
            panic!("docs/datasets.md is out of date: run the tests with UPDATE_DOCS=1");
        }
        for table in &TABLES {
            for column in table.columns {
                assert!(
                    docs.contains(column.description),
                    "{}.{}",
                    table.name,
                    column.name
                );
            }
        }
    }
}
