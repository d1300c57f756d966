//! Checkpoints as C2SP `tlog-checkpoint` bodies, signed as C2SP
//! `signed-note`s with Ed25519, and the note format's key strings.
//!
//! A signed note is its text (lines ending in a newline), a blank line,
//! and one or more signature lines `— <name> <base64(key id || signature)>`.
//! The key id is the first four bytes of `SHA-256(name || 0x0A || 0x01 ||
//! public key)`, so a verifier picks out the line its key made. The
//! signature scheme itself is `ed25519-dalek`'s; this module only frames
//! it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::tree::Hash;

/// The signature type byte of Ed25519 in the note format.
const ED25519: u8 = 0x01;

/// What begins every signature line: an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// The note format's cap on signature lines, so a note cannot make a
/// verifier do unbounded work.
const MAX_SIGNATURES: usize = 100;

/// Why a checkpoint, note or key string was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    /// A key name must be non-empty, printable, without spaces or `+`.
    #[error("the key name {0:?} is not a valid note key name")]
    KeyName(String),
    /// A verifier or signer key string is not in the note format.
    #[error("malformed key string: {0}")]
    MalformedKey(&'static str),
    /// The key id in a key string does not match its name and key.
    #[error("the key id does not match the key")]
    KeyIdMismatch,
    /// The note is not text, a blank line and signature lines.
    #[error("malformed signed note: {0}")]
    MalformedNote(&'static str),
    /// No signature line was made by the verifier's key.
    #[error("the note has no signature by {0}")]
    NoSignatureByKey(String),
    /// The line made by the verifier's key does not verify: the text was
    /// changed, or it was signed by another key with the same id.
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
    /// The text is not a checkpoint.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
}

/// A C2SP `tlog-checkpoint`: the origin, the tree's size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name, unique to it: `rotation-ledger/<ledger id>` unless
    /// configured.
    pub origin: String,
    /// How many leaves (events) the tree holds.
    pub size: u64,
    /// The tree's root hash.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: `<origin>\n<size>\n<base64 root>\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        )
    }

    /// Reads a checkpoint from a note's text. Extension lines after the
    /// root are allowed by the format and ignored here.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut lines = text
            .strip_suffix('\n')
            .ok_or(NoteError::MalformedCheckpoint(
                "it does not end in a newline",
            ))?
            .split('\n');
        let origin = lines
            .next()
            .filter(|origin| !origin.is_empty())
            .ok_or(NoteError::MalformedCheckpoint("the origin line is empty"))?;
        let size = lines
            .next()
            .filter(|size| is_decimal(size))
            .and_then(|size| size.parse().ok())
            .ok_or(NoteError::MalformedCheckpoint(
                "the size is not a decimal number",
            ))?;
        let root = lines
            .next()
            .and_then(|root| BASE64.decode(root).ok())
            .and_then(|root| Hash::try_from(root).ok())
            .ok_or(NoteError::MalformedCheckpoint(
                "the root is not 32 bytes of base64",
            ))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// A decimal number as the checkpoint format writes one: digits, no sign,
/// no leading zero except for zero itself.
fn is_decimal(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
}

/// A note signing key: a name and an Ed25519 key. Its text form is Go's
/// `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`.
pub struct NoteSigner {
    /// The name the signature lines carry.
    name: String,
    /// The Ed25519 key.
    key: SigningKey,
    /// The key id, fixed by the name and public key.
    id: [u8; 4],
}

impl fmt::Debug for NoteSigner {
    /// Shows the verifier key, never the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("verifier", &self.verifier().to_string())
            .finish()
    }
}

impl NoteSigner {
    /// A signer from a name and a 32-byte Ed25519 seed.
    pub fn new(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_owned(),
            key,
            id,
        })
    }

    /// A new signer with a random seed.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        Self::new(name, rand::random())
    }

    /// Reads the signer key string (see [`NoteSigner::to_key_string`]).
    pub fn from_key_string(text: &str) -> Result<Self, NoteError> {
        let rest = text
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey("a signer key begins PRIVATE+KEY+"))?;
        let (name, id, key) = split_key(rest)?;
        let seed = key
            .try_into()
            .map_err(|_| NoteError::MalformedKey("an Ed25519 seed is 32 bytes"))?;
        let signer = Self::new(name, seed)?;
        if signer.id != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(signer)
    }

    /// The signer key string, the content of a key file.
    pub fn to_key_string(&self) -> String {
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(self.id),
            encode_key(self.key.as_bytes())
        )
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key that checks this signer's notes.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            id: self.id,
        }
    }

    /// Signs `text` (which must be lines ending in newlines) and returns
    /// the signed note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        Ok(format!("{text}\n{}", self.signature_line(text)))
    }

    /// Signs a checkpoint's body and returns the signed note.
    pub fn sign_checkpoint(&self, checkpoint: &Checkpoint) -> Result<String, NoteError> {
        self.sign(&checkpoint.body())
    }

    /// The signature line this key makes over `text`, newline included. A
    /// witness appends its own to a note someone else signed.
    pub fn signature_line(&self, text: &str) -> String {
        let signature = self.key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(4 + Signature::BYTE_SIZE);
        blob.extend_from_slice(&self.id);
        blob.extend_from_slice(&signature.to_bytes());
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, BASE64.encode(blob))
    }
}

/// A note verifier key, as `<name>+<hex key id>+<base64(0x01 || public
/// key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    /// The name the key's signature lines carry.
    name: String,
    /// The Ed25519 public key.
    key: VerifyingKey,
    /// The key id, fixed by the name and key.
    id: [u8; 4],
}

impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            encode_key(self.key.as_bytes())
        )
    }
}

impl std::str::FromStr for NoteVerifier {
    type Err = NoteError;

    fn from_str(text: &str) -> Result<Self, NoteError> {
        let (name, id, key) = split_key(text.trim())?;
        check_name(name)?;
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| NoteError::MalformedKey("an Ed25519 public key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| NoteError::MalformedKey("not an Ed25519 public key"))?;
        if key_id(name, key.as_bytes()) != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(Self {
            name: name.to_owned(),
            key,
            id,
        })
    }
}

impl NoteVerifier {
    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks a signed note and returns its text. Lines signed by other
    /// keys are allowed (a witness's cosignature, say) and not checked;
    /// the line made by this key must be there and must verify.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let (text, signatures) = split_note(note)?;
        let mut found = false;
        for line in signatures {
            let (name, blob) = parse_signature_line(line)?;
            if name != self.name || blob[..4] != self.id {
                continue;
            }
            found = true;
            let signature = Signature::from_slice(&blob[4..])
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            self.key
                .verify(text.as_bytes(), &signature)
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
        }
        if !found {
            return Err(NoteError::NoSignatureByKey(self.name.clone()));
        }
        Ok(text)
    }

    /// Checks a signed checkpoint and reads it.
    pub fn open_checkpoint(&self, note: &str) -> Result<Checkpoint, NoteError> {
        Checkpoint::parse(self.open(note)?)
    }
}

/// The note format's key id: `SHA-256(name || 0x0A || 0x01 || key)[:4]`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([b'\n', ED25519])
        .chain_update(public_key)
        .finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Splits a signed note into its text (final newline included) and its
/// signature lines (without newlines).
fn split_note(note: &str) -> Result<(&str, impl Iterator<Item = &str>), NoteError> {
    // The text cannot hold a blank line, so the last one starts the
    // signatures.
    let split = note.rfind("\n\n").ok_or(NoteError::MalformedNote(
        "no blank line before the signatures",
    ))?;
    let (text, signatures) = (&note[..=split], &note[split + 2..]);
    check_text(text)?;
    let signatures = signatures
        .strip_suffix('\n')
        .ok_or(NoteError::MalformedNote("it does not end in a newline"))?;
    if signatures.split('\n').count() > MAX_SIGNATURES {
        return Err(NoteError::MalformedNote("too many signatures"));
    }
    Ok((text, signatures.split('\n')))
}

/// Reads `— <name> <base64(key id || signature)>` into the name and the
/// decoded bytes, at least the 4 of the key id.
fn parse_signature_line(line: &str) -> Result<(&str, Vec<u8>), NoteError> {
    let malformed = NoteError::MalformedNote("a signature line is not \u{2014} <name> <base64>");
    let (name, blob) = line
        .strip_prefix(SIGNATURE_PREFIX)
        .and_then(|rest| rest.split_once(' '))
        .ok_or(malformed.clone())?;
    let blob = BASE64.decode(blob).map_err(|_| malformed.clone())?;
    if name.is_empty() || blob.len() < 5 {
        return Err(malformed);
    }
    Ok((name, blob))
}

/// A note's text: non-empty UTF-8 lines, each ending in a newline, none
/// blank, no control characters but the newlines.
fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(NoteError::MalformedNote(
            "the text does not end in a newline",
        ));
    }
    if text.starts_with('\n') || text.contains("\n\n") {
        return Err(NoteError::MalformedNote("the text has a blank line"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::MalformedNote("the text has control characters"));
    }
    Ok(())
}

/// A key name: non-empty, without spaces, `+` or control characters.
fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c == '+' || c.is_whitespace() || c.is_control())
    {
        return Err(NoteError::KeyName(name.to_owned()));
    }
    Ok(())
}

/// Splits `<name>+<hex key id>+<base64(0x01 || key)>` into the name, the
/// id and the key bytes after the type byte.
fn split_key(text: &str) -> Result<(&str, [u8; 4], Vec<u8>), NoteError> {
    // Base64 may itself hold `+`, so only the first two separate fields.
    let mut fields = text.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(NoteError::MalformedKey("a key is <name>+<id>+<key>"));
    };
    let id = <[u8; 4]>::try_from(hex::decode(id).unwrap_or_default())
        .ok()
        .filter(|_| id.len() == 8)
        .ok_or(NoteError::MalformedKey("the key id is not 8 hex digits"))?;
    let key = BASE64
        .decode(key)
        .map_err(|_| NoteError::MalformedKey("the key is not base64"))?;
    match key.split_first() {
        Some((&ED25519, key)) => Ok((name, id, key.to_vec())),
        _ => Err(NoteError::MalformedKey(
            "only Ed25519 keys (type 0x01) are known",
        )),
    }
}

/// `base64(0x01 || key)`.
fn encode_key(key: &[u8; 32]) -> String {
    let mut typed = Vec::with_capacity(33);
    typed.push(ED25519);
    typed.extend_from_slice(key);
    BASE64.encode(typed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of Go's `golang.org/x/mod/sumdb/note` documentation.
    const GO_SIGNER: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
        then you don't know what your problem is.\n\
        \n\
        \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    /// The example of the C2SP signed-note specification.
    const C2SP_VERIFIER: &str =
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const C2SP_NOTE: &str = "This is an example message.\n\
        \n\
        \u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "rotation-ledger/0190d1d2-8c47-7a1e-9d5b-3c2f4e6a8b10".to_owned(),
            size: 1234,
            root: Sha256::digest(b"root").into(),
        }
    }

    fn verifier(text: &str) -> NoteVerifier {
        text.parse().unwrap()
    }

    #[test]
    fn go_example_key_signs_the_example_note_byte_for_byte() {
        let signer = NoteSigner::from_key_string(GO_SIGNER).unwrap();
        assert_eq!(signer.to_key_string(), GO_SIGNER);
        assert_eq!(signer.verifier().to_string(), GO_VERIFIER);
        assert_eq!(signer.sign(GO_TEXT).unwrap(), GO_NOTE);
        assert_eq!(verifier(GO_VERIFIER).open(GO_NOTE).unwrap(), GO_TEXT);
    }

    #[test]
    fn c2sp_example_note_verifies() {
        let text = verifier(C2SP_VERIFIER).open(C2SP_NOTE).unwrap();
        assert_eq!(text, "This is an example message.\n");
    }

    #[test]
    fn checkpoints_round_trip() {
        let signer = NoteSigner::generate("rotation-ledger/test").unwrap();
        let note = signer.sign_checkpoint(&checkpoint()).unwrap();
        let read = signer
            .verifier()
            .to_string()
            .parse::<NoteVerifier>()
            .unwrap();
        assert_eq!(read.open_checkpoint(&note).unwrap(), checkpoint());
        let again = NoteSigner::from_key_string(&signer.to_key_string()).unwrap();
        assert_eq!(again.sign_checkpoint(&checkpoint()).unwrap(), note);
        assert!(note.starts_with(&format!(
            "{}\n1234\n{}\n\n\u{2014} rotation-ledger/test ",
            checkpoint().origin,
            BASE64.encode(checkpoint().root)
        )));
    }

    #[test]
    fn a_forged_root_or_size_fails() {
        let signer = NoteSigner::generate("ledger").unwrap();
        let note = signer.sign_checkpoint(&checkpoint()).unwrap();
        let forged_root = note.replace(
            &BASE64.encode(checkpoint().root),
            &BASE64.encode(Sha256::digest(b"other root")),
        );
        let forged_size = note.replace("\n1234\n", "\n1235\n");
        for forged in [forged_root, forged_size] {
            assert_eq!(
                signer.verifier().open_checkpoint(&forged),
                Err(NoteError::BadSignature("ledger".to_owned()))
            );
        }
    }

    #[test]
    fn another_key_fails() {
        let signer = NoteSigner::generate("ledger").unwrap();
        let note = signer.sign_checkpoint(&checkpoint()).unwrap();
        let same_name = NoteSigner::generate("ledger").unwrap().verifier();
        let other_name = NoteSigner::generate("other").unwrap().verifier();
        for verifier in [same_name, other_name] {
            assert_eq!(
                verifier.open(&note),
                Err(NoteError::NoSignatureByKey(verifier.name().to_owned()))
            );
        }
    }

    #[test]
    fn a_signature_by_a_key_with_the_same_name_and_id_fails() {
        // Forge a line that claims the key's id over another key's signature.
        let signer = NoteSigner::generate("ledger").unwrap();
        let impostor = NoteSigner::generate("ledger").unwrap();
        let text = checkpoint().body();
        let line = impostor.signature_line(&text);
        let blob = BASE64
            .decode(line.trim_end().rsplit_once(' ').unwrap().1)
            .unwrap();
        let mut forged = signer.id.to_vec();
        forged.extend_from_slice(&blob[4..]);
        let note = format!("{text}\n\u{2014} ledger {}\n", BASE64.encode(forged));
        assert_eq!(
            signer.verifier().open(&note),
            Err(NoteError::BadSignature("ledger".to_owned()))
        );
    }

    #[test]
    fn a_cosigned_note_verifies_for_each_signer() {
        let ledger = NoteSigner::generate("ledger").unwrap();
        let witness = NoteSigner::generate("board-chair").unwrap();
        let text = checkpoint().body();
        let note = ledger.sign(&text).unwrap() + &witness.signature_line(&text);
        assert_eq!(ledger.verifier().open(&note).unwrap(), text);
        assert_eq!(witness.verifier().open(&note).unwrap(), text);
    }

    #[test]
    fn malformed_checkpoints_are_refused() {
        let root = BASE64.encode([7; 32]);
        for text in [
            format!("origin\n12\n{root}"),
            format!("\n12\n{root}\n"),
            format!("origin\n012\n{root}\n"),
            format!("origin\n-1\n{root}\n"),
            format!("origin\n12\n{}\n", BASE64.encode([7; 31])),
            "origin\n12\n".to_owned(),
        ] {
            assert!(
                matches!(
                    Checkpoint::parse(&text),
                    Err(NoteError::MalformedCheckpoint(_))
                ),
                "{text:?}"
            );
        }
        let with_extension = format!("origin\n0\n{root}\nextension line\n");
        assert_eq!(Checkpoint::parse(&with_extension).unwrap().size, 0);
    }

    #[test]
    fn malformed_notes_and_keys_are_refused() {
        let go = verifier(GO_VERIFIER);
        for note in [
            GO_TEXT.to_owned(),
            GO_NOTE.trim_end().to_owned(),
            format!("\n{GO_NOTE}"),
            GO_NOTE.replace('\u{2014}', "-"),
            format!("{GO_TEXT}\n\u{2014} PeterNeumann !!!\n"),
        ] {
            assert!(go.open(&note).is_err(), "{note:?}");
        }
        assert!(NoteSigner::generate("has space").is_err());
        assert!(NoteSigner::generate("has+plus").is_err());
        assert!(NoteSigner::generate("").is_err());
        let wrong_id = GO_VERIFIER.replace("c74f20a3", "c74f20a4");
        assert_eq!(
            wrong_id.parse::<NoteVerifier>(),
            Err(NoteError::KeyIdMismatch)
        );
        assert!("PeterNeumann+c74f20a3".parse::<NoteVerifier>().is_err());
        assert!(NoteSigner::from_key_string(GO_VERIFIER).is_err());
    }
}
