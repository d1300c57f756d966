//! The event vocabulary of the rotation ledger.
//!
//! This crate is the contract in code: the CloudEvents 1.0 envelope that
//! partner services publish ([`Envelope`]), the catalogue of event types and
//! their data ([`EventType`], [`EventData`]), the committed form the ledger
//! hands back ([`CommittedEvent`]), upcasting of older shapes on read, and
//! the JSON Schemas generated from these types ([`schema`]).
//!
//! It depends on serde and little else, does no IO, and so can be used by
//! partner services as well as by the ledger itself.
//!
//! ```
//! use rotation_events::{Envelope, EventData};
//!
//! let json = r#"{
//!   "specversion": "1.0",
//!   "id": "0193a3c0-0000-7000-8000-000000000001",
//!   "source": "urn:service:stoke-jobcentre",
//!   "type": "jobrotation.jobseeker.referred",
//!   "subject": "person/0193a3c0-0000-7000-8000-0000000000aa",
//!   "time": "2026-03-02T09:30:00Z",
//!   "partnership": "stoke",
//!   "data": {"referred_by": "jobcentre"}
//! }"#;
//! let envelope = Envelope::from_json(json.as_bytes()).unwrap();
//! assert!(matches!(envelope.data().unwrap(), EventData::JobseekerReferred(_)));
//! ```

mod catalogue;
mod envelope;
mod error_code;
pub mod schema;
mod unique_keys;

pub use catalogue::*;
pub use envelope::{
    CommittedEvent, Envelope, InvalidEvent, LedgerAttributes, Subject, SubjectKind, TypedEvent,
    check_slug,
};
pub use error_code::ErrorCode;
