//! Replication on this broker, as Kafka's `ReplicaManager` runs it: the metadata says who
//! leads each partition in which epoch; this broker leads its partitions (followers fetch
//! from it), follows the others' leaders through the replica fetchers (`crate::replica`),
//! and proposes ISR changes to the controller.

use std::sync::Arc;
use std::time::Duration;

use super::{Broker, Topic};
use crate::cluster::controller::ControllerOp;
use crate::cluster::metadata_log::PartitionState;
use crate::partition::replica::IsrChange;
use crate::partition::Partition;

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
            let fetching = self.fetchers.add(self, p.clone(), &topic.name, state.leader, state.leader_epoch);
            p.follow(state.leader, state.leader_epoch, fetching);
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
