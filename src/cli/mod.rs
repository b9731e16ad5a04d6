//! The operator's commands (`weir topic …`, `weir group …`, …): one module per family, each
//! talking to any Kafka-protocol cluster through [`crate::client`]. docs/cli.md is the
//! reference.

mod acl;
mod cluster;
mod configs;
mod consume;
mod group;
pub mod output;
pub mod position;
mod produce;
pub use produce::murmur2;
mod quota;
mod topic;
mod user;

use clap::{Args, Subcommand};

use crate::client::{Client, ClientConfig, ClientError, ErrorKind};
use output::{Format, Outcome};

/// The exit code of `cluster health` finding an offline or under-replicated partition.
pub const UNHEALTHY: i32 = 6;

/// How to reach the cluster and how to print; shared by every command.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Bootstrap brokers, comma-separated HOST:PORT.
    #[arg(short = 'b', long = "brokers", env = "WEIR_BROKERS", default_value = "127.0.0.1:9092", global = true)]
    pub brokers: String,
    /// A client property in librdkafka's names (repeatable), as kcat takes them:
    /// security.protocol, ssl.ca.location, ssl.certificate.location, ssl.key.location,
    /// enable.ssl.certificate.verification, ssl.endpoint.identification.algorithm,
    /// sasl.mechanism, sasl.username, sasl.password, client.id, request.timeout.ms,
    /// socket.connection.setup.timeout.ms.
    #[arg(short = 'X', value_name = "KEY=VALUE", global = true)]
    pub properties: Vec<String>,
    /// Output format: text tables or JSON (field names in docs/cli.md).
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub format: Format,
}

impl Conn {
    pub fn client_config(&self) -> Result<ClientConfig, ClientError> {
        ClientConfig::new(&self.brokers).with_properties(self.properties.iter().map(String::as_str))
    }

    async fn connect(&self) -> Result<Client, ClientError> {
        Client::connect(self.client_config()?).await
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create, list, describe, alter, trim and delete topics.
    #[command(after_help = topic::EXAMPLES)]
    Topic {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: topic::TopicCommand,
    },
    /// List and describe consumer and share groups (with lag), move their offsets, delete them.
    #[command(after_help = group::EXAMPLES)]
    Group {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: group::GroupCommand,
    },
    /// Create, list and delete ACLs.
    #[command(after_help = acl::EXAMPLES)]
    Acl {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: acl::AclCommand,
    },
    /// Create, list and delete SCRAM users.
    #[command(after_help = user::EXAMPLES)]
    User {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: user::UserCommand,
    },
    /// Describe and alter client quotas.
    #[command(after_help = quota::EXAMPLES)]
    Quota {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: quota::QuotaCommand,
    },
    /// Brokers, controller and cluster id; health; broker configs.
    #[command(after_help = cluster::EXAMPLES)]
    Cluster {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: cluster::ClusterCommand,
    },
    /// Produce records from stdin: one per line, or JSON lines with --format json.
    #[command(after_help = produce::EXAMPLES)]
    Produce {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: produce::ProduceArgs,
    },
    /// Consume records to stdout.
    #[command(after_help = consume::EXAMPLES)]
    Consume {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: consume::ConsumeArgs,
    },
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  weir completion bash > /etc/bash_completion.d/weir\n  \
                            weir completion zsh > \"${fpath[1]}/_weir\"\n  \
                            weir completion fish > ~/.config/fish/completions/weir.fish")]
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Runs a command; returns the process exit code. `command` builds the whole CLI (for
/// completion scripts).
pub async fn run(cmd: Command, command: impl FnOnce() -> clap::Command) -> i32 {
    let conn = match &cmd {
        Command::Completion { shell } => {
            clap_complete::generate(*shell, &mut command(), "weir", &mut std::io::stdout());
            return 0;
        }
        Command::Topic { conn, .. }
        | Command::Group { conn, .. }
        | Command::Acl { conn, .. }
        | Command::User { conn, .. }
        | Command::Quota { conn, .. }
        | Command::Cluster { conn, .. }
        | Command::Produce { conn, .. }
        | Command::Consume { conn, .. } => conn.clone(),
    };
    let result = match conn.connect().await {
        Ok(mut client) => dispatch(&mut client, cmd, conn.format).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(outcome) => {
            outcome.print(conn.format);
            outcome.exit
        }
        Err(e) => report(&e, conn.format),
    }
}

/// Runs a command that talks to the cluster.
async fn dispatch(client: &mut Client, cmd: Command, format: Format) -> Result<Outcome, ClientError> {
    match cmd {
        Command::Topic { cmd, .. } => topic::run(client, cmd).await,
        Command::Group { cmd, .. } => group::run(client, cmd).await,
        Command::Acl { cmd, .. } => acl::run(client, cmd).await,
        Command::User { cmd, .. } => user::run(client, cmd).await,
        Command::Quota { cmd, .. } => quota::run(client, cmd).await,
        Command::Cluster { cmd, .. } => cluster::run(client, cmd).await,
        Command::Produce { args, .. } => produce::run(client, args, format).await,
        Command::Consume { args, .. } => consume::run(client, args, format).await,
        Command::Completion { .. } => Ok(Outcome::printed()),
    }
}

/// Prints the error on stderr (and as JSON on stdout for scripts); returns its exit code.
fn report(e: &ClientError, format: Format) -> i32 {
    let kind = e.kind();
    eprintln!("weir: {e}");
    if format == Format::Json {
        let kind_name = match kind {
            ErrorKind::Other => "error",
            ErrorKind::Usage => "usage",
            ErrorKind::NotFound => "not_found",
            ErrorKind::NotAuthorized => "not_authorized",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::AlreadyExists => "already_exists",
        };
        let error = serde_json::json!({
            "error": {
                "kind": kind_name,
                "kafka_error": e.code().map(crate::client::error::error_name),
                "kafka_code": e.code(),
                "message": e.to_string(),
            }
        });
        println!("{error}");
    }
    kind.exit_code()
}

/// `key=value` arguments.
pub fn key_values(list: &[String], flag: &str) -> Result<Vec<(String, String)>, ClientError> {
    list.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| ClientError::Config(format!("{flag} expects KEY=VALUE, got '{kv}'")))
        })
        .collect()
}
