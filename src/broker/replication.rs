//! The metadata's partition states, applied here: each local partition takes its role from
//! the replica manager (`crate::replica::roles`), and the coordinators load or drop the state
//! of the internal partitions this broker comes to lead or stops leading.

use std::sync::Arc;

use super::{Broker, Topic};

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
}
