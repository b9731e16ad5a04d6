//! DescribeUserScramCredentials and AlterUserScramCredentials: the SCRAM user store, kept
//! (salted) in the metadata log. Describing needs DESCRIBE on the cluster, altering ALTER.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};
use crate::cluster::metadata_log::MetadataRecord;
use crate::security::acl::op;
use crate::security::scram::{Credential, Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};

pub async fn describe(
    ctx: &RequestContext,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let resp = DescribeUserScramCredentialsResponse::default();
    if !ctx.cluster_authorized(op::DESCRIBE) {
        return resp.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let image = ctx.broker.security.image();
    let mut by_user: BTreeMap<&str, Vec<CredentialInfo>> = BTreeMap::new();
    for ((user, mechanism), cred) in &image.scram {
        by_user
            .entry(user.as_str())
            .or_default()
            .push(CredentialInfo::default().with_mechanism(mechanism.code()).with_iterations(cred.iterations));
    }
    let wanted: Vec<String> = req.users.unwrap_or_default().into_iter().map(|u| u.name.to_string()).collect();
    let results = if wanted.is_empty() {
        by_user
            .into_iter()
            .map(|(user, infos)| {
                DescribeUserScramCredentialsResult::default().with_user(str_bytes(user)).with_credential_infos(infos)
            })
            .collect()
    } else {
        wanted
            .iter()
            .map(|user| {
                let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(user.as_str()));
                if wanted.iter().filter(|u| *u == user).count() > 1 {
                    return result.with_error_code(ResponseError::DuplicateResource.code()).with_error_message(Some(
                        str_bytes(format!(
                            "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
                        )),
                    ));
                }
                match by_user.get(user.as_str()) {
                    Some(infos) => result.with_credential_infos(infos.clone()),
                    None => result.with_error_code(ResponseError::ResourceNotFound.code()).with_error_message(Some(
                        str_bytes(format!("Attempt to describe a user credential that does not exist: {user}")),
                    )),
                }
            })
            .collect()
    };
    resp.with_results(results)
}

/// One requested change: a deletion (`None`) or an upsertion.
struct Change {
    mechanism: i8,
    upsert: Option<(i32, Vec<u8>, Vec<u8>)>,
}

pub async fn alter(ctx: &RequestContext, req: AlterUserScramCredentialsRequest) -> AlterUserScramCredentialsResponse {
    let mut changes: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    for d in req.deletions {
        changes.entry(d.name.to_string()).or_default().push(Change { mechanism: d.mechanism, upsert: None });
    }
    for u in req.upsertions {
        changes.entry(u.name.to_string()).or_default().push(Change {
            mechanism: u.mechanism,
            upsert: Some((u.iterations, u.salt.to_vec(), u.salted_password.to_vec())),
        });
    }
    let allowed = ctx.cluster_authorized(op::ALTER);
    let mut results = Vec::new();
    for (user, user_changes) in changes {
        let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(user.as_str()));
        let outcome = if allowed {
            apply(ctx, &user, &user_changes).await
        } else {
            Err((ResponseError::ClusterAuthorizationFailed, String::new()))
        };
        results.push(match outcome {
            Ok(()) => result,
            Err((code, msg)) => {
                result.with_error_code(code.code()).with_error_message((!msg.is_empty()).then(|| str_bytes(msg)))
            }
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

/// Validates one user's changes and records them all, or none.
async fn apply(ctx: &RequestContext, user: &str, changes: &[Change]) -> Result<(), (ResponseError, String)> {
    let unacceptable = |m: &str| Err((ResponseError::UnacceptableCredential, m.to_string()));
    if user.is_empty() {
        return unacceptable("Username must not be empty");
    }
    let mut seen = BTreeSet::new();
    let mut records = Vec::new();
    for change in changes {
        if !seen.insert(change.mechanism) {
            return Err((
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request".into(),
            ));
        }
        let Some(mechanism) = Mechanism::from_code(change.mechanism) else {
            return Err((ResponseError::UnsupportedSaslMechanism, "Unknown SCRAM mechanism".into()));
        };
        match &change.upsert {
            None => {
                if ctx.broker.security.credential(user, mechanism).is_none() {
                    return Err((
                        ResponseError::ResourceNotFound,
                        "Attempt to delete a user credential that does not exist".into(),
                    ));
                }
                records.push(MetadataRecord::RemoveScramCredential { user: user.to_string(), mechanism });
            }
            Some((iterations, salt, salted)) => {
                if *iterations < MIN_ITERATIONS {
                    return unacceptable("Too few iterations");
                }
                if *iterations > MAX_ITERATIONS {
                    return unacceptable("Too many iterations");
                }
                if salt.is_empty() || salted.is_empty() {
                    return unacceptable("Salt and salted password must not be empty");
                }
                let credential = Credential::from_salted_password(mechanism, salt.clone(), salted, *iterations);
                records.push(MetadataRecord::ScramCredential { user: user.to_string(), mechanism, credential });
            }
        }
    }
    ctx.broker.record_security(&records).await.map_err(|e| (ResponseError::UnknownServerError, e.to_string()))
}
