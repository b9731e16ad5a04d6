//! `weir user`: SCRAM credentials through Describe/AlterUserScramCredentials. The salted
//! password is derived here, as Kafka's admin client does: the password never travels.

use clap::Subcommand;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

use super::output::{Outcome, Table};
use crate::client::{Client, ClientError};
use crate::security::scram::{random_bytes, Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};

pub const EXAMPLES: &str = "Examples:
  weir user create alice --password alice-secret
  weir user create admin --password s3cret --mechanism SCRAM-SHA-512 --iterations 8192
  weir user list
  weir user delete alice";

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a SCRAM user, or change its password.
    #[command(after_help = "Examples:\n  weir user create alice --password alice-secret\n  \
                            weir user create alice --password x --mechanism SCRAM-SHA-512")]
    Create {
        name: String,
        #[arg(long)]
        password: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-256")]
        mechanism: String,
        /// PBKDF2 iterations (4096..=16384).
        #[arg(long, default_value_t = MIN_ITERATIONS)]
        iterations: i32,
    },
    /// List SCRAM users and their mechanisms.
    #[command(after_help = "Examples:\n  weir user list\n  weir user list --format json")]
    List,
    /// Delete a user's SCRAM credentials (every mechanism unless --mechanism).
    #[command(after_help = "Examples:\n  weir user delete alice\n  weir user delete alice --mechanism SCRAM-SHA-512")]
    Delete {
        name: String,
        #[arg(long)]
        mechanism: Option<String>,
    },
}

fn mechanism(name: &str) -> Result<Mechanism, ClientError> {
    Mechanism::from_name(&name.to_ascii_uppercase())
        .ok_or_else(|| ClientError::Config(format!("unknown mechanism '{name}' (SCRAM-SHA-256 or SCRAM-SHA-512)")))
}

pub async fn run(client: &mut Client, cmd: UserCommand) -> Result<Outcome, ClientError> {
    match cmd {
        UserCommand::Create { name, password, mechanism: m, iterations } => {
            let m = mechanism(&m)?;
            if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
                return Err(ClientError::Config(format!("--iterations must be {MIN_ITERATIONS}..={MAX_ITERATIONS}")));
            }
            let salt = random_bytes(32);
            let salted = m.salted_password(password.as_bytes(), &salt, iterations);
            let upsert = ScramCredentialUpsertion::default()
                .with_name(StrBytes::from_string(name.clone()))
                .with_mechanism(m.code())
                .with_iterations(iterations)
                .with_salt(salt.into())
                .with_salted_password(salted.into());
            alter(client, AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsert])).await?;
            let json = json!({"user": name, "mechanism": m.name(), "iterations": iterations});
            Ok(Outcome::new(json, format!("set {} credentials of user '{name}'\n", m.name())))
        }
        UserCommand::List => {
            let users = describe(client, None).await?;
            let mut table = Table::new(&["USER", "MECHANISMS"]);
            let mut json = Vec::new();
            for (user, mechs) in users {
                let names: Vec<String> = mechs.iter().map(|(m, i)| format!("{m} ({i} iterations)")).collect();
                table.row(vec![user.clone(), names.join(", ")]);
                let mechs: Vec<Value> = mechs.iter().map(|(m, i)| json!({"mechanism": m, "iterations": i})).collect();
                json.push(json!({"user": user, "credentials": mechs}));
            }
            Ok(Outcome::new(Value::Array(json), table.render()))
        }
        UserCommand::Delete { name, mechanism: m } => {
            let mechanisms: Vec<Mechanism> = match m {
                Some(m) => vec![mechanism(&m)?],
                None => describe(client, Some(&name))
                    .await?
                    .into_iter()
                    .flat_map(|(_, ms)| ms.into_iter().filter_map(|(m, _)| Mechanism::from_name(&m)))
                    .collect(),
            };
            let deletions = mechanisms
                .iter()
                .map(|m| {
                    ScramCredentialDeletion::default()
                        .with_name(StrBytes::from_string(name.clone()))
                        .with_mechanism(m.code())
                })
                .collect();
            alter(client, AlterUserScramCredentialsRequest::default().with_deletions(deletions)).await?;
            let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
            Ok(Outcome::new(
                json!({"user": name, "deleted": names}),
                format!("deleted user '{name}' ({})\n", names.join(", ")),
            ))
        }
    }
}

async fn alter(client: &mut Client, req: AlterUserScramCredentialsRequest) -> Result<(), ClientError> {
    let resp = client.controller_call(&req, |r| r.results.iter().map(|x| x.error_code).collect()).await?;
    for r in resp.results {
        ClientError::check(|| format!("user '{}'", r.user), r.error_code, r.error_message.as_deref())?;
    }
    Ok(())
}

/// Users and their (mechanism, iterations); one user or all.
async fn describe(client: &mut Client, user: Option<&str>) -> Result<Vec<(String, Vec<(String, i32)>)>, ClientError> {
    let users = user.map(|u| vec![UserName::default().with_name(StrBytes::from_string(u.to_string()))]);
    let resp = client.send(&DescribeUserScramCredentialsRequest::default().with_users(users)).await?;
    ClientError::check(|| "describing users".into(), resp.error_code, resp.error_message.as_deref())?;
    let mut out = Vec::new();
    for r in resp.results {
        ClientError::check(|| format!("user '{}'", r.user), r.error_code, r.error_message.as_deref())?;
        let mechs = r
            .credential_infos
            .iter()
            .map(|c| (Mechanism::from_code(c.mechanism).map_or("UNKNOWN", |m| m.name()).to_string(), c.iterations))
            .collect();
        out.push((r.user.to_string(), mechs));
    }
    out.sort();
    Ok(out)
}
