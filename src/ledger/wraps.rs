//! The store as the keyring's [`WrapSource`]: the wrapped data keys a
//! person's first lookup reads, one `get` each, so that opening the ledger
//! unwraps none of them.

use uuid::Uuid;

use crate::personal::{KeyError, WrapSource, WrappedKey};
use crate::store::{Store, StoreError};

/// The wraps the store holds. The store's handle is shared, so a store
/// opened again after a failure is read through the same source.
pub(super) struct StoredWraps(pub(super) Store);

fn stored(error: StoreError) -> KeyError {
    KeyError::Stored(error.to_string())
}

impl WrapSource for StoredWraps {
    fn wrap(&self, person: Uuid) -> Result<Option<WrappedKey>, KeyError> {
        self.0.wrapped_key(person).map_err(stored)
    }

    fn wraps(&self) -> Box<dyn Iterator<Item = Result<WrappedKey, KeyError>> + '_> {
        Box::new(self.0.wrapped_keys().map(|item| item.map_err(stored)))
    }

    fn people(&self) -> Result<Vec<Uuid>, KeyError> {
        self.0
            .wrapped_key_people()
            .collect::<Result<_, _>>()
            .map_err(stored)
    }
}
