//! DescribeClientQuotas and AlterClientQuotas: quotas per user / client-id entity, kept in
//! the metadata log. Describing needs DESCRIBE_CONFIGS on the cluster, altering ALTER_CONFIGS.

use kafka_protocol::messages::alter_client_quotas_response::{EntityData as AlteredEntity, EntryData as AlteredEntry};
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};
use crate::cluster::metadata_log::MetadataRecord;
use crate::security::acl::op;
use crate::security::quota::{self, Entity};

/// DescribeClientQuotas match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

pub async fn describe(ctx: &RequestContext, req: DescribeClientQuotasRequest) -> DescribeClientQuotasResponse {
    let resp = DescribeClientQuotasResponse::default();
    let fail = |code: ResponseError, msg: String| {
        resp.clone().with_error_code(code.code()).with_error_message(Some(str_bytes(msg))).with_entries(None)
    };
    if !ctx.cluster_authorized(op::DESCRIBE_CONFIGS) {
        return fail(ResponseError::ClusterAuthorizationFailed, "Cluster authorization failed.".into());
    }
    let mut filter = Vec::new();
    for c in &req.components {
        let kind = c.entity_type.to_string();
        if kind != quota::USER && kind != quota::CLIENT_ID {
            return fail(ResponseError::InvalidRequest, format!("Unsupported entity type {kind}"));
        }
        if filter.iter().any(|(k, _, _): &(String, i8, Option<String>)| *k == kind) {
            return fail(ResponseError::InvalidRequest, format!("Duplicate entity type {kind}"));
        }
        if !matches!(c.match_type, MATCH_EXACT | MATCH_DEFAULT | MATCH_SPECIFIED) {
            return fail(ResponseError::InvalidRequest, format!("Unknown match type {}", c.match_type));
        }
        filter.push((kind, c.match_type, c._match.as_ref().map(|m| m.to_string())));
    }
    let matches = |entity: &Entity| {
        let components_ok = filter.iter().all(|(kind, match_type, name)| match (entity.get(kind), *match_type) {
            (None, _) => false,
            (Some(found), MATCH_EXACT) => found == name,
            (Some(found), MATCH_DEFAULT) => found.is_none(),
            (Some(found), _) => found.is_some(),
        });
        components_ok && (!req.strict || entity.len() == filter.len())
    };
    let image = ctx.broker.security.image();
    let entries = image
        .quotas
        .by_entity
        .iter()
        .filter(|(entity, _)| matches(entity))
        .map(|(entity, values)| {
            EntryData::default()
                .with_entity(
                    entity
                        .iter()
                        .map(|(k, v)| {
                            EntityData::default()
                                .with_entity_type(str_bytes(k.as_str()))
                                .with_entity_name(v.clone().map(str_bytes))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .iter()
                        .map(|(k, v)| ValueData::default().with_key(str_bytes(k.as_str())).with_value(*v))
                        .collect(),
                )
        })
        .collect();
    resp.with_entries(Some(entries))
}

pub async fn alter(ctx: &RequestContext, req: AlterClientQuotasRequest) -> AlterClientQuotasResponse {
    let allowed = ctx.cluster_authorized(op::ALTER_CONFIGS);
    let mut results = Vec::with_capacity(req.entries.len());
    let mut records = Vec::new();
    for e in req.entries {
        let pairs: Vec<(String, Option<String>)> = e
            .entity
            .iter()
            .map(|d| (d.entity_type.to_string(), d.entity_name.as_ref().map(|n| n.to_string())))
            .collect();
        let result = AlteredEntry::default().with_entity(
            e.entity
                .iter()
                .map(|d| {
                    AlteredEntity::default()
                        .with_entity_type(d.entity_type.clone())
                        .with_entity_name(d.entity_name.clone())
                })
                .collect(),
        );
        let checked = if allowed {
            quota::validate_entity(&pairs)
                .and_then(|_| {
                    e.ops.iter().try_for_each(|o| {
                        if o.remove {
                            Ok(())
                        } else {
                            quota::validate_value(o.key.as_str(), o.value)
                        }
                    })
                })
                .map_err(|msg| (ResponseError::InvalidRequest, Some(msg)))
        } else {
            Err((ResponseError::ClusterAuthorizationFailed, None))
        };
        match checked {
            Err((code, msg)) => {
                results.push(result.with_error_code(code.code()).with_error_message(msg.map(str_bytes)))
            }
            Ok(()) => {
                for o in &e.ops {
                    records.push(MetadataRecord::ClientQuota {
                        entity: pairs.clone(),
                        key: o.key.to_string(),
                        value: (!o.remove).then_some(o.value),
                    });
                }
                results.push(result);
            }
        }
    }
    if !req.validate_only {
        if let Err(err) = ctx.broker.record_security(&records).await {
            for r in results.iter_mut().filter(|r| r.error_code == 0) {
                r.error_code = ResponseError::UnknownServerError.code();
                r.error_message = Some(str_bytes(err.to_string()));
            }
        }
    }
    AlterClientQuotasResponse::default().with_entries(results)
}
