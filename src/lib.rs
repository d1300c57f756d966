//! The rotation ledger service.
