//! UpdateFeatures (API 57): changes finalized feature levels through the controller, as
//! `kafka-features.sh upgrade|downgrade|disable` and `Admin.updateFeatures` ask it. The checks
//! (supported ranges, upgrade types, metadata.version downgrades) are in
//! [`crate::cluster::features`].

use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{UpdateFeaturesRequest, UpdateFeaturesResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};
use crate::broker::AdminError;
use crate::cluster::features::{FeatureUpdate, UpgradeType};
use crate::security::acl::op;

pub async fn handle(ctx: &RequestContext, req: UpdateFeaturesRequest) -> UpdateFeaturesResponse {
    let updates: Vec<FeatureUpdate> = req
        .feature_updates
        .iter()
        .map(|u| FeatureUpdate {
            name: u.feature.to_string(),
            level: u.max_version_level,
            // v0 says whether a downgrade is allowed; later versions name the upgrade type
            upgrade_type: match ctx.version {
                0 if u.allow_downgrade => UpgradeType::SafeDowngrade,
                0 => UpgradeType::Upgrade,
                _ => UpgradeType::from_code(u.upgrade_type),
            },
        })
        .collect();
    let result = if !ctx.cluster_authorized(op::ALTER) {
        Err(AdminError::ClusterAuthorizationFailed)
    } else {
        ctx.broker.update_features(updates, req.validate_only).await
    };
    match result {
        // per-feature results only up to v1, and only on success (as Kafka's controller answers)
        Ok(()) if ctx.version <= 1 => UpdateFeaturesResponse::default().with_results(
            req.feature_updates
                .iter()
                .map(|u| UpdatableFeatureResult::default().with_feature(u.feature.clone()))
                .collect(),
        ),
        Ok(()) => UpdateFeaturesResponse::default(),
        Err(e) => {
            let message = match e.code() == ResponseError::InvalidUpdateVersion.code() {
                true => format!("The update failed for all features since the following feature had an error: {e}"),
                false => e.to_string(),
            };
            UpdateFeaturesResponse::default().with_error_code(e.code()).with_error_message(Some(str_bytes(message)))
        }
    }
}
