//! The metadata quorum's state machine for openraft: committed records applied to the
//! [`MetadataImage`]. A snapshot is the image as the records that rebuild it
//! ([`MetadataImage::to_records`]), kept in `raft.snapshot` so that a restart starts from it
//! and openraft re-applies only the committed entries after it. The last applied entries are
//! also kept in memory for observers (brokers that are not voters), which take them, or the
//! image when they are further behind, with [`MetadataState::changes_since`].

use std::collections::VecDeque;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{BasicNode, EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::metadata_log::{MetadataImage, MetadataRecord};
use super::raft_log::{read_json, write_json, Entry, LogId, MetadataRaft, NodeId, StorageError};

type Meta = SnapshotMeta<NodeId, BasicNode>;
type Membership = StoredMembership<NodeId, BasicNode>;

/// How many applied entries are kept for observers; one further behind takes the image.
const KEPT_FOR_OBSERVERS: usize = 4096;

/// What an observer applied up to `after` lacks: the entries after it, or the whole image
/// when they are no longer kept.
#[derive(Serialize, Deserialize)]
pub enum MetadataChanges {
    Entries(Vec<Entry>),
    Image { meta: Meta, data: Vec<u8> },
}

/// A snapshot as stored: its metadata and the JSON of the records that rebuild the image.
#[derive(Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: Meta,
    data: Vec<u8>,
}

/// The state machine; clones share it (openraft asks for a separate snapshot builder).
#[derive(Clone)]
pub struct MetadataState {
    /// What the broker reads: the image of every committed record applied so far.
    pub image: Arc<RwLock<MetadataImage>>,
    inner: Arc<Mutex<Inner>>,
    /// The index of the last entry applied (or installed with a snapshot), for those who wait
    /// for a change to reach the image.
    applied_index: Arc<tokio::sync::watch::Sender<u64>>,
}

struct Inner {
    path: PathBuf,
    applied: Option<LogId>,
    membership: Membership,
    snapshot: Option<StoredSnapshot>,
    built: u64,
    /// The last entries applied, without a gap, for observers.
    recent: VecDeque<Entry>,
}

impl MetadataState {
    /// Opens the state in `dir`, starting from the stored snapshot if there is one.
    pub fn open(dir: &Path) -> std::io::Result<MetadataState> {
        let path = dir.join("raft.snapshot");
        let snapshot: Option<StoredSnapshot> = read_json(&path)?;
        let mut image = MetadataImage::default();
        let (mut applied, mut membership) = (None, Membership::default());
        if let Some(s) = &snapshot {
            for r in decode_records(&s.data)? {
                image.apply(&r);
            }
            applied = s.meta.last_log_id;
            membership = s.meta.last_membership.clone();
        }
        let index = applied.map_or(0, |l| l.index);
        Ok(MetadataState {
            image: Arc::new(RwLock::new(image)),
            inner: Arc::new(Mutex::new(Inner {
                path,
                applied,
                membership,
                snapshot,
                built: 0,
                recent: VecDeque::new(),
            })),
            applied_index: Arc::new(tokio::sync::watch::channel(index).0),
        })
    }

    /// Watches the index of the last applied entry.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied_index.subscribe()
    }

    /// The index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        *self.applied_index.borrow()
    }

    /// What an observer that applied up to `after` lacks (nothing when it is up to date).
    pub fn changes_since(&self, after: u64) -> std::io::Result<MetadataChanges> {
        let i = self.inner.lock();
        let applied = i.applied.map_or(0, |l| l.index);
        let kept_from = i.recent.front().map_or(applied + 1, |e| e.log_id.index);
        if after >= applied || after + 1 >= kept_from {
            let entries = i.recent.iter().filter(|e| e.log_id.index > after).cloned().collect();
            return Ok(MetadataChanges::Entries(entries));
        }
        let data = serde_json::to_vec(&self.image.read().to_records()).map_err(std::io::Error::other)?;
        let meta = Meta {
            last_log_id: i.applied,
            last_membership: i.membership.clone(),
            snapshot_id: format!("observer-{applied}"),
        };
        Ok(MetadataChanges::Image { meta, data })
    }

    /// Applies what [`MetadataState::changes_since`] gave (on an observer).
    pub async fn take(&mut self, changes: MetadataChanges) -> std::io::Result<()> {
        match changes {
            MetadataChanges::Entries(entries) => {
                let after = self.applied_index();
                let fresh: Vec<Entry> = entries.into_iter().filter(|e| e.log_id.index > after).collect();
                if fresh.first().is_some_and(|e| e.log_id.index != after + 1) {
                    return Err(std::io::Error::other("metadata entries with a gap"));
                }
                self.apply(fresh).await.map(|_| ()).map_err(std::io::Error::other)
            }
            MetadataChanges::Image { meta, data } => self.install(&meta, data),
        }
    }

    fn note_applied(&self, applied: Option<LogId>) {
        let index = applied.map_or(0, |l| l.index);
        self.applied_index.send_if_modified(|i| std::mem::replace(i, index) != index);
    }

    fn install(&self, meta: &Meta, data: Vec<u8>) -> std::io::Result<()> {
        let mut image = MetadataImage::default();
        for r in decode_records(&data)? {
            image.apply(&r);
        }
        let stored = StoredSnapshot { meta: meta.clone(), data };
        let mut i = self.inner.lock();
        write_json(&i.path, &stored)?;
        *self.image.write() = image;
        i.applied = meta.last_log_id;
        i.membership = meta.last_membership.clone();
        i.snapshot = Some(stored);
        i.recent.clear();
        drop(i);
        self.note_applied(meta.last_log_id);
        Ok(())
    }
}

fn decode_records(data: &[u8]) -> std::io::Result<Vec<MetadataRecord>> {
    serde_json::from_slice(data).map_err(std::io::Error::other)
}

impl RaftSnapshotBuilder<MetadataRaft> for MetadataState {
    async fn build_snapshot(&mut self) -> Result<Snapshot<MetadataRaft>, StorageError> {
        let data = serde_json::to_vec(&self.image.read().to_records())
            .map_err(|e| StorageIOError::write_snapshot(None, &std::io::Error::other(e)))?;
        let mut i = self.inner.lock();
        i.built += 1;
        let meta = Meta {
            last_log_id: i.applied,
            last_membership: i.membership.clone(),
            snapshot_id: format!("{}-{}", i.applied.map_or(0, |l| l.index), i.built),
        };
        let stored = StoredSnapshot { meta: meta.clone(), data: data.clone() };
        write_json(&i.path, &stored).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        i.snapshot = Some(stored);
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<MetadataRaft> for MetadataState {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        let i = self.inner.lock();
        Ok((i.applied, i.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
    {
        let mut i = self.inner.lock();
        let mut image = self.image.write();
        let mut out = Vec::new();
        for e in entries {
            i.applied = Some(e.log_id);
            match &e.payload {
                EntryPayload::Normal(batch) => batch.iter().for_each(|r| image.apply(r)),
                EntryPayload::Membership(m) => i.membership = Membership::new(Some(e.log_id), m.clone()),
                EntryPayload::Blank => {}
            }
            if i.recent.len() == KEPT_FOR_OBSERVERS {
                i.recent.pop_front();
            }
            i.recent.push_back(e);
            out.push(());
        }
        let applied = i.applied;
        drop((image, i));
        self.note_applied(applied);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), StorageError> {
        self.install(meta, snapshot.into_inner()).map_err(|e| StorageIOError::write_snapshot(None, &e).into())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<MetadataRaft>>, StorageError> {
        let i = self.inner.lock();
        Ok(i.snapshot.clone().map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::super::raft_log::{io_err, RaftLog};
    use super::*;

    struct Builder;

    impl StoreBuilder<MetadataRaft, RaftLog, MetadataState, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, RaftLog, MetadataState), StorageError> {
            let dir = tempfile::tempdir().map_err(|e| io_err(&e))?;
            let log = RaftLog::open(dir.path()).map_err(|e| io_err(&e))?;
            let state = MetadataState::open(dir.path()).map_err(|e| io_err(&e))?;
            Ok((dir, log, state))
        }
    }

    #[test]
    fn log_and_state_pass_openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }

    fn create_topic(index: u64, name: &str) -> Entry {
        let create = MetadataRecord::CreateTopic {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            partitions: 1,
            configs: Default::default(),
            replicas: vec![],
        };
        Entry { log_id: openraft::testing::log_id(1, 1, index), payload: EntryPayload::Normal(vec![create]) }
    }

    #[tokio::test]
    async fn an_observer_takes_the_entries_it_lacks_or_the_image() {
        let (voter_dir, observer_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut voter = MetadataState::open(voter_dir.path()).unwrap();
        let mut observer = MetadataState::open(observer_dir.path()).unwrap();
        voter.apply([create_topic(1, "a"), create_topic(2, "b")]).await.unwrap();
        // up to date: nothing; behind: the entries after what it applied
        assert!(matches!(voter.changes_since(2).unwrap(), MetadataChanges::Entries(e) if e.is_empty()));
        let changes = voter.changes_since(observer.applied_index()).unwrap();
        assert!(matches!(&changes, MetadataChanges::Entries(e) if e.len() == 2));
        observer.take(changes).await.unwrap();
        assert_eq!(observer.applied_index(), 2);
        assert!(observer.image.read().topics.contains_key("b"));
        // entries the voter no longer keeps (it installed a snapshot): the whole image
        let snapshot = voter.build_snapshot().await.unwrap();
        voter.install_snapshot(&snapshot.meta, snapshot.snapshot).await.unwrap();
        voter.apply([create_topic(3, "c")]).await.unwrap();
        let (late_dir, fresh_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut late = MetadataState::open(late_dir.path()).unwrap();
        late.take(voter.changes_since(0).unwrap()).await.unwrap();
        assert!(matches!(voter.changes_since(0).unwrap(), MetadataChanges::Image { .. }));
        assert_eq!(late.applied_index(), 3);
        assert_eq!(late.image.read().topics.len(), 3);
        // the observer that had 1..=2 takes entry 3 alone
        observer.take(voter.changes_since(2).unwrap()).await.unwrap();
        assert_eq!(observer.image.read().topics.len(), 3);
        // entries with a gap are refused
        let mut fresh = MetadataState::open(fresh_dir.path()).unwrap();
        assert!(fresh.take(MetadataChanges::Entries(vec![create_topic(3, "c")])).await.is_err());
    }

    #[tokio::test]
    async fn a_snapshot_survives_reopening_and_rebuilds_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = MetadataState::open(dir.path()).unwrap();
        let id = uuid::Uuid::new_v4();
        let create = MetadataRecord::CreateTopic {
            name: "t".into(),
            id,
            partitions: 3,
            configs: Default::default(),
            replicas: vec![],
        };
        let entry = Entry { log_id: openraft::testing::log_id(1, 1, 1), payload: EntryPayload::Normal(vec![create]) };
        state.apply([entry]).await.unwrap();
        let built = state.build_snapshot().await.unwrap();
        assert_eq!(built.meta.last_log_id, Some(openraft::testing::log_id(1, 1, 1)));
        drop(state);
        let mut state = MetadataState::open(dir.path()).unwrap();
        assert_eq!(state.image.read().topics["t"].partitions, 3);
        let (applied, _) = state.applied_state().await.unwrap();
        assert_eq!(applied, Some(openraft::testing::log_id(1, 1, 1)));
    }
}
