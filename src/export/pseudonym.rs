//! Pseudonymisation: the keyed HMAC that replaces every id in the package,
//! the columns it applies to, and the key's id and key files.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The name of the pseudonymisation method, as the provenance records it.
pub const PSEUDONYMISATION_METHOD: &str = "HMAC-SHA256";

/// How many lower-case hex characters of the HMAC a pseudonym keeps: 64
/// bits, so that a collision among a million ids has a chance of about one
/// in 36 million (and is refused when it happens).
pub const PSEUDONYM_LENGTH: usize = 16;

/// The key id recorded in the provenance: the first 8 hex characters of the
/// key's SHA-256. It tells two keys apart without revealing either.
pub fn key_id(key: &[u8]) -> String {
    let mut id = hex::encode(Sha256::digest(key));
    id.truncate(8);
    id
}

/// The key in a key file: its bytes without one trailing newline (`\n` or
/// `\r\n`), so that a key written by an editor or by `echo` is the same key
/// as one written without it.
pub fn key_from_file(bytes: &[u8]) -> Vec<u8> {
    let key = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(bytes);
    key.to_vec()
}

/// What every pseudonym looks like: [`PSEUDONYM_LENGTH`] lower-case hex
/// characters.
pub(super) const PSEUDONYM_PATTERN: &str = "^[0-9a-f]{16}$";

/// The columns that hold pseudonyms rather than values.
pub(super) const PSEUDONYMISED: [&str; 4] = ["pid", "rid", "sid", "employer"];

/// Keyed HMAC-SHA256 over an id's canonical text.
#[derive(Clone)]
pub(super) struct Pseudonymiser {
    /// The MAC with the key already absorbed; each pseudonym starts from a
    /// copy, so the key is hashed once, not once per id.
    mac: Hmac<Sha256>,
}

impl Pseudonymiser {
    pub(super) fn new(key: &[u8]) -> Self {
        Self {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length"),
        }
    }

    /// The pseudonym of `id`: the HMAC of its lower-case hyphenated form,
    /// as lower-case hex, cut to [`PSEUDONYM_LENGTH`] characters.
    pub(super) fn of(&self, id: Uuid) -> String {
        let mut buffer = Uuid::encode_buffer();
        let text = id.hyphenated().encode_lower(&mut buffer);
        let mut mac = self.mac.clone();
        mac.update(text.as_bytes());
        let mut pseudonym = hex::encode(mac.finalize().into_bytes());
        pseudonym.truncate(PSEUDONYM_LENGTH);
        pseudonym
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_and_key_files() {
        // SHA-256("abc") = ba7816bf…
        assert_eq!(key_id(b"abc"), "ba7816bf");
        assert_eq!(key_from_file(b"abc\n"), b"abc");
        assert_eq!(key_from_file(b"abc\r\n"), b"abc");
        assert_eq!(key_from_file(b"abc\n\n"), b"abc\n");
        assert_eq!(key_from_file(b"abc"), b"abc");
    }
}
