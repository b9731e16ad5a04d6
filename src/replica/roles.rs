//! The replica manager's side of leadership (Kafka's `ReplicaManager.applyDelta` and
//! `Partition.makeLeader` / `makeFollower`): a partition takes the role the metadata gives it —
//! lead, follow a leader through the replica fetchers, or wait for one — and a leader keeps
//! its ISR with the controller: followers that caught up proposed back, those that fell
//! behind for `replica.lag.time.max.ms` proposed out.

use std::sync::Arc;
use std::time::Duration;

use crate::broker::{Broker, Topic};
use crate::cluster::controller::ControllerOp;
use crate::cluster::metadata_log::PartitionState;
use crate::partition::replica::IsrChange;
use crate::partition::Partition;

impl Broker {
    /// Takes the partition's role; says whether this broker now leads it (true), stopped
    /// leading it (false), or neither changed (none).
    pub(crate) fn take_role(
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
        let lag = Duration::from_millis(self.config_i64("replica.lag.time.max.ms").max(1) as u64);
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
