//! Pure folds from committed events to read models: the board dashboards
//! with their disclosure control, and the rows of the evaluation datasets.
//! No IO, no async: every function here takes events and returns values.

pub mod dashboard;
pub mod dataset;
pub mod disclosure;
pub mod flags;
pub mod outcomes;
