//! Client telemetry (KIP-714): GetTelemetrySubscriptions and PushTelemetry, served by
//! [`crate::telemetry`]; and ListConfigResources (KIP-1142, formerly
//! ListClientMetricsResources), which lists the config resources, telemetry subscriptions
//! among them.

use kafka_protocol::messages::list_config_resources_response::ConfigResource;
use kafka_protocol::messages::{
    GetTelemetrySubscriptionsRequest, GetTelemetrySubscriptionsResponse, ListConfigResourcesRequest,
    ListConfigResourcesResponse, PushTelemetryRequest, PushTelemetryResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};
use crate::broker::now_ms;
use crate::security::acl::op;
use crate::telemetry::{ClientInfo, Push, TelemetryError, ACCEPTED_COMPRESSION};

/// The client as its connection describes it, for subscriptions' `match` selectors.
fn client_info(ctx: &RequestContext) -> ClientInfo {
    let (software_name, software_version) = ctx.session.client_software();
    ClientInfo {
        client_id: ctx.header.client_id.as_deref().unwrap_or_default().to_string(),
        software_name,
        software_version,
        source_address: ctx.peer.ip().to_string(),
        source_port: ctx.peer.port(),
    }
}

fn error_code(e: &TelemetryError) -> i16 {
    match e {
        TelemetryError::InvalidRequest(_) => ResponseError::InvalidRequest,
        TelemetryError::Throttled(_) => ResponseError::ThrottlingQuotaExceeded,
        TelemetryError::UnknownSubscription(_) => ResponseError::UnknownSubscriptionId,
        TelemetryError::UnsupportedCompression(..) => ResponseError::UnsupportedCompressionType,
        TelemetryError::TooLarge(..) => ResponseError::TelemetryTooLarge,
        // Kafka's answer when its receiver plugin cannot take the metrics
        TelemetryError::BadPayload(..) => ResponseError::InvalidRecord,
    }
    .code()
}

pub async fn get_subscriptions(
    ctx: &RequestContext,
    req: GetTelemetrySubscriptionsRequest,
) -> GetTelemetrySubscriptionsResponse {
    let telemetry = &ctx.broker.telemetry;
    let requested = req.client_instance_id;
    match telemetry.get_subscriptions(requested, client_info(ctx), now_ms()) {
        Ok(a) => GetTelemetrySubscriptionsResponse::default()
            .with_client_instance_id(a.client_instance_id)
            .with_subscription_id(a.subscription_id)
            .with_accepted_compression_types(ACCEPTED_COMPRESSION.to_vec())
            .with_push_interval_ms(a.push_interval_ms)
            .with_telemetry_max_bytes(telemetry.max_bytes().min(i32::MAX as usize) as i32)
            // cumulative sums, so /metrics can show counters as pushed
            .with_delta_temporality(false)
            .with_requested_metrics(a.metrics.into_iter().map(str_bytes).collect()),
        Err(e) => {
            tracing::debug!(error = %e, "GetTelemetrySubscriptions refused");
            GetTelemetrySubscriptionsResponse::default().with_error_code(error_code(&e))
        }
    }
}

pub async fn push(ctx: &RequestContext, req: PushTelemetryRequest) -> PushTelemetryResponse {
    let id = req.client_instance_id;
    let push = Push {
        subscription_id: req.subscription_id,
        terminating: req.terminating,
        compression: req.compression_type,
        metrics: &req.metrics,
    };
    match ctx.broker.telemetry.push(id, client_info(ctx), push, now_ms()) {
        Ok(()) => PushTelemetryResponse::default(),
        Err(e) => {
            tracing::debug!(error = %e, "PushTelemetry refused");
            PushTelemetryResponse::default().with_error_code(error_code(&e))
        }
    }
}

/// Config resource types ListConfigResources v1 lists (Kafka's ids).
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;
const CLIENT_METRICS: i8 = 16;
const GROUP: i8 = 32;
const LISTED_TYPES: [i8; 5] = [TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP];

pub async fn list_config_resources(
    ctx: &RequestContext,
    req: ListConfigResourcesRequest,
) -> ListConfigResourcesResponse {
    if !ctx.cluster_authorized(op::DESCRIBE_CONFIGS) {
        return ListConfigResourcesResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    // v0 (ListClientMetricsResources) lists telemetry subscriptions only
    let types: Vec<i8> = match ctx.version {
        0 => vec![CLIENT_METRICS],
        _ if req.resource_types.is_empty() => LISTED_TYPES.to_vec(),
        _ => req.resource_types.clone(),
    };
    if types.iter().any(|t| !LISTED_TYPES.contains(t)) {
        return ListConfigResourcesResponse::default().with_error_code(ResponseError::UnsupportedVersion.code());
    }
    let broker = &ctx.broker;
    let mut resources = Vec::new();
    let mut add = |resource_type: i8, names: Vec<String>| {
        resources.extend(names.into_iter().map(|n| {
            ConfigResource::default().with_resource_name(StrBytes::from_string(n)).with_resource_type(resource_type)
        }));
    };
    for t in types {
        match t {
            TOPIC => add(TOPIC, broker.topics().iter().map(|t| t.name.clone()).collect()),
            BROKER | BROKER_LOGGER => add(t, vec![broker.node_id.to_string()]),
            CLIENT_METRICS => add(CLIENT_METRICS, broker.telemetry.subscription_names()),
            _ => {
                let mut groups = broker.groups.group_ids();
                groups.extend(broker.groups_with_configs());
                groups.sort();
                groups.dedup();
                add(GROUP, groups)
            }
        }
    }
    ListConfigResourcesResponse::default().with_config_resources(resources)
}
