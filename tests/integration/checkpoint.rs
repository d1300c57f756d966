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

fn run(args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary())
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Signs the checkpoint of the ledger's head with its own key file (the
/// one `serve` would use), and returns the note.
fn sign_head(ledger: &Ledger, dir: &std::path::Path) -> String {
    let key_file = dir.join(rotation_ledger::checkpoint::DEFAULT_KEY_FILE);
    let (signer, origin) =
        rotation_ledger::checkpoint::service::signer(ledger, &key_file, None).unwrap();
    ledger
        .sign_checkpoint(&signer, &origin, ledger.head().position)
        .unwrap()
}

/// `verify --checkpoint` on `dir`, with `extra` arguments.
fn verify(dir: &std::path::Path, checkpoint: &str, extra: &[&str]) -> std::process::Output {
    let file = dir.join("held.checkpoint");
    std::fs::write(&file, checkpoint).unwrap();
    let mut args = vec![
        "verify",
        "--data",
        dir.to_str().unwrap(),
        "--checkpoint",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[tokio::test]
async fn a_checkpoint_holds_after_more_events_are_appended() {
    let ledger = ledger_of(20).await;
    let note = sign_head(&ledger.ledger, ledger.path());
    jobseekers(&ledger, 5000, 13).await;
    let dir = ledger.into_dir();
    let output = verify(dir.path(), &note, &[]);
    let out = stdout(&output);
    assert!(output.status.success(), "{out}");
    for what in ["signature: ok", "root: ok", "chain: ok"] {
        assert!(out.contains(what), "{what} in {out}");
    }
}

#[tokio::test]
async fn a_log_rebuilt_with_one_event_changed_fails_its_checkpoint() {
    let ledger = ledger_of(20).await;
    let note = sign_head(&ledger.ledger, ledger.path());
    let key = std::fs::read(ledger.path().join("keys/checkpoint.key")).unwrap();
    let log: Vec<_> = ledger
        .ledger
        .events_iter(0)
        .map(|e| e.unwrap().envelope.to_value())
        .collect();
    // The operator rebuilds the whole log from scratch, one jobseeker's
    // birth year changed, and keeps the same key: every hash is valid.
    let rebuilt = TempLedger::new();
    for (i, mut event) in log.into_iter().enumerate() {
        // The committed log holds profiles sealed; the operator submits
        // them in clear again, and they are sealed anew.
        if let Some(data) = event["data"].as_object_mut()
            && data.remove("sealed_profile").is_some()
        {
            let birth_year = if i == 12 { 1980 } else { 1990 };
            data.insert(
                "profile".into(),
                serde_json::json!({ "birth_year": birth_year }),
            );
        }
        assert_eq!(rebuilt.code(&event).await, "accepted");
    }
    let dir = rebuilt.into_dir();
    let file = dir.path().join("keys/checkpoint.key");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, key).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let output = verify(dir.path(), &note, &[]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("chain: ok"),
        "the rebuilt chain is valid: {out}"
    );
    assert!(out.contains("root: FAILS"), "{out}");
    assert!(out.contains("does not hold: root"), "{out}");
}

#[tokio::test]
async fn a_forged_root_or_another_keys_signature_fails() {
    use rotation_ledger::checkpoint::{Checkpoint, NoteSigner};
    let ledger = ledger_of(20).await;
    let note = sign_head(&ledger.ledger, ledger.path());
    let key_file = ledger
        .path()
        .join(rotation_ledger::checkpoint::DEFAULT_KEY_FILE);
    let (signer, origin) =
        rotation_ledger::checkpoint::service::signer(&ledger.ledger, &key_file, None).unwrap();
    let verifier_key = signer.verifier().to_string();
    let size = ledger.ledger.head().position;
    let forged = signer
        .sign_checkpoint(&Checkpoint {
            origin: origin.clone(),
            size,
            root: [7; 32],
        })
        .unwrap();
    let stranger = NoteSigner::generate(&origin).unwrap();
    let root = ledger.ledger.tree_root(size).unwrap();
    let strangers = stranger
        .sign_checkpoint(&Checkpoint { origin, size, root })
        .unwrap();
    let dir = ledger.into_dir();
    let held = verify(dir.path(), &note, &["--key", &verifier_key]);
    assert!(held.status.success(), "{}", stdout(&held));
    let output = verify(dir.path(), &forged, &["--key", &verifier_key]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("signature: ok") && out.contains("root: FAILS"),
        "{out}"
    );
    let output = verify(dir.path(), &strangers, &["--key", &verifier_key]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("signature: FAILS") && out.contains("root: ok"),
        "{out}"
    );
    assert!(out.contains("does not hold: signature"), "{out}");
}

#[tokio::test]
async fn prove_prints_an_inclusion_proof_and_checkpoint_key_the_key() {
    let ledger = ledger_of(30).await;
    let all = hashes(&ledger.ledger);
    let dir = ledger.into_dir();
    let data = dir.path().to_str().unwrap();
    let output = run(&["prove", "--data", data, "9"]);
    assert!(output.status.success(), "{}", stdout(&output));
    let proof: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(proof["position"], 9);
    assert_eq!(proof["size"], all.len());
    let hashes: Vec<[u8; 32]> = proof["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            hex::decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    let leaf: [u8; 32] = hex::decode(proof["leaf_hash"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    sigstore_merkle::verify_inclusion_proof(
        &Sha256Hash::new(leaf),
        8,
        all.len() as u64,
        &sigstore(&hashes),
        &Sha256Hash::new(merkle_root(&all)),
    )
    .expect("the printed proof verifies");
    let output = run(&["prove", "--data", data, "0"]);
    assert!(!output.status.success());
    let output = run(&["checkpoint-key", "--data", data]);
    let key = stdout(&output);
    assert!(output.status.success());
    assert!(key.starts_with("rotation-ledger/"), "{key}");
    key.trim()
        .parse::<rotation_ledger::checkpoint::NoteVerifier>()
        .expect("a verifier key in the note format");
    let again = run(&["checkpoint-key", "--data", data]);
    assert_eq!(stdout(&again), key, "the key is generated once");
}

const ADMIN_TOKEN: &str = "checkpoint-admin-token";

/// A `serve` process on a fresh data directory, with one admin token.
struct LiveServer {
    child: std::process::Child,
    address: String,
    dir: tempfile::TempDir,
}

impl LiveServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[[tokens]]\nsha256 = \"{}\"\nrole = \"admin\"\npartnerships = [\"*\"]\n",
                rotation_ledger::auth::token_digest(ADMIN_TOKEN)
            ),
        )
        .unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = std::process::Command::new(binary())
            .args(["serve", "--data"])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config)
            .args(["--http", &address])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the binary starts");
        let server = Self {
            child,
            address,
            dir,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while server.get("/healthz").0 != 200 {
            assert!(std::time::Instant::now() < deadline, "{}", server.log());
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn get(&self, path: &str) -> (u16, String) {
        crate::browser::http(&self.address, "GET", path, Some(ADMIN_TOKEN), None)
            .unwrap_or((0, String::new()))
    }

    fn post(&self, batch: Vec<Value>) {
        let (status, answer) = crate::browser::http(
            &self.address,
            "POST",
            "/v1/events",
            Some(ADMIN_TOKEN),
            Some(&Value::Array(batch)),
        )
        .unwrap();
        assert_eq!(status, 200, "{answer}");
    }

    /// The checkpoint once it covers `size` events (signing follows the
    /// head within about a second).
    fn checkpoint_of(&self, size: u64) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (status, note) = self.get("/v1/checkpoint");
            assert_eq!(status, 200, "{note}");
            if note.lines().nth(1) == Some(&size.to_string()) {
                return note;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{note}\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn verify_checkpoint_py(server: &LiveServer, key: &str, extra: &[&str]) -> std::process::Output {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/verify_checkpoint.py");
    std::process::Command::new(crate::tools::python())
        .arg(script)
        .args(["--url", &format!("http://{}", server.address)])
        .args(["--token", ADMIN_TOKEN, "--key", key])
        .args(extra)
        .output()
        .expect("python runs")
}

#[test]
fn the_outsiders_verifier_holds_a_live_server_to_its_checkpoints() {
    let server = LiveServer::start();
    server.post(scheme_events());
    let old = server.checkpoint_of(6);
    let old_file = server.dir.path().join("old.checkpoint");
    std::fs::write(&old_file, &old).unwrap();
    server.post((1000..1040).map(jobseeker_registered).collect());
    server.checkpoint_of(46);
    let (status, key) = server.get("/v1/checkpoint/key");
    assert_eq!(status, 200, "{key}");
    let key = key.trim();
    let old_path = old_file.to_str().unwrap();
    let output = verify_checkpoint_py(
        &server,
        key,
        &[
            "--old",
            old_path,
            "--position",
            "1",
            "--position",
            "17",
            "--position",
            "46",
        ],
    );
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    let stranger =
        rotation_ledger::checkpoint::NoteSigner::generate(key.split('+').next().unwrap())
            .unwrap()
            .verifier()
            .to_string();
    let output = verify_checkpoint_py(&server, &stranger, &[]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "another key's checkpoint is refused"
    );
}

#[test]
fn proofs_over_http_answer_bad_input_with_400_problems() {
    let server = LiveServer::start();
    server.post(scheme_events());
    server.checkpoint_of(6);
    let (status, proof) = server.get("/v1/proofs/inclusion?position=2");
    assert_eq!(status, 200, "{proof}");
    let proof: Value = serde_json::from_str(&proof).unwrap();
    assert_eq!(
        (proof["position"].as_u64(), proof["size"].as_u64()),
        (Some(2), Some(6))
    );
    let (status, proof) = server.get("/v1/proofs/consistency?from=3");
    assert_eq!(status, 200, "{proof}");
    let proof: Value = serde_json::from_str(&proof).unwrap();
    assert_eq!(
        (proof["from"].as_u64(), proof["to"].as_u64()),
        (Some(3), Some(6))
    );
    for path in [
        "/v1/proofs/inclusion?position=0",
        "/v1/proofs/inclusion?position=7&size=6",
        "/v1/proofs/inclusion?position=1&size=99",
        "/v1/proofs/inclusion?position=x",
        "/v1/proofs/inclusion",
        "/v1/proofs/consistency?from=5&to=4",
        "/v1/proofs/consistency?from=0&to=4",
        "/v1/proofs/consistency?from=1&to=99",
    ] {
        let (status, problem) = server.get(path);
        assert_eq!(status, 400, "{path}: {problem}");
        let problem: Value = serde_json::from_str(&problem).unwrap();
        assert_eq!(problem["code"], "invalid_request", "{path}");
    }
    let (status, _) =
        crate::browser::http(&server.address, "GET", "/v1/checkpoint", None, None).unwrap();
    assert_eq!(status, 401, "a token is needed");
}

/// Regression: `export` signed with the default key file in the data
/// directory (making one there) whatever `[keys] checkpoint_key_file`
/// said, so its checkpoint was not the ledger's.
#[tokio::test]
async fn an_export_signs_with_the_checkpoint_key_the_configuration_names() {
    let ledger = ledger_of(5).await;
    let dir = ledger.into_dir();
    let data = dir.path().join("");
    let config = dir.path().join("ledger.toml");
    let key_file = dir.path().join("elsewhere").join("checkpoint.key");
    std::fs::write(
        &config,
        format!(
            "[keys]\ncheckpoint_key_file = {:?}\n",
            key_file.display().to_string()
        ),
    )
    .unwrap();
    let study = dir.path().join("study.key");
    std::fs::write(&study, "a study key").unwrap();
    let out = dir.path().join("out");
    let output = run(&[
        "--config",
        config.to_str().unwrap(),
        "export",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--key-file",
        study.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    assert!(key_file.exists(), "the key is where the configuration says");
    assert!(!dir.path().join("keys").join("checkpoint.key").exists());
    let configured_key = stdout(&run(&[
        "checkpoint-key",
        "--data",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]));
    let package: Value =
        serde_json::from_slice(&std::fs::read(out.join("datapackage.json")).unwrap()).unwrap();
    assert_eq!(
        package["provenance"]["checkpoint"]["verifier_key"].as_str(),
        Some(configured_key.trim())
    );
}

#[tokio::test]
async fn an_export_carries_the_signed_checkpoint_of_its_head() {
    let ledger = ledger_of(25).await;
    let all = hashes(&ledger.ledger);
    let dir = ledger.into_dir();
    let key = dir.path().join("study.key");
    std::fs::write(&key, "a study key").unwrap();
    let out = dir.path().join("out");
    let output = run(&[
        "export",
        "--data",
        dir.path().join("").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--key-file",
        key.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let package: Value =
        serde_json::from_slice(&std::fs::read(out.join("datapackage.json")).unwrap()).unwrap();
    let provenance = &package["provenance"];
    let verifier: rotation_ledger::checkpoint::NoteVerifier =
        provenance["checkpoint"]["verifier_key"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    let checkpoint = verifier
        .open_checkpoint(provenance["checkpoint"]["note"].as_str().unwrap())
        .expect("the export's checkpoint is signed by its key");
    assert_eq!(Some(checkpoint.size), provenance["head_position"].as_u64());
    assert_eq!(checkpoint.size, all.len() as u64);
    assert_eq!(checkpoint.root, merkle_root(&all));
}
