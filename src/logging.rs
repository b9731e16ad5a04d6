//! Log levels that can change at run time: Kafka's `BROKER_LOGGER` config resource, mapped
//! onto `tracing` targets (Weir's module paths) and a reloadable `EnvFilter`.
//!
//! Kafka names loggers after Java classes and levels after log4j; here a logger is a module
//! path such as `weir::server::connection` (or `root`, every target), and log4j's levels map
//! onto tracing's (FATAL and ERROR → error, TRACE → trace). An operator raises a module's
//! level with `kafka-configs.sh --alter --entity-type broker-loggers --entity-name <node id>
//! --add-config weir::handlers=DEBUG`, and deletes it to fall back to its parent's.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use parking_lot::Mutex;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Kafka's name for the logger every other inherits from.
pub const ROOT_LOGGER: &str = "root";

/// log4j levels Kafka accepts (`LogLevelConfig.VALID_LOG_LEVELS`), sorted as Kafka lists them.
pub const VALID_LEVELS: [&str; 6] = ["DEBUG", "ERROR", "FATAL", "INFO", "TRACE", "WARN"];

/// Weir's loggers: the modules that log. Submodules of these are loggers too.
pub const LOGGERS: &[&str] = &[
    "weir",
    "weir::broker",
    "weir::cluster",
    "weir::config",
    "weir::coordinator",
    "weir::coordinator::group",
    "weir::coordinator::txn",
    "weir::handlers",
    "weir::log",
    "weir::log::cleaner",
    "weir::metrics",
    "weir::partition",
    "weir::security",
    "weir::server",
    "weir::server::connection",
];

/// The levels in force: root's, and each logger set explicitly.
struct Levels {
    root: String,
    set: BTreeMap<String, String>,
    reload: Option<reload::Handle<EnvFilter, Registry>>,
}

static LEVELS: OnceLock<Mutex<Levels>> = OnceLock::new();

fn levels() -> &'static Mutex<Levels> {
    LEVELS.get_or_init(|| Mutex::new(Levels { root: "INFO".into(), set: BTreeMap::new(), reload: None }))
}

/// Installs the process's subscriber: stdout, filtered by `RUST_LOG` (default `info`), with
/// a filter the `BROKER_LOGGER` APIs can replace. Simple `RUST_LOG` directives (`level` and
/// `target=level`) become the initial logger levels. The Raft engine's own logs are off
/// unless `RUST_LOG` names `openraft`: they narrate every election and retry (a peer that is
/// down is an ERROR line every half second), while Weir logs what an operator needs.
pub fn init() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let mut directives = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    if !directives.contains("openraft") {
        directives.push_str(",openraft=off");
    }
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    tracing_subscriber::registry().with(filter).with(fmt).init();
    let mut l = levels().lock();
    for d in directives.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match d.split_once('=') {
            None => l.root = from_tracing(d).unwrap_or("INFO").to_string(),
            Some((target, level)) => {
                if let Some(level) = from_tracing(level) {
                    l.set.insert(target.to_string(), level.to_string());
                }
            }
        }
    }
    l.reload = Some(handle);
}

fn from_tracing(level: &str) -> Option<&'static str> {
    Some(match level.to_ascii_lowercase().as_str() {
        "off" => "OFF",
        "error" => "ERROR",
        "warn" => "WARN",
        "info" => "INFO",
        "debug" => "DEBUG",
        "trace" => "TRACE",
        _ => return None,
    })
}

fn to_tracing(level: &str) -> &'static str {
    match level {
        "OFF" => "off",
        "FATAL" | "ERROR" => "error",
        "WARN" => "warn",
        "INFO" => "info",
        "DEBUG" => "debug",
        _ => "trace",
    }
}

/// Whether `name` is a logger: `root`, one of [`LOGGERS`], a submodule of one, or one set
/// before (from `RUST_LOG`, say).
pub fn exists(name: &str) -> bool {
    name == ROOT_LOGGER
        || LOGGERS.iter().any(|l| name == *l || name.strip_prefix(l).is_some_and(|rest| rest.starts_with("::")))
        || levels().lock().set.contains_key(name)
}

/// Every logger with its effective level (the nearest set ancestor's, else root's), root
/// first, as DescribeConfigs on `BROKER_LOGGER` lists them.
pub fn loggers() -> Vec<(String, String)> {
    let l = levels().lock();
    let mut names: Vec<String> = LOGGERS.iter().map(|s| s.to_string()).collect();
    names.extend(l.set.keys().filter(|k| !LOGGERS.contains(&k.as_str())).cloned());
    names.sort();
    let effective = |name: &str| {
        let mut best: Option<(&String, &String)> = None;
        for (target, level) in &l.set {
            let covers = name == target || name.strip_prefix(target.as_str()).is_some_and(|r| r.starts_with("::"));
            if covers && best.is_none_or(|(b, _)| target.len() > b.len()) {
                best = Some((target, level));
            }
        }
        best.map_or_else(|| l.root.clone(), |(_, level)| level.clone())
    };
    let mut out = vec![(ROOT_LOGGER.to_string(), l.root.clone())];
    out.extend(names.into_iter().map(|n| {
        let level = effective(&n);
        (n, level)
    }));
    out
}

/// Sets a logger's level (a valid log4j level, checked by the caller).
pub fn set_level(name: &str, level: &str) {
    let mut l = levels().lock();
    if name == ROOT_LOGGER {
        l.root = level.to_string();
    } else {
        l.set.insert(name.to_string(), level.to_string());
    }
    apply(&l);
}

/// Removes a logger's own level, so it follows its parent's (never root: the caller refuses).
pub fn unset_level(name: &str) {
    let mut l = levels().lock();
    l.set.remove(name);
    apply(&l);
}

/// Rebuilds the filter from the levels in force.
fn apply(l: &Levels) {
    let Some(handle) = &l.reload else {
        return; // no subscriber of ours (an embedded broker): levels are only recorded
    };
    let mut directives = vec![to_tracing(&l.root).to_string()];
    directives.extend(l.set.iter().map(|(t, lv)| format!("{t}={}", to_tracing(lv))));
    match EnvFilter::try_new(directives.join(",")) {
        Ok(filter) => {
            if let Err(e) = handle.reload(filter) {
                tracing::error!(error = %e, "log levels not changed");
            }
        }
        Err(e) => tracing::error!(error = %e, "log levels not changed"),
    }
}
