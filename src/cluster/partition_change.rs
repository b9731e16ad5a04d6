//! How the controller changes one partition's state, as Kafka's `PartitionChangeBuilder`
//! does: the caller sets what it wants (a new ISR, a reassignment's replicas, an election
//! type), and [`Change::build`] finishes a reassignment whose new replicas are all in sync,
//! elects a leader where the current one cannot go on, and bumps the epochs. Every path that
//! changes a partition (fencing, AlterPartition, ElectLeaders, reassignment, the leader
//! rebalancer) goes through it, so they agree on who may lead.

use super::metadata_log::{MetadataImage, PartitionState};

/// Which leader a change looks for (Kafka's `PartitionChangeBuilder.Election`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// Keep the leader while it is live and in sync; else the first such replica.
    Normal,
    /// Move leadership to the first replica (the preferred leader) when it is live and in sync.
    Preferred,
    /// As normal, and with no such replica any live one (it may miss acknowledged records).
    Unclean,
}

/// A change to one partition's state under construction.
pub struct Change<'a> {
    image: &'a MetadataImage,
    current: &'a PartitionState,
    next: PartitionState,
    election: Election,
    /// `unclean.leader.election.enable` for the topic: a partition with no in-sync replica
    /// left takes an out-of-sync one in any election.
    unclean_allowed: bool,
    /// A broker in controlled shutdown: live for its heartbeats, but it may not lead.
    leaving: Option<i32>,
}

impl<'a> Change<'a> {
    pub fn new(image: &'a MetadataImage, current: &'a PartitionState) -> Change<'a> {
        Change {
            image,
            current,
            next: current.clone(),
            election: Election::Normal,
            unclean_allowed: false,
            leaving: None,
        }
    }

    pub fn isr(mut self, isr: Vec<i32>) -> Self {
        self.next.isr = isr;
        self
    }

    /// The replica list with a reassignment's adding and removing replicas.
    pub fn replicas(mut self, replicas: Vec<i32>, adding: Vec<i32>, removing: Vec<i32>) -> Self {
        self.next.replicas = replicas;
        self.next.adding = adding;
        self.next.removing = removing;
        self
    }

    pub fn election(mut self, election: Election) -> Self {
        self.election = election;
        self
    }

    pub fn unclean_allowed(mut self, allowed: bool) -> Self {
        self.unclean_allowed = allowed;
        self
    }

    pub fn leaving(mut self, leaving: Option<i32>) -> Self {
        self.leaving = leaving;
        self
    }

    fn live(&self, broker: i32) -> bool {
        Some(broker) != self.leaving && self.image.is_live(broker)
    }

    /// The new state, or `None` when nothing changes.
    pub fn build(mut self) -> Option<PartitionState> {
        complete_reassignment(&mut self.next);
        let leader = self.elect();
        let mut next = self.next.clone();
        if leader != next.leader {
            next.leader = leader;
            next.leader_epoch = self.current.leader_epoch + 1;
        }
        if next == *self.current {
            return None;
        }
        next.partition_epoch = self.current.partition_epoch + 1;
        Some(next)
    }

    /// The leader of the new state; may narrow the ISR to an unclean leader.
    fn elect(&mut self) -> i32 {
        let next = &self.next;
        let eligible = |b: i32| self.live(b) && next.isr.contains(&b) && next.replicas.contains(&b);
        let preferred = next.replicas.first().copied().filter(|p| eligible(*p));
        if let (Election::Preferred, Some(p)) = (self.election, preferred) {
            return p;
        }
        if next.leader >= 0 && eligible(next.leader) {
            return next.leader;
        }
        if let Some(l) = next.replicas.iter().copied().find(|r| eligible(*r)) {
            return l;
        }
        let unclean = self.election == Election::Unclean || self.unclean_allowed;
        match next.replicas.iter().copied().find(|r| unclean && self.live(*r)) {
            Some(l) => {
                self.next.isr = vec![l];
                l
            }
            None => -1,
        }
    }
}

/// Finishes a reassignment once every replica it keeps is in sync (Kafka's
/// `maybeCompleteReassignment`): the removed replicas leave the replica list and the ISR.
fn complete_reassignment(next: &mut PartitionState) {
    if !next.reassigning() {
        return;
    }
    let kept = |list: &[i32]| list.iter().copied().filter(|r| !next.removing.contains(r)).collect::<Vec<_>>();
    let (replicas, isr) = (kept(&next.replicas), kept(&next.isr));
    if isr.is_empty() || replicas.is_empty() || !replicas.iter().all(|r| isr.contains(r)) {
        return;
    }
    next.replicas = replicas;
    next.isr = isr;
    next.adding.clear();
    next.removing.clear();
}

/// A reassignment of a partition to `target` (Kafka's `PartitionReassignmentReplicas`): the
/// replica list becomes the target followed by the replicas it removes.
pub fn reassign<'a>(image: &'a MetadataImage, current: &'a PartitionState, target: &[i32]) -> Change<'a> {
    let removing: Vec<i32> = current.replicas.iter().copied().filter(|r| !target.contains(r)).collect();
    let adding: Vec<i32> = target.iter().copied().filter(|r| !current.replicas.contains(r)).collect();
    let mut replicas = target.to_vec();
    replicas.extend(&removing);
    Change::new(image, current).replicas(replicas, adding, removing)
}

/// Cancelling a reassignment (Kafka's `PartitionReassignmentRevert`): the original replicas
/// come back, the added ones leave the ISR. The flag says the revert is unclean: only added
/// replicas were in sync, so an original replica that may miss records must lead.
pub fn revert<'a>(image: &'a MetadataImage, current: &'a PartitionState) -> (Change<'a>, bool) {
    let replicas = current.original_replicas();
    let mut isr: Vec<i32> = current.isr.iter().copied().filter(|r| !current.adding.contains(r)).collect();
    let unclean = isr.is_empty();
    if unclean {
        isr.extend(replicas.first());
    }
    (Change::new(image, current).replicas(replicas, vec![], vec![]).isr(isr), unclean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata_log::{BrokerRegistration, MetadataRecord};

    fn image(live: &[i32], fenced: &[i32]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in live.iter().chain(fenced) {
            let registration =
                BrokerRegistration { id: *id, fenced: fenced.contains(id), ..BrokerRegistration::default() };
            image.apply(&MetadataRecord::RegisterBroker { registration });
        }
        image
    }

    #[test]
    fn a_reassignment_adds_then_completes_when_the_new_replicas_are_in_sync() {
        let image = image(&[1, 2, 3, 4], &[]);
        let current = PartitionState::new(vec![1, 2]);
        let started = reassign(&image, &current, &[3, 4]).build().unwrap();
        assert_eq!(
            (started.replicas.clone(), started.adding.clone(), started.removing.clone()),
            (vec![3, 4, 1, 2], vec![3, 4], vec![1, 2])
        );
        assert_eq!((started.leader, started.leader_epoch, started.isr.clone()), (1, 0, vec![1, 2]));
        // 3 catches up: not done yet
        let one = Change::new(&image, &started).isr(vec![1, 2, 3]).build().unwrap();
        assert!(one.reassigning());
        // 4 too: the old replicas go, the preferred of the new ones leads in a new epoch
        let done = Change::new(&image, &one).isr(vec![1, 2, 3, 4]).build().unwrap();
        assert_eq!((done.replicas.clone(), done.isr.clone(), done.reassigning()), (vec![3, 4], vec![3, 4], false));
        assert_eq!((done.leader, done.leader_epoch), (3, 1));
        assert_eq!(done.partition_epoch, 3);
    }

    #[test]
    fn reordering_in_sync_replicas_completes_at_once_and_cancel_restores_the_original() {
        let image = image(&[1, 2, 3], &[]);
        let current = PartitionState::new(vec![1, 2]);
        let reordered = reassign(&image, &current, &[2, 1]).build().unwrap();
        assert_eq!((reordered.replicas.clone(), reordered.leader, reordered.reassigning()), (vec![2, 1], 1, false));
        let started = reassign(&image, &current, &[1, 3]).build().unwrap();
        let (undo, unclean) = revert(&image, &started);
        let undone = undo.build().unwrap();
        assert!(!unclean);
        assert_eq!(
            (undone.replicas.clone(), undone.isr.clone(), undone.reassigning()),
            (vec![1, 2], vec![1, 2], false)
        );
    }

    #[test]
    fn elections_prefer_the_first_replica_and_unclean_ones_take_any_live_replica() {
        let image = image(&[1, 2], &[3]);
        let moved = PartitionState { leader: 2, leader_epoch: 4, ..PartitionState::new(vec![1, 2]) };
        assert!(Change::new(&image, &moved).build().is_none(), "a normal election keeps a good leader");
        let back = Change::new(&image, &moved).election(Election::Preferred).build().unwrap();
        assert_eq!((back.leader, back.leader_epoch), (1, 5));
        let stranded = PartitionState { leader: -1, isr: vec![3], ..PartitionState::new(vec![3, 2]) };
        assert!(Change::new(&image, &stranded).build().is_none(), "no in-sync replica: no leader");
        let unclean = Change::new(&image, &stranded).election(Election::Unclean).build().unwrap();
        assert_eq!((unclean.leader, unclean.isr.clone()), (2, vec![2]));
    }
}
