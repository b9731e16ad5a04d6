//! DescribeCluster and DescribeLogDirs.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeLogDirsRequest, DescribeLogDirsResponse,
    TopicName,
};
use kafka_protocol::ResponseError;

use super::metadata::{CLUSTER_OPERATIONS, OPERATIONS_NOT_REQUESTED};
use super::{str_bytes, RequestContext};
use crate::security::acl::{op, resource, CLUSTER_NAME};

/// DescribeCluster's endpoint type for brokers (2 asks for controllers).
const ENDPOINT_BROKERS: i8 = 1;

pub async fn describe_cluster(ctx: &RequestContext, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let broker = &ctx.broker;
    let view = broker.cluster_view(&ctx.session.listener.name);
    let mut resp = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(view.controller))
        .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
            ctx.authorized_operations(resource::CLUSTER, CLUSTER_NAME, CLUSTER_OPERATIONS)
        } else {
            OPERATIONS_NOT_REQUESTED
        });
    if ctx.version >= 1 {
        resp.endpoint_type = req.endpoint_type;
        if req.endpoint_type != ENDPOINT_BROKERS {
            return resp
                .with_error_code(ResponseError::UnsupportedEndpointType.code())
                .with_error_message(Some(str_bytes("Weir serves broker endpoints only")));
        }
    }
    resp.with_brokers(
        view.brokers
            .into_iter()
            .map(|b| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.id))
                    .with_host(str_bytes(b.host))
                    .with_port(b.port)
                    .with_rack(b.rack.map(str_bytes))
            })
            .collect(),
    )
}

pub async fn describe_log_dirs(ctx: &RequestContext, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let broker = &ctx.broker;
    if !ctx.cluster_authorized(op::DESCRIBE) {
        // Kafka answers an unauthorized client with no log directories (and the code from v3).
        let code = if ctx.version >= 3 { ResponseError::ClusterAuthorizationFailed.code() } else { 0 };
        return DescribeLogDirsResponse::default().with_error_code(code);
    }
    let topics: Vec<DescribeLogDirsTopic> = broker
        .topics()
        .into_iter()
        .filter_map(|t| {
            let wanted: Option<Vec<i32>> = match &req.topics {
                None => None,
                Some(list) => Some(list.iter().find(|w| w.topic.0.as_str() == t.name)?.partitions.clone()),
            };
            let partitions = t
                .partitions
                .iter()
                .filter(|p| wanted.as_ref().is_none_or(|w| w.contains(&p.index)))
                .map(|p| {
                    DescribeLogDirsPartition::default()
                        .with_partition_index(p.index)
                        .with_partition_size(p.log().size_bytes() as i64)
                })
                .collect();
            Some(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(str_bytes(t.name.clone())))
                    .with_partitions(partitions),
            )
        })
        .collect();
    let dir = std::fs::canonicalize(broker.data_dir()).unwrap_or_else(|_| broker.data_dir().to_path_buf());
    let (total, usable) = disk_space(broker.data_dir()).unwrap_or((-1, -1));
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable)])
}

/// Total and available bytes of the file system holding `dir`.
fn disk_space(dir: &std::path::Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frag = st.f_frsize as i64;
    Some((st.f_blocks as i64 * frag, st.f_bavail as i64 * frag))
}
