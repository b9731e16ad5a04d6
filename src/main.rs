//! The `weir` command: parse flags, layer the configuration, serve until SIGINT/SIGTERM.

use std::path::PathBuf;

use clap::{CommandFactory, Parser};
use weir::config::{self, BrokerConfig};

/// Huge allocations (a request claiming billions of elements) become lazy mappings instead of
/// aborting the process; see `weir::alloc`.
#[global_allocator]
static ALLOC: weir::alloc::LazyHugeAlloc = weir::alloc::LazyHugeAlloc;

/// An event-streaming broker that speaks the Apache Kafka wire protocol.
///
/// Without a command, `weir` runs a broker with the flags below. The commands are the
/// operator's tools; they talk to any Kafka-protocol cluster (`-b HOST:PORT`, env WEIR_BROKERS).
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Option<weir::cli::Command>,
    /// Address to listen on (Kafka: listeners).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address returned to clients in Metadata (Kafka: advertised.listeners).
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (metrics.listener).
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<String>,
    /// Data directory (Kafka: log.dirs).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// This broker's id (Kafka: node.id).
    #[arg(long, value_name = "N")]
    node_id: Option<i32>,
    /// TOML file of Kafka config names and values; see config/weir.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Any broker config by its Kafka name, e.g. --set num.partitions=3 (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Create a SCRAM user at start-up, in Kafka's format-tool syntax (repeatable; a user
    /// that already has this password is left alone):
    /// --add-scram 'SCRAM-SHA-256=[name=admin,password=admin-secret]'
    #[arg(long = "add-scram", value_name = "SPEC")]
    add_scram: Vec<String>,
    /// Print the documented default config file (config/weir.toml) and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Print the Kafka config names Weir accepts without acting on them (docs/kafka-configs.md) and exit.
    #[arg(long)]
    print_kafka_only_configs: bool,
}

const EXAMPLES: &str = "Examples:
  weir --data-dir /var/lib/weir --set num.partitions=3     # run a broker
  weir topic create orders -p 6
  echo hello | weir produce orders
  weir consume orders --from beginning -n 1
  weir group describe billing
  weir cluster health -b kafka-1:9092,kafka-2:9092
See `weir <command> --help` and docs/cli.md.";

fn layers(cli: &Cli) -> Result<Vec<Vec<(String, String)>>, String> {
    let file = match &cli.config {
        Some(path) => config::read_config_file(path).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let env = config::read_env(std::env::vars());
    let mut flags = Vec::new();
    for kv in &cli.set {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("--set expects NAME=VALUE, got '{kv}'"))?;
        flags.push((k.trim().to_string(), v.to_string()));
    }
    if let Some(l) = &cli.listen {
        flags.push(("listeners".into(), l.clone()));
    }
    if let Some(a) = &cli.advertise {
        flags.push(("advertised.listeners".into(), a.clone()));
    }
    if let Some(m) = &cli.metrics {
        flags.push(("metrics.listener".into(), m.clone()));
    }
    if let Some(d) = &cli.data_dir {
        flags.push(("log.dirs".into(), d.display().to_string()));
    }
    if let Some(n) = cli.node_id {
        flags.push(("node.id".into(), n.to_string()));
    }
    Ok(vec![file, env, flags])
}

#[tokio::main]
async fn main() {
    let mut cli = Cli::parse();
    if let Some(command) = cli.command.take() {
        std::process::exit(weir::cli::run(command, Cli::command).await);
    }
    weir::logging::init();
    if cli.print_default_config {
        print!("{}", config::default_config_file());
        return;
    }
    if cli.print_kafka_only_configs {
        print!("{}", config::kafka_only_configs_markdown());
        return;
    }
    let cfg = layers(&cli).and_then(|l| BrokerConfig::from_layers(l).map_err(|e| e.to_string()));
    let cfg = cfg.and_then(|mut c| {
        for spec in &cli.add_scram {
            c.add_scram_user(weir::security::scram::ScramUser::parse(spec)?);
        }
        Ok(c)
    });
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weir: {e}");
            std::process::exit(2);
        }
    };
    // the handlers go in first: a SIGTERM while the broker starts (registering can wait for
    // a controller) stops it instead of killing it with the default action
    let mut signalled = on_signal();
    let started = tokio::select! {
        started = weir::start(cfg) => started,
        _ = signalled.wait_for(|s| *s) => {
            // nothing was acknowledged yet; the logs are recovered at the next start
            tracing::info!("signal received while starting; stopping");
            return;
        }
    };
    let running = match started {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weir: {e:#}");
            std::process::exit(1);
        }
    };
    let stop = running.shutdown_handle();
    tokio::spawn(async move {
        let _ = signalled.wait_for(|s| *s).await;
        tracing::info!("signal received, shutting down");
        let _ = stop.send(true);
    });
    if let Err(e) = running.wait().await {
        eprintln!("weir: {e:#}");
        std::process::exit(1);
    }
}

/// Installs the SIGTERM and Ctrl-C handlers now; the channel turns true when one arrives.
fn on_signal() -> tokio::sync::watch::Receiver<bool> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::watch::channel(false);
    let term = signal(SignalKind::terminate());
    tokio::spawn(async move {
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        let _ = tx.send(true);
    });
    rx
}
