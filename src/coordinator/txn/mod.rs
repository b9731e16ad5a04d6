//! The transaction coordinator: one state machine per `transactional.id` (Kafka's
//! `TransactionCoordinator` with transaction version 1 semantics).
//!
//! Every state change is a record in the compacted topic `__transaction_state` (Kafka's
//! formats, see [`records`]) in partition `abs(hashCode(id)) % transaction.state.log.num.partitions`,
//! made durable before the client hears back. Ending a transaction writes `PrepareCommit` /
//! `PrepareAbort`, then a commit or abort marker to every partition of the transaction, then
//! `CompleteCommit` / `CompleteAbort`. A restart replays the topic; transactions found in a
//! prepare state are completed by the timer, open ones carry on (or time out).

pub mod markers;
pub mod records;
pub mod verification;

use std::collections::BTreeSet;
use std::sync::Arc;

use dashmap::DashMap;
use thiserror::Error;
use tokio::sync::Mutex;
use tokio::time::Duration;

use super::group::records::partition_for;
use super::{encode_batch, ensure_internal_topic, replay_partitions, CoordinatorRecord, InternalTopic, Ownership};
use crate::broker::{now_ms, Broker};
use crate::log::LogError;
use crate::partition::Partition;
use markers::Marker;

pub const TXN_TOPIC: &str = "__transaction_state";

/// Kafka's `TransactionState` values, as stored in `__transaction_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnState {
    pub fn from_i8(v: i8) -> Option<TxnState> {
        use TxnState::*;
        [Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort, Dead, PrepareEpochFence]
            .into_iter()
            .find(|s| *s as i8 == v)
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        (0..8).filter_map(TxnState::from_i8).find(|s| s.name() == name)
    }

    fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence)
    }
}

/// A transactional id's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub id: String,
    pub producer_id: i64,
    /// The producer id before the epoch ran out and a new id was handed out.
    pub prev_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last InitProducerId bump (in memory: recognises its retry).
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open transaction started (-1 when none is open).
    pub start_ms: i64,
    pub last_update_ms: i64,
}

/// Why a transactional request was refused; handlers map these to Kafka's codes.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum TxnError {
    /// `INVALID_TRANSACTION_TIMEOUT`
    #[error("the transaction timeout is larger than transaction.max.timeout.ms or not positive")]
    InvalidTimeout,
    /// `INVALID_PRODUCER_ID_MAPPING`
    #[error("the producer id is not the one of this transactional id")]
    ProducerIdMapping,
    /// `PRODUCER_FENCED` (`INVALID_PRODUCER_EPOCH` for older request versions)
    #[error("there is a newer producer with the same transactional id")]
    Fenced,
    /// `CONCURRENT_TRANSACTIONS`
    #[error("the previous transaction is still being completed")]
    Concurrent,
    /// `INVALID_TXN_STATE`
    #[error("the request is not valid in the transaction's current state")]
    InvalidState,
    /// `TRANSACTIONAL_ID_NOT_FOUND`
    #[error("unknown transactional id")]
    NotFound,
    /// `COORDINATOR_NOT_AVAILABLE`: the state could not be written.
    #[error("the transaction state could not be stored")]
    NotAvailable,
    /// `NOT_COORDINATOR`: another broker leads the id's `__transaction_state` partition.
    #[error("this broker is not the transaction coordinator of the id")]
    NotCoordinator,
    /// `COORDINATOR_LOAD_IN_PROGRESS`: this broker has just come to lead the id's partition.
    #[error("the transaction coordinator is loading the id's partition")]
    LoadInProgress,
}

pub type TxnHandle = Arc<Mutex<TxnMetadata>>;

#[derive(Default)]
pub struct TxnCoordinator {
    txns: DashMap<String, TxnHandle>,
    /// Producer id → transactional id, for checking transactional produce requests.
    by_producer: DashMap<i64, String>,
    /// The `__transaction_state` partitions whose transactions are loaded here.
    loaded: Ownership,
    topic_lock: Mutex<()>,
}

impl TxnCoordinator {
    /// Creates `__transaction_state` on first use, as Kafka does.
    pub async fn ensure_topic(&self, broker: &Broker) -> Result<(), TxnError> {
        let topic = InternalTopic {
            name: TXN_TOPIC,
            partitions_key: "transaction.state.log.num.partitions",
            segment_bytes_key: "transaction.state.log.segment.bytes",
            replication_factor_key: "transaction.state.log.replication.factor",
        };
        ensure_internal_topic(broker, &topic, &self.topic_lock).await.map_err(|e| {
            tracing::error!(error = %e, "cannot create {TXN_TOPIC}");
            TxnError::NotAvailable
        })
    }

    /// Whether this broker coordinates transactional id `id`: it leads and has loaded the
    /// id's `__transaction_state` partition.
    pub fn ownership(&self, broker: &Broker, id: &str) -> Result<(), TxnError> {
        self.loaded.check(broker, TXN_TOPIC, id).map(|_| ()).map_err(|code| match code {
            kafka_protocol::ResponseError::NotCoordinator => TxnError::NotCoordinator,
            kafka_protocol::ResponseError::CoordinatorLoadInProgress => TxnError::LoadInProgress,
            _ => TxnError::NotAvailable,
        })
    }

    /// Becoming the leader of `__transaction_state` partition `index`: its transactions are
    /// loaded from its log; those left prepared are completed by the timer.
    pub fn take_over(&self, broker: &Broker, index: i32) -> Result<usize, LogError> {
        self.resign(broker, index);
        let Some(p) = broker.partition(TXN_TOPIC, index) else { return Ok(0) };
        let records = self.load_from(&[p])?;
        self.loaded.loaded([index]);
        Ok(records)
    }

    /// No longer the leader of `__transaction_state` partition `index`: its transactions go
    /// to their new coordinator.
    pub fn resign(&self, broker: &Broker, index: i32) {
        self.loaded.unloaded(index);
        let n = broker.topic(TXN_TOPIC).map_or(1, |t| t.partition_count);
        self.txns.retain(|id, _| partition_for(id, n) != index);
        self.by_producer.retain(|_, id| partition_for(id, n) != index);
    }

    pub fn get(&self, id: &str) -> Option<TxnHandle> {
        self.txns.get(id).map(|t| t.clone())
    }

    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.txns.iter().map(|e| e.key().clone()).collect();
        ids.sort();
        ids
    }

    /// Writes `meta` to `__transaction_state` and waits for it to be durable.
    async fn persist(&self, broker: &Broker, meta: &TxnMetadata) -> Result<(), TxnError> {
        let record = (records::encode_key(&meta.id), Some(records::encode_value(meta)));
        self.write(broker, &meta.id, vec![record]).await
    }

    async fn write(&self, broker: &Broker, id: &str, records: Vec<CoordinatorRecord>) -> Result<(), TxnError> {
        self.ensure_topic(broker).await?;
        let result = async {
            let topic = broker.topic(TXN_TOPIC).ok_or(LogError::Offline)?;
            let n = topic.partition_count;
            let partition = topic.partition(partition_for(id, n)).ok_or(LogError::Offline)?;
            super::append_durably(partition, &encode_batch(records, None)?).await.map(|_| ())
        }
        .await;
        result.map_err(|e| {
            tracing::error!(transactional_id = %id, error = %e, "cannot write transaction state");
            TxnError::NotAvailable
        })
    }

    /// InitProducerId with a transactional id: a new producer id, or the existing one with a
    /// bumped epoch, which fences every older producer of the id. An open transaction of the
    /// old producer is aborted first. `expected` (KIP-360) is the caller's current id and
    /// epoch when it is re-initialising after an error.
    pub async fn init_producer_id(
        &self,
        broker: &Broker,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnError> {
        let max = broker.config_i64("transaction.max.timeout.ms");
        if timeout_ms <= 0 || i64::from(timeout_ms) > max {
            return Err(TxnError::InvalidTimeout);
        }
        self.ensure_topic(broker).await?;
        self.ownership(broker, id)?;
        let handle = match self.get(id) {
            Some(h) => h,
            None => {
                let producer_id = broker.allocate_producer_id().await.map_err(|_| TxnError::NotAvailable)?;
                let meta = TxnMetadata {
                    id: id.to_string(),
                    producer_id,
                    prev_producer_id: -1,
                    producer_epoch: -1,
                    last_producer_epoch: -1,
                    timeout_ms,
                    state: TxnState::Empty,
                    partitions: BTreeSet::new(),
                    start_ms: -1,
                    last_update_ms: now_ms(),
                };
                self.txns.entry(id.to_string()).or_insert_with(|| Arc::new(Mutex::new(meta))).clone()
            }
        };
        let mut meta = handle.lock().await;
        if let Some((pid, epoch)) = expected {
            let current = meta.producer_id == pid && meta.producer_epoch == epoch;
            let retried = meta.producer_id == pid && meta.last_producer_epoch == epoch && meta.state == TxnState::Empty;
            if retried {
                return Ok((meta.producer_id, meta.producer_epoch));
            }
            if !current && meta.prev_producer_id != pid {
                return Err(TxnError::Fenced);
            }
        }
        if meta.state.is_prepare() {
            self.complete(broker, &mut meta).await?;
        }
        if meta.state == TxnState::Ongoing {
            // fence the old producer: its transaction is aborted under a newer epoch
            self.bump_epoch(broker, &mut meta).await?;
            self.end(broker, &mut meta, false).await?;
        }
        let before = meta.clone();
        self.bump_epoch(broker, &mut meta).await?;
        meta.last_producer_epoch = before.producer_epoch;
        meta.timeout_ms = timeout_ms;
        meta.state = TxnState::Empty;
        meta.partitions.clear();
        meta.start_ms = -1;
        meta.last_update_ms = now_ms();
        if let Err(e) = self.persist(broker, &meta).await {
            *meta = before;
            return Err(e);
        }
        Ok((meta.producer_id, meta.producer_epoch))
    }

    /// Increments the epoch in memory, moving to a new producer id when it runs out.
    async fn bump_epoch(&self, broker: &Broker, meta: &mut TxnMetadata) -> Result<(), TxnError> {
        if meta.producer_epoch >= i16::MAX - 1 {
            let pid = broker.allocate_producer_id().await.map_err(|_| TxnError::NotAvailable)?;
            meta.prev_producer_id = meta.producer_id;
            meta.producer_id = pid;
            meta.producer_epoch = 0;
        } else {
            meta.producer_epoch += 1;
        }
        self.by_producer.insert(meta.producer_id, meta.id.clone());
        Ok(())
    }

    /// Checks that a request comes from the id's current producer.
    fn check_producer(meta: &TxnMetadata, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
        if meta.producer_id != producer_id {
            return Err(TxnError::ProducerIdMapping);
        }
        if meta.producer_epoch != epoch {
            return Err(TxnError::Fenced);
        }
        Ok(())
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: adds partitions to the open transaction
    /// (starting one if none is open).
    pub async fn add_partitions(
        &self,
        broker: &Broker,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), TxnError> {
        self.ownership(broker, id)?;
        let handle = self.get(id).ok_or(TxnError::ProducerIdMapping)?;
        let mut meta = handle.lock().await;
        Self::check_producer(&meta, producer_id, epoch)?;
        if meta.state.is_prepare() {
            return Err(TxnError::Concurrent);
        }
        let ongoing = meta.state == TxnState::Ongoing;
        if ongoing && partitions.iter().all(|p| meta.partitions.contains(p)) {
            return Ok(());
        }
        let before = meta.clone();
        let now = now_ms();
        if !ongoing {
            meta.partitions.clear();
            meta.start_ms = now;
        }
        meta.state = TxnState::Ongoing;
        meta.partitions.extend(partitions.iter().cloned());
        meta.last_update_ms = now;
        if let Err(e) = self.persist(broker, &meta).await {
            *meta = before;
            return Err(e);
        }
        Ok(())
    }

    /// Whether the partition is part of the producer's open transaction (KIP-890 verification,
    /// for AddPartitionsToTxn `verify_only` and transactional produce requests).
    pub async fn verify(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partition: &(String, i32),
    ) -> Result<(), TxnError> {
        let handle = self.get(id).ok_or(TxnError::InvalidState)?;
        let meta = handle.lock().await;
        Self::check_producer(&meta, producer_id, epoch)?;
        if meta.state != TxnState::Ongoing || !meta.partitions.contains(partition) {
            return Err(TxnError::InvalidState);
        }
        Ok(())
    }

    /// Verifies a transactional produce batch of producer `(id, epoch)` for a partition, when
    /// this broker is the id's coordinator; NOT_COORDINATOR tells the caller to ask the
    /// coordinator (see [`verification::verify_at_coordinator`]).
    pub async fn verify_produce(
        &self,
        broker: &Broker,
        transactional_id: Option<&str>,
        producer: (i64, i16),
        topic: &str,
        partition: i32,
    ) -> Result<(), TxnError> {
        if let Some(id) = transactional_id {
            self.ownership(broker, id)?;
        }
        let id = self.by_producer.get(&producer.0).map(|e| e.clone()).ok_or(TxnError::InvalidState)?;
        self.verify(&id, producer.0, producer.1, &(topic.to_string(), partition)).await
    }

    /// The broker that coordinates transactional id `id`: the leader of its partition of
    /// `__transaction_state`.
    pub fn coordinator_of(broker: &Broker, id: &str) -> Option<i32> {
        let topic = broker.topic(TXN_TOPIC)?;
        let index = crate::coordinator::group::records::partition_for(id, topic.partition_count);
        topic.state(index).map(|s| s.leader).filter(|l| *l >= 0)
    }

    /// TxnOffsetCommit is allowed for the current producer while its transaction is open and
    /// holds the group's offsets partition (AddOffsetsToTxn came first); otherwise the offsets
    /// would never see a marker and would stay pending. Checked when this broker is also the
    /// id's transaction coordinator; NOT_COORDINATOR tells the caller to ask the coordinator.
    pub async fn check_offset_commit(
        &self,
        broker: &Broker,
        id: &str,
        producer: (i64, i16),
        offsets_partition: &(String, i32),
    ) -> Result<(), TxnError> {
        self.ownership(broker, id)?;
        if self.get(id).is_none() {
            return Err(TxnError::ProducerIdMapping);
        }
        self.verify(id, producer.0, producer.1, offsets_partition).await
    }

    /// EndTxn: commits or aborts the open transaction. A retry of a request that already
    /// completed succeeds again.
    pub async fn end_txn(
        &self,
        broker: &Broker,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), TxnError> {
        self.ownership(broker, id)?;
        let handle = self.get(id).ok_or(TxnError::ProducerIdMapping)?;
        let mut meta = handle.lock().await;
        Self::check_producer(&meta, producer_id, epoch)?;
        match (meta.state, commit) {
            (TxnState::Ongoing, _) => self.end(broker, &mut meta, commit).await,
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(()),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => self.complete(broker, &mut meta).await,
            (s, _) if s.is_prepare() => Err(TxnError::Concurrent),
            _ => Err(TxnError::InvalidState),
        }
    }

    /// Prepares the end of an open transaction and completes it.
    async fn end(&self, broker: &Broker, meta: &mut TxnMetadata, commit: bool) -> Result<(), TxnError> {
        let before = meta.clone();
        meta.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
        meta.last_update_ms = now_ms();
        if let Err(e) = self.persist(broker, meta).await {
            *meta = before;
            return Err(e);
        }
        self.complete(broker, meta).await
    }

    /// Writes the markers of a prepared transaction (here or at the partitions' leaders) and
    /// records its completion. On a failure the transaction stays prepared and the timer
    /// tries again.
    async fn complete(&self, broker: &Broker, meta: &mut TxnMetadata) -> Result<(), TxnError> {
        let marker = Marker {
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            commit: meta.state == TxnState::PrepareCommit,
            coordinator_epoch: self.coordinator_epoch(broker, &meta.id),
        };
        for (topic, index) in &meta.partitions {
            if let Err(code) = markers::write_marker(broker, topic, *index, marker).await {
                tracing::warn!(transactional_id = %meta.id, %topic, partition = index, error = ?code, "transaction marker not written");
                return Err(TxnError::NotAvailable);
            }
        }
        let before = meta.clone();
        meta.state = if marker.commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
        meta.partitions.clear();
        meta.start_ms = -1;
        meta.last_update_ms = now_ms();
        if let Err(e) = self.persist(broker, meta).await {
            *meta = before;
            return Err(e);
        }
        Ok(())
    }

    /// The leader epoch of the id's `__transaction_state` partition: markers carry it.
    fn coordinator_epoch(&self, broker: &Broker, id: &str) -> i32 {
        broker.topic(TXN_TOPIC).map_or(0, |t| {
            let index = partition_for(id, t.partition_count);
            t.state(index).map_or(0, |s| s.leader_epoch)
        })
    }

    /// Replays the `__transaction_state` partitions this broker leads (start-up).
    pub fn load(&self, broker: &Broker) -> Result<usize, LogError> {
        let Some(topic) = broker.topic(TXN_TOPIC) else { return Ok(0) };
        let leading: Vec<Arc<Partition>> = topic.partitions.iter().filter(|p| p.is_leader()).cloned().collect();
        let records = self.load_from(&leading)?;
        self.loaded.loaded(leading.iter().map(|p| p.index));
        Ok(records)
    }

    fn load_from(&self, partitions: &[Arc<Partition>]) -> Result<usize, LogError> {
        let mut latest = std::collections::BTreeMap::new();
        let count = replay_partitions(partitions, |r| {
            if let Some(id) = r.key.clone().and_then(records::decode_key) {
                let value = r.value.clone().and_then(|v| records::decode_value(&id, v));
                latest.insert(id, value);
            }
        })?;
        for (id, meta) in latest {
            if let Some(meta) = meta.filter(|m| m.state != TxnState::Dead) {
                self.by_producer.insert(meta.producer_id, id.clone());
                self.txns.insert(id, Arc::new(Mutex::new(meta)));
            }
        }
        Ok(count)
    }

    /// Aborts transactions open longer than their timeout (bumping the epoch, so the late
    /// producer is fenced), finishes transactions left prepared, and forgets ids idle for
    /// `transactional.id.expiration.ms`.
    pub async fn run_timers(self: Arc<Self>, broker: Arc<Broker>) {
        loop {
            let every = broker.config_i64("transaction.abort.timed.out.transaction.cleanup.interval.ms");
            tokio::time::sleep(Duration::from_millis(every.max(10) as u64)).await;
            let expiration_ms = broker.config_i64("transactional.id.expiration.ms");
            for id in self.ids() {
                if let Err(e) = self.tick(&broker, &id, expiration_ms).await {
                    tracing::warn!(transactional_id = %id, error = %e, "transaction timer");
                }
            }
        }
    }

    async fn tick(&self, broker: &Broker, id: &str, expiration_ms: i64) -> Result<(), TxnError> {
        let Some(handle) = self.get(id) else { return Ok(()) };
        let mut meta = handle.lock().await;
        let now = now_ms();
        match meta.state {
            TxnState::Ongoing if now.saturating_sub(meta.start_ms) > i64::from(meta.timeout_ms) => {
                tracing::info!(transactional_id = %id, producer_id = meta.producer_id, "aborting a timed-out transaction");
                self.bump_epoch(broker, &mut meta).await?;
                self.end(broker, &mut meta, false).await
            }
            s if s.is_prepare() => self.complete(broker, &mut meta).await,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                if now.saturating_sub(meta.last_update_ms) > expiration_ms =>
            {
                self.write(broker, id, vec![(records::encode_key(id), None)]).await?;
                meta.state = TxnState::Dead;
                self.txns.remove(id);
                self.by_producer.remove(&meta.producer_id);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip() {
        for v in 0..8 {
            let s = TxnState::from_i8(v).unwrap();
            assert_eq!(TxnState::from_name(s.name()), Some(s));
        }
        assert!(TxnState::from_i8(8).is_none());
        assert!(TxnState::from_name("Bogus").is_none());
    }
}
