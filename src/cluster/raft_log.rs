//! The Raft log of the cluster metadata on disk, for openraft (branch work for issue 14).
//!
//! `raft.log` holds entries as frames (`u32 length | u32 CRC-32C | JSON entry`), appended and
//! fdatasynced before openraft is told they are durable; a torn tail is cut at open. The vote
//! and the purge point live in small files replaced atomically (write, fsync, rename). All
//! entries stay in memory too: the metadata log is small and bounded by snapshots.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Cursor, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::metadata_log::MetadataRecord;

/// Records committed together (a topic and its partitions, say): an entry of the Raft log.
pub type MetadataBatch = Vec<MetadataRecord>;

openraft::declare_raft_types!(
    /// The metadata quorum's types: entries carry batches of metadata records; a node is its
    /// id and its controller address.
    pub MetadataRaft: D = MetadataBatch, R = ()
);

pub type NodeId = u64;
pub type Entry = openraft::Entry<MetadataRaft>;
pub type LogId = openraft::LogId<NodeId>;
type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;

const FRAME_HEADER: usize = 8;

/// The log store; clones share one log (openraft asks for a separate reader).
#[derive(Clone)]
pub struct RaftLog {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    dir: PathBuf,
    file: File,
    /// Entries by index, with the byte position of each frame in `raft.log`.
    entries: BTreeMap<u64, (u64, Entry)>,
    end: u64,
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

pub(super) fn io_err(e: &io::Error) -> StorageError {
    StorageIOError::write_logs(e).into()
}

impl RaftLog {
    /// Opens (or creates) the log in `dir`, cutting a torn tail.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("raft.log");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let purged: Option<LogId> = read_json(&dir.join("raft.purged"))?;
        let mut entries = BTreeMap::new();
        let mut pos = 0usize;
        while let Some((entry, len)) = decode_frame::<Entry>(&bytes[pos..]) {
            // a rewrite after a purge may have been cut short: entries at or below it are gone
            if purged.is_none_or(|p| entry.log_id.index > p.index) {
                entries.insert(entry.log_id.index, (pos as u64, entry));
            }
            pos += len;
        }
        let file = OpenOptions::new().create(true).read(true).write(true).truncate(false).open(&path)?;
        if pos < bytes.len() {
            tracing::warn!(path = %path.display(), truncated_bytes = bytes.len() - pos, "raft log had a damaged tail; truncating");
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        Ok(RaftLog {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                file,
                entries,
                end: pos as u64,
                vote: read_json(&dir.join("raft.vote"))?,
                committed: read_json(&dir.join("raft.committed"))?,
                purged,
            })),
        })
    }
}

impl RaftLogReader<MetadataRaft> for RaftLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.inner.lock().entries.range(range).map(|(_, (_, e))| e.clone()).collect())
    }
}

impl RaftLogStorage<MetadataRaft> for RaftLog {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<MetadataRaft>, StorageError> {
        let i = self.inner.lock();
        let last = i.entries.values().next_back().map(|(_, e)| e.log_id).or(i.purged);
        Ok(LogState { last_purged_log_id: i.purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut i = self.inner.lock();
        write_json(&i.dir.join("raft.vote"), vote).map_err(|e| StorageIOError::write_vote(&e))?;
        i.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.inner.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut i = self.inner.lock();
        write_json(&i.dir.join("raft.committed"), &committed).map_err(|e| io_err(&e))?;
        i.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.inner.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<MetadataRaft>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
    {
        match self.write_entries(entries) {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = io_err(&e);
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    /// Removes the entries from `log_id` on (a new leader overwrote them).
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut i = self.inner.lock();
        let cut = i.entries.split_off(&log_id.index);
        if let Some((pos, _)) = cut.values().next() {
            let pos = *pos;
            i.file.set_len(pos).and_then(|()| i.file.sync_all()).map_err(|e| io_err(&e))?;
            i.end = pos;
        }
        Ok(())
    }

    /// Forgets the entries up to `log_id` (a snapshot covers them); the file is rewritten
    /// without them once they are most of it.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut i = self.inner.lock();
        write_json(&i.dir.join("raft.purged"), &Some(log_id)).map_err(|e| io_err(&e))?;
        i.purged = Some(log_id);
        let kept = i.entries.split_off(&(log_id.index + 1));
        i.entries = kept;
        let live = i.entries.values().next().map_or(i.end, |(pos, _)| i.end - pos);
        if live * 2 < i.end {
            rewrite(&mut i).map_err(|e| io_err(&e))?;
        }
        Ok(())
    }
}

impl RaftLog {
    /// Appends entries and fdatasyncs them; on failure nothing is recorded as held.
    fn write_entries(&self, entries: impl IntoIterator<Item = Entry>) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut i = self.inner.lock();
        let mut buf = Vec::new();
        let mut added = Vec::new();
        for e in entries {
            let at = i.end + buf.len() as u64;
            encode_frame(&e, &mut buf)?;
            added.push((at, e));
        }
        i.file.write_all_at(&buf, i.end)?;
        i.file.sync_data()?;
        i.end += buf.len() as u64;
        for (at, e) in added {
            i.entries.insert(e.log_id.index, (at, e));
        }
        Ok(())
    }
}

/// Rewrites `raft.log` with only the entries still held (temp file, fsync, rename).
fn rewrite(i: &mut Inner) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut positions = Vec::new();
    for (index, (_, e)) in &i.entries {
        positions.push((*index, buf.len() as u64));
        encode_frame(e, &mut buf)?;
    }
    let tmp = i.dir.join("raft.log.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&buf)?;
    f.sync_all()?;
    std::fs::rename(&tmp, i.dir.join("raft.log"))?;
    crate::log::sync_dir(&i.dir)?;
    i.file = OpenOptions::new().read(true).write(true).open(i.dir.join("raft.log"))?;
    i.end = buf.len() as u64;
    for (index, pos) in positions {
        if let Some(slot) = i.entries.get_mut(&index) {
            slot.0 = pos;
        }
    }
    Ok(())
}

fn encode_frame<T: Serialize>(value: &T, out: &mut Vec<u8>) -> io::Result<()> {
    let payload = serde_json::to_vec(value).map_err(io::Error::other)?;
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// One frame's value and length; `None` at the end or at a damaged frame.
fn decode_frame<T: DeserializeOwned>(b: &[u8]) -> Option<(T, usize)> {
    let len = u32::from_be_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
    let payload = b.get(FRAME_HEADER..FRAME_HEADER + len)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    Some((serde_json::from_slice(payload).ok()?, FRAME_HEADER + len))
}

pub(super) fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub(super) fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(value).map_err(io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        crate::log::sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use openraft::storage::{RaftStateMachine, Snapshot};
    use openraft::testing::{blank_ent, log_id, StoreBuilder, Suite};
    use openraft::{BasicNode, EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StoredMembership};

    use super::*;

    /// The smallest state machine openraft's storage suite accepts.
    #[derive(Default, Clone)]
    struct Machine(Arc<Mutex<MachineState>>);

    #[derive(Default)]
    struct MachineState {
        applied: Option<LogId>,
        membership: StoredMembership<u64, BasicNode>,
        snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    }

    impl RaftSnapshotBuilder<MetadataRaft> for Machine {
        async fn build_snapshot(&mut self) -> Result<Snapshot<MetadataRaft>, StorageError> {
            let mut m = self.0.lock();
            let meta = SnapshotMeta {
                last_log_id: m.applied,
                last_membership: m.membership.clone(),
                snapshot_id: format!("{:?}", m.applied),
            };
            m.snapshot = Some((meta.clone(), Vec::new()));
            Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(Vec::new())) })
        }
    }

    impl RaftStateMachine<MetadataRaft> for Machine {
        type SnapshotBuilder = Self;
        async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership<u64, BasicNode>), StorageError> {
            let m = self.0.lock();
            Ok((m.applied, m.membership.clone()))
        }
        async fn apply<I: IntoIterator<Item = Entry> + Send>(&mut self, entries: I) -> Result<Vec<()>, StorageError> {
            let mut m = self.0.lock();
            let mut out = Vec::new();
            for e in entries {
                m.applied = Some(e.log_id);
                if let EntryPayload::Membership(ms) = e.payload {
                    m.membership = StoredMembership::new(Some(e.log_id), ms);
                }
                out.push(());
            }
            Ok(out)
        }
        async fn get_snapshot_builder(&mut self) -> Self {
            self.clone()
        }
        async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
            Ok(Box::new(Cursor::new(Vec::new())))
        }
        async fn install_snapshot(
            &mut self,
            meta: &SnapshotMeta<u64, BasicNode>,
            _snapshot: Box<Cursor<Vec<u8>>>,
        ) -> Result<(), StorageError> {
            let mut m = self.0.lock();
            m.applied = meta.last_log_id;
            m.membership = meta.last_membership.clone();
            m.snapshot = Some((meta.clone(), Vec::new()));
            Ok(())
        }
        async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<MetadataRaft>>, StorageError> {
            let m = self.0.lock();
            Ok(m.snapshot.clone().map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
        }
    }

    struct Builder;

    impl StoreBuilder<MetadataRaft, RaftLog, Machine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, RaftLog, Machine), StorageError> {
            let dir = tempfile::tempdir().map_err(|e| io_err(&e))?;
            let log = RaftLog::open(dir.path()).map_err(|e| io_err(&e))?;
            Ok((dir, log, Machine::default()))
        }
    }

    #[test]
    fn passes_openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }

    fn entry(term: u64, index: u64, block_end: i64) -> Entry {
        Entry {
            log_id: log_id(term, 1, index),
            payload: EntryPayload::Normal(vec![MetadataRecord::ProducerIds { block_end }]),
        }
    }

    #[tokio::test]
    async fn entries_vote_truncation_and_purge_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RaftLog::open(dir.path()).unwrap();
        log.write_entries([blank_ent::<MetadataRaft>(1, 1, 0), entry(1, 1, 1), entry(1, 2, 2), entry(1, 3, 3)])
            .unwrap();
        log.save_vote(&openraft::Vote::new(2, 1)).await.unwrap();
        log.truncate(log_id(1, 1, 3)).await.unwrap();
        log.write_entries([entry(2, 3, 33)]).unwrap();
        drop(log);

        let mut log = RaftLog::open(dir.path()).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(openraft::Vote::new(2, 1)));
        let got = log.try_get_log_entries(0..).await.unwrap();
        let ids: Vec<(u64, u64)> = got.iter().map(|e| (e.log_id.leader_id.term, e.log_id.index)).collect();
        assert_eq!(ids, [(1, 0), (1, 1), (1, 2), (2, 3)], "the truncated entry was replaced");

        log.purge(log_id(1, 1, 2)).await.unwrap();
        log.write_entries([entry(2, 4, 4)]).unwrap();
        drop(log);
        // a torn frame at the end is cut
        let path = dir.path().join("raft.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0, 0, 0, 40, 1, 2, 3]);
        std::fs::write(&path, &bytes).unwrap();

        let mut log = RaftLog::open(dir.path()).unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
        assert_eq!(state.last_log_id, Some(log_id(2, 1, 4)));
        let got = log.try_get_log_entries(0..).await.unwrap();
        assert_eq!(got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(std::fs::read(&path).unwrap().len(), bytes.len() - 7);
    }
}
