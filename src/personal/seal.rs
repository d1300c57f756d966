//! The AEAD itself: sealing bytes under a 256-bit key with a fresh random
//! nonce, and opening them, for both uses the ledger has: profiles under a
//! person's data key, and data keys under the master key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rotation_events::SealedProfile;
use uuid::Uuid;
use zeroize::Zeroizing;

/// The AEAD's name as `sealed_profile.alg` spells it. XChaCha20's 192-bit
/// nonces may be drawn at random for every seal without counting them.
pub const ALG: &str = "XChaCha20-Poly1305";

/// A 256-bit key, wiped from memory when dropped.
pub(super) type Key = Zeroizing<[u8; 32]>;

/// A fresh random 256-bit key from the operating system's generator.
pub(super) fn random_key() -> Key {
    let mut key = Zeroizing::new([0; 32]);
    rand::fill(&mut key[..]);
    key
}

/// Nonce and ciphertext (tag included) of one seal.
pub(super) struct Sealed {
    pub nonce: [u8; 24],
    pub ciphertext: Vec<u8>,
}

pub(super) fn seal(key: &Key, aad: &[u8], plaintext: &[u8]) -> Sealed {
    let mut nonce = [0; 24];
    rand::fill(&mut nonce);
    let ciphertext = XChaCha20Poly1305::new(key[..].into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("XChaCha20-Poly1305 seals any message shorter than 256 GiB");
    Sealed { nonce, ciphertext }
}

/// `None` when the bytes do not open under `key` with `aad`: another key,
/// other associated data, or bytes changed since they were sealed.
pub(super) fn open(
    key: &Key,
    aad: &[u8],
    nonce: &[u8],
    ciphertext: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    if nonce.len() != 24 {
        return None;
    }
    XChaCha20Poly1305::new(key[..].into())
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

pub(super) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// The associated data of a sealed profile: the event's `id` and `subject`,
/// so that a sealed profile copied into another event does not open there.
fn profile_aad(event_id: Uuid, subject: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(48 + subject.len());
    aad.extend_from_slice(b"rotation-ledger sealed_profile v1\0");
    aad.extend_from_slice(event_id.as_bytes());
    aad.extend_from_slice(subject.as_bytes());
    aad
}

pub(super) fn seal_profile(
    key: &Key,
    kid: &str,
    event_id: Uuid,
    subject: &str,
    plaintext: &[u8],
) -> SealedProfile {
    let sealed = seal(key, &profile_aad(event_id, subject), plaintext);
    SealedProfile {
        alg: ALG.to_owned(),
        kid: kid.to_owned(),
        nonce: encode(&sealed.nonce),
        ciphertext: encode(&sealed.ciphertext),
    }
}

pub(super) fn open_profile(
    key: &Key,
    event_id: Uuid,
    subject: &str,
    sealed: &SealedProfile,
) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.alg != ALG {
        return None;
    }
    let nonce = decode(&sealed.nonce)?;
    let ciphertext = decode(&sealed.ciphertext)?;
    open(key, &profile_aad(event_id, subject), &nonce, &ciphertext)
}
