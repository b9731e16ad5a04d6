//! ApiVersions: advertises exactly [`SUPPORTED_APIS`](super::SUPPORTED_APIS), the features
//! Weir supports ([`FEATURES`]) and the levels the cluster finalized.

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use super::{encode_response, str_bytes, FrameError, RequestContext, SUPPORTED_APIS};
use crate::cluster::features::FEATURES;

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default().with_api_key(*key as i16).with_min_version(*min).with_max_version(*max)
        })
        .collect()
}

pub async fn handle(ctx: &RequestContext, req: ApiVersionsRequest) -> ApiVersionsResponse {
    if ctx.version >= 3 {
        // who the client is, for client telemetry subscriptions' `match`
        ctx.session.set_client_software(&req.client_software_name, &req.client_software_version);
    }
    let finalized = ctx.broker.metadata_image().features();
    // Before v4, features whose lowest level is 0 are left out: older clients cannot parse
    // them (KAFKA-17492), as Kafka does.
    let supported = FEATURES
        .iter()
        .filter(|f| ctx.version >= 4 || f.min > 0)
        .map(|f| {
            SupportedFeatureKey::default().with_name(str_bytes(f.name)).with_min_version(f.min).with_max_version(f.max)
        })
        .collect();
    let finalized_keys = finalized
        .listed()
        .map(|(name, level)| {
            FinalizedFeatureKey::default()
                .with_name(str_bytes(name))
                .with_min_version_level(level)
                .with_max_version_level(level)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_api_keys(api_keys())
        .with_supported_features(supported)
        .with_finalized_features_epoch(finalized.epoch)
        .with_finalized_features(finalized_keys)
}

/// A client asking for an ApiVersions version newer than ours gets the v0-shaped reply with
/// `UNSUPPORTED_VERSION` and our ranges, so it can retry with a version we speak.
pub fn unsupported_version_response(correlation_id: i32) -> Result<Bytes, FrameError> {
    let resp = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys());
    encode_response(correlation_id, ApiKey::ApiVersions, 0, &resp)
}
