//! The sealing and the keys seen through the module's public interface.

use std::time::Instant;

use serde_json::{Value, json};
use uuid::Uuid;

use super::*;

fn person(n: u128) -> Uuid {
    Uuid::from_u128(0x0193a3c0_0000_7000_8000_000000000000 | n)
}

fn subject(p: Uuid) -> String {
    format!("person/{p}")
}

fn profile() -> Value {
    json!({"birth_year": 1984, "sex": "female", "disability": "no", "lone_parent": true})
}

/// A keyring holding keys for people 1..=n, and their committed wraps.
fn keyring_of(n: u128) -> (Keyring, Vec<WrappedKey>) {
    let keyring = Keyring::new(MasterKey::generate());
    let mut stored = Vec::new();
    for i in 1..=n {
        let p = person(i);
        keyring
            .seal(p, Uuid::now_v7(), &subject(p), &profile())
            .unwrap();
        let wrap = keyring.wrap_to_commit(p).expect("a new key's wrap");
        keyring.mark_committed(&wrap);
        stored.push(wrap);
    }
    (keyring, stored)
}

#[test]
fn a_sealed_profile_opens_with_its_event_and_key() {
    let keyring = Keyring::new(MasterKey::generate());
    let (p, id) = (person(1), Uuid::now_v7());
    let sealed = keyring.seal(p, id, &subject(p), &profile()).unwrap();
    assert_eq!(sealed.alg, "XChaCha20-Poly1305");
    assert!(!sealed.ciphertext.contains('='));
    assert!(
        !serde_json::to_string(&sealed)
            .unwrap()
            .contains(&p.to_string())
    );
    assert_eq!(
        keyring.open(p, id, &subject(p), &sealed).unwrap(),
        profile()
    );
    let typed = keyring.open_profile(p, id, &subject(p), &sealed).unwrap();
    assert_eq!(typed.birth_year, Some(1984));
    assert_eq!(typed.lone_parent, Some(true));
}

#[test]
fn another_events_id_or_subject_does_not_open_it() {
    let keyring = Keyring::new(MasterKey::generate());
    let (p, id) = (person(1), Uuid::now_v7());
    let sealed = keyring.seal(p, id, &subject(p), &profile()).unwrap();
    assert_eq!(
        keyring.open(p, Uuid::now_v7(), &subject(p), &sealed),
        Err(SealError::Unopenable)
    );
    assert_eq!(
        keyring.open(p, id, "person/someone-else", &sealed),
        Err(SealError::Unopenable)
    );
}

#[test]
fn another_key_does_not_open_it() {
    let keyring = Keyring::new(MasterKey::generate());
    let (p, q, id) = (person(1), person(2), Uuid::now_v7());
    let sealed = keyring.seal(p, id, &subject(p), &profile()).unwrap();
    keyring
        .seal(q, Uuid::now_v7(), &subject(q), &profile())
        .unwrap();
    // Under q's key, whether the kid is q's or p's.
    assert_eq!(
        keyring.open(q, id, &subject(p), &sealed),
        Err(SealError::NoKey)
    );
    let mut relabelled = sealed.clone();
    relabelled.kid = keyring
        .seal(q, Uuid::now_v7(), &subject(q), &profile())
        .unwrap()
        .kid;
    assert_eq!(
        keyring.open(q, id, &subject(p), &relabelled),
        Err(SealError::Unopenable)
    );
    // Another keyring holds another key for the same person.
    let other = Keyring::new(MasterKey::generate());
    other
        .seal(p, Uuid::now_v7(), &subject(p), &profile())
        .unwrap();
    assert_eq!(
        other.open(p, id, &subject(p), &sealed),
        Err(SealError::NoKey)
    );
}

#[test]
fn changed_bytes_do_not_open() {
    let keyring = Keyring::new(MasterKey::generate());
    let (p, id) = (person(1), Uuid::now_v7());
    let sealed = keyring.seal(p, id, &subject(p), &profile()).unwrap();
    let flip = |text: &str| {
        let mut bytes = text.as_bytes().to_vec();
        bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let mut tampered = sealed.clone();
    tampered.ciphertext = flip(&sealed.ciphertext);
    assert_eq!(
        keyring.open(p, id, &subject(p), &tampered),
        Err(SealError::Unopenable)
    );
    let mut renonced = sealed.clone();
    renonced.nonce = flip(&sealed.nonce);
    assert_eq!(
        keyring.open(p, id, &subject(p), &renonced),
        Err(SealError::Unopenable)
    );
    let mut other_alg = sealed;
    other_alg.alg = "AES-256-GCM-SIV".to_owned();
    assert_eq!(
        keyring.open(p, id, &subject(p), &other_alg),
        Err(SealError::Unopenable)
    );
}

#[test]
fn a_persons_key_is_made_once_and_committed_with_its_first_event() {
    let keyring = Keyring::new(MasterKey::generate());
    let p = person(1);
    let first = keyring
        .seal(p, Uuid::now_v7(), &subject(p), &profile())
        .unwrap();
    let wrap = keyring.wrap_to_commit(p).unwrap();
    assert_eq!(wrap.kid.as_str(), first.kid);
    assert_eq!(wrap.kek, keyring.master_key_id());
    // Until the writer says it is durable, every sealing may carry it.
    let second = keyring
        .seal(p, Uuid::now_v7(), &subject(p), &profile())
        .unwrap();
    assert_eq!(second.kid, first.kid);
    assert_eq!(keyring.wrap_to_commit(p), Some(wrap.clone()));
    keyring.mark_committed(&wrap);
    assert_eq!(keyring.wrap_to_commit(p), None);
}

#[test]
fn submitters_racing_for_a_new_person_share_one_key() {
    let keyring = Keyring::new(MasterKey::generate());
    let p = person(1);
    let kids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    keyring
                        .seal(p, Uuid::now_v7(), &subject(p), &profile())
                        .unwrap()
                        .kid
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(kids.iter().all(|k| *k == kids[0]));
    assert_eq!(keyring.len().unwrap(), 1);
}

#[test]
fn opening_loads_every_wrap_from_the_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = MasterKeyFile::in_data_dir(dir.path());
    let keys = file.open(false).unwrap();
    let keyring = Keyring::new(keys.current);
    let (p, id) = (person(1), Uuid::now_v7());
    let sealed = keyring.seal(p, id, &subject(p), &profile()).unwrap();
    let stored = vec![keyring.wrap_to_commit(p).unwrap()];
    drop(keyring);

    let (reloaded, recovery) = Keyring::load(file.open(true).unwrap(), stored.clone()).unwrap();
    assert_eq!(recovery, Recovery::Ready);
    assert_eq!(
        reloaded.open(p, id, &subject(p), &sealed).unwrap(),
        profile()
    );

    let mut moved = stored[0].clone();
    moved.person = person(2);
    let err = Keyring::load(file.open(true).unwrap(), vec![moved]).unwrap_err();
    assert!(matches!(err, KeyError::Unwrap { .. }), "{err}");

    let mut unknown = stored[0].clone();
    unknown.kek = MasterKey::generate().id().clone();
    let err = Keyring::load(file.open(true).unwrap(), vec![unknown]).unwrap_err();
    assert!(matches!(err, KeyError::UnknownMasterKey { .. }), "{err}");
}

/// The procedure of the module's doc, stopped by a crash after each step.
#[test]
fn a_rotation_cut_short_is_finished_or_abandoned_on_opening() {
    let dir = tempfile::tempdir().unwrap();
    let file = MasterKeyFile::in_data_dir(dir.path());
    let keyring = Keyring::new(file.open(false).unwrap().current);
    let (kept, erased) = (person(1), person(2));
    let ids = [Uuid::now_v7(), Uuid::now_v7()];
    let sealed_kept = keyring
        .seal(kept, ids[0], &subject(kept), &profile())
        .unwrap();
    let sealed_erased = keyring
        .seal(erased, ids[1], &subject(erased), &profile())
        .unwrap();
    let before: Vec<WrappedKey> = [kept, erased]
        .iter()
        .map(|p| keyring.wrap_to_commit(*p).unwrap())
        .collect();

    // Step 1 done, step 2 never committed: the erasure did not happen.
    let next = file.begin_rotation().unwrap();
    let rotation = keyring.rotate(next, &[erased]).unwrap();
    assert_eq!(rotation.destroyed, vec![erased]);
    assert_eq!(rotation.rewrapped.len(), 1);
    let (reloaded, recovery) = Keyring::load(file.open(true).unwrap(), before.clone()).unwrap();
    assert_eq!(recovery, Recovery::AbandonRotation);
    file.abandon_rotation().unwrap();
    let open = |k: &Keyring, p: Uuid, id: Uuid, s| k.open(p, id, &subject(p), s);
    assert!(open(&reloaded, erased, ids[1], &sealed_erased).is_ok());

    // Steps 1 and 2 done, step 3 not: the rotation is finished.
    let next = file.begin_rotation().unwrap();
    let next_id = next.id().clone();
    let rotation = reloaded.rotate(next, &[erased]).unwrap();
    let after = rotation.rewrapped;
    let (reloaded, recovery) = Keyring::load(file.open(true).unwrap(), after.clone()).unwrap();
    assert_eq!(recovery, Recovery::FinishRotation(Vec::new()));
    assert_eq!(reloaded.master_key_id(), next_id);
    file.finish_rotation().unwrap();
    assert_eq!(
        open(&reloaded, erased, ids[1], &sealed_erased),
        Err(SealError::NoKey)
    );
    assert_eq!(
        open(&reloaded, kept, ids[0], &sealed_kept).unwrap(),
        profile()
    );

    // The old wraps, as sled's old segments may still hold them, no longer
    // unwrap: the master key they name is gone.
    let err = Keyring::load(file.open(true).unwrap(), before).unwrap_err();
    assert!(matches!(err, KeyError::UnknownMasterKey { .. }), "{err}");
    let (reopened, recovery) = Keyring::load(file.open(true).unwrap(), after).unwrap();
    assert_eq!(recovery, Recovery::Ready);
    assert_eq!(
        open(&reopened, kept, ids[0], &sealed_kept).unwrap(),
        profile()
    );
}

#[test]
fn a_half_rewrapped_store_is_rewrapped_on_opening() {
    let dir = tempfile::tempdir().unwrap();
    let file = MasterKeyFile::in_data_dir(dir.path());
    let keyring = Keyring::new(file.open(false).unwrap().current);
    for i in 1..=2 {
        keyring
            .seal(person(i), Uuid::now_v7(), &subject(person(i)), &profile())
            .unwrap();
    }
    let old = keyring.wrap_to_commit(person(1)).unwrap();
    let rotation = keyring.rotate(file.begin_rotation().unwrap(), &[]).unwrap();
    let mixed = vec![
        old,
        rotation
            .rewrapped
            .into_iter()
            .find(|w| w.person == person(2))
            .unwrap(),
    ];
    let (reloaded, recovery) = Keyring::load(file.open(true).unwrap(), mixed).unwrap();
    let Recovery::FinishRotation(rewrapped) = recovery else {
        panic!("{recovery:?}")
    };
    assert_eq!(rewrapped.len(), 1);
    assert_eq!(rewrapped[0].person, person(1));
    assert_eq!(rewrapped[0].kek, reloaded.master_key_id());
}

#[test]
fn destroying_a_key_makes_its_profiles_unopenable_and_a_new_key_differs() {
    let keyring = Keyring::new(MasterKey::generate());
    let (p, id) = (person(1), Uuid::now_v7());
    let sealed = keyring.seal(p, id, &subject(p), &profile()).unwrap();
    assert!(keyring.destroy(p).unwrap());
    assert!(!keyring.destroy(p).unwrap());
    assert_eq!(
        keyring.open(p, id, &subject(p), &sealed),
        Err(SealError::NoKey)
    );
    let again = keyring
        .seal(p, Uuid::now_v7(), &subject(p), &profile())
        .unwrap();
    assert_ne!(again.kid, sealed.kid);
    assert_eq!(
        keyring.open(p, id, &subject(p), &sealed),
        Err(SealError::NoKey)
    );
}

/// A rotation wraps every remaining key again (the keys are in memory, so
/// no unwrap). `ROTATION_MEASURE_REWRAP=FILE` writes its time to FILE; the
/// cost is linear in the number of people.
#[test]
fn a_rotation_rewraps_every_remaining_key() {
    let (keyring, _) = keyring_of(10_000);
    let started = Instant::now();
    let rotation = keyring.rotate(MasterKey::generate(), &[person(1)]).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(rotation.rewrapped.len(), 9_999);
    if let Some(path) = std::env::var_os("ROTATION_MEASURE_REWRAP") {
        std::fs::write(path, format!("{:?} for 9999 keys\n", elapsed)).unwrap();
    }
}

/// Loading reads no wrap but the first: each key is read and unwrapped
/// when first used. A key destroyed before it was ever used stays
/// destroyed although the source still holds its wrap (the writer's
/// commit deletes it later), and a rotation wraps again the keys never
/// used.
#[test]
fn keys_are_unwrapped_on_first_use_and_a_destroyed_one_is_not_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = MasterKeyFile::in_data_dir(dir.path());
    let keyring = Keyring::new(file.open(false).unwrap().current);
    let (p, q, r) = (person(1), person(2), person(3));
    let ids = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    let sealed: Vec<_> = [p, q, r]
        .iter()
        .zip(ids)
        .map(|(person, id)| {
            keyring
                .seal(*person, id, &subject(*person), &profile())
                .unwrap()
        })
        .collect();
    let stored: Vec<WrappedKey> = [p, q, r]
        .iter()
        .map(|person| keyring.wrap_to_commit(*person).unwrap())
        .collect();
    drop(keyring);

    let (reloaded, recovery) = Keyring::load(file.open(true).unwrap(), stored.clone()).unwrap();
    assert_eq!(recovery, Recovery::Ready);
    assert!(format!("{reloaded:?}").contains("known: 0"), "{reloaded:?}");
    assert_eq!(
        reloaded.open(p, ids[0], &subject(p), &sealed[0]).unwrap(),
        profile()
    );
    assert!(format!("{reloaded:?}").contains("known: 1"), "{reloaded:?}");
    assert_eq!(reloaded.people().unwrap(), vec![p, q, r]);

    assert!(reloaded.destroy(q).unwrap());
    assert_eq!(
        reloaded.open(q, ids[1], &subject(q), &sealed[1]),
        Err(SealError::NoKey)
    );
    assert!(!reloaded.holds(q).unwrap());
    assert_eq!(reloaded.people().unwrap(), vec![p, r]);
    assert_eq!(
        reloaded.wrap_to_commit(r),
        None,
        "a stored key is committed"
    );

    let next = file.begin_rotation().unwrap();
    let rotation = reloaded.rotate(next, &[]).unwrap();
    let mut rewrapped: Vec<Uuid> = rotation.rewrapped.iter().map(|w| w.person).collect();
    rewrapped.sort_unstable();
    assert_eq!(rewrapped, vec![p, r], "the key never used is wrapped again");
    file.finish_rotation().unwrap();
    let (rotated, _) = Keyring::load(file.open(true).unwrap(), rotation.rewrapped).unwrap();
    assert_eq!(
        rotated.open(r, ids[2], &subject(r), &sealed[2]).unwrap(),
        profile()
    );
}
