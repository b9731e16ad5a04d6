//! Every advertised version of every API gets a decodable response (no connection closed by
//! an encoding error), with requests that carry real content.

mod common;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use weir::handlers::SUPPORTED_APIS;

/// Encodes one request body at the version it was built for.
type Encoder = Box<dyn Fn(&mut bytes::BytesMut) -> anyhow::Result<()>>;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// A request of `key` at `version` that names `topic` (and its id where the version uses ids).
fn request(key: ApiKey, version: i16, topic: &str, id: uuid::Uuid, records: &Bytes) -> Option<Encoder> {
    macro_rules! boxed {
        ($r:expr) => {{
            let r = $r;
            Some(Box::new(move |b: &mut bytes::BytesMut| r.encode(b, version)))
        }};
    }
    let by_id = |v: i16| if version >= v { (name(""), id) } else { (name(topic), uuid::Uuid::nil()) };
    match key {
        ApiKey::Produce => {
            let (n, tid) = by_id(13);
            boxed!(ProduceRequest::default().with_acks(1).with_timeout_ms(5000).with_topic_data(vec![
                produce_request::TopicProduceData::default().with_name(n).with_topic_id(tid).with_partition_data(vec![
                    produce_request::PartitionProduceData::default().with_index(0).with_records(Some(records.clone())),
                ]),
            ]))
        }
        ApiKey::Fetch => {
            let (n, tid) = by_id(13);
            boxed!(FetchRequest::default()
                .with_max_wait_ms(10)
                .with_max_bytes(1 << 20)
                .with_replica_id(BrokerId(-1))
                .with_session_epoch(-1)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(n)
                    .with_topic_id(tid)
                    .with_partitions(vec![fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),]),]))
        }
        ApiKey::ListOffsets => boxed!(ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default().with_name(name(topic)).with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-2),
            ]),
        ])),
        ApiKey::OffsetForLeaderEpoch => boxed!(OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(-1)
                    .with_leader_epoch(0)])])),
        ApiKey::Metadata => boxed!(MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name(topic))),
            metadata_request::MetadataRequestTopic::default().with_name(Some(name("missing-topic"))),
        ]))),
        ApiKey::ApiVersions => boxed!(ApiVersionsRequest::default()),
        ApiKey::CreateTopics => boxed!(CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(1)
                .with_replication_factor(1),
            create_topics_request::CreatableTopic::default()
                .with_name(name(&format!("new-{version}-{topic}")))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ])),
        ApiKey::DeleteTopics => {
            let gone = format!("gone-{topic}");
            if version >= 6 {
                boxed!(DeleteTopicsRequest::default()
                    .with_topics(vec![delete_topics_request::DeleteTopicState::default().with_name(Some(name(&gone)))]))
            } else {
                boxed!(DeleteTopicsRequest::default().with_topic_names(vec![name(&gone)]))
            }
        }
        ApiKey::DeleteRecords => boxed!(DeleteRecordsRequest::default().with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default().with_name(name(topic)).with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default().with_partition_index(0).with_offset(0),
                delete_records_request::DeleteRecordsPartition::default().with_partition_index(9).with_offset(0),
            ]),
        ])),
        ApiKey::DescribeConfigs => boxed!(DescribeConfigsRequest::default()
            .with_include_synonyms(version >= 1)
            .with_include_documentation(version >= 3)
            .with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(topic.to_string())),
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("1")),
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("missing-topic")),
            ])),
        ApiKey::AlterConfigs => boxed!(AlterConfigsRequest::default().with_validate_only(true).with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configs(vec![alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_value(Some(StrBytes::from_static_str("1000"))),]),
        ])),
        ApiKey::IncrementalAlterConfigs => boxed!(IncrementalAlterConfigsRequest::default()
            .with_validate_only(true)
            .with_resources(vec![incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configs(vec![incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("cleanup.policy"))
                    .with_config_operation(2)
                    .with_value(Some(StrBytes::from_static_str("compact"))),]),])),
        ApiKey::DescribeLogDirs => boxed!(DescribeLogDirsRequest::default().with_topics(None)),
        ApiKey::CreatePartitions => {
            boxed!(CreatePartitionsRequest::default().with_validate_only(true).with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default().with_name(name(topic)).with_count(4),
            ]))
        }
        ApiKey::DescribeCluster => boxed!(DescribeClusterRequest::default().with_endpoint_type(1)),
        ApiKey::FindCoordinator => boxed!(FindCoordinatorRequest::default()
            .with_key(StrBytes::from_static_str(if version < 4 { "g" } else { "" }))
            .with_coordinator_keys(if version >= 4 { vec![StrBytes::from_static_str("g")] } else { vec![] })),
        ApiKey::JoinGroup => boxed!(JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(format!("g-join-{version}"))))
            .with_session_timeout_ms(10000)
            .with_rebalance_timeout_ms(10000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"m"))])),
        ApiKey::SyncGroup => boxed!(SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g-none")))
            .with_member_id(StrBytes::from_static_str("m"))
            .with_generation_id(1)),
        ApiKey::Heartbeat => boxed!(HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g-none")))
            .with_member_id(StrBytes::from_static_str("m"))),
        ApiKey::LeaveGroup => boxed!(LeaveGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g-none")))
            .with_member_id(StrBytes::from_static_str(if version < 3 { "m" } else { "" }))
            .with_members(if version >= 3 {
                vec![leave_group_request::MemberIdentity::default().with_member_id(StrBytes::from_static_str("m"))]
            } else {
                vec![]
            })),
        ApiKey::OffsetCommit => {
            let (n, tid) = by_id(10);
            boxed!(OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g-simple")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(n)
                    .with_topic_id(tid)
                    .with_partitions(vec![offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1)
                        .with_committed_metadata(Some(StrBytes::from_static_str("meta")))])]))
        }
        ApiKey::OffsetFetch => {
            if version >= 8 {
                let (n, tid) = by_id(10);
                boxed!(OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(StrBytes::from_static_str("g-simple")))
                        .with_topics(Some(vec![offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(n)
                            .with_topic_id(tid)
                            .with_partition_indexes(vec![0, 1])])),
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(StrBytes::from_static_str("g-simple")))
                        .with_topics(None),
                ]))
            } else {
                boxed!(OffsetFetchRequest::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("g-simple")))
                    .with_topics(Some(vec![offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(name(topic))
                        .with_partition_indexes(vec![0, 1])])))
            }
        }
        ApiKey::DescribeGroups => boxed!(DescribeGroupsRequest::default().with_groups(vec![
            GroupId(StrBytes::from_static_str("g-simple")),
            GroupId(StrBytes::from_static_str("g-join-9")),
            GroupId(StrBytes::from_static_str("g-missing")),
        ])),
        ApiKey::ListGroups => boxed!(ListGroupsRequest::default()),
        ApiKey::DeleteGroups => boxed!(
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(StrBytes::from_static_str("g-missing"))])
        ),
        ApiKey::OffsetDelete => boxed!(OffsetDeleteRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g-simple")))
            .with_topics(vec![offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default().with_partition_index(0)
                ])])),
        ApiKey::ConsumerGroupHeartbeat => boxed!(ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(format!("cg-{version}"))))
            .with_member_id(StrBytes::from_string(uuid::Uuid::new_v4().to_string()))
            .with_rebalance_timeout_ms(30000)
            .with_subscribed_topic_names(Some(vec![name(topic)]))),
        ApiKey::GetTelemetrySubscriptions => boxed!(GetTelemetrySubscriptionsRequest::default()),
        ApiKey::PushTelemetry => boxed!(PushTelemetryRequest::default()
            .with_client_instance_id(uuid::Uuid::new_v4())
            .with_metrics(Bytes::from_static(b"\x0a\x00"))),
        ApiKey::ListConfigResources => {
            let types = if version >= 1 { vec![2, 16] } else { vec![] };
            boxed!(ListConfigResourcesRequest::default().with_resource_types(types))
        }
        ApiKey::ConsumerGroupDescribe => boxed!(ConsumerGroupDescribeRequest::default().with_group_ids(vec![
            GroupId(StrBytes::from_string(format!("cg-{version}"))),
            GroupId(StrBytes::from_static_str("cg-missing")),
        ])),
        ApiKey::DescribeProducers => boxed!(DescribeProducersRequest::default().with_topics(vec![
            describe_producers_request::TopicRequest::default()
                .with_name(name(topic))
                .with_partition_indexes(vec![0, 5]),
        ])),
        ApiKey::InitProducerId => boxed!(InitProducerIdRequest::default()
            .with_transaction_timeout_ms(60000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)),
        ApiKey::AddPartitionsToTxn => {
            let txn_id = TransactionalId(StrBytes::from_string(format!("tx-{version}")));
            let topics = vec![add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![0])];
            if version <= 3 {
                boxed!(AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(txn_id)
                    .with_v3_and_below_producer_id(ProducerId(1))
                    .with_v3_and_below_topics(topics))
            } else {
                boxed!(AddPartitionsToTxnRequest::default().with_transactions(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                        .with_transactional_id(txn_id)
                        .with_producer_id(ProducerId(1))
                        .with_verify_only(true)
                        .with_topics(topics)
                ]))
            }
        }
        ApiKey::AddOffsetsToTxn => boxed!(AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx-missing")))
            .with_group_id(GroupId(StrBytes::from_static_str("g")))),
        ApiKey::EndTxn => boxed!(EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx-missing")))
            .with_committed(true)),
        ApiKey::ElectLeaders => boxed!(ElectLeadersRequest::default().with_topic_partitions(Some(vec![
            elect_leaders_request::TopicPartitions::default().with_topic(name(topic)).with_partitions(vec![0])
        ]))),
        ApiKey::AlterPartitionReassignments => boxed!(AlterPartitionReassignmentsRequest::default()
            .with_allow_replication_factor_change(true)
            .with_topics(vec![alter_partition_reassignments_request::ReassignableTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![alter_partition_reassignments_request::ReassignablePartition::default()
                    .with_replicas(Some(vec![BrokerId(1)]))])])),
        ApiKey::ListPartitionReassignments => boxed!(ListPartitionReassignmentsRequest::default()),
        ApiKey::UnregisterBroker => boxed!(UnregisterBrokerRequest::default().with_broker_id(BrokerId(42))),
        // a single broker's quorum: node 42 is not a voter, and adding one needs a listener
        ApiKey::AddRaftVoter => boxed!(AddRaftVoterRequest::default().with_voter_id(42)),
        ApiKey::RemoveRaftVoter => boxed!(RemoveRaftVoterRequest::default().with_voter_id(42)),
        ApiKey::DescribeTopicPartitions => boxed!(DescribeTopicPartitionsRequest::default()
            .with_response_partition_limit(10)
            .with_topics(vec![describe_topic_partitions_request::TopicRequest::default().with_name(name(topic))])),
        ApiKey::ShareGroupHeartbeat => boxed!(ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("share-versions")))
            .with_member_id(StrBytes::from_static_str("m-versions"))
            .with_subscribed_topic_names(Some(vec![name(topic)]))),
        ApiKey::ShareGroupDescribe => boxed!(ShareGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(StrBytes::from_static_str("share-versions"))])),
        ApiKey::ShareFetch => boxed!(ShareFetchRequest::default()
            .with_group_id(Some(GroupId(StrBytes::from_static_str("share-versions"))))
            .with_member_id(Some(StrBytes::from_static_str("m-versions")))
            .with_max_records(10)
            .with_topics(vec![share_fetch_request::FetchTopic::default()
                .with_topic_id(id)
                .with_partitions(vec![share_fetch_request::FetchPartition::default().with_partition_index(0)])])),
        ApiKey::ShareAcknowledge => boxed!(ShareAcknowledgeRequest::default()
            .with_group_id(Some(GroupId(StrBytes::from_static_str("share-versions"))))
            .with_member_id(Some(StrBytes::from_static_str("m-versions")))
            .with_share_session_epoch(1)),
        ApiKey::ReadShareGroupState => boxed!(ReadShareGroupStateRequest::default()
            .with_group_id(StrBytes::from_static_str("share-versions"))
            .with_topics(vec![read_share_group_state_request::ReadStateData::default()
                .with_topic_id(id)
                .with_partitions(vec![read_share_group_state_request::PartitionData::default()])])),
        ApiKey::WriteShareGroupState => boxed!(WriteShareGroupStateRequest::default()
            .with_group_id(StrBytes::from_static_str("share-versions"))
            .with_topics(vec![write_share_group_state_request::WriteStateData::default()
                .with_topic_id(id)
                .with_partitions(vec![write_share_group_state_request::PartitionData::default()])])),
        ApiKey::DeleteShareGroupState => boxed!(DeleteShareGroupStateRequest::default()
            .with_group_id(StrBytes::from_static_str("share-versions"))
            .with_topics(vec![delete_share_group_state_request::DeleteStateData::default()
                .with_topic_id(id)
                .with_partitions(vec![delete_share_group_state_request::PartitionData::default()])])),
        ApiKey::DescribeShareGroupOffsets => boxed!(DescribeShareGroupOffsetsRequest::default()
            .with_groups(vec![describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
                .with_group_id(GroupId(StrBytes::from_static_str("share-versions")))])),
        ApiKey::AlterShareGroupOffsets => boxed!(AlterShareGroupOffsetsRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("share-versions")))
            .with_topics(vec![alter_share_group_offsets_request::AlterShareGroupOffsetsRequestTopic::default()
                .with_topic_name(name(topic))
                .with_partitions(vec![
                    alter_share_group_offsets_request::AlterShareGroupOffsetsRequestPartition::default()
                        .with_start_offset(0)
                ])])),
        ApiKey::DeleteShareGroupOffsets => boxed!(DeleteShareGroupOffsetsRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("share-versions")))
            .with_topics(vec![delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic::default()
                .with_topic_name(name(topic))])),
        // validate-only: every version is checked without changing the cluster's levels
        ApiKey::UpdateFeatures => boxed!(UpdateFeaturesRequest::default()
            .with_validate_only(version >= 1)
            .with_feature_updates(vec![update_features_request::FeatureUpdateKey::default()
                .with_feature(StrBytes::from_static_str("group.version"))
                .with_max_version_level(if version >= 1 { 1 } else { 0 })
                .with_upgrade_type(1)])),
        ApiKey::DescribeQuorum => {
            boxed!(DescribeQuorumRequest::default().with_topics(vec![describe_quorum_request::TopicData::default()
                .with_topic_name(name("__cluster_metadata"))
                .with_partitions(vec![describe_quorum_request::PartitionData::default().with_partition_index(0)])]))
        }
        ApiKey::WriteTxnMarkers => boxed!(WriteTxnMarkersRequest::default().with_markers(vec![
            write_txn_markers_request::WritableTxnMarker::default()
                .with_producer_id(ProducerId(12345))
                .with_producer_epoch(0)
                .with_transaction_result(false)
                .with_topics(vec![write_txn_markers_request::WritableTxnMarkerTopic::default()
                    .with_name(name(topic))
                    .with_partition_indexes(vec![0])])
        ])),
        ApiKey::TxnOffsetCommit => boxed!(TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx-missing")))
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_topics(vec![txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(1)])])),
        ApiKey::DescribeTransactions => boxed!(DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_static_str("tx-missing"))])),
        ApiKey::ListTransactions => boxed!(ListTransactionsRequest::default()
            .with_state_filters(vec![StrBytes::from_static_str("Ongoing")])
            .with_duration_filter(-1)),
        ApiKey::SaslHandshake => {
            boxed!(SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("SCRAM-SHA-256")))
        }
        ApiKey::SaslAuthenticate => {
            boxed!(SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0user\0password")))
        }
        ApiKey::CreateAcls => {
            boxed!(CreateAclsRequest::default().with_creations(vec![create_acls_request::AclCreation::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_resource_pattern_type(3)
                .with_principal(StrBytes::from_static_str("User:alice"))
                .with_host(StrBytes::from_static_str("*"))
                .with_operation(3)
                .with_permission_type(3)]))
        }
        ApiKey::DescribeAcls => boxed!(DescribeAclsRequest::default()
            .with_resource_type_filter(1)
            .with_pattern_type_filter(1)
            .with_operation(1)
            .with_permission_type(1)),
        ApiKey::DeleteAcls => {
            boxed!(DeleteAclsRequest::default().with_filters(vec![delete_acls_request::DeleteAclsFilter::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1)]))
        }
        ApiKey::DescribeClientQuotas => boxed!(DescribeClientQuotasRequest::default().with_components(vec![
            describe_client_quotas_request::ComponentData::default()
                .with_entity_type(StrBytes::from_static_str("user"))
                .with_match_type(2)
                .with_match(None)
        ])),
        ApiKey::AlterClientQuotas => {
            boxed!(AlterClientQuotasRequest::default().with_validate_only(true).with_entries(vec![
                alter_client_quotas_request::EntryData::default()
                    .with_entity(vec![alter_client_quotas_request::EntityData::default()
                        .with_entity_type(StrBytes::from_static_str("client-id"))
                        .with_entity_name(Some(StrBytes::from_static_str("c")))])
                    .with_ops(vec![alter_client_quotas_request::OpData::default()
                        .with_key(StrBytes::from_static_str("producer_byte_rate"))
                        .with_value(1024.0)])
            ]))
        }
        ApiKey::DescribeUserScramCredentials => boxed!(DescribeUserScramCredentialsRequest::default().with_users(None)),
        ApiKey::AlterUserScramCredentials => boxed!(AlterUserScramCredentialsRequest::default().with_deletions(vec![
            alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                .with_name(StrBytes::from_static_str("nobody"))
                .with_mechanism(1)
        ])),
        _ => None,
    }
}

fn decode_response(key: ApiKey, version: i16, mut frame: Bytes) -> anyhow::Result<()> {
    macro_rules! check {
        ($t:ty) => {{
            ResponseHeader::decode(&mut frame, <$t>::header_version(version))?;
            <$t>::decode(&mut frame, version)?;
        }};
    }
    match key {
        ApiKey::Produce => check!(ProduceResponse),
        ApiKey::Fetch => check!(FetchResponse),
        ApiKey::ListOffsets => check!(ListOffsetsResponse),
        ApiKey::OffsetForLeaderEpoch => check!(OffsetForLeaderEpochResponse),
        ApiKey::Metadata => check!(MetadataResponse),
        ApiKey::ApiVersions => check!(ApiVersionsResponse),
        ApiKey::CreateTopics => check!(CreateTopicsResponse),
        ApiKey::DeleteTopics => check!(DeleteTopicsResponse),
        ApiKey::DeleteRecords => check!(DeleteRecordsResponse),
        ApiKey::DescribeConfigs => check!(DescribeConfigsResponse),
        ApiKey::AlterConfigs => check!(AlterConfigsResponse),
        ApiKey::IncrementalAlterConfigs => check!(IncrementalAlterConfigsResponse),
        ApiKey::DescribeLogDirs => check!(DescribeLogDirsResponse),
        ApiKey::CreatePartitions => check!(CreatePartitionsResponse),
        ApiKey::DescribeCluster => check!(DescribeClusterResponse),
        ApiKey::InitProducerId => check!(InitProducerIdResponse),
        ApiKey::FindCoordinator => check!(FindCoordinatorResponse),
        ApiKey::JoinGroup => check!(JoinGroupResponse),
        ApiKey::SyncGroup => check!(SyncGroupResponse),
        ApiKey::Heartbeat => check!(HeartbeatResponse),
        ApiKey::LeaveGroup => check!(LeaveGroupResponse),
        ApiKey::OffsetCommit => check!(OffsetCommitResponse),
        ApiKey::OffsetFetch => check!(OffsetFetchResponse),
        ApiKey::DescribeGroups => check!(DescribeGroupsResponse),
        ApiKey::ListGroups => check!(ListGroupsResponse),
        ApiKey::DeleteGroups => check!(DeleteGroupsResponse),
        ApiKey::OffsetDelete => check!(OffsetDeleteResponse),
        ApiKey::DescribeProducers => check!(DescribeProducersResponse),
        ApiKey::ConsumerGroupHeartbeat => check!(ConsumerGroupHeartbeatResponse),
        ApiKey::ConsumerGroupDescribe => check!(ConsumerGroupDescribeResponse),
        ApiKey::GetTelemetrySubscriptions => check!(GetTelemetrySubscriptionsResponse),
        ApiKey::PushTelemetry => check!(PushTelemetryResponse),
        ApiKey::ListConfigResources => check!(ListConfigResourcesResponse),
        ApiKey::AddPartitionsToTxn => check!(AddPartitionsToTxnResponse),
        ApiKey::AddOffsetsToTxn => check!(AddOffsetsToTxnResponse),
        ApiKey::EndTxn => check!(EndTxnResponse),
        ApiKey::WriteTxnMarkers => check!(WriteTxnMarkersResponse),
        ApiKey::DescribeQuorum => check!(DescribeQuorumResponse),
        ApiKey::UpdateFeatures => check!(UpdateFeaturesResponse),
        ApiKey::ElectLeaders => check!(ElectLeadersResponse),
        ApiKey::AlterPartitionReassignments => check!(AlterPartitionReassignmentsResponse),
        ApiKey::ListPartitionReassignments => check!(ListPartitionReassignmentsResponse),
        ApiKey::UnregisterBroker => check!(UnregisterBrokerResponse),
        ApiKey::AddRaftVoter => check!(AddRaftVoterResponse),
        ApiKey::RemoveRaftVoter => check!(RemoveRaftVoterResponse),
        ApiKey::DescribeTopicPartitions => check!(DescribeTopicPartitionsResponse),
        ApiKey::ShareGroupHeartbeat => check!(ShareGroupHeartbeatResponse),
        ApiKey::ShareGroupDescribe => check!(ShareGroupDescribeResponse),
        ApiKey::ShareFetch => check!(ShareFetchResponse),
        ApiKey::ShareAcknowledge => check!(ShareAcknowledgeResponse),
        ApiKey::ReadShareGroupState => check!(ReadShareGroupStateResponse),
        ApiKey::WriteShareGroupState => check!(WriteShareGroupStateResponse),
        ApiKey::DeleteShareGroupState => check!(DeleteShareGroupStateResponse),
        ApiKey::DescribeShareGroupOffsets => check!(DescribeShareGroupOffsetsResponse),
        ApiKey::AlterShareGroupOffsets => check!(AlterShareGroupOffsetsResponse),
        ApiKey::DeleteShareGroupOffsets => check!(DeleteShareGroupOffsetsResponse),
        ApiKey::TxnOffsetCommit => check!(TxnOffsetCommitResponse),
        ApiKey::DescribeTransactions => check!(DescribeTransactionsResponse),
        ApiKey::ListTransactions => check!(ListTransactionsResponse),
        ApiKey::SaslHandshake => check!(SaslHandshakeResponse),
        ApiKey::SaslAuthenticate => check!(SaslAuthenticateResponse),
        ApiKey::CreateAcls => check!(CreateAclsResponse),
        ApiKey::DescribeAcls => check!(DescribeAclsResponse),
        ApiKey::DeleteAcls => check!(DeleteAclsResponse),
        ApiKey::DescribeClientQuotas => check!(DescribeClientQuotasResponse),
        ApiKey::AlterClientQuotas => check!(AlterClientQuotasResponse),
        ApiKey::DescribeUserScramCredentials => check!(DescribeUserScramCredentialsResponse),
        ApiKey::AlterUserScramCredentials => check!(AlterUserScramCredentialsResponse),
        other => anyhow::bail!("no decoder for {other:?}"),
    }
    anyhow::ensure!(frame.is_empty(), "{} bytes left over", frame.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_api_at_every_version_answers() {
    let broker = TestBroker::start(&[("group.initial.rebalance.delay.ms", "0")]).await;
    let topic = topic_name("versions");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let id = broker.running.as_ref().unwrap().broker.topic(&topic).unwrap().id;
    let records = Bytes::from(weir::log::batch::sample_batch(3));
    let bootstrap = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        for (key, min, max) in SUPPORTED_APIS {
            for version in *min..=*max {
                let encode = request(*key, version, &topic, id, &records)
                    .unwrap_or_else(|| panic!("test lacks a request for {key:?}"));
                let header = RequestHeader::default()
                    .with_request_api_key(*key as i16)
                    .with_request_api_version(version)
                    .with_correlation_id(version as i32)
                    .with_client_id(Some(StrBytes::from_static_str("every-version")));
                let mut body = bytes::BytesMut::new();
                header.encode(&mut body, key.request_header_version(version)).unwrap();
                encode(&mut body).unwrap();
                let mut s = raw::connect(&bootstrap);
                use std::io::Write;
                s.write_all(&(body.len() as i32).to_be_bytes()).unwrap();
                s.write_all(&body).unwrap();
                let frame = raw::read_frame(&mut s).unwrap_or_else(|| panic!("{key:?} v{version}: connection closed"));
                decode_response(*key, version, frame).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
            }
        }
    })
    .await
    .unwrap();
}
