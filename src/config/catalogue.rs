//! Apache Kafka's own catalogue of broker and topic configs.
//!
//! Tools and client test suites set Kafka config names whether or not a deployment uses them
//! (`sasl.kerberos.min.time.before.relogin`, `num.io.threads`, `max.compaction.lag.ms`…), and
//! Kafka accepts every name it defines, with its type and validator. `kafka_catalogue.tsv` is
//! Kafka's definition table — name, type, default, valid values, update mode (broker) or the
//! broker config that supplies the default (topic) — generated from Kafka's published config
//! reference by `tools/kafka_catalogue.py`. Keys Weir implements are described by Weir's own
//! table in [`super`]; every other catalogue key becomes a [`ConfigDef`] that is accepted,
//! validated, stored and described, and has no effect (the README says so).

use std::sync::LazyLock;

use super::{Check, ConfigDef, ConfigType, UpdateMode};

const CATALOGUE: &str = include_str!("kafka_catalogue.tsv");

/// Catalogue keys Weir does act on: Kafka's coarser synonyms of millisecond keys Weir
/// implements (see [`super::time_synonyms`]), with Weir's doc line.
const ACTED_ON: &[(&str, &str)] = &[
    ("log.retention.minutes", "log.retention.ms in minutes, when log.retention.ms is not set."),
    (
        "log.retention.hours",
        "log.retention.ms in hours, when neither log.retention.ms nor log.retention.minutes is set.",
    ),
    ("log.roll.hours", "log.roll.ms in hours, when log.roll.ms is not set."),
    ("log.flush.scheduler.interval.ms", "log.flush.interval.ms when that is not set."),
];

/// Which table a catalogue line belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Broker,
    Topic,
}

/// Every line of the catalogue, parsed once.
static ENTRIES: LazyLock<Vec<(Scope, ConfigDef)>> =
    LazyLock::new(|| CATALOGUE.lines().filter_map(parse_line).collect());

/// Kafka's definitions of one scope, in catalogue order.
pub fn kafka_defs(scope: Scope) -> impl Iterator<Item = &'static ConfigDef> {
    ENTRIES.iter().filter(move |(s, _)| *s == scope).map(|(_, d)| d)
}

/// Broker keys Kafka leaves unset by default, looked up once (DescribeConfigs asks for each
/// key it lists).
static NULL_BY_DEFAULT: LazyLock<std::collections::HashSet<&'static str>> =
    LazyLock::new(|| kafka_defs(Scope::Broker).filter(|d| d.null_default).map(|d| d.name).collect());

/// Whether Kafka has no default for broker key `name`.
pub fn null_by_default(name: &str) -> bool {
    NULL_BY_DEFAULT.contains(name)
}

/// The Kafka version the catalogue was generated from, from its first line.
pub fn kafka_version() -> &'static str {
    CATALOGUE
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# Apache Kafka "))
        .and_then(|l| l.split(':').next())
        .unwrap_or("?")
}

fn parse_line(line: &'static str) -> Option<(Scope, ConfigDef)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let mut f = line.split('\t');
    let (scope, name, kind, default, valid, last) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    let scope = match scope {
        "broker" => Scope::Broker,
        "topic" => Scope::Topic,
        _ => return None,
    };
    let kind = match kind {
        "boolean" => ConfigType::Boolean,
        "int" => ConfigType::Int,
        "short" => ConfigType::Short,
        "long" => ConfigType::Long,
        "double" => ConfigType::Double,
        "list" => ConfigType::List,
        "class" => ConfigType::Class,
        "password" => ConfigType::Password,
        _ => ConfigType::String,
    };
    let (mode, broker_synonym) = match scope {
        Scope::Broker => (
            match last {
                "per-broker" => UpdateMode::PerBroker,
                "cluster-wide" => UpdateMode::ClusterWide,
                _ => UpdateMode::ReadOnly,
            },
            None,
        ),
        Scope::Topic => (UpdateMode::ClusterWide, (last != "null").then_some(last)),
    };
    let acted_on = ACTED_ON.iter().find(|(n, _)| *n == name).filter(|_| scope == Scope::Broker);
    let def = ConfigDef {
        name,
        kind,
        default: if default == "null" { "" } else { default },
        null_default: default == "null",
        check: parse_check(valid),
        mode,
        broker_synonym,
        doc: acted_on.map(|(_, doc)| *doc).unwrap_or(""),
        implemented: acted_on.is_some(),
    };
    Some((scope, def))
}

/// Reads Kafka's rendering of a validator: `[1,...]`, `[0,...,1]`, `[1,...,9] or -1`,
/// `[a, b]`, `(case insensitive) [A, B]`, `non-empty string`, …
fn parse_check(valid: &'static str) -> Check {
    let num = |s: &str| s.trim().parse::<f64>().ok();
    let (range, or) = match valid.split_once(" or ") {
        Some((r, o)) => (r, num(o)),
        None => (valid, None),
    };
    if let Some(inner) = range.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let parts: Vec<&str> = inner.split(",...").collect();
        if parts.len() == 2 {
            let min = num(parts[0]).unwrap_or(f64::NEG_INFINITY);
            let max = parts[1].strip_prefix(',').and_then(num).unwrap_or(f64::INFINITY);
            return Check::Between { min, max, or };
        }
    }
    match valid {
        "" | "non-null string" => Check::None,
        "non-empty string" | "non-empty list" => Check::NonEmpty,
        v if v.starts_with("[partitionId]") => Check::ReplicaList,
        v => {
            let (ignore_case, list) = match v.strip_prefix("(case insensitive) ") {
                Some(rest) => (true, rest),
                None => (false, v),
            };
            let items: Vec<&'static str> =
                list.trim_start_matches('[').trim_end_matches(']').split(", ").map(str::trim).collect();
            let items: &'static [&'static str] = Box::leak(items.into_boxed_slice());
            if ignore_case {
                Check::OneOfIgnoreCase(items)
            } else {
                Check::OneOf(items)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validators_are_read() {
        assert!(
            matches!(parse_check("[1,...]"), Check::Between { min, max, or: None } if min == 1.0 && max.is_infinite())
        );
        assert!(
            matches!(parse_check("[1,...,9] or -1"), Check::Between { min, max, or: Some(o) } if min == 1.0 && max == 9.0 && o == -1.0)
        );
        assert!(matches!(parse_check("[-131072,...,22]"), Check::Between { min, .. } if min == -131072.0));
        assert!(matches!(parse_check("[compact, delete]"), Check::OneOf(&["compact", "delete"])));
        assert!(matches!(
            parse_check("(case insensitive) [ES256, RS256]"),
            Check::OneOfIgnoreCase(&["ES256", "RS256"])
        ));
        assert!(matches!(parse_check("non-empty list"), Check::NonEmpty));
    }

    #[test]
    fn the_catalogue_holds_kafkas_broker_and_topic_configs() {
        assert_eq!(kafka_version(), "4.1");
        let broker: Vec<_> = kafka_defs(Scope::Broker).collect();
        let topic: Vec<_> = kafka_defs(Scope::Topic).collect();
        assert!(broker.len() > 300, "{}", broker.len());
        assert!(topic.len() > 30, "{}", topic.len());
        let relogin = broker.iter().find(|d| d.name == "sasl.kerberos.min.time.before.relogin").unwrap();
        assert_eq!((relogin.kind, relogin.default, relogin.mode), (ConfigType::Long, "60000", UpdateMode::PerBroker));
        let lag = topic.iter().find(|d| d.name == "max.compaction.lag.ms").unwrap();
        assert_eq!(lag.broker_synonym, Some("log.cleaner.max.compaction.lag.ms"));
    }
}
