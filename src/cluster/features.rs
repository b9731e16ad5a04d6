//! Feature flags (KIP-584): the features Weir implements with the levels it supports, the
//! levels a new cluster finalizes, and Kafka's rules for changing a finalized level
//! (UpdateFeatures, as Kafka's `FeatureControlManager` checks it).
//!
//! Finalized levels live in the metadata log (one [`Finalized`] record replaces them all, so
//! a change to several features is atomic, as in Kafka), which keeps every broker of a
//! cluster advertising the same levels and epoch in ApiVersions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const METADATA_VERSION: &str = "metadata.version";
pub const KRAFT_VERSION: &str = "kraft.version";
pub const TRANSACTION_VERSION: &str = "transaction.version";
pub const GROUP_VERSION: &str = "group.version";
pub const ELIGIBLE_LEADER_REPLICAS_VERSION: &str = "eligible.leader.replicas.version";
pub const SHARE_VERSION: &str = "share.version";
pub const STREAMS_VERSION: &str = "streams.version";

/// A feature Weir knows: the levels it supports and the one a new cluster starts at.
#[derive(Debug, Clone, Copy)]
pub struct Feature {
    pub name: &'static str,
    pub min: i16,
    pub max: i16,
    pub bootstrap: i16,
}

/// Every feature Weir advertises. A level above what Weir implements is never advertised:
/// transactions v2 (KIP-890 part 2: EndTxn v5, epoch bump per transaction), eligible leader
/// replicas (KIP-966) and streams groups (KIP-1071) stay at 0.
pub const FEATURES: &[Feature] = &[
    // 3.3-IV3 .. 4.2-IV1: Weir's metadata records do not change with the version
    Feature { name: METADATA_VERSION, min: 7, max: 29, bootstrap: 29 },
    // the dynamic quorum (AddRaftVoter / RemoveRaftVoter, KIP-853)
    Feature { name: KRAFT_VERSION, min: 0, max: 1, bootstrap: 1 },
    Feature { name: TRANSACTION_VERSION, min: 0, max: 0, bootstrap: 0 },
    // the KIP-848 consumer group protocol
    Feature { name: GROUP_VERSION, min: 0, max: 1, bootstrap: 1 },
    Feature { name: ELIGIBLE_LEADER_REPLICAS_VERSION, min: 0, max: 0, bootstrap: 0 },
    // share groups (KIP-932)
    Feature { name: SHARE_VERSION, min: 0, max: 1, bootstrap: 1 },
    Feature { name: STREAMS_VERSION, min: 0, max: 0, bootstrap: 0 },
];

/// Whether a metadata.version level changed the metadata records in Kafka (its
/// `didMetadataChange`): a downgrade across such a level could lose metadata, so Kafka
/// refuses it. Levels 7..=29.
const METADATA_CHANGED: [bool; 23] = [
    true, true, false, false, true, false, true, true, true, false, true, false, false, false, false, false, true,
    false, false, false, false, false, false,
];

/// The level a new cluster starts `name` at (0 for a feature Weir does not know).
pub fn bootstrap_level(name: &str) -> i16 {
    FEATURES.iter().find(|f| f.name == name).map_or(0, |f| f.bootstrap)
}

/// The finalized feature levels and their epoch (bumped at every change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finalized {
    pub levels: BTreeMap<String, i16>,
    pub epoch: i64,
}

impl Finalized {
    /// What a new cluster finalizes (and a cluster whose metadata log predates features).
    pub fn bootstrap() -> Finalized {
        Finalized { levels: FEATURES.iter().map(|f| (f.name.to_string(), f.bootstrap)).collect(), epoch: 0 }
    }

    /// A feature's finalized level (0 when not finalized).
    pub fn level(&self, name: &str) -> i16 {
        self.levels.get(name).copied().unwrap_or(0)
    }

    /// The finalized features with a level above 0, as ApiVersions lists them.
    pub fn listed(&self) -> impl Iterator<Item = (&str, i16)> {
        self.levels.iter().filter(|(_, l)| **l > 0).map(|(n, l)| (n.as_str(), *l))
    }
}

/// How UpdateFeatures may move a level (its `UpgradeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpgradeType {
    Upgrade,
    SafeDowngrade,
    UnsafeDowngrade,
    Unknown,
}

impl UpgradeType {
    pub fn from_code(code: i8) -> UpgradeType {
        match code {
            1 => UpgradeType::Upgrade,
            2 => UpgradeType::SafeDowngrade,
            3 => UpgradeType::UnsafeDowngrade,
            _ => UpgradeType::Unknown,
        }
    }
}

/// One requested change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureUpdate {
    pub name: String,
    pub level: i16,
    pub upgrade_type: UpgradeType,
}

/// Applies `updates` to `current`, all or none, with Kafka's checks and messages (the
/// message is the whole reason, as Kafka's `INVALID_UPDATE_VERSION` carries it).
/// `controller` is the node checking (named in the messages).
pub fn update(current: &Finalized, updates: &[FeatureUpdate], controller: i32) -> Result<Finalized, String> {
    let mut next = current.levels.clone();
    for u in updates {
        check(current, u, controller)?;
        next.insert(u.name.clone(), u.level);
    }
    Ok(Finalized { levels: next, epoch: current.epoch + 1 })
}

/// One update's checks. Kafka's other one — a level of 1 or more needs metadata.version 7 —
/// always holds here: metadata.version cannot go below 7.
fn check(current: &Finalized, u: &FeatureUpdate, controller: i32) -> Result<(), String> {
    let invalid = |why: String| format!("Invalid update version {} for feature {}. {why}", u.level, u.name);
    if u.upgrade_type == UpgradeType::Unknown {
        return Err(invalid("The controller does not support the given upgrade type.".into()));
    }
    if u.level < 0 {
        return Err(invalid("A feature version cannot be less than 0.".into()));
    }
    let unsupported = || invalid(format!("Local controller {controller} does not support this feature."));
    let Some(feature) = FEATURES.iter().find(|f| f.name == u.name) else {
        return Err(unsupported());
    };
    if !(feature.min..=feature.max).contains(&u.level) {
        return Err(match feature.max {
            0 => unsupported(),
            max => invalid(format!("Local controller {controller} only supports versions {}-{max}", feature.min)),
        });
    }
    let now = current.level(&u.name);
    if u.level < now && u.upgrade_type == UpgradeType::Upgrade {
        return Err(invalid(
            "Can't downgrade the version of this feature without setting the upgrade type to either safe or \
             unsafe downgrade."
                .into(),
        ));
    }
    if u.level > now && u.upgrade_type != UpgradeType::Upgrade {
        return Err(invalid("Can't downgrade to a newer version.".into()));
    }
    match u.name.as_str() {
        METADATA_VERSION if u.level < now => check_metadata_downgrade(now, u),
        KRAFT_VERSION if u.level != now && u.upgrade_type != UpgradeType::Upgrade => {
            Err(invalid("Can't downgrade the version of this feature.".into()))
        }
        _ => Ok(()),
    }
}

/// A metadata.version downgrade: refused where a level in between changed the records
/// (unsafe or not, as Kafka 4.2 refuses it).
fn check_metadata_downgrade(now: i16, u: &FeatureUpdate) -> Result<(), String> {
    let changed = |level: i16| METADATA_CHANGED.get(usize::try_from(level - 7).unwrap_or(0)).copied().unwrap_or(true);
    if !((u.level + 1)..=now).any(changed) {
        return Ok(());
    }
    let why = match u.upgrade_type {
        UpgradeType::UnsafeDowngrade => "Unsafe metadata downgrade is not supported in this version.",
        _ => "Refusing to perform the requested downgrade because it might delete metadata information.",
    };
    Err(format!("Unsupported metadata.version downgrade from {now} to {}. {why}", u.level))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(name: &str, level: i16, upgrade_type: UpgradeType) -> FeatureUpdate {
        FeatureUpdate { name: name.into(), level, upgrade_type }
    }

    #[test]
    fn levels_move_as_kafka_allows() {
        let now = Finalized::bootstrap();
        assert_eq!(now.level(SHARE_VERSION), 1);
        // a safe downgrade to 0 disables share groups; an upgrade brings them back
        let off = update(&now, &[up(SHARE_VERSION, 0, UpgradeType::SafeDowngrade)], 1).unwrap();
        assert_eq!((off.level(SHARE_VERSION), off.epoch), (0, 1));
        assert!(!off.listed().any(|(n, _)| n == SHARE_VERSION));
        let on = update(&off, &[up(SHARE_VERSION, 1, UpgradeType::Upgrade)], 1).unwrap();
        assert_eq!((on.level(SHARE_VERSION), on.epoch), (1, 2));
        // a downgrade needs a downgrade type; an upgrade type cannot lower
        let e = update(&now, &[up(GROUP_VERSION, 0, UpgradeType::Upgrade)], 1).unwrap_err();
        assert!(e.contains("without setting the upgrade type"), "{e}");
        let e = update(&off, &[up(SHARE_VERSION, 1, UpgradeType::SafeDowngrade)], 1).unwrap_err();
        assert!(e.contains("Can't downgrade to a newer version."), "{e}");
        // beyond what Weir implements, or unknown
        let e = update(&now, &[up(TRANSACTION_VERSION, 2, UpgradeType::Upgrade)], 1).unwrap_err();
        assert!(e.contains("does not support this feature"), "{e}");
        let e = update(&now, &[up(GROUP_VERSION, 2, UpgradeType::Upgrade)], 1).unwrap_err();
        assert!(e.contains("only supports versions 0-1"), "{e}");
        assert!(update(&now, &[up("no.such.feature", 1, UpgradeType::Upgrade)], 1).is_err());
        // all or none
        let e = update(
            &now,
            &[up(SHARE_VERSION, 0, UpgradeType::SafeDowngrade), up(STREAMS_VERSION, 1, UpgradeType::Upgrade)],
            1,
        );
        assert!(e.is_err());
        // kraft.version never goes down
        assert!(update(&now, &[up(KRAFT_VERSION, 0, UpgradeType::SafeDowngrade)], 1).is_err());
    }

    #[test]
    fn metadata_version_downgrades_only_where_nothing_changed() {
        let now = Finalized::bootstrap();
        // 29 -> 23: no level in 24..=29 changed the records
        assert!(update(&now, &[up(METADATA_VERSION, 23, UpgradeType::SafeDowngrade)], 1).is_ok());
        // 29 -> 22: 23 did
        let e = update(&now, &[up(METADATA_VERSION, 22, UpgradeType::SafeDowngrade)], 1).unwrap_err();
        assert!(e.starts_with("Unsupported metadata.version downgrade from 29 to 22. Refusing"), "{e}");
        let e = update(&now, &[up(METADATA_VERSION, 22, UpgradeType::UnsafeDowngrade)], 1).unwrap_err();
        assert!(e.contains("Unsafe metadata downgrade is not supported"), "{e}");
        assert!(update(&now, &[up(METADATA_VERSION, 6, UpgradeType::SafeDowngrade)], 1).is_err());
        assert!(update(&now, &[up(METADATA_VERSION, 30, UpgradeType::Upgrade)], 1).is_err());
    }
}
