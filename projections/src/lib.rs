//! Pure folds from committed events to read models. No IO, no async.
