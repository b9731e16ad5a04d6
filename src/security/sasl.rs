//! A connection's authentication state: who it is, and where its SASL exchange stands.
//!
//! On a `SASL_*` listener a connection may send only ApiVersions, SaslHandshake and
//! SaslAuthenticate until it has authenticated. SaslHandshake v0 switches the connection to
//! raw SASL tokens (frames without a Kafka header) for the exchange; v1 uses SaslAuthenticate.
//! With `connections.max.reauth.ms` the session has a lifetime (KIP-368): the client must
//! authenticate again, as the same principal, before it ends, or the connection is closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::scram::{Credential, Mechanism, ScramError, ScramServer, Step};
use super::{Principal, SecurityProtocol};

/// The listener a connection came in on.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    pub name: String,
    pub protocol: SecurityProtocol,
}

/// A SASL mechanism Weir implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(Mechanism),
}

impl SaslMechanism {
    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        if name == "PLAIN" {
            return Some(SaslMechanism::Plain);
        }
        Mechanism::from_name(name).map(SaslMechanism::Scram)
    }

    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        }
    }
}

enum Stage {
    Idle,
    /// SaslHandshake chose a mechanism; the exchange has not started.
    Handshaken {
        mechanism: SaslMechanism,
        raw: bool,
    },
    /// A SCRAM exchange is between its two messages.
    Scram {
        server: ScramServer,
        raw: bool,
    },
}

struct State {
    /// `None` on a SASL listener until the first authentication succeeds.
    principal: Option<Principal>,
    /// When the session ends (KIP-368); `None`: never.
    expires_at: Option<Instant>,
    stage: Stage,
}

/// Why an authentication step failed. The client is told only that it failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Scram(#[from] ScramError),
    #[error("malformed PLAIN message")]
    MalformedPlain,
    #[error("invalid username or password")]
    BadPassword,
    #[error("re-authentication as {new} on a connection of {old}")]
    PrincipalChanged { old: Principal, new: Principal },
}

/// What an authentication step gave.
pub enum AuthStep {
    /// More to exchange: send this challenge.
    Challenge(Vec<u8>),
    /// Authenticated: send these final bytes; the session lasts `lifetime_ms` (0: forever).
    Done { principal: Principal, reply: Vec<u8>, lifetime_ms: i64 },
}

/// One connection's security session.
pub struct Session {
    /// Unique per connection (share sessions belong to the connection that opened them).
    pub id: u64,
    pub listener: Arc<ListenerInfo>,
    pub peer: SocketAddr,
    state: Mutex<State>,
    /// Set when the connection must close once the current response is written.
    close: AtomicBool,
    /// Quota throttling (KIP-219): the connection is not read until then.
    muted_until: Mutex<Option<Instant>>,
    /// The client's software name and version, as its ApiVersions (v3+) said.
    client_software: Mutex<(String, String)>,
}

impl Session {
    /// A session whose principal is settled by the transport (`None` on SASL listeners).
    pub fn new(listener: Arc<ListenerInfo>, peer: SocketAddr, principal: Option<Principal>) -> Session {
        let principal = if listener.protocol.uses_sasl() { None } else { principal.or(Some(Principal::anonymous())) };
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Session {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            listener,
            peer,
            state: Mutex::new(State { principal, expires_at: None, stage: Stage::Idle }),
            close: AtomicBool::new(false),
            muted_until: Mutex::new(None),
            client_software: Mutex::new(Default::default()),
        }
    }

    /// A PLAINTEXT session for in-process callers (fuzzing, tests).
    pub fn plaintext(peer: SocketAddr) -> Session {
        let listener = ListenerInfo { name: "PLAINTEXT".into(), protocol: SecurityProtocol::Plaintext };
        Session::new(Arc::new(listener), peer, None)
    }

    /// Records the software name and version a client's ApiVersions gave.
    pub fn set_client_software(&self, name: &str, version: &str) {
        *self.client_software.lock() = (name.to_string(), version.to_string());
    }

    /// The client's software name and version (empty until its ApiVersions v3+).
    pub fn client_software(&self) -> (String, String) {
        self.client_software.lock().clone()
    }

    pub fn principal(&self) -> Principal {
        self.state.lock().principal.clone().unwrap_or_else(Principal::anonymous)
    }

    pub fn is_authenticated(&self) -> bool {
        self.state.lock().principal.is_some()
    }

    /// Whether the session's lifetime has run out (it must re-authenticate first).
    pub fn expired(&self, now: Instant) -> bool {
        self.state.lock().expires_at.is_some_and(|t| now >= t)
    }

    /// Whether the next frame is a raw SASL token (after SaslHandshake v0).
    pub fn expects_raw_token(&self) -> bool {
        matches!(self.state.lock().stage, Stage::Handshaken { raw: true, .. } | Stage::Scram { raw: true, .. })
    }

    /// Whether an exchange is under way (SaslAuthenticate is expected).
    pub fn in_exchange(&self) -> bool {
        !matches!(self.state.lock().stage, Stage::Idle)
    }

    /// The mechanism of the exchange under way ("" when none).
    pub fn mechanism_name(&self) -> &'static str {
        match &self.state.lock().stage {
            Stage::Idle => "",
            Stage::Handshaken { mechanism, .. } => mechanism.name(),
            Stage::Scram { server, .. } => server.mechanism().name(),
        }
    }

    /// SaslHandshake: chooses the mechanism for the exchange that follows.
    pub fn handshake(&self, mechanism: SaslMechanism, version: i16) -> Result<(), &'static str> {
        let mut state = self.state.lock();
        if !matches!(state.stage, Stage::Idle) {
            return Err("a SASL exchange is already under way");
        }
        if state.principal.is_some() && version == 0 {
            return Err("re-authentication needs SaslHandshake v1 or later");
        }
        state.stage = Stage::Handshaken { mechanism, raw: version == 0 };
        Ok(())
    }

    /// One step of the exchange. `lookup` finds a user's SCRAM credential, `plain_users` are
    /// the listener's JAAS `user_<name>` entries (checked first for PLAIN); `reauth_ms` is
    /// `connections.max.reauth.ms`.
    pub fn authenticate(
        &self,
        token: &[u8],
        lookup: impl Fn(&str, Mechanism) -> Option<Credential>,
        plain_users: Option<&std::collections::BTreeMap<String, String>>,
        reauth_ms: i64,
    ) -> Result<AuthStep, AuthError> {
        let mut state = self.state.lock();
        let (user, reply) = match std::mem::replace(&mut state.stage, Stage::Idle) {
            Stage::Idle => return Err(AuthError::MalformedPlain),
            Stage::Handshaken { mechanism: SaslMechanism::Plain, .. } => {
                (verify_plain(token, &lookup, plain_users)?, Vec::new())
            }
            Stage::Handshaken { mechanism: SaslMechanism::Scram(m), raw } => {
                match ScramServer::Start(m).step(token, &lookup)? {
                    Step::Continue(server, challenge) => {
                        state.stage = Stage::Scram { server, raw };
                        return Ok(AuthStep::Challenge(challenge));
                    }
                    Step::Done(user, reply) => (user, reply),
                }
            }
            Stage::Scram { server, .. } => match server.step(token, &lookup)? {
                Step::Done(user, reply) => (user, reply),
                Step::Continue(..) => return Err(AuthError::Scram(ScramError::Malformed("unexpected message"))),
            },
        };
        let principal = Principal::user(user);
        if let Some(old) = &state.principal {
            if *old != principal {
                return Err(AuthError::PrincipalChanged { old: old.clone(), new: principal });
            }
        }
        state.principal = Some(principal.clone());
        let lifetime_ms = reauth_ms.max(0);
        state.expires_at = (lifetime_ms > 0).then(|| Instant::now() + Duration::from_millis(lifetime_ms as u64));
        Ok(AuthStep::Done { principal, reply, lifetime_ms })
    }

    /// Asks the connection to close after the response being prepared.
    pub fn close_after_response(&self) {
        self.close.store(true, Ordering::Relaxed);
    }

    pub fn should_close(&self) -> bool {
        self.close.load(Ordering::Relaxed)
    }

    /// Stops reading the connection for `throttle` (a quota violation).
    pub fn mute_for(&self, throttle: Duration) {
        if throttle.is_zero() {
            return;
        }
        let until = Instant::now() + throttle;
        let mut muted = self.muted_until.lock();
        *muted = Some(muted.map_or(until, |m| m.max(until)));
    }

    /// Until when the connection is muted, if it is.
    pub fn muted_until(&self) -> Option<Instant> {
        let mut muted = self.muted_until.lock();
        if muted.is_some_and(|m| m <= Instant::now()) {
            *muted = None;
        }
        *muted
    }
}

/// PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`, checked against the listener's JAAS
/// users (as Kafka's PlainLoginModule does), else the user's SCRAM credentials (any mechanism).
fn verify_plain(
    token: &[u8],
    lookup: &impl Fn(&str, Mechanism) -> Option<Credential>,
    plain_users: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<String, AuthError> {
    let text = std::str::from_utf8(token).map_err(|_| AuthError::MalformedPlain)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::MalformedPlain);
    };
    if user.is_empty() || password.is_empty() || (!authzid.is_empty() && authzid != user) {
        return Err(AuthError::MalformedPlain);
    }
    let verified = match plain_users.and_then(|users| users.get(user)) {
        Some(expected) => super::scram::constant_time_eq(expected.as_bytes(), password.as_bytes()),
        None => Mechanism::ALL
            .into_iter()
            .find_map(|m| lookup(user, m).map(|c| (m, c)))
            .is_some_and(|(m, c)| c.matches_password(m, password)),
    };
    if verified {
        Ok(user.to_string())
    } else {
        Err(AuthError::BadPassword)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl_session() -> Session {
        let listener = ListenerInfo { name: "SASL_PLAINTEXT".into(), protocol: SecurityProtocol::SaslPlaintext };
        Session::new(Arc::new(listener), "127.0.0.1:1".parse().unwrap(), None)
    }

    #[test]
    fn plain_checks_the_scram_store_and_reauth_keeps_the_principal() {
        let cred = Credential::new(Mechanism::Sha512, "pw", 4096);
        let lookup = |u: &str, m: Mechanism| (u == "alice" && m == Mechanism::Sha512).then(|| cred.clone());
        let s = sasl_session();
        assert!(!s.is_authenticated());
        s.handshake(SaslMechanism::Plain, 1).unwrap();
        assert!(matches!(s.authenticate(b"\0alice\0nope", lookup, None, 0), Err(AuthError::BadPassword)));
        s.handshake(SaslMechanism::Plain, 1).unwrap();
        assert!(matches!(
            s.authenticate(b"\0alice\0pw", lookup, None, 1000),
            Ok(AuthStep::Done { lifetime_ms: 1000, .. })
        ));
        assert_eq!(s.principal(), Principal::user("alice"));
        assert!(!s.expired(Instant::now()));
        assert!(s.expired(Instant::now() + Duration::from_secs(2)));
        // Re-authentication as somebody else is refused.
        let other = Credential::new(Mechanism::Sha512, "pw", 4096);
        let lookup2 = |u: &str, m: Mechanism| (u == "bob" && m == Mechanism::Sha512).then(|| other.clone());
        s.handshake(SaslMechanism::Plain, 1).unwrap();
        assert!(matches!(s.authenticate(b"\0bob\0pw", lookup2, None, 0), Err(AuthError::PrincipalChanged { .. })));
        assert!(s.handshake(SaslMechanism::Plain, 0).is_err(), "re-authentication needs v1");
    }

    #[test]
    fn plain_checks_the_listeners_jaas_users_first() {
        let users: std::collections::BTreeMap<String, String> = [("carol".to_string(), "c-pw".to_string())].into();
        let none = |_: &str, _: Mechanism| None;
        let s = sasl_session();
        s.handshake(SaslMechanism::Plain, 1).unwrap();
        assert!(matches!(s.authenticate(b"\0carol\0wrong", none, Some(&users), 0), Err(AuthError::BadPassword)));
        s.handshake(SaslMechanism::Plain, 1).unwrap();
        assert!(s.authenticate(b"\0carol\0c-pw", none, Some(&users), 0).is_ok());
        assert_eq!(s.principal(), Principal::user("carol"));
    }

    #[test]
    fn malformed_plain_messages_fail() {
        let lookup = |_: &str, _: Mechanism| None;
        for bad in [&b""[..], b"alice", b"\0alice", b"\0\0pw", b"bob\0alice\0pw", b"\0a\0b\0c", b"\xff\0a\0b"] {
            let s = sasl_session();
            s.handshake(SaslMechanism::Plain, 1).unwrap();
            assert!(s.authenticate(bad, lookup, None, 0).is_err(), "{bad:?}");
        }
    }
}
