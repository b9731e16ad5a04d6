//! Publishing the metadata image into the broker, as Kafka's `BrokerMetadataPublisher` does:
//! whatever the quorum committed (here or on another controller) becomes open partition
//! logs, topic and broker settings, credentials and ACLs. It compares the image with what
//! the broker has, so it is the same whether one change or a whole snapshot arrived.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{now_ms, AdminError, Broker, Topic};
use crate::cluster::metadata_log::{MetadataImage, TopicMeta};
use crate::partition::Partition;
use crate::telemetry::Subscription;

/// The parts of the image taken in last time that are compared rather than re-applied.
pub(super) struct Published {
    broker_configs: ConfigLevels,
    client_metrics: BTreeMap<String, BTreeMap<String, String>>,
    /// The unfenced brokers.
    live: BTreeSet<i32>,
}

impl Published {
    /// What a broker opened from `image` has taken in.
    pub(super) fn of(image: &MetadataImage, node_id: i32) -> Published {
        Published {
            broker_configs: broker_configs(image, node_id),
            client_metrics: image.client_metrics.clone(),
            live: live_brokers(image),
        }
    }
}

fn live_brokers(image: &MetadataImage) -> BTreeSet<i32> {
    image.brokers.values().filter(|b| !b.fenced).map(|b| b.id).collect()
}

/// The two levels of dynamic broker configs: the cluster-wide defaults and one broker's own.
pub(super) type ConfigLevels = (BTreeMap<String, String>, BTreeMap<String, String>);

/// The image's dynamic configs for broker `node_id`.
pub(super) fn broker_configs(image: &MetadataImage, node_id: i32) -> ConfigLevels {
    (image.broker_configs.clone(), image.node_configs.get(&node_id).cloned().unwrap_or_default())
}

/// Puts dynamic configs into `config`, keeping the keys this version knows.
pub(super) fn set_dynamic(config: &mut crate::config::BrokerConfig, (defaults, own): &ConfigLevels) {
    let known = |configs: &BTreeMap<String, String>| {
        configs.iter().filter_map(|(k, v)| crate::config::broker_def(k).map(|d| (d.name, v.clone()))).collect()
    };
    config.set_dynamic(known(defaults), known(own));
}

impl Broker {
    /// Brings the broker up to the metadata image as applied so far.
    pub(crate) async fn publish(&self) -> Result<(), AdminError> {
        let mut published = self.published.lock().await;
        let image = self.controller.quorum.image();
        let broker_configs = broker_configs(&image, self.node_id);
        if broker_configs != published.broker_configs {
            set_dynamic(&mut self.config.write(), &broker_configs);
            self.config_generation.fetch_add(1, Ordering::Relaxed);
            self.set_replication_quotas();
            for topic in self.topics() {
                let log_config = self.log_config(&topic.configs);
                for p in &topic.partitions {
                    p.log_mut().set_config(log_config.clone());
                }
            }
            published.broker_configs = broker_configs;
        }
        let live = live_brokers(&image);
        {
            let mut fenced_lately = self.fenced_lately.lock();
            fenced_lately.retain(|id, at| !live.contains(id) && at.elapsed() < super::FENCED_BROKER_LISTED_FOR);
            let now = std::time::Instant::now();
            let gone = published.live.difference(&live).filter(|id| image.brokers.get(id).is_some_and(|b| b.gone));
            fenced_lately.extend(gone.map(|id| (*id, now)));
        }
        published.live = live;
        self.publish_topics(&image)?;
        if let Some(me) = self.me.get().and_then(std::sync::Weak::upgrade) {
            for topic in self.topics() {
                me.publish_roles(&topic);
            }
        }
        self.security.replace_image(image.security.clone());
        *self.group_configs.write() = image.group_configs.clone();
        self.publish_client_metrics(&image.client_metrics, &published.client_metrics);
        published.client_metrics = image.client_metrics.clone();
        Ok(())
    }

    fn publish_topics(&self, image: &MetadataImage) -> std::io::Result<()> {
        for topic in self.topics() {
            if image.topics.get(&topic.name).map(|m| m.id) != Some(topic.id) {
                self.remove_topic(&topic);
            }
        }
        let mut created = false;
        for meta in image.topics.values() {
            match self.topic(&meta.name) {
                None => {
                    self.install(self.open_topic(meta, 0)?);
                    tracing::info!(topic = %meta.name, partitions = meta.partitions, id = %meta.id, "created topic");
                    created = true;
                }
                Some(local) => created |= self.update_topic(&local, meta)?,
            }
        }
        if created {
            crate::log::sync_dir(&self.data_dir)?;
        }
        Ok(())
    }

    /// Takes in a topic's new partitions, replica assignments and configs: opens the logs of
    /// replicas newly placed here (a reassignment adding this broker starts them empty; the
    /// follower copies the leader's) and removes the ones moved away. True if partition logs
    /// were created.
    fn update_topic(&self, local: &Topic, meta: &TopicMeta) -> std::io::Result<bool> {
        if meta.partitions == local.partition_count && meta.configs == local.configs && meta.states == local.states {
            return Ok(false);
        }
        if meta.configs != local.configs {
            let log_config = self.log_config(&meta.configs);
            for p in &local.partitions {
                p.log_mut().set_config(log_config.clone());
            }
        }
        let mut partitions = Vec::with_capacity(local.partitions.len());
        let mut created = false;
        for index in 0..meta.partitions {
            let here = meta.is_replica(index, self.node_id);
            match local.partition(index) {
                Some(p) if here => partitions.push(p.clone()),
                Some(p) => self.remove_replica(&local.name, local.id, p),
                None if here => {
                    partitions.push(self.open_partition(meta, index)?);
                    created = true;
                }
                None => {}
            }
        }
        self.install(Topic::of(meta, partitions, local.traffic.clone()));
        Ok(created)
    }

    /// Forgets a deleted topic and removes its files.
    fn remove_topic(&self, topic: &Topic) {
        self.topics.remove(&topic.name);
        self.topic_names.remove(&topic.id);
        for p in &topic.partitions {
            self.remove_replica(&topic.name, topic.id, p);
        }
        tracing::info!(topic = %topic.name, "deleted topic");
    }

    /// Stops a replica and removes its files (renamed first, then removed, so a crash in
    /// between is finished at the next start).
    fn remove_replica(&self, topic: &str, id: uuid::Uuid, p: &Partition) {
        let led = p.is_replicated_leader();
        p.go_offline(); // stops a follower's fetcher
        if led {
            self.coordinators_follow(topic, p.index, Some(false));
        }
        let dir = self.partition_dir(topic, p.index);
        let doomed = self.data_dir.join(format!("{topic}-{}.{}-delete", p.index, id.simple()));
        if let Err(err) = std::fs::rename(&dir, &doomed) {
            tracing::warn!(%err, dir = %dir.display(), "cannot rename a removed replica");
            return;
        }
        tracing::info!(topic, partition = p.index, "removed the replica");
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(doomed));
    }

    fn publish_client_metrics(
        &self,
        now: &BTreeMap<String, BTreeMap<String, String>>,
        before: &BTreeMap<String, BTreeMap<String, String>>,
    ) {
        for name in before.keys().filter(|n| !now.contains_key(*n)) {
            self.telemetry.set_subscription(name, None);
        }
        for (name, configs) in now.iter().filter(|(n, c)| before.get(*n) != Some(c)) {
            match Subscription::parse(name, configs) {
                Ok(s) => self.telemetry.set_subscription(name, Some(s)),
                Err(e) => {
                    tracing::warn!(subscription = %name, error = %e, "ignoring an invalid client metrics subscription")
                }
            }
        }
    }

    /// Publishes every change the quorum applies, for as long as the broker runs.
    pub async fn follow_metadata(self: Arc<Self>) {
        let mut applied = self.controller.quorum.state.subscribe();
        while applied.changed().await.is_ok() {
            if let Err(e) = self.publish().await {
                tracing::error!(error = %e, at = now_ms(), "cannot take in a metadata change");
            }
        }
    }
}
