//! CreateAcls, DescribeAcls and DeleteAcls. ACLs are metadata records; without an authorizer
//! every call is answered `SECURITY_DISABLED`, as Kafka does. Creating and deleting needs
//! ALTER on the cluster, describing DESCRIBE.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{str_bytes, RequestContext};
use crate::cluster::metadata_log::MetadataRecord;
use crate::security::acl::{op, AclBinding, AclFilter};

/// An [`AclFilter`] from DescribeAcls' request or one of DeleteAcls' filters (the two
/// messages name the fields alike).
macro_rules! acl_filter {
    ($f:expr) => {
        AclFilter {
            resource_type: $f.resource_type_filter,
            resource_name: $f.resource_name_filter.map(|s| s.to_string()),
            pattern_type: $f.pattern_type_filter,
            principal: $f.principal_filter.map(|s| s.to_string()),
            host: $f.host_filter.map(|s| s.to_string()),
            operation: $f.operation,
            permission: $f.permission_type,
        }
    };
}

const NO_AUTHORIZER: &str = "No Authorizer is configured.";

/// The reason a request about ACLs cannot be served at all, if any.
fn refusal(ctx: &RequestContext, operation: i8) -> Option<(ResponseError, Option<StrBytes>)> {
    if !ctx.broker.security.authorizer.enabled {
        return Some((ResponseError::SecurityDisabled, Some(str_bytes(NO_AUTHORIZER))));
    }
    (!ctx.cluster_authorized(operation)).then_some((ResponseError::ClusterAuthorizationFailed, None))
}

pub async fn create_acls(ctx: &RequestContext, req: CreateAclsRequest) -> CreateAclsResponse {
    let refused = refusal(ctx, op::ALTER);
    let mut results = Vec::new();
    let mut records = Vec::new();
    for c in req.creations {
        let binding = AclBinding {
            resource_type: c.resource_type,
            resource_name: c.resource_name.to_string(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: c.operation,
            permission: c.permission_type,
        };
        let result = AclCreationResult::default();
        if let Some((code, msg)) = &refused {
            results.push(result.with_error_code(code.code()).with_error_message(msg.clone()));
            continue;
        }
        if let Err(msg) = binding.validate() {
            results.push(
                result.with_error_code(ResponseError::InvalidRequest.code()).with_error_message(Some(str_bytes(msg))),
            );
            continue;
        }
        // An ACL that already exists is created again successfully, and kept once.
        let exists = ctx.broker.security.image().acls.id_of(&binding).is_some();
        let pending =
            records.iter().any(|r| matches!(r, MetadataRecord::CreateAcl { binding: b, .. } if *b == binding));
        if !exists && !pending {
            records.push(MetadataRecord::CreateAcl { id: Uuid::new_v4(), binding });
        }
        results.push(result);
    }
    if let Err(e) = ctx.broker.record_security(&records).await {
        for r in &mut results {
            if r.error_code == 0 {
                r.error_code = ResponseError::UnknownServerError.code();
                r.error_message = Some(str_bytes(e.to_string()));
            }
        }
    }
    CreateAclsResponse::default().with_results(results)
}

pub async fn describe_acls(ctx: &RequestContext, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let resp = DescribeAclsResponse::default();
    if let Some((code, msg)) = refusal(ctx, op::DESCRIBE) {
        return resp.with_error_code(code.code()).with_error_message(msg);
    }
    let filter = acl_filter!(req);
    if let Err(msg) = filter.validate() {
        return resp.with_error_code(ResponseError::InvalidRequest.code()).with_error_message(Some(str_bytes(msg)));
    }
    let image = ctx.broker.security.image();
    let mut resources: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for (_, b) in image.acls.matching(&filter) {
        resources.entry((b.resource_type, b.resource_name.clone(), b.pattern_type)).or_default().push(
            AclDescription::default()
                .with_principal(str_bytes(b.principal.as_str()))
                .with_host(str_bytes(b.host.as_str()))
                .with_operation(b.operation)
                .with_permission_type(b.permission),
        );
    }
    resp.with_resources(
        resources
            .into_iter()
            .map(|((rt, name, pt), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(rt)
                    .with_resource_name(str_bytes(name))
                    .with_pattern_type(pt)
                    .with_acls(acls)
            })
            .collect(),
    )
}

pub async fn delete_acls(ctx: &RequestContext, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let refused = refusal(ctx, op::ALTER);
    let mut results = Vec::new();
    let mut doomed: Vec<Uuid> = Vec::new();
    for f in req.filters {
        let result = DeleteAclsFilterResult::default();
        if let Some((code, msg)) = &refused {
            results.push(result.with_error_code(code.code()).with_error_message(msg.clone()));
            continue;
        }
        let filter = acl_filter!(f);
        if let Err(msg) = filter.validate() {
            results.push(
                result.with_error_code(ResponseError::InvalidRequest.code()).with_error_message(Some(str_bytes(msg))),
            );
            continue;
        }
        let image = ctx.broker.security.image();
        let matching: Vec<DeleteAclsMatchingAcl> = image
            .acls
            .matching(&filter)
            .map(|(id, b)| {
                if !doomed.contains(id) {
                    doomed.push(*id);
                }
                DeleteAclsMatchingAcl::default()
                    .with_resource_type(b.resource_type)
                    .with_resource_name(str_bytes(b.resource_name.as_str()))
                    .with_pattern_type(b.pattern_type)
                    .with_principal(str_bytes(b.principal.as_str()))
                    .with_host(str_bytes(b.host.as_str()))
                    .with_operation(b.operation)
                    .with_permission_type(b.permission)
            })
            .collect();
        results.push(result.with_matching_acls(matching));
    }
    let records: Vec<MetadataRecord> = doomed.into_iter().map(|id| MetadataRecord::RemoveAcl { id }).collect();
    if let Err(e) = ctx.broker.record_security(&records).await {
        for r in &mut results {
            if r.error_code == 0 {
                r.error_code = ResponseError::UnknownServerError.code();
                r.error_message = Some(str_bytes(e.to_string()));
            }
        }
    }
    DeleteAclsResponse::default().with_filter_results(results)
}
