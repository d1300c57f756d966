//! Signed checkpoints and Merkle proofs (contract section 10): the stored
//! tree is the log's, proofs check with another project's verifier, and
//! checkpoints hold the ledger to what it showed.

use rotation_ledger::ledger::Ledger;
use serde_json::Value;
use sigstore_types::Sha256Hash;

use crate::support::*;

/// Appends `count` jobseekers, numbered from `from`, in one batch.
pub async fn jobseekers(ledger: &TempLedger, from: u128, count: u128) {
    let batch: Vec<Value> = (from..from + count).map(jobseeker_registered).collect();
    assert_eq!(ledger.code(&Value::Array(batch)).await, "accepted");
}

/// A ledger of the scheme and `count` jobseekers.
pub async fn ledger_of(count: u128) -> TempLedger {
    let ledger = TempLedger::new();
    scheme(&ledger).await;
    jobseekers(&ledger, 1000, count).await;
    ledger
}

fn hashes(ledger: &Ledger) -> Vec<String> {
    ledger
        .events_iter(0)
        .map(|e| e.expect("an event").ledger.hash)
        .collect()
}

fn sigstore(hashes: &[[u8; 32]]) -> Vec<Sha256Hash> {
    hashes.iter().copied().map(Sha256Hash::new).collect()
}

#[tokio::test]
async fn the_stored_tree_is_the_tree_of_the_log_at_every_size() {
    let ledger = ledger_of(70).await;
    jobseekers(&ledger, 2000, 3).await;
    let all = hashes(&ledger.ledger);
    assert_eq!(all.len(), 79);
    for size in 0..=all.len() {
        assert_eq!(
            ledger.ledger.tree_root(size as u64).unwrap(),
            merkle_root(&all[..size]),
            "size {size}"
        );
    }
}

#[tokio::test]
async fn proofs_check_with_an_independent_verifier() {
    let ledger = ledger_of(60).await;
    let all = hashes(&ledger.ledger);
    let size = all.len() as u64;
    let root = Sha256Hash::new(merkle_root(&all));
    for position in [1, 2, 7, 8, 9, 33, size] {
        let proof = ledger.ledger.inclusion_proof(position, size).unwrap();
        sigstore_merkle::verify_inclusion_proof(
            &Sha256Hash::new(proof.leaf_hash),
            position - 1,
            size,
            &sigstore(&proof.hashes),
            &root,
        )
        .unwrap_or_else(|e| panic!("inclusion of {position}: {e}"));
    }
    for from in [1, 5, 8, 17, 40, size] {
        let proof = ledger.ledger.consistency_proof(from, size).unwrap();
        let old = Sha256Hash::new(merkle_root(&all[..from as usize]));
        sigstore_merkle::verify_consistency_proof(from, size, &sigstore(&proof), &old, &root)
            .unwrap_or_else(|e| panic!("consistency from {from}: {e}"));
    }
}

#[tokio::test]
async fn a_store_written_before_the_tree_gets_it_on_opening() {
    let ledger = ledger_of(45).await;
    let id = ledger.ledger.ledger_id().unwrap();
    assert!(ledger.ledger.forget_tree().unwrap() > 0);
    let ledger = ledger.reopen();
    let all = hashes(&ledger.ledger);
    assert_eq!(
        ledger.ledger.tree_root(all.len() as u64).unwrap(),
        merkle_root(&all)
    );
    assert_eq!(ledger.ledger.ledger_id().unwrap(), id, "the id is kept");
    jobseekers(&ledger, 3000, 9).await;
    let all = hashes(&ledger.ledger);
    assert_eq!(
        ledger.ledger.tree_root(all.len() as u64).unwrap(),
        merkle_root(&all),
        "appends go on from the built tree"
    );
}

#[tokio::test]
async fn each_store_has_its_own_id() {
    let (one, two) = (TempLedger::new(), TempLedger::new());
    let id = one.ledger.ledger_id().unwrap();
    assert_ne!(id, two.ledger.ledger_id().unwrap());
    assert_eq!(one.reopen().ledger.ledger_id().unwrap(), id);
}
