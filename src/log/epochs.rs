//! The leader epoch cache: at which offset each leader epoch began in this log, kept in
//! Kafka's `leader-epoch-checkpoint` file (`0`, the entry count, then `epoch startOffset`
//! lines). A replica that returns after a leader change asks the leader where its latest
//! epoch ended (OffsetForLeaderEpoch) and cuts whatever it has beyond that.

use std::io;
use std::path::{Path, PathBuf};

const FILE: &str = "leader-epoch-checkpoint";

#[derive(Debug, Clone)]
pub struct LeaderEpochCache {
    path: PathBuf,
    /// `(epoch, start offset)`, both increasing.
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    /// Loads the checkpoint in `dir` (none, or an unreadable one, is an empty cache).
    pub fn load(dir: &Path) -> LeaderEpochCache {
        let path = dir.join(FILE);
        let entries = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| {
                let mut lines = text.lines();
                let _version = lines.next()?;
                let count: usize = lines.next()?.trim().parse().ok()?;
                let entries: Option<Vec<(i32, i64)>> = lines
                    .take(count)
                    .map(|l| {
                        let (e, o) = l.trim().split_once(' ')?;
                        Some((e.parse().ok()?, o.parse().ok()?))
                    })
                    .collect();
                entries.filter(|e| e.len() == count)
            })
            .unwrap_or_default();
        LeaderEpochCache { path, entries }
    }

    fn store(&self) -> io::Result<()> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            text.push_str(&format!("{e} {o}\n"));
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }

    /// The oldest epoch this log holds and where it began.
    pub fn first(&self) -> Option<(i32, i64)> {
        self.entries.first().copied()
    }

    pub fn entries(&self) -> Vec<(i32, i64)> {
        self.entries.clone()
    }

    /// The newest epoch and where it began.
    pub fn latest(&self) -> Option<(i32, i64)> {
        self.entries.last().copied()
    }

    /// Records that `epoch` begins at `start` (a newer epoch than any known; older or equal
    /// ones are ignored).
    pub fn assign(&mut self, epoch: i32, start: i64) -> io::Result<()> {
        if self.latest().is_some_and(|(e, _)| e >= epoch) {
            return Ok(());
        }
        self.entries.push((epoch, start));
        self.store()
    }

    /// Kafka's `endOffsetFor`: the largest epoch at most `epoch` and the offset where it
    /// ended (the start of the next epoch, or `log_end` for the newest); `(-1, -1)` when the
    /// log knows no such epoch.
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> (i32, i64) {
        match self.entries.iter().rposition(|(e, _)| *e <= epoch) {
            None => (-1, -1),
            Some(i) => {
                let end = self.entries.get(i + 1).map_or(log_end, |(_, start)| *start);
                (self.entries[i].0, end)
            }
        }
    }

    /// Forgets the epochs that began at or after `end` (the log was truncated there).
    pub fn truncate_from_end(&mut self, end: i64) -> io::Result<()> {
        let before = self.entries.len();
        self.entries.retain(|(_, start)| *start < end);
        if self.entries.len() != before {
            self.store()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafkas_rules_and_survive_reloading() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::load(dir.path());
        assert_eq!(c.end_offset_for(0, 10), (-1, -1));
        c.assign(0, 0).unwrap();
        c.assign(2, 50).unwrap();
        c.assign(1, 40).unwrap(); // older than the newest: ignored
        c.assign(5, 80).unwrap();
        assert_eq!(c.end_offset_for(0, 100), (0, 50));
        assert_eq!(c.end_offset_for(1, 100), (0, 50), "epoch 1 never led: the one before it");
        assert_eq!(c.end_offset_for(4, 100), (2, 80));
        assert_eq!(c.end_offset_for(9, 100), (5, 100));
        let reloaded = LeaderEpochCache::load(dir.path());
        assert_eq!(reloaded.entries, vec![(0, 0), (2, 50), (5, 80)]);
        c.truncate_from_end(60).unwrap();
        assert_eq!(LeaderEpochCache::load(dir.path()).latest(), Some((2, 50)));
    }
}
