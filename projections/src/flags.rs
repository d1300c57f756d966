//! Scheme-rule exceptions: the three Danish scheme rules that the ledger
//! flags rather than rejects (contract section 3), judged per substitution
//! against a partnership's [`SchemeLimits`].
//!
//! The dashboard fold keeps one [`SubstitutionCheck`] per started
//! substitution, holding the few figures the rules need; the flags are
//! judged from those when a dashboard is read, because the limits are set
//! per partnership and may change without the history changing.
//!
//! A [`Flag`] names the rule, the rotation and the substitution, and says
//! in plain English what is wrong. It never names the substitute, the
//! released employee or anything from a participant's profile, and the
//! one rule that is about the substitute's own history (weeks unemployed)
//! states only which side of the limit they were on, not the figure: so a
//! flag can be shown to a board as it is.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::dashboard::SchemeLimits;

/// The scheme rules whose exceptions are flagged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagRule {
    /// The substitute had been unemployed fewer than
    /// [`SchemeLimits::min_unemployed_weeks`] when the substitution started.
    MinUnemployedWeeks,
    /// The substitution lasted, or is planned to last, more than
    /// [`SchemeLimits::max_substitution_weeks`].
    MaxSubstitutionWeeks,
    /// Hour for hour: the substitute's weekly hours differ from the sum of
    /// the covered releases' weekly course hours.
    HourForHour,
}

impl FlagRule {
    /// Every rule, in the order flags about one substitution are listed.
    pub const ALL: &'static [FlagRule] = &[
        FlagRule::MinUnemployedWeeks,
        FlagRule::MaxSubstitutionWeeks,
        FlagRule::HourForHour,
    ];

    /// The rule's name in the JSON, e.g. `hour_for_hour`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MinUnemployedWeeks => "min_unemployed_weeks",
            Self::MaxSubstitutionWeeks => "max_substitution_weeks",
            Self::HourForHour => "hour_for_hour",
        }
    }
}

/// One scheme-rule exception, as a board sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub rule: FlagRule,
    pub rotation: Uuid,
    pub substitution: Uuid,
    /// What is wrong, in a sentence a board member can read.
    pub message: String,
}

/// What the scheme rules need to know about one started substitution.
///
/// Durations are whole days between the UTC dates of the events' effective
/// times; hours are kept in thousandths so that sums are exact and survive
/// a checkpoint's JSON round trip unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SubstitutionCheck {
    pub rotation: Uuid,
    pub substitution: Uuid,
    /// Whole weeks from the substitute's `unemployed_since` to the start;
    /// `None` when the substitute's registration is not known.
    pub unemployed_weeks: Option<i64>,
    /// Days from the start to the planned end.
    pub planned_days: i64,
    /// Days from the start to the end, once it has ended.
    pub actual_days: Option<i64>,
    /// The substitute's weekly hours, in thousandths.
    pub hours_milli: u64,
    /// The covered releases' weekly course hours summed, in thousandths;
    /// `None` when a covered release is not known, since the rule cannot
    /// then be judged.
    pub covered_milli: Option<u64>,
    /// The month the substitution started, `YYYY-MM`: a board sees
    /// exceptions counted per rule and month.
    pub month: String,
}

impl SubstitutionCheck {
    /// Whether this substitution breaks `rule` under `limits`: what the
    /// fold counts, without the sentence a flag carries.
    pub(crate) fn breaks(&self, rule: FlagRule, limits: &SchemeLimits) -> bool {
        match rule {
            FlagRule::MinUnemployedWeeks => self
                .unemployed_weeks
                .is_some_and(|weeks| weeks < i64::from(limits.min_unemployed_weeks)),
            FlagRule::MaxSubstitutionWeeks => {
                let max_days = i64::from(limits.max_substitution_weeks) * 7;
                self.actual_days.is_some_and(|days| days > max_days) || self.planned_days > max_days
            }
            FlagRule::HourForHour => self
                .covered_milli
                .is_some_and(|covered| covered != self.hours_milli),
        }
    }

    /// Appends the flags this substitution earns under `limits`, in the
    /// order of [`FlagRule::ALL`].
    pub(crate) fn flags(&self, limits: &SchemeLimits, out: &mut Vec<Flag>) {
        let flag = |rule, message| Flag {
            rule,
            rotation: self.rotation,
            substitution: self.substitution,
            message,
        };
        let min_weeks = limits.min_unemployed_weeks;
        if self
            .unemployed_weeks
            .is_some_and(|weeks| weeks < i64::from(min_weeks))
        {
            out.push(flag(
                FlagRule::MinUnemployedWeeks,
                format!(
                    "The substitute had been unemployed for fewer than {min_weeks} weeks when \
                     the substitution started, the scheme's minimum."
                ),
            ));
        }
        let max_weeks = limits.max_substitution_weeks;
        let max_days = i64::from(max_weeks) * 7;
        let limit =
            format!("more than the scheme's maximum of {max_weeks} weeks ({max_days} days)");
        match self.actual_days {
            Some(days) if days > max_days => out.push(flag(
                FlagRule::MaxSubstitutionWeeks,
                format!("The substitution lasted {days} days, {limit}."),
            )),
            Some(_) if self.planned_days > max_days => out.push(flag(
                FlagRule::MaxSubstitutionWeeks,
                format!(
                    "The substitution was planned to last {} days, {limit}.",
                    self.planned_days
                ),
            )),
            None if self.planned_days > max_days => out.push(flag(
                FlagRule::MaxSubstitutionWeeks,
                format!(
                    "The substitution is planned to last {} days, {limit}.",
                    self.planned_days
                ),
            )),
            _ => {}
        }
        if let Some(covered) = self.covered_milli
            && covered != self.hours_milli
        {
            out.push(flag(
                FlagRule::HourForHour,
                format!(
                    "The substitute works {} hours a week but the covered releases train {} \
                     hours a week; hour for hour, the two should be equal.",
                    hours_text(self.hours_milli),
                    hours_text(covered)
                ),
            ));
        }
    }
}

/// Hours from thousandths, without trailing zeros: 37500 is `37.5`.
fn hours_text(milli: u64) -> String {
    let (whole, fraction) = (milli / 1000, milli % 1000);
    if fraction == 0 {
        whole.to_string()
    } else {
        let digits = format!("{fraction:03}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A substitution that breaks no rule under the Danish defaults.
    fn good() -> SubstitutionCheck {
        SubstitutionCheck {
            rotation: Uuid::from_u128(1),
            substitution: Uuid::from_u128(2),
            unemployed_weeks: Some(30),
            planned_days: 150,
            actual_days: None,
            hours_milli: 37_500,
            covered_milli: Some(37_500),
            month: "2025-03".to_owned(),
        }
    }

    /// Judges `check` under the Danish defaults and compares the flags, one
    /// `rule: message` line each, with `expected`.
    fn check(substitution: SubstitutionCheck, expected: &[&str]) {
        let mut flags = Vec::new();
        substitution.flags(&SchemeLimits::default(), &mut flags);
        let got: Vec<String> = flags
            .iter()
            .map(|f| format!("{}: {}", f.rule.as_str(), f.message))
            .collect();
        assert_eq!(got, expected, "for {substitution:?}");
        // What the fold counts agrees with the flags listed.
        let limits = SchemeLimits::default();
        let broken: Vec<FlagRule> = FlagRule::ALL
            .iter()
            .copied()
            .filter(|&rule| substitution.breaks(rule, &limits))
            .collect();
        let listed: Vec<FlagRule> = flags.iter().map(|f| f.rule).collect();
        assert_eq!(broken, listed, "for {substitution:?}");
    }

    #[test]
    fn each_rule_is_judged_at_its_boundary() {
        check(good(), &[]);
        check(
            SubstitutionCheck {
                unemployed_weeks: Some(26),
                ..good()
            },
            &[],
        );
        check(
            SubstitutionCheck {
                unemployed_weeks: Some(25),
                ..good()
            },
            &[
                "min_unemployed_weeks: The substitute had been unemployed for fewer than 26 weeks \
               when the substitution started, the scheme's minimum.",
            ],
        );
        check(
            SubstitutionCheck {
                unemployed_weeks: None,
                ..good()
            },
            &[],
        );
        check(
            SubstitutionCheck {
                planned_days: 182,
                ..good()
            },
            &[],
        );
        check(
            SubstitutionCheck {
                planned_days: 183,
                ..good()
            },
            &[
                "max_substitution_weeks: The substitution is planned to last 183 days, more than \
               the scheme's maximum of 26 weeks (182 days).",
            ],
        );
        check(
            SubstitutionCheck {
                actual_days: Some(200),
                ..good()
            },
            &[
                "max_substitution_weeks: The substitution lasted 200 days, more than the scheme's \
               maximum of 26 weeks (182 days).",
            ],
        );
        check(
            SubstitutionCheck {
                planned_days: 190,
                actual_days: Some(100),
                ..good()
            },
            &[
                "max_substitution_weeks: The substitution was planned to last 190 days, more than \
               the scheme's maximum of 26 weeks (182 days).",
            ],
        );
        check(
            SubstitutionCheck {
                covered_milli: Some(22_250),
                ..good()
            },
            &[
                "hour_for_hour: The substitute works 37.5 hours a week but the covered releases \
               train 22.25 hours a week; hour for hour, the two should be equal.",
            ],
        );
        check(
            SubstitutionCheck {
                covered_milli: None,
                ..good()
            },
            &[],
        );
    }

    #[test]
    fn flags_about_one_substitution_come_in_rule_order() {
        let mut flags = Vec::new();
        let all = SubstitutionCheck {
            unemployed_weeks: Some(-1),
            planned_days: 400,
            hours_milli: 30_000,
            covered_milli: Some(20_000),
            ..good()
        };
        all.flags(&SchemeLimits::default(), &mut flags);
        let rules: Vec<FlagRule> = flags.iter().map(|f| f.rule).collect();
        assert_eq!(rules, FlagRule::ALL);
    }

    #[test]
    fn limits_are_the_partnerships_own() {
        let mut flags = Vec::new();
        let limits = SchemeLimits {
            min_unemployed_weeks: 52,
            max_substitution_weeks: 52,
        };
        SubstitutionCheck {
            planned_days: 300,
            ..good()
        }
        .flags(&limits, &mut flags);
        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].rule, FlagRule::MinUnemployedWeeks);
    }

    #[test]
    fn hours_are_written_without_trailing_zeros() {
        assert_eq!(hours_text(0), "0");
        assert_eq!(hours_text(37_000), "37");
        assert_eq!(hours_text(37_500), "37.5");
        assert_eq!(hours_text(7_333), "7.333");
        assert_eq!(hours_text(7_050), "7.05");
    }
}
