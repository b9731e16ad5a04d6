//! The metadata quorum's state machine for openraft (branch work for issue 14): committed
//! records applied to the [`MetadataImage`]. A snapshot is the image as the records that
//! rebuild it ([`MetadataImage::to_records`]), kept in `raft.snapshot` so that a restart
//! starts from it and openraft re-applies only the committed entries after it.

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
            inner: Arc::new(Mutex::new(Inner { path, applied, membership, snapshot, built: 0 })),
            applied_index: Arc::new(tokio::sync::watch::channel(index).0),
        })
    }

    /// Watches the index of the last applied entry.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied_index.subscribe()
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
            match e.payload {
                EntryPayload::Normal(batch) => batch.iter().for_each(|r| image.apply(r)),
                EntryPayload::Membership(m) => i.membership = Membership::new(Some(e.log_id), m),
                EntryPayload::Blank => {}
            }
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
