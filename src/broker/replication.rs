//! Replication on this broker, as Kafka's `ReplicaManager` runs it: the metadata says who
//! leads each partition in which epoch; this broker leads its partitions (followers fetch
//! from it), follows the others' leaders with a fetcher task per partition (truncating a
//! divergent tail first, then fetching and fsyncing before asking for more), and proposes
//! ISR changes to the controller.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::throttle::{is_throttled, MIN_CHUNK};
use super::{now_ms, Broker, Topic};
use crate::client::connection::Connection;
use crate::client::ClientError;
use crate::cluster::controller::ControllerOp;
use crate::cluster::metadata_log::PartitionState;
use crate::handlers::str_bytes;
use crate::partition::replica::IsrChange;
use crate::partition::Partition;

/// Fetch versions a follower speaks: 12 has the diverging epoch (KIP-320) and topic names.
const FETCH_VERSION: i16 = 12;
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 4;
/// How long a follower's fetch waits at the leader for new data.
const FETCH_MAX_WAIT_MS: i32 = 500;
const FETCH_MAX_BYTES: i32 = 8 << 20;
/// Pause before a follower tries its leader again after a failure.
const RETRY: Duration = Duration::from_millis(200);

impl Broker {
    /// Takes each local partition's state from the metadata into its role: lead, follow (a
    /// fetcher task), or wait for a leader. Partitions with one replica stay as they are.
    pub(super) fn publish_roles(self: &Arc<Self>, topic: &Topic) {
        for p in &topic.partitions {
            let Some(state) = topic.state(p.index) else { continue };
            let taken = if state.replicas.len() == 1 {
                let alone = if state.leader == self.node_id { p.lead_alone(state.leader_epoch) } else { Ok(false) };
                alone.map(|now| now.then_some(true))
            } else {
                self.take_role(topic, p, state)
            };
            let taken = taken.map(|change| self.coordinators_follow(&topic.name, p.index, change));
            if let Err(e) = taken {
                tracing::error!(topic = %topic.name, partition = p.index, error = %e, "cannot take the partition's role");
            }
        }
    }

    /// Takes the partition's role; says whether this broker now leads it (true), stopped
    /// leading it (false), or neither changed (none).
    fn take_role(
        self: &Arc<Self>,
        topic: &Topic,
        p: &Arc<Partition>,
        state: &PartitionState,
    ) -> std::io::Result<Option<bool>> {
        if state.leader == self.node_id {
            return Ok(p.lead(topic.id, state, self.node_id)?.then_some(true));
        }
        let was_leader = p.is_leader();
        if state.leader < 0 {
            p.go_offline();
        } else if !p.follows(state.leader, state.leader_epoch) {
            let fetcher =
                tokio::spawn(self.clone().follow(p.clone(), topic.name.clone(), state.leader, state.leader_epoch));
            p.follow(state.leader, state.leader_epoch, fetcher.abort_handle());
        }
        Ok(was_leader.then_some(false))
    }

    /// The coordinators follow their internal topics' partitions: the group coordinator its
    /// `__consumer_offsets` partitions, the transaction coordinator its `__transaction_state`
    /// ones. Each loads a partition's state when this broker comes to lead it and drops it
    /// when it stops.
    pub(super) fn coordinators_follow(&self, name: &str, index: i32, change: Option<bool>) {
        use crate::coordinator::{group::OFFSETS_TOPIC, txn::TXN_TOPIC};
        use crate::share::state::STATE_TOPIC;
        let Some(leads) = change else { return };
        if let Some(topic) = self.topic(name) {
            self.shares.leadership_changed(topic.id, index);
        }
        let loaded = match (name, leads) {
            (OFFSETS_TOPIC, true) => self.groups.take_over(self, index),
            (TXN_TOPIC, true) => self.txns.take_over(self, index),
            (STATE_TOPIC, true) => self.shares.state.take_over(self, index),
            (OFFSETS_TOPIC, false) => return self.groups.resign(self, index),
            (TXN_TOPIC, false) => return self.txns.resign(self, index),
            (STATE_TOPIC, false) => return self.shares.state.resign(self, index),
            _ => return,
        };
        match loaded {
            Ok(records) => tracing::info!(topic = name, partition = index, records, "coordinator took over"),
            Err(e) => tracing::error!(topic = name, partition = index, error = %e, "coordinator cannot load its state"),
        }
    }

    /// A follower's life: fetch from `leader` until the role changes (the task is aborted).
    async fn follow(self: Arc<Self>, p: Arc<Partition>, topic: String, leader: i32, epoch: i32) {
        loop {
            match self.connect_to_broker(leader).await {
                Err(e) => self.replica_fetch_failed(leader, &topic, p.index, &e),
                Ok(client) => match self.fetch_from_leader(client, &p, &topic, leader, epoch).await {
                    Err(FetcherStop::Failed(e)) => self.replica_fetch_failed(leader, &topic, p.index, &e),
                    Err(FetcherStop::Restart(e)) => {
                        tracing::debug!(topic = %topic, partition = p.index, leader, error = %e, "replica fetcher restarts")
                    }
                    Ok(()) => {}
                },
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    async fn fetch_from_leader(
        &self,
        mut client: Connection,
        p: &Arc<Partition>,
        topic: &str,
        leader: i32,
        epoch: i32,
    ) -> Result<(), FetcherStop> {
        self.truncate_to_leader(&mut client, p, topic, epoch).await?;
        let durable = self.config_bool("log.flush.on.acks.all");
        loop {
            let (fetch_offset, log_start, last_epoch) = {
                let log = p.log();
                (log.log_end_offset(), log.log_start_offset(), log.latest_epoch().unwrap_or(-1))
            };
            let quota = self.follower_throttled(topic, p.index).then_some(&self.follower_quota);
            let mut max_bytes = FETCH_MAX_BYTES;
            if let Some(quota) = quota {
                tokio::time::sleep(quota.delay()).await;
                max_bytes = quota.allowance(max_bytes as usize).unwrap_or(MIN_CHUNK) as i32;
            }
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(self.node_id))
                .with_max_wait_ms(FETCH_MAX_WAIT_MS)
                .with_min_bytes(1)
                .with_max_bytes(max_bytes)
                .with_topics(vec![FetchTopic::default().with_topic(TopicName(str_bytes(topic))).with_partitions(
                    vec![FetchPartition::default()
                        .with_partition(p.index)
                        .with_current_leader_epoch(epoch)
                        .with_fetch_offset(fetch_offset)
                        .with_last_fetched_epoch(last_epoch)
                        .with_log_start_offset(log_start)
                        .with_partition_max_bytes(max_bytes)],
                )]);
            let resp: FetchResponse = client.call_at(ApiKey::Fetch, FETCH_VERSION, &req).await?;
            leader_answered(resp.error_code)?;
            self.replica_fetch_succeeded(leader);
            let data = resp
                .responses
                .into_iter()
                .next()
                .and_then(|t| t.partitions.into_iter().next())
                .ok_or_else(|| std::io::Error::other("fetch response without the partition"))?;
            if data.error_code == ResponseError::OffsetOutOfRange.code() && fetch_offset < data.log_start_offset {
                tracing::info!(
                    topic,
                    partition = p.index,
                    log_end = fetch_offset,
                    leader_log_start = data.log_start_offset,
                    "the leader's log starts past this replica's end; starting over there"
                );
                let start = data.log_start_offset;
                p.as_follower_in(epoch, |log| log.truncate_fully_and_start_at(start, now_ms()))
                    .ok_or_else(role_changed)??;
                continue;
            }
            leader_answered(data.error_code)?;
            if data.diverging_epoch.epoch >= 0 || data.diverging_epoch.end_offset >= 0 {
                let end = data.diverging_epoch.end_offset;
                if end < p.log().log_end_offset() {
                    tracing::info!(
                        topic,
                        partition = p.index,
                        end,
                        "truncating a tail that diverged from the leader's"
                    );
                }
                p.as_follower_in(epoch, |log| log.truncate_to(end)).ok_or_else(role_changed)??;
                continue;
            }
            if let (Some(quota), Some(records)) = (quota, &data.records) {
                quota.record(records.len());
            }
            if let Some(records) = data.records.filter(|r| !r.is_empty()) {
                p.as_follower_in(epoch, |log| log.append_as_follower(&records, now_ms()))
                    .ok_or_else(role_changed)?
                    .map_err(std::io::Error::other)?;
                if durable {
                    let end = p.log().log_end_offset();
                    p.want_flushed(end);
                    p.flush_to(end).await.map_err(std::io::Error::other)?;
                }
            }
            p.follower_high_watermark(epoch, data.high_watermark);
            if data.log_start_offset > log_start {
                // the leader's head went (retention, DeleteRecords): this copy's goes too
                let moved = p.as_follower_in(epoch, |log| {
                    log.delete_records_before(data.log_start_offset.min(log.high_watermark()), now_ms())
                });
                if let Some(Err(e)) = moved {
                    tracing::warn!(topic, partition = p.index, error = %e, "cannot follow the leader's log start");
                }
            }
        }
    }

    /// Whether this follower's fetches count against `follower.replication.throttled.rate`:
    /// its topic lists the replica in `follower.replication.throttled.replicas`, a rate is
    /// set, and it is out of the ISR.
    fn follower_throttled(&self, topic: &str, partition: i32) -> bool {
        let Some(t) = self.topic(topic).filter(|_| self.follower_quota.is_limited()) else { return false };
        is_throttled(&t.configs, "follower.replication.throttled.replicas", partition, self.node_id)
            && !t.state(partition).is_some_and(|s| s.isr.contains(&self.node_id))
    }

    /// Before fetching: asks the leader where this replica's newest epoch ended there and
    /// cuts whatever this log has beyond it (records a previous leader wrote that the new
    /// one never had).
    async fn truncate_to_leader(
        &self,
        client: &mut Connection,
        p: &Arc<Partition>,
        topic: &str,
        epoch: i32,
    ) -> Result<(), FetcherStop> {
        let Some(latest) = p.log().latest_epoch() else { return Ok(()) };
        let req = OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(self.node_id)).with_topics(vec![
            OffsetForLeaderTopic::default().with_topic(TopicName(str_bytes(topic))).with_partitions(vec![
                OffsetForLeaderPartition::default()
                    .with_partition(p.index)
                    .with_current_leader_epoch(epoch)
                    .with_leader_epoch(latest),
            ]),
        ]);
        let resp: OffsetForLeaderEpochResponse =
            client.call_at(ApiKey::OffsetForLeaderEpoch, OFFSET_FOR_LEADER_EPOCH_VERSION, &req).await?;
        let r = resp
            .topics
            .into_iter()
            .next()
            .and_then(|t| t.partitions.into_iter().next())
            .ok_or_else(|| std::io::Error::other("OffsetForLeaderEpoch response without the partition"))?;
        leader_answered(r.error_code)?;
        let end = p.log().log_end_offset();
        if r.end_offset >= 0 && r.end_offset < end {
            tracing::info!(
                topic,
                partition = p.index,
                log_end = end,
                to = r.end_offset,
                asked_epoch = latest,
                leader_answer_epoch = r.leader_epoch,
                "truncating a divergent tail"
            );
            p.as_follower_in(epoch, |log| log.truncate_to(r.end_offset)).ok_or_else(role_changed)??;
        }
        Ok(())
    }

    /// Proposes an ISR change to the controller; the new state comes back through the
    /// metadata (and at once from the answer).
    pub async fn alter_isr(&self, change: IsrChange) {
        let op = ControllerOp::AlterPartition {
            topic: change.topic_id,
            partition: change.partition,
            leader: self.node_id,
            leader_epoch: change.leader_epoch,
            partition_epoch: change.partition_epoch,
            isr: change.isr.clone(),
        };
        let partition = self.topic_by_id(&change.topic_id).and_then(|t| t.partition(change.partition).cloned());
        match self.control(op).await {
            Ok(_) => tracing::info!(partition = change.partition, isr = ?change.isr, "ISR changed"),
            Err(e) => {
                tracing::info!(partition = change.partition, isr = ?change.isr, error = %e, "ISR change refused");
                if let Some(p) = partition {
                    p.isr_change_failed();
                }
            }
        }
    }

    /// Drops followers that fell behind for `replica.lag.time.max.ms` from the ISRs this
    /// broker leads, checking at half that interval.
    pub async fn run_isr_shrinking(self: Arc<Self>) {
        let lag = Duration::from_millis(self.config.read().get_i64("replica.lag.time.max.ms").max(1) as u64);
        let mut tick = tokio::time::interval((lag / 2).max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for topic in self.topics() {
                for p in &topic.partitions {
                    if let Some(change) = p.isr_shrink_due(lag) {
                        let broker = self.clone();
                        tokio::spawn(async move { broker.alter_isr(change).await });
                    }
                }
            }
        }
    }
}

/// Why a replica fetcher stopped: its link to the leader failed (counted and reported as a
/// replica fetch error), or something it starts over from (a leader error for the partition,
/// the role changing, the local log).
#[derive(Debug)]
enum FetcherStop {
    Failed(ClientError),
    Restart(String),
}

impl From<ClientError> for FetcherStop {
    fn from(e: ClientError) -> FetcherStop {
        match e {
            // the leader answered for the partition: it moved, or is not ready yet
            ClientError::Kafka { code, .. } if !is_link_error(code) => {
                FetcherStop::Restart(format!("leader answered {:?}", ResponseError::try_from_code(code)))
            }
            e => FetcherStop::Failed(e),
        }
    }
}

impl From<std::io::Error> for FetcherStop {
    fn from(e: std::io::Error) -> FetcherStop {
        FetcherStop::Restart(e.to_string())
    }
}

/// Error codes about the link itself (this broker's principal), not the partition.
fn is_link_error(code: i16) -> bool {
    code == ResponseError::ClusterAuthorizationFailed.code() || code == ResponseError::SaslAuthenticationFailed.code()
}

/// A fetcher whose partition no longer follows in its epoch stops (its task is being aborted).
fn role_changed() -> FetcherStop {
    FetcherStop::Restart("no longer following in this epoch".into())
}

/// A leader's error code as the follower's error (the fetcher restarts on it).
fn leader_answered(error_code: i16) -> Result<(), FetcherStop> {
    match error_code {
        0 => Ok(()),
        code => Err(ClientError::kafka("replica fetch", code, None).into()),
    }
}
