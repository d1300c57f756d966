//! The `prove` figure: inclusion proofs of random positions against the
//! head's tree size, through [`Ledger::inclusion_proof`], the call behind
//! `GET /v1/proofs/inclusion`, on the log `append_batched` built.
//!
//! The baseline is the storage reads alone: for each proof, as many
//! stored tree nodes (levels [`STORED_FROM_LEVEL`] and up, at random) read
//! straight from the store as the proof holds hashes, the leaf's included.
//! What the proof adds is finding which nodes it needs and deriving the
//! lowest levels from the events' hashes.

use std::time::{Duration, Instant};

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::pairs::Pair;
use super::{Figure, Result};
use crate::ledger::{Ledger, STORED_FROM_LEVEL};

/// Turns of the ledger's proofs and the baseline's reads.
pub(super) const TURNS: usize = 5;

/// Proofs in each turn.
pub(super) const PROOFS: usize = 2_000;

/// `prove`, in [`TURNS`] pairs of [`PROOFS`] proofs and as many sets of
/// raw node reads; `p99_ms` is one proof's 99th percentile over every
/// turn, `baseline_p99_ms` that of one set of reads. Blocking.
pub(super) fn prove(ledger: &Ledger) -> Result<Figure> {
    let size = ledger.head().position;
    let stored_levels: Vec<u8> = (STORED_FROM_LEVEL..64)
        .take_while(|level| size >> level > 0)
        .collect();
    ensure!(
        !stored_levels.is_empty(),
        "prove needs a log of at least {} events, it has {size}",
        1u64 << STORED_FROM_LEVEL
    );
    let mut rng = StdRng::seed_from_u64(23);
    let (mut latencies, mut baseline_latencies) = (Vec::new(), Vec::new());
    let mut pairs = Vec::with_capacity(TURNS);
    for _ in 0..TURNS {
        let mut reads = Vec::with_capacity(PROOFS);
        let started = Instant::now();
        for _ in 0..PROOFS {
            let position = rng.random_range(1..=size);
            let one = Instant::now();
            let proof = ledger
                .inclusion_proof(position, size)
                .map_err(|e| super::BenchError::Check(format!("proof of {position}: {e}")))?;
            latencies.push(one.elapsed());
            reads.push(proof.hashes.len() + 1);
        }
        let ours = started.elapsed();
        let started = Instant::now();
        for count in reads {
            let one = Instant::now();
            for _ in 0..count {
                let level = stored_levels[rng.random_range(0..stored_levels.len())];
                let index = rng.random_range(0..size >> level);
                let node = ledger.store().tree_node(level, index)?;
                ensure!(node.is_some(), "tree node {level}/{index} is not stored");
            }
            baseline_latencies.push(one.elapsed());
        }
        let baseline = started.elapsed();
        pairs.push(Pair::counted(PROOFS as u64, ours, PROOFS as u64, baseline));
    }
    let mut figure = Figure::paired(&pairs);
    figure.p99_ms = Some(p99_ms(latencies));
    figure.baseline_p99_ms = Some(p99_ms(baseline_latencies));
    figure.unit = "proofs/s";
    Ok(figure)
}

/// The 99th percentile of `latencies`, in ms.
fn p99_ms(mut latencies: Vec<Duration>) -> f64 {
    latencies.sort_unstable();
    let at = (latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1));
    latencies
        .get(at)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}
