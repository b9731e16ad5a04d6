//! ApiVersions: advertises exactly [`SUPPORTED_APIS`](super::SUPPORTED_APIS).

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use super::{encode_response, FrameError, RequestContext, SUPPORTED_APIS};

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
    // Supported and finalized features are left empty: tagged fields a client does not
    // expect are a known source of parse errors in older librdkafka versions.
    ApiVersionsResponse::default().with_api_keys(api_keys())
}

/// A client asking for an ApiVersions version newer than ours gets the v0-shaped reply with
/// `UNSUPPORTED_VERSION` and our ranges, so it can retry with a version we speak.
pub fn unsupported_version_response(correlation_id: i32) -> Result<Bytes, FrameError> {
    let resp = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys());
    encode_response(correlation_id, ApiKey::ApiVersions, 0, &resp)
}
