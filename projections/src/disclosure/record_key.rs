//! Record keys and cell keys, the inputs of cell-key perturbation.
//!
//! Every counted unit (a person, a release, a substitution, an event) has
//! a record key: a number uniform on [0, 1), fixed for the unit, that no
//! one without the ledger's secret can work out. It is the HMAC-SHA256 of
//! the unit's id under the secret, its first four bytes read as a whole
//! number modulo 2^32 (the ABS draws keys from 0..255; finer keys change
//! nothing but the table's resolution).
//!
//! A cell's key is the sum of its units' record keys modulo 2^32, that is
//! modulo 1 as a fraction. A sum needs no list of units, so a fold keeps
//! it as units enter and leave, retractions and erasures included, and the
//! same units always give the same key whatever order they came in.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The ledger's own secret for record keys. Its bytes never leave it: its
/// `Debug` shows nothing of them.
#[derive(Clone)]
pub struct RecordKeySecret {
    /// The MAC keyed once; cloning it is cheaper than keying it again for
    /// every unit.
    mac: Hmac<Sha256>,
}

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a record-key secret needs at least {min} bytes, got {got}")]
    TooShort { min: usize, got: usize },
}

impl RecordKeySecret {
    /// The fewest bytes a secret may have: 128 bits, so keys cannot be
    /// guessed by trying secrets.
    pub const MIN_LEN: usize = 16;

    pub fn new(secret: &[u8]) -> Result<Self, SecretError> {
        if secret.len() < Self::MIN_LEN {
            return Err(SecretError::TooShort {
                min: Self::MIN_LEN,
                got: secret.len(),
            });
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
        Ok(Self { mac })
    }

    /// The record key of the unit whose id is `unit` (a UUID's 16 bytes,
    /// for example). A fold computes it once per unit and keeps it.
    pub fn record_key(&self, unit: impl AsRef<[u8]>) -> RecordKey {
        let mut mac = self.mac.clone();
        mac.update(unit.as_ref());
        let digest = mac.finalize().into_bytes();
        RecordKey(u32::from_be_bytes([
            digest[0], digest[1], digest[2], digest[3],
        ]))
    }
}

impl fmt::Debug for RecordKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecordKeySecret(..)")
    }
}

/// A unit's record key: `self.0 / 2^32` is uniform on [0, 1).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct RecordKey(pub u32);

/// A cell's key: the sum of its units' record keys modulo 2^32. The empty
/// cell's key is 0.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct CellKey(pub u32);

impl CellKey {
    /// The key of a cell holding exactly `units`.
    pub fn of(units: impl IntoIterator<Item = RecordKey>) -> Self {
        let mut key = Self::default();
        for unit in units {
            key.add(unit);
        }
        key
    }

    /// A unit entered the cell.
    pub fn add(&mut self, unit: RecordKey) {
        self.0 = self.0.wrapping_add(unit.0);
    }

    /// A unit left the cell (it ended, was retracted or erased). Removing
    /// a unit that was added leaves the key it had before.
    pub fn remove(&mut self, unit: RecordKey) {
        self.0 = self.0.wrapping_sub(unit.0);
    }

    /// The key as a fraction of 1, as the method's descriptions give it.
    pub fn fraction(self) -> f64 {
        f64::from(self.0) / 4_294_967_296.0
    }
}

/// A cell as a fold keeps it under cell-key perturbation: how many units
/// it holds and their cell key, which must move together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyedCount {
    pub count: u64,
    pub key: CellKey,
}

impl KeyedCount {
    /// A unit entered the cell.
    pub fn add(&mut self, unit: RecordKey) {
        self.count += 1;
        self.key.add(unit);
    }

    /// A unit that had entered the cell left it.
    pub fn remove(&mut self, unit: RecordKey) {
        debug_assert!(self.count > 0, "a unit left an empty cell");
        self.count = self.count.saturating_sub(1);
        self.key.remove(unit);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn secret() -> RecordKeySecret {
        RecordKeySecret::new(b"a secret of the ledger's own, 32b").expect("long enough")
    }

    #[test]
    fn a_record_key_is_fixed_by_the_id_and_the_secret() {
        let id = uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
        let first = secret().record_key(id);
        assert_eq!(first, secret().record_key(id.as_bytes()));
        assert_ne!(first, secret().record_key(uuid::Uuid::from_u128(2)));
        let other = RecordKeySecret::new(b"another secret, also long enough").expect("long");
        assert_ne!(first, other.record_key(id));
    }

    #[test]
    fn a_short_secret_is_refused_and_no_secret_is_shown() {
        assert_eq!(
            RecordKeySecret::new(b"short").map(|_| ()),
            Err(SecretError::TooShort { min: 16, got: 5 })
        );
        assert_eq!(format!("{:?}", secret()), "RecordKeySecret(..)");
    }

    #[test]
    fn record_keys_spread_evenly_over_the_unit_interval() {
        // 4,096 keys in 16 bins: each bin expects 256; a bin outside
        // 256 +- 80 (five standard deviations) would mean the keys are not
        // uniform.
        let secret = secret();
        let mut bins = [0u32; 16];
        for id in 0..4_096u128 {
            let key = secret.record_key(uuid::Uuid::from_u128(id));
            bins[(key.0 >> 28) as usize] += 1;
        }
        for (bin, &n) in bins.iter().enumerate() {
            assert!((176..=336).contains(&n), "bin {bin} holds {n}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn a_cell_key_depends_on_its_units_not_their_order_or_churn(
            keys in proptest::collection::vec(any::<u32>(), 0..40),
            churn in proptest::collection::vec(any::<u32>(), 0..10),
            rotate in 0usize..40,
        ) {
            let keys: Vec<RecordKey> = keys.into_iter().map(RecordKey).collect();
            let whole = CellKey::of(keys.iter().copied());
            let mut kept = CellKey::default();
            let mut order = keys.clone();
            if !order.is_empty() {
                let by = rotate % order.len();
                order.rotate_left(by);
            }
            for (i, &key) in order.iter().enumerate() {
                kept.add(key);
                // Units that enter and leave again (a retraction, an
                // erasure) leave no trace.
                if let Some(&other) = churn.get(i) {
                    kept.add(RecordKey(other));
                    kept.remove(RecordKey(other));
                }
            }
            prop_assert_eq!(kept, whole);
        }

        #[test]
        fn a_keyed_count_returns_to_empty_when_its_units_leave(
            keys in proptest::collection::vec(any::<u32>(), 0..20),
        ) {
            let mut cell = KeyedCount::default();
            for &key in &keys {
                cell.add(RecordKey(key));
            }
            prop_assert_eq!(cell.count, keys.len() as u64);
            prop_assert_eq!(cell.key, CellKey::of(keys.iter().map(|&k| RecordKey(k))));
            for &key in keys.iter().rev() {
                cell.remove(RecordKey(key));
            }
            prop_assert_eq!(cell, KeyedCount::default());
        }
    }
}
