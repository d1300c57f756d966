//! The group's key bucket, `<PREFIX>_KEYS` (contract section 11): every
//! person's data key wrapped under the group key, so that every node opens
//! the profiles the stream carries only sealed. The writer puts each new
//! key before any event sealed under it is answered ([`KeySink`]), and an
//! erasure purges the key, which removes every earlier revision of it, so
//! the bucket's history no longer holds it. Every node watches the bucket
//! ([`watch`]): new keys are installed, purged ones destroyed.
//!
//! The bucket also holds what every node must share for its boards and
//! checkpoints to be the same: the record-key secret
//! (`secret.disclosure`) and the checkpoint signing key
//! (`secret.checkpoint`), each wrapped under the group key and created
//! once by the first node (`create`, so two first nodes agree on one);
//! and `secret.check`, a MAC of a fixed label under the group key, by
//! which a node given another group key refuses to start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::{BoxFuture, try_join_all};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::GroupError;
use super::error::patiently;
use crate::ledger::{KeySink, Ledger};
use crate::nats::{Backoff, Names};
use crate::personal::GroupKey;

/// The key of the group key's check value.
const CHECK: &str = "secret.check";
/// The key of the record-key secret.
const DISCLOSURE: &str = "secret.disclosure";
/// The key of the checkpoint signing key.
const CHECKPOINT: &str = "secret.checkpoint";

/// How long a follower waits for a key the stream's next event needs: the
/// writer puts it before the event's commit is answered, but a bucket
/// replica may lag the stream's by a moment.
const KEY_PATIENCE: Duration = Duration::from_secs(2);

/// The group's key bucket, opened; cheap to clone.
#[derive(Clone)]
pub struct KeyBucket {
    store: kv::Store,
    group_key: Arc<GroupKey>,
}

impl std::fmt::Debug for KeyBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyBucket").finish_non_exhaustive()
    }
}

/// What a key holds in the bucket now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Held {
    /// The key, wrapped under the group key.
    Key(Vec<u8>),
    /// The key was purged: the person was erased.
    Purged,
    /// The bucket has never held it.
    Absent,
}

impl KeyBucket {
    /// Opens the bucket, making it with `replicas` on the first node, and
    /// checks that `group_key` is the group's (the first node to open the
    /// bucket sets the check value).
    pub(super) async fn open(
        js: &jetstream::Context,
        names: &Names,
        replicas: usize,
        group_key: Arc<GroupKey>,
    ) -> Result<Self, GroupError> {
        let bucket = names.stream("KEYS");
        let store = patiently(|| async {
            match js.get_key_value(&bucket).await {
                Ok(store) => Ok(store),
                Err(_) => js
                    .create_key_value(kv::Config {
                        bucket: bucket.clone(),
                        description: "Data keys of the rotation ledger group, wrapped".into(),
                        history: 1,
                        num_replicas: replicas,
                        storage: jetstream::stream::StorageType::File,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| GroupError::nats(format!("open the key bucket {bucket}"), e)),
            }
        })
        .await?;
        let keys = Self { store, group_key };
        patiently(|| keys.check_group_key()).await?;
        Ok(keys)
    }

    /// The check value is created once; every later node compares.
    async fn check_group_key(&self) -> Result<(), GroupError> {
        let mine = self.group_key.check();
        match self
            .store
            .create(CHECK, Bytes::copy_from_slice(&mine))
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                let theirs = self
                    .store
                    .get(CHECK)
                    .await
                    .map_err(|e| GroupError::nats("read the group key's check value", e))?;
                match theirs {
                    Some(theirs) if theirs.as_ref() == mine.as_slice() => Ok(()),
                    _ => Err(GroupError::WrongGroupKey),
                }
            }
            Err(error) => Err(GroupError::nats("store the group key's check value", error)),
        }
    }

    /// What the bucket holds for `person` now.
    pub(super) async fn held(&self, person: Uuid) -> Result<Held, GroupError> {
        let entry = self
            .store
            .entry(person.to_string())
            .await
            .map_err(|e| GroupError::nats(format!("read the data key of {person}"), e))?;
        Ok(match entry {
            None => Held::Absent,
            Some(entry) if entry.operation == kv::Operation::Put => Held::Key(entry.value.to_vec()),
            Some(_) => Held::Purged,
        })
    }

    /// Installs in `ledger` every key `json` (a committed event) needs and
    /// it lacks, waiting briefly for one the bucket does not hold yet. A
    /// purged key means the person was erased later: the event applies
    /// without it, and its profile stays closed here as everywhere.
    pub(super) async fn install_missing(
        &self,
        ledger: &Ledger,
        json: &[u8],
    ) -> Result<(), GroupError> {
        for person in ledger.missing_keys(json) {
            let deadline = tokio::time::Instant::now() + KEY_PATIENCE;
            loop {
                match self.held(person).await? {
                    Held::Key(wrapped) => {
                        self.install(ledger, person, &wrapped);
                        break;
                    }
                    Held::Purged => break,
                    Held::Absent if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Held::Absent => {
                        tracing::warn!(
                            %person,
                            "group: the key bucket holds no data key for this person; \
                             their profiles stay closed on this node"
                        );
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Installs every key the bucket holds, in one pass over its last
    /// entries: before a rebuild, so that replaying a long stream does not
    /// ask the bucket once per person. Returns how many were new here.
    pub(super) async fn install_all(&self, ledger: &Ledger) -> Result<u64, GroupError> {
        let failed = |e: &dyn std::fmt::Display| GroupError::nats("read the key bucket", e);
        let mut stream = self.store.stream.clone();
        if stream.info().await.map_err(|e| failed(&e))?.state.messages == 0 {
            return Ok(0);
        }
        let reader = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
                filter_subject: format!("{}>", self.store.prefix),
                ..Default::default()
            })
            .await
            .map_err(|e| failed(&e))?;
        let mut messages = reader.messages().await.map_err(|e| failed(&e))?;
        let mut installed = 0;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| failed(&e))?;
            let pending = message.info().map_err(|e| failed(&e))?.pending;
            let person = message
                .subject
                .strip_prefix(self.store.prefix.as_str())
                .and_then(|key| key.parse::<Uuid>().ok());
            // A purge marker carries no value: that person was erased.
            if let Some(person) = person.filter(|_| !message.payload.is_empty())
                && ledger
                    .install_key(person, &message.payload, &self.group_key)
                    .unwrap_or(false)
            {
                installed += 1;
            }
            if pending == 0 {
                break;
            }
        }
        Ok(installed)
    }

    /// Puts in the bucket every data key `ledger` holds that the bucket
    /// has never held: the keys of a ledger's own history from before it
    /// joined the group, which no writer's [`KeySink`] ever saw. Only a
    /// ledger holding the whole stream calls it (the writer after its
    /// catch-up; a node whose store is the stream at start), so every
    /// erasure in the log is applied there and every key it holds is a
    /// living person's. Each put expects the key to have no entry at all
    /// (revision 0): a key put by a writer meanwhile is kept, and an
    /// erased person's purge marker is never overwritten. Returns how
    /// many keys were put.
    pub(super) async fn share_held(&self, ledger: &Ledger) -> Result<u64, GroupError> {
        let people = ledger.keyring().people()?;
        if people.is_empty() {
            return Ok(0);
        }
        let held = self.names_held().await?;
        let mut missing: Vec<(Uuid, Vec<u8>)> = Vec::new();
        for person in people.into_iter().filter(|person| !held.contains(person)) {
            if let Some(wrapped) = ledger.export_key(person, &self.group_key)? {
                missing.push((person, wrapped));
            }
        }
        let mut shared = 0;
        for chunk in missing.chunks(SHARE_CHUNK) {
            let puts = chunk.iter().map(|(person, wrapped)| async move {
                match self
                    .store
                    .update(person.to_string(), wrapped.clone().into(), 0)
                    .await
                {
                    Ok(_) => Ok(1),
                    Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(0),
                    Err(error) => Err(GroupError::nats(
                        format!("put the data key of {person} in the key bucket"),
                        error,
                    )),
                }
            });
            shared += try_join_all(puts).await?.into_iter().sum::<u64>();
        }
        if shared > 0 {
            tracing::info!(
                shared,
                "group: put this ledger's data keys the key bucket lacked"
            );
        }
        Ok(shared)
    }

    /// Everyone the bucket holds an entry for, a key or a purge marker, in
    /// one pass over its last entries (headers only).
    async fn names_held(&self) -> Result<std::collections::HashSet<Uuid>, GroupError> {
        let failed = |e: &dyn std::fmt::Display| GroupError::nats("list the key bucket", e);
        let mut held = std::collections::HashSet::new();
        let mut stream = self.store.stream.clone();
        if stream.info().await.map_err(|e| failed(&e))?.state.messages == 0 {
            return Ok(held);
        }
        let reader = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
                filter_subject: format!("{}>", self.store.prefix),
                headers_only: true,
                ..Default::default()
            })
            .await
            .map_err(|e| failed(&e))?;
        let mut messages = reader.messages().await.map_err(|e| failed(&e))?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| failed(&e))?;
            let pending = message.info().map_err(|e| failed(&e))?.pending;
            if let Some(person) = message
                .subject
                .strip_prefix(self.store.prefix.as_str())
                .and_then(|key| key.parse::<Uuid>().ok())
            {
                held.insert(person);
            }
            if pending == 0 {
                break;
            }
        }
        Ok(held)
    }

    /// Installs one key; one that does not unwrap is logged and skipped,
    /// as the profiles it seals stay closed either way.
    fn install(&self, ledger: &Ledger, person: Uuid, wrapped: &[u8]) {
        if let Err(error) = ledger.install_key(person, wrapped, &self.group_key) {
            tracing::error!(%person, %error, "group: a data key from the bucket did not install");
        }
    }

    /// Makes every node's shared secrets the group's, before the node
    /// serves: the first node's files become the group's (`create`); a
    /// later node writes the group's into its files. A node whose files
    /// hold other secrets takes the group's only when `fresh` (its store
    /// is empty or rebuilt, so nothing it holds was made with its own).
    pub(super) async fn adopt_secrets(
        &self,
        files: &SecretFiles,
        fresh: bool,
    ) -> Result<(), GroupError> {
        let record_key = SecretFile {
            what: "the record-key secret",
            key: DISCLOSURE,
            path: &files.record_key,
            make: &|path| {
                crate::record_key::load_or_create(path)
                    .map(|secret| secret.0)
                    .map_err(|e| e.to_string())
            },
        };
        let checkpoint_key = SecretFile {
            what: "the checkpoint signing key",
            key: CHECKPOINT,
            path: &files.checkpoint_key,
            make: &|path| {
                crate::checkpoint::keys::load_or_generate(path, &files.checkpoint_name)
                    .map(|signer| format!("{}\n", signer.to_key_string()).into_bytes())
                    .map_err(|e| e.to_string())
            },
        };
        for secret in [record_key, checkpoint_key] {
            self.adopt(&secret, fresh).await?;
        }
        Ok(())
    }

    async fn adopt(&self, secret: &SecretFile<'_>, fresh: bool) -> Result<(), GroupError> {
        let failed = |message: String| GroupError::Secret {
            what: secret.what,
            path: secret.path.to_owned(),
            message,
        };
        let group = match self.store.get(secret.key).await {
            Ok(Some(wrapped)) => self
                .group_key
                .unwrap_secret(&wrapped)
                .map_err(|e| failed(format!("the group's copy does not open: {e}")))?,
            Ok(None) => {
                // The first node: its own secret (made now if it has none)
                // becomes the group's, unless another node's came first.
                let mine = (secret.make)(secret.path).map_err(failed)?;
                let wrapped = self.group_key.wrap_secret(&mine);
                match self.store.create(secret.key, wrapped.into()).await {
                    Ok(_) => return Ok(()),
                    Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                        return Box::pin(self.adopt(secret, fresh)).await;
                    }
                    Err(error) => {
                        return Err(GroupError::nats(format!("store {}", secret.what), error));
                    }
                }
            }
            Err(error) => return Err(GroupError::nats(format!("read {}", secret.what), error)),
        };
        match std::fs::read(secret.path) {
            Ok(mine) if mine == group.as_slice() => Ok(()),
            Ok(_) if !fresh => Err(GroupError::SecretDiffers {
                what: secret.what,
                path: secret.path.to_owned(),
            }),
            Ok(_) => {
                tracing::warn!(
                    path = %secret.path.display(),
                    "group: {} replaced by the group's (the store was empty or rebuilt)",
                    secret.what
                );
                write_private(secret.path, &group).map_err(|e| failed(e.to_string()))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                write_private(secret.path, &group).map_err(|e| failed(e.to_string()))
            }
            Err(error) => Err(failed(error.to_string())),
        }
    }
}

/// The files of the secrets every node of a group shares, as `serve`
/// finds them from the configuration.
#[derive(Debug, Clone)]
pub struct SecretFiles {
    /// The record-key secret (`[disclosure] record_key_file`, by default
    /// `keys/disclosure.key`).
    pub record_key: PathBuf,
    /// The checkpoint signing key (`[keys] checkpoint_key_file`, by default
    /// `keys/checkpoint.key`).
    pub checkpoint_key: PathBuf,
    /// The name a new checkpoint signing key is given (the checkpoints'
    /// origin), when the first node has none.
    pub checkpoint_name: String,
}

/// One shared secret: its file, its key in the bucket, and how the first
/// node makes it when it has none.
struct SecretFile<'a> {
    what: &'static str,
    key: &'static str,
    path: &'a Path,
    make: &'a dyn Fn(&Path) -> Result<Vec<u8>, String>,
}

/// Writes `bytes` to `path` in one rename, mode 0600, in a directory of
/// mode 0700 if it has to be made.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::DirBuilderExt;
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // `tempfile` creates its files with mode 0600.
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|error| error.error)?;
    std::fs::File::open(dir)?.sync_all()
}

impl KeySink for KeyBucket {
    fn group_key(&self) -> &GroupKey {
        &self.group_key
    }

    fn publish(&self, keys: Vec<(Uuid, Vec<u8>)>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            retried("put a data key in the key bucket", || {
                try_join_all(keys.iter().map(|(person, wrapped)| {
                    self.store.put(person.to_string(), wrapped.clone().into())
                }))
            })
            .await
        })
    }

    fn purge(&self, people: Vec<Uuid>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            retried("purge a data key from the key bucket", || {
                try_join_all(
                    people
                        .iter()
                        .map(|person| self.store.purge(person.to_string())),
                )
            })
            .await
        })
    }
}

/// How many keys [`KeyBucket::share_held`] puts at once.
const SHARE_CHUNK: usize = 256;

/// How long the writer retries a put or purge in the key bucket before it
/// fails the submission: long enough for the bucket's stream to elect a
/// new leader when the server leading it dies (a few seconds), so that a
/// lost server does not fail a lot of submissions. The submissions behind
/// it wait in line meanwhile, which keeps their order.
const SINK_PATIENCE: Duration = Duration::from_secs(15);

/// Runs `attempt` until it succeeds or [`SINK_PATIENCE`] has passed.
async fn retried<T, E, F, Fut>(what: &str, mut attempt: F) -> Result<(), String>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + SINK_PATIENCE;
    let mut pause = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(_) => return Ok(()),
            Err(error) if tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!(%error, "group: cannot {what} yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(error) => return Err(format!("cannot {what}: {error}")),
        }
    }
}

/// Keeps `ledger`'s keys as the bucket's until `stop`: every key put is
/// installed (so profiles open as soon as their events apply), every key
/// purged destroyed (an erasure on the writer). The watch starts over
/// after any interruption, from each key's last entry.
pub(super) async fn watch(ledger: Ledger, keys: KeyBucket, stop: CancellationToken) {
    let mut backoff = Backoff::new();
    loop {
        let watched = match keys.store.watch_all().await {
            Ok(watched) => watched,
            Err(error) => {
                tracing::warn!(%error, "group: cannot watch the key bucket; retrying");
                if backoff.wait(&stop).await {
                    continue;
                }
                return;
            }
        };
        backoff.reset();
        let mut watched = std::pin::pin!(watched.take_until(stop.cancelled()));
        while let Some(entry) = watched.next().await {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    tracing::warn!(%error, "group: the key bucket's watch broke; starting over");
                    break;
                }
            };
            let Ok(person) = entry.key.parse::<Uuid>() else {
                continue;
            };
            match entry.operation {
                kv::Operation::Put => keys.install(&ledger, person, &entry.value),
                // A purge is an erasure on the writer. The key is destroyed
                // when that `person.erased` applies here, moments later, in
                // a rotation of the master key that also removes its stored
                // wrap; destroying it in memory first would leave the apply
                // nothing to rotate away.
                kv::Operation::Delete | kv::Operation::Purge => {
                    tracing::debug!(%person, "group: data key purged on the writer");
                }
            }
        }
        if stop.is_cancelled() || !backoff.wait(&stop).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::prepare::{Preparation, prepare};
    use super::*;
    use crate::ledger::LedgerOptions;
    use crate::nats::group::test_history::{history, person};
    use crate::nats::group::test_server::NatsServer;
    use crate::nats::outbox;

    fn secrets(dir: &Path) -> SecretFiles {
        SecretFiles {
            record_key: dir.join("keys/disclosure.key"),
            checkpoint_key: dir.join("keys/checkpoint.key"),
            checkpoint_name: "kjoin.test".into(),
        }
    }

    /// The people whose registrations `ledger` opens.
    fn opened(ledger: &Ledger) -> Vec<Uuid> {
        let mut people = Vec::new();
        for event in ledger.events(0, 100).expect("the log reads") {
            let data = event.envelope.data().expect("the data reads");
            if crate::personal::profile_of(ledger.keyring(), &event, &data).is_some()
                && let rotation_events::Subject::Person(person) = event.envelope.subject
            {
                people.push(person);
            }
        }
        people
    }

    #[tokio::test]
    async fn a_ledger_made_into_a_group_puts_its_keys_for_the_nodes_that_rebuild() {
        let server = NatsServer::start();
        let js = jetstream::new(async_nats::connect(server.url()).await.expect("connects"));
        let names = Names::new("kjoin")
            .expect("a valid prefix")
            .with_replicas(1);
        let options = LedgerOptions::default();

        // A single ledger seals three profiles and publishes its log, as
        // `serve --nats` does before the ledger is made a group.
        let first = tempfile::tempdir().expect("a temporary directory");
        let single = Ledger::open(first.path(), options.clone()).expect("opens");
        for outcome in single
            .submit(history(Some(json!({"birth_year": 1970, "sex": "female"}))))
            .await
            .expect("answered")
        {
            assert!(outcome.rejection.is_none(), "{:?}", outcome.rejection);
        }
        let drain = CancellationToken::new();
        drain.cancel();
        let published = outbox::run(
            outbox::Feed::Events,
            single.clone(),
            js.clone(),
            Arc::new(names.clone()),
            drain,
        );
        tokio::time::timeout(Duration::from_secs(20), published)
            .await
            .expect("the log is published");
        single.close();

        let shared = tempfile::tempdir().expect("a temporary directory");
        let group_key =
            GroupKey::load(&shared.path().join("group.key"), true).expect("the group key");
        let keys = KeyBucket::open(&js, &names, 1, Arc::new(group_key))
            .await
            .expect("the bucket opens");
        // Person 3 was erased elsewhere: the purge marker must stay.
        keys.purge(vec![person(3)]).await.expect("purged");

        let node = prepare(
            first.path(),
            &options,
            &js,
            &names,
            &keys,
            &secrets(first.path()),
        )
        .await
        .expect("the node with the history prepares");
        assert_eq!(node.preparation, Preparation::Kept { head: 4 });
        for n in [1, 2] {
            assert!(
                matches!(keys.held(person(n)).await.expect("reads"), Held::Key(_)),
                "person {n}'s key is in the bucket"
            );
        }
        assert_eq!(keys.held(person(3)).await.expect("reads"), Held::Purged);
        assert_eq!(
            keys.share_held(&node.ledger).await.expect("shares"),
            0,
            "nothing is put twice"
        );

        // A node joining with an empty directory rebuilds from the stream
        // and opens every profile the bucket holds a key for, at once.
        let second = tempfile::tempdir().expect("a temporary directory");
        let started = std::time::Instant::now();
        let rebuilt = prepare(
            second.path(),
            &options,
            &js,
            &names,
            &keys,
            &secrets(second.path()),
        )
        .await
        .expect("the new node prepares");
        assert_eq!(
            rebuilt.preparation,
            Preparation::Rebuilt {
                events: 4,
                dropped: None
            }
        );
        assert!(
            started.elapsed() < KEY_PATIENCE,
            "no key was waited for: {:?}",
            started.elapsed()
        );
        assert_eq!(opened(&rebuilt.ledger), [person(1), person(2)]);
        assert_eq!(opened(&node.ledger), [person(1), person(2), person(3)]);
        rebuilt.ledger.close();
        node.ledger.close();
    }
}
