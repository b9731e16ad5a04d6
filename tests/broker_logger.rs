//! Kafka's `BROKER_LOGGER` config resource: DescribeConfigs lists Weir's loggers (module
//! paths, and `root`) with their levels; IncrementalAlterConfigs changes a level at run time,
//! and the running broker's output follows without a restart. Errors as Kafka's
//! `RuntimeLoggerManager` gives them.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

const BROKER_LOGGER: i8 = 8;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn describe(bootstrap: &str, node: &str) -> DescribeConfigsResponse {
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(BROKER_LOGGER)
            .with_resource_name(s(node))
            .with_configuration_keys(None),
    ]);
    raw::call(bootstrap, ApiKey::DescribeConfigs, 4, &req)
}

fn level_of(bootstrap: &str, logger: &str) -> Option<String> {
    let r = describe(bootstrap, "1");
    assert_eq!(r.results[0].error_code, 0);
    let c = r.results[0].configs.iter().find(|c| c.name.as_str() == logger)?;
    assert_eq!(c.config_source, 6, "DYNAMIC_BROKER_LOGGER_CONFIG");
    c.value.as_ref().map(|v| v.to_string())
}

/// IncrementalAlterConfigs on the logger resource: (error code, message).
fn alter(bootstrap: &str, node: &str, ops: &[(&str, i8, Option<&str>)], validate_only: bool) -> (i16, String) {
    use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let configs = ops
        .iter()
        .map(|(name, op, value)| {
            AlterableConfig::default().with_name(s(name)).with_config_operation(*op).with_value(value.map(s))
        })
        .collect();
    let req = IncrementalAlterConfigsRequest::default().with_validate_only(validate_only).with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(BROKER_LOGGER)
            .with_resource_name(s(node))
            .with_configs(configs),
    ]);
    let r: IncrementalAlterConfigsResponse = raw::call(bootstrap, ApiKey::IncrementalAlterConfigs, 1, &req);
    let r = &r.responses[0];
    (r.error_code, r.error_message.as_deref().unwrap_or_default().to_string())
}

/// Opens and closes a connection; the broker logs "connection closed" at DEBUG.
fn closed_lines(b: &BinaryBroker) -> usize {
    drop(raw::connect(&b.bootstrap));
    std::thread::sleep(Duration::from_millis(300));
    b.log.lock().unwrap().iter().filter(|l| l.contains("connection closed")).count()
}

#[test]
fn log_levels_change_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let b = BinaryBroker::start(dir.path(), &[]);
    let bs = b.bootstrap.clone();
    assert_eq!(level_of(&bs, "root").as_deref(), Some("INFO"));
    assert_eq!(level_of(&bs, "weir::server::connection").as_deref(), Some("INFO"));
    assert_eq!(closed_lines(&b), 0, "DEBUG lines are filtered at INFO");

    const SET: i8 = 0;
    const DELETE: i8 = 1;
    assert_eq!(alter(&bs, "1", &[("weir::server::connection", SET, Some("DEBUG"))], true).0, 0);
    assert_eq!(level_of(&bs, "weir::server::connection").as_deref(), Some("INFO"), "validate_only changes nothing");

    assert_eq!(alter(&bs, "1", &[("weir::server", SET, Some("DEBUG"))], false), (0, String::new()));
    assert_eq!(level_of(&bs, "weir::server").as_deref(), Some("DEBUG"));
    assert_eq!(level_of(&bs, "weir::server::connection").as_deref(), Some("DEBUG"), "inherited from its parent");
    assert_eq!(level_of(&bs, "weir::handlers").as_deref(), Some("INFO"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while closed_lines(&b) == 0 {
        assert!(Instant::now() < deadline, "the running broker logs at DEBUG for weir::server");
    }
    assert!(b.log.lock().unwrap().iter().any(|l| l.contains("Updated the log level of weir::server to DEBUG")));

    assert_eq!(alter(&bs, "1", &[("weir::server", DELETE, None)], false).0, 0);
    assert_eq!(level_of(&bs, "weir::server::connection").as_deref(), Some("INFO"), "back to root's level");
    let before = closed_lines(&b);
    assert_eq!(closed_lines(&b), before, "DEBUG filtered again");

    // Kafka's refusals
    let invalid_config = ResponseError::InvalidConfig.code();
    let invalid_request = ResponseError::InvalidRequest.code();
    let (code, msg) = alter(&bs, "1", &[("no.such.Logger", SET, Some("DEBUG"))], false);
    assert_eq!((code, msg.as_str()), (invalid_config, "Logger no.such.Logger does not exist!"));
    let (code, msg) = alter(&bs, "1", &[("weir::log", SET, Some("LOUD"))], false);
    assert_eq!(code, invalid_config);
    assert!(msg.ends_with("Valid log levels are DEBUG, ERROR, FATAL, INFO, TRACE, WARN"), "{msg}");
    let (code, msg) = alter(&bs, "1", &[("root", DELETE, None)], false);
    assert_eq!((code, msg.as_str()), (invalid_request, "Removing the log level of the root logger is not allowed"));
    assert_eq!(alter(&bs, "1", &[("weir::log", 2, Some("DEBUG"))], false).0, invalid_request, "APPEND");
    assert_eq!(alter(&bs, "7", &[("weir::log", SET, Some("DEBUG"))], false).0, invalid_request, "another node");
    assert_eq!(alter(&bs, "x", &[("weir::log", SET, Some("DEBUG"))], false).0, invalid_request, "not a node id");
    // a refused request applies none of its operations
    let mixed = [("weir::log", SET, Some("TRACE")), ("nope", SET, Some("DEBUG"))];
    assert_eq!(alter(&bs, "1", &mixed, false).0, invalid_config);
    assert_eq!(level_of(&bs, "weir::log").as_deref(), Some("INFO"));
    assert_eq!(describe(&bs, "").results[0].error_code, invalid_request, "broker id must not be empty");

    // root moves every logger without a level of its own
    assert_eq!(alter(&bs, "1", &[("root", SET, Some("WARN"))], false).0, 0);
    assert_eq!(level_of(&bs, "weir::handlers").as_deref(), Some("WARN"));

    // Legacy AlterConfigs does not take BROKER_LOGGER, as in Kafka.
    use alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let legacy = AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(BROKER_LOGGER)
        .with_resource_name(s("1"))
        .with_configs(vec![AlterableConfig::default().with_name(s("root")).with_value(Some(s("INFO")))])]);
    let r: AlterConfigsResponse = raw::call(&bs, ApiKey::AlterConfigs, 2, &legacy);
    assert_eq!(r.responses[0].error_code, invalid_request);
}
