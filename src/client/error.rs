//! What can go wrong talking to a cluster, sorted by what a user does about it: the CLI turns
//! each kind into its own exit code.

use kafka_protocol::ResponseError;

/// A client error. Kafka error codes keep their Kafka names (`UNKNOWN_TOPIC_OR_PARTITION`).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No broker could be reached (connection refused, timed out, TLS handshake failed).
    #[error("cannot reach {what}: {detail}")]
    Unreachable { what: String, detail: String },
    /// A broker answered with a Kafka error code.
    #[error("{}", kafka_message(.context, *.code, .message.as_deref()))]
    Kafka { context: String, code: i16, message: Option<String> },
    /// The TLS handshake failed (a certificate not trusted, or not for that host; or the
    /// other side does not speak TLS).
    #[error("cannot reach {what}: TLS handshake failed: {detail}")]
    Tls { what: String, detail: String },
    /// SASL authentication was refused.
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// Bad settings or arguments (caught before anything was sent).
    #[error("{0}")]
    Config(String),
    /// Something named does not exist (reported by the client, not a Kafka error code).
    #[error("{0}")]
    NotFound(String),
    /// The broker's answer made no sense, or it does not speak what we need.
    #[error("{0}")]
    Protocol(String),
}

pub type Result<T> = std::result::Result<T, ClientError>;

impl ClientError {
    pub fn kafka(context: impl Into<String>, code: i16, message: Option<String>) -> ClientError {
        ClientError::Kafka { context: context.into(), code, message: message.filter(|m| !m.is_empty()) }
    }

    /// `Ok` for error code 0, else the Kafka error with `context` (what was being done).
    pub fn check(context: impl FnOnce() -> String, code: i16, message: Option<&str>) -> Result<()> {
        if code == 0 {
            Ok(())
        } else {
            Err(ClientError::kafka(context(), code, message.map(str::to_string)))
        }
    }

    /// The Kafka error code, when a broker sent one.
    pub fn code(&self) -> Option<i16> {
        match self {
            ClientError::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Unreachable { .. } | ClientError::Tls { .. } => ErrorKind::Unreachable,
            ClientError::Authentication(_) => ErrorKind::NotAuthorized,
            ClientError::Config(_) => ErrorKind::Usage,
            ClientError::NotFound(_) => ErrorKind::NotFound,
            ClientError::Protocol(_) => ErrorKind::Other,
            ClientError::Kafka { code, .. } => kind_of_code(*code),
        }
    }
}

/// The classes of failure a script can tell apart by exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Other,
    Usage,
    NotFound,
    NotAuthorized,
    Unreachable,
    AlreadyExists,
}

impl ErrorKind {
    /// The documented exit code (docs/cli.md): 1 other, 2 usage, 3 not found, 4 not
    /// authorized, 5 unreachable, 7 already exists (6 is `cluster health` finding a problem).
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Other => 1,
            ErrorKind::Usage => 2,
            ErrorKind::NotFound => 3,
            ErrorKind::NotAuthorized => 4,
            ErrorKind::Unreachable => 5,
            ErrorKind::AlreadyExists => 7,
        }
    }
}

fn kind_of_code(code: i16) -> ErrorKind {
    use ResponseError::*;
    match ResponseError::try_from_code(code) {
        Some(
            UnknownTopicOrPartition
            | UnknownTopicId
            | GroupIdNotFound
            | ResourceNotFound
            | UnknownMemberId
            | UnknownProducerId
            | TransactionalIdNotFound,
        ) => ErrorKind::NotFound,
        Some(
            TopicAuthorizationFailed
            | GroupAuthorizationFailed
            | ClusterAuthorizationFailed
            | TransactionalIdAuthorizationFailed
            | DelegationTokenAuthorizationFailed
            | SaslAuthenticationFailed
            | IllegalSaslState
            | UnsupportedSaslMechanism,
        ) => ErrorKind::NotAuthorized,
        Some(TopicAlreadyExists | DuplicateResource) => ErrorKind::AlreadyExists,
        Some(
            InvalidConfig
            | InvalidRequest
            | InvalidPartitions
            | InvalidReplicationFactor
            | InvalidTopicException
            | PolicyViolation
            | InvalidReplicaAssignment,
        ) => ErrorKind::Usage,
        _ => ErrorKind::Other,
    }
}

/// Kafka's name for an error code: `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_CODE_{c}"),
        Some(e) => {
            let camel = format!("{e:?}");
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

/// What to do about the commonest errors.
fn hint(code: i16) -> Option<&'static str> {
    use ResponseError::*;
    Some(match ResponseError::try_from_code(code)? {
        UnknownTopicOrPartition => "check the name with `weir topic list`",
        GroupIdNotFound => "check the name with `weir group list`",
        TopicAlreadyExists => "pick another name, or describe it with `weir topic describe`",
        TopicAuthorizationFailed
        | GroupAuthorizationFailed
        | ClusterAuthorizationFailed
        | TransactionalIdAuthorizationFailed => {
            "the principal lacks an ACL for this; an admin can grant it with `weir acl create`"
        }
        SaslAuthenticationFailed => "check -X sasl.username / sasl.password / sasl.mechanism",
        UnsupportedSaslMechanism => "the listener does not enable this mechanism; check -X sasl.mechanism",
        InvalidReplicationFactor => "the replication factor cannot exceed the number of brokers (`weir cluster info`)",
        InvalidPartitions => "partitions can only be added, never removed",
        InvalidConfig => "check the config name and value against Kafka's documentation",
        NonEmptyGroup => "stop the group's consumers first",
        RebalanceInProgress | UnknownMemberId => "the group has active members; stop its consumers first",
        CoordinatorNotAvailable
        | NotCoordinator
        | CoordinatorLoadInProgress
        | NotController
        | LeaderNotAvailable
        | NotLeaderOrFollower => "the cluster is electing a leader; retry shortly",
        RequestTimedOut => "the broker did not finish in time; retry, or check `weir cluster health`",
        UnsupportedVersion => "the broker is too old for this command",
        _ => return None,
    })
}

fn kafka_message(context: &str, code: i16, message: Option<&str>) -> String {
    let mut out = format!("{context}: {} ({code})", error_name(code));
    if let Some(m) = message {
        out.push_str(": ");
        out.push_str(m);
    }
    if let Some(h) = hint(code) {
        out.push_str(" — ");
        out.push_str(h);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_and_kinds() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(29), "TOPIC_AUTHORIZATION_FAILED");
        assert_eq!(ClientError::kafka("topic 'x'", 3, None).kind().exit_code(), 3);
        assert_eq!(ClientError::kafka("x", 30, None).kind(), ErrorKind::NotAuthorized);
        assert_eq!(ClientError::kafka("x", 36, None).kind(), ErrorKind::AlreadyExists);
        let text = ClientError::kafka("topic 'x'", 3, Some("gone".into())).to_string();
        assert!(text.starts_with("topic 'x': UNKNOWN_TOPIC_OR_PARTITION (3): gone — "), "{text}");
    }
}
