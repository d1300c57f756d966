//! See the module map in `super`.
