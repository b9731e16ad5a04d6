//! The replica manager's append (Kafka's `ReplicaManager.appendRecords`): a produce's records
//! for one partition led here — refused when acks=all would find fewer in-sync replicas than
//! `min.insync.replicas`, appended whole, the fsync started at once in the background — and
//! what its answer then waits for: with acks=all, the fsync (`log.flush.on.acks.all`) and the
//! in-sync replicas (the high watermark passing the records).
//!
//! The produce handler decodes, authorizes, verifies transactions and encodes.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;

use crate::log::{AppendInfo, LogError};
use crate::partition::Partition;

/// Why an append was refused.
#[derive(Debug)]
pub enum AppendError {
    /// acks=all with fewer in-sync replicas than `min.insync.replicas`.
    NotEnoughReplicas,
    Log(LogError),
}

/// What an appended partition's answer still waits for.
pub struct PendingAck {
    partition: Arc<Partition>,
    /// The offset to see fsynced (acks=all under the durable policy, or `flush.messages`
    /// made a flush due).
    durable: Option<i64>,
    /// The offset the in-sync replicas must have (acks=all on a replicated partition).
    replicated: Option<i64>,
    /// The acks ask for the disk or the replicas (not just a due flush).
    acks_wait: bool,
}

/// Appends `records` to `partition` (this broker leads it) for a producer asking `acks`;
/// `durable_policy` is `log.flush.on.acks.all`: acks=all then waits for the fsync.
pub fn append(
    partition: &Arc<Partition>,
    records: &[u8],
    acks: i16,
    durable_policy: bool,
    now_ms: i64,
) -> Result<(AppendInfo, PendingAck), AppendError> {
    let replicated = acks == -1 && partition.is_replicated_leader();
    if replicated && partition.isr_size() < partition.log().config().min_insync_replicas {
        return Err(AppendError::NotEnoughReplicas);
    }
    let info = partition.append(records, now_ms).map_err(AppendError::Log)?;
    let end = info.last_offset + 1;
    // The fsync starts now, in the background (a running one goes on to cover this append),
    // not when this request's turn in its connection comes; acks=all waits for it, other
    // acks only when `flush.messages` made one due.
    let fsync_on_ack = durable_policy && acks == -1;
    let durable = if fsync_on_ack { Some(end) } else { partition.flush_due() };
    if let Some(offset) = durable {
        partition.want_flushed(offset);
    }
    let pending = PendingAck {
        partition: partition.clone(),
        durable,
        replicated: replicated.then_some(end),
        acks_wait: fsync_on_ack || replicated,
    };
    Ok((info, pending))
}

impl PendingAck {
    /// Whether the answer waits for the disk or the replicas: the connection may read its
    /// next request meanwhile, so that fsyncs are shared between them.
    pub fn waits(&self) -> bool {
        self.acks_wait
    }

    /// Waits for what the acks promised; the error to answer (with its message) otherwise:
    /// KAFKA_STORAGE_ERROR when the fsync failed; NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    /// NOT_LEADER_OR_FOLLOWER or REQUEST_TIMED_OUT as Kafka answers a replication wait.
    pub async fn complete(self, timeout: Duration) -> Result<(), (ResponseError, Option<String>)> {
        let p = &self.partition;
        if let Some(offset) = self.durable {
            if let Err(e) = p.flush_to(offset).await {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "fsync failed");
                return Err((ResponseError::KafkaStorageError, Some(e.to_string())));
            }
        }
        if let Some(offset) = self.replicated {
            let min_isr = p.log().config().min_insync_replicas;
            p.await_replicated(offset, min_isr, timeout).await.map_err(|code| (code, None))?;
        }
        Ok(())
    }
}
