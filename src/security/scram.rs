//! SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677): the salted credential kept per user,
//! and the server side of the exchange. Only `StoredKey` and `ServerKey` are kept — enough to
//! check a SCRAM proof and, by deriving them again from a password, a PLAIN login — never the
//! password.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::rand::SecureRandom;
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};

/// Kafka's bounds on a credential's iteration count.
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The mechanism's number in Describe/AlterUserScramCredentials.
    pub fn code(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.code() == code)
    }

    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            Mechanism::Sha256 => hmac::HMAC_SHA256,
            Mechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest_algorithm(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::Sha256 => &digest::SHA256,
            Mechanism::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2_algorithm(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Mechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn output_len(self) -> usize {
        self.digest_algorithm().output_len()
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac_algorithm(), key), data).as_ref().to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest_algorithm(), data).as_ref().to_vec()
    }

    /// `Hi(password, salt, i)` of RFC 5802: PBKDF2 with this mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: i32) -> Vec<u8> {
        let mut out = vec![0; self.output_len()];
        let rounds = std::num::NonZeroU32::new(iterations.max(1) as u32).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(self.pbkdf2_algorithm(), rounds, salt, password, &mut out);
        out
    }
}

/// A user's salted credential for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl Credential {
    /// The credential for a salted password (what AlterUserScramCredentials sends).
    pub fn from_salted_password(mechanism: Mechanism, salt: Vec<u8>, salted: &[u8], iterations: i32) -> Credential {
        let client_key = mechanism.hmac(salted, b"Client Key");
        Credential {
            salt,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted, b"Server Key"),
            iterations,
        }
    }

    /// A credential for `password` with a fresh random salt.
    pub fn new(mechanism: Mechanism, password: &str, iterations: i32) -> Credential {
        let salt = random_bytes(32);
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        Credential::from_salted_password(mechanism, salt, &salted, iterations)
    }

    /// Whether `password` is this credential's password (PLAIN logins, idempotent `--add-scram`).
    pub fn matches_password(&self, mechanism: Mechanism, password: &str) -> bool {
        let salted = mechanism.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let derived = Credential::from_salted_password(mechanism, self.salt.clone(), &salted, self.iterations);
        constant_time_eq(&derived.stored_key, &self.stored_key)
    }
}

/// Compares secrets without an early exit, so timing does not tell how much of a guess matched.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    // The system generator failing is not something a client can cause; fall back to a
    // time-derived value rather than aborting the broker.
    if ring::rand::SystemRandom::new().fill(&mut out).is_err() {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        for (i, b) in out.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8 ^ i as u8;
        }
    }
    out
}

/// A user to create at start-up, from Kafka's format-tool syntax
/// `SCRAM-SHA-256=[name=admin,password=admin-secret]` (optionally `iterations=8192`).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramUser {
    pub mechanism: Mechanism,
    pub name: String,
    pub password: String,
    pub iterations: i32,
}

impl std::fmt::Debug for ScramUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramUser({} {} i={} password=<redacted>)", self.mechanism.name(), self.name, self.iterations)
    }
}

impl ScramUser {
    pub fn parse(spec: &str) -> Result<ScramUser, String> {
        let bad = || format!("--add-scram: expected 'SCRAM-SHA-256=[name=NAME,password=PASSWORD]', got '{spec}'");
        let (mech, rest) = spec.split_once('=').ok_or_else(bad)?;
        let mechanism =
            Mechanism::from_name(mech.trim()).ok_or_else(|| format!("--add-scram: unknown mechanism '{mech}'"))?;
        let body = rest.trim().strip_prefix('[').and_then(|r| r.strip_suffix(']')).ok_or_else(bad)?;
        let (mut name, mut password, mut iterations) = (None, None, MIN_ITERATIONS);
        for field in body.split(',') {
            let (k, v) = field.split_once('=').ok_or_else(bad)?;
            let v = v.trim().trim_matches('"').to_string();
            match k.trim() {
                "name" => name = Some(v),
                "password" => password = Some(v),
                "iterations" => iterations = v.parse().map_err(|_| format!("--add-scram: bad iterations '{v}'"))?,
                other => return Err(format!("--add-scram: unsupported field '{other}'")),
            }
        }
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(format!("--add-scram: iterations must be {MIN_ITERATIONS}..={MAX_ITERATIONS}"));
        }
        let name = name.filter(|n| !n.is_empty()).ok_or_else(bad)?;
        let password = password.filter(|p| !p.is_empty()).ok_or_else(bad)?;
        Ok(ScramUser { mechanism, name, password, iterations })
    }
}

/// Why an exchange failed; the client only ever sees a generic message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("unknown user")]
    UnknownUser,
    #[error("invalid proof")]
    InvalidProof,
    #[error("delegation tokens are not supported")]
    TokenAuth,
}

/// Where a server-side exchange stands.
#[derive(Debug)]
pub enum ScramServer {
    /// Waiting for client-first-message.
    Start(Mechanism),
    /// Sent server-first-message; waiting for client-final-message.
    Challenged {
        mechanism: Mechanism,
        user: String,
        credential: Credential,
        /// The server's part of the nonce.
        server_nonce: String,
        client_first_bare: String,
        server_first: String,
    },
}

/// What one step of the exchange gave.
pub enum Step {
    /// Send this challenge and wait for the next message.
    Continue(ScramServer, Vec<u8>),
    /// Authenticated as this user; send the server-final-message.
    Done(String, Vec<u8>),
}

impl ScramServer {
    pub fn mechanism(&self) -> Mechanism {
        match self {
            ScramServer::Start(m) | ScramServer::Challenged { mechanism: m, .. } => *m,
        }
    }

    /// Runs one step. `lookup` finds a user's credential for the mechanism.
    pub fn step(
        self,
        message: &[u8],
        lookup: impl Fn(&str, Mechanism) -> Option<Credential>,
    ) -> Result<Step, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        match self {
            ScramServer::Start(mechanism) => {
                let (bare, user, client_nonce) = parse_client_first(text)?;
                let credential = lookup(&user, mechanism).ok_or(ScramError::UnknownUser)?;
                let server_nonce = B64.encode(random_bytes(18));
                let nonce = format!("{client_nonce}{server_nonce}");
                let server_first = format!("r={nonce},s={},i={}", B64.encode(&credential.salt), credential.iterations);
                let challenge = server_first.clone().into_bytes();
                let state = ScramServer::Challenged {
                    mechanism,
                    user,
                    credential,
                    server_nonce,
                    client_first_bare: bare,
                    server_first,
                };
                Ok(Step::Continue(state, challenge))
            }
            ScramServer::Challenged { mechanism, user, credential, server_nonce, client_first_bare, server_first } => {
                let (without_proof, proof) =
                    text.rsplit_once(",p=").ok_or(ScramError::Malformed("client-final has no proof"))?;
                let mut fields = without_proof.split(',');
                let channel = fields.next().and_then(|f| f.strip_prefix("c="));
                let their_nonce = fields.next().and_then(|f| f.strip_prefix("r="));
                // Kafka only checks that the nonce ends with the server's part, and librdkafka
                // before 2.1 sends its own nonce twice; accept what Kafka accepts.
                if !their_nonce.is_some_and(|n| n.ends_with(server_nonce.as_str())) {
                    return Err(ScramError::Malformed("nonce mismatch"));
                }
                // No channel binding: the GS2 header must have been "n,," or "y,,", with or
                // without an authorization id.
                let header = channel.and_then(|c| B64.decode(c).ok()).ok_or(ScramError::Malformed("bad c="))?;
                if !(header.starts_with(b"n,") || header.starts_with(b"y,")) {
                    return Err(ScramError::Malformed("channel binding is not supported"));
                }
                let proof = B64.decode(proof).map_err(|_| ScramError::Malformed("bad proof"))?;
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let client_signature = mechanism.hmac(&credential.stored_key, auth_message.as_bytes());
                if proof.len() != client_signature.len() {
                    return Err(ScramError::InvalidProof);
                }
                let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(a, b)| a ^ b).collect();
                let stored = mechanism.hash(&client_key);
                if !constant_time_eq(&stored, &credential.stored_key) {
                    return Err(ScramError::InvalidProof);
                }
                let server_signature = mechanism.hmac(&credential.server_key, auth_message.as_bytes());
                Ok(Step::Done(user, format!("v={}", B64.encode(server_signature)).into_bytes()))
            }
        }
    }
}

/// The client side of an exchange (the CLI's `-X sasl.mechanism=SCRAM-SHA-*`).
pub struct ScramClient {
    mechanism: Mechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
    /// The signature the server must prove in server-final-message.
    server_signature: Vec<u8>,
}

impl ScramClient {
    /// Starts an exchange; returns the client and the client-first-message to send.
    pub fn start(mechanism: Mechanism, user: &str, password: &str) -> (ScramClient, Vec<u8>) {
        let nonce = B64.encode(random_bytes(24));
        let name = user.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={name},r={nonce}");
        let first = format!("n,,{client_first_bare}").into_bytes();
        let client = ScramClient {
            mechanism,
            password: password.to_string(),
            client_first_bare,
            nonce,
            server_signature: Vec::new(),
        };
        (client, first)
    }

    /// Answers server-first-message with client-final-message.
    pub fn respond(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let server_first = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let nonce = server_first.split(',').find_map(|f| f.strip_prefix("r=")).unwrap_or_default();
        if !nonce.starts_with(self.nonce.as_str()) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Malformed("server nonce does not extend ours"));
        }
        let (message, server_signature) =
            client_final_message(self.mechanism, &self.password, &self.client_first_bare, server_first, nonce)?;
        self.server_signature = server_signature;
        Ok(message.into_bytes())
    }

    /// Checks server-final-message: the server knew the credential.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let signature = text.strip_prefix("v=").and_then(|v| B64.decode(v).ok()).ok_or(ScramError::InvalidProof)?;
        if self.server_signature.is_empty() || !constant_time_eq(&signature, &self.server_signature) {
            return Err(ScramError::InvalidProof);
        }
        Ok(())
    }
}

/// RFC 5802's client-final-message for `server_first`, sending `nonce`; also the server
/// signature to expect.
fn client_final_message(
    m: Mechanism,
    password: &str,
    client_first_bare: &str,
    server_first: &str,
    nonce: &str,
) -> Result<(String, Vec<u8>), ScramError> {
    let field = |name: &str| server_first.split(',').find_map(|f| f.strip_prefix(name));
    let salt = field("s=").and_then(|s| B64.decode(s).ok()).ok_or(ScramError::Malformed("bad salt"))?;
    let iterations: i32 = field("i=").and_then(|i| i.parse().ok()).ok_or(ScramError::Malformed("bad iterations"))?;
    if !(1..=MAX_ITERATIONS * 64).contains(&iterations) {
        return Err(ScramError::Malformed("iteration count out of range"));
    }
    let salted = m.salted_password(password.as_bytes(), &salt, iterations);
    let client_key = m.hmac(&salted, b"Client Key");
    let stored = m.hash(&client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = m.hmac(&stored, auth.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
    let server_signature = m.hmac(&m.hmac(&salted, b"Server Key"), auth.as_bytes());
    Ok((format!("{without_proof},p={}", B64.encode(proof)), server_signature))
}

/// Parses `gs2-header client-first-bare`; returns the bare part, the user and the nonce.
fn parse_client_first(text: &str) -> Result<(String, String, String), ScramError> {
    // gs2-header: cbind-flag "," [authzid] ","
    let mut split = text.splitn(3, ',');
    let flag = split.next().unwrap_or_default();
    let _authzid = split.next().ok_or(ScramError::Malformed("no GS2 header"))?;
    let bare = split.next().ok_or(ScramError::Malformed("no client-first-bare"))?;
    if flag != "n" && flag != "y" {
        return Err(ScramError::Malformed("channel binding is not supported"));
    }
    let mut user = None;
    let mut nonce = None;
    for field in bare.split(',') {
        if let Some(v) = field.strip_prefix("n=") {
            user = Some(decode_saslname(v)?);
        } else if let Some(v) = field.strip_prefix("r=") {
            nonce = Some(v.to_string());
        } else if field.starts_with("m=") {
            return Err(ScramError::Malformed("mandatory extension not supported"));
        } else if field == "tokenauth=true" {
            return Err(ScramError::TokenAuth);
        }
    }
    let user = user.filter(|u| !u.is_empty()).ok_or(ScramError::Malformed("no user"))?;
    let nonce = nonce.filter(|n| !n.is_empty()).ok_or(ScramError::Malformed("no nonce"))?;
    Ok((bare.to_string(), user, nonce))
}

/// RFC 5802 saslname: `=2C` is a comma and `=3D` an equals sign; any other `=` is an error.
fn decode_saslname(v: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad saslname escape")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client side of the exchange, as RFC 5802 describes it.
    fn client_final(m: Mechanism, password: &str, client_first_bare: &str, server_first: &str) -> String {
        client_final_with(m, password, client_first_bare, server_first, |n| n.to_string())
    }

    /// The same, with the nonce the client sends derived from the server's by `nonce`.
    fn client_final_with(
        m: Mechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
        nonce: impl Fn(&str) -> String,
    ) -> String {
        let nonce = nonce(server_first.split(',').next().unwrap().strip_prefix("r=").unwrap());
        super::client_final_message(m, password, client_first_bare, server_first, &nonce).unwrap().0
    }

    #[test]
    fn the_client_side_authenticates_and_checks_the_server() {
        for m in Mechanism::ALL {
            let stored = Credential::new(m, "pencil", 4096);
            let lookup = |u: &str, mech: Mechanism| (u == "al,ice" && mech == m).then(|| stored.clone());
            let (mut client, first) = ScramClient::start(m, "al,ice", "pencil");
            let Step::Continue(state, challenge) = ScramServer::Start(m).step(&first, lookup).unwrap() else {
                panic!("expected a challenge")
            };
            let last = client.respond(&challenge).unwrap();
            let Step::Done(user, server_final) = state.step(&last, lookup).unwrap() else { panic!("expected the end") };
            assert_eq!(user, "al,ice");
            client.verify(&server_final).unwrap();
            assert!(client.verify(b"v=AAAA").is_err());
        }
    }

    fn exchange(m: Mechanism, stored: &Credential, password: &str) -> Result<String, ScramError> {
        let lookup = |u: &str, mech: Mechanism| (u == "al,ice" && mech == m).then(|| stored.clone());
        let bare = "n=al=2Cice,r=fyko+d2lbbFgONRv9qkxdawL";
        let Step::Continue(state, challenge) = ScramServer::Start(m).step(format!("n,,{bare}").as_bytes(), lookup)?
        else {
            panic!("expected a challenge")
        };
        let server_first = String::from_utf8(challenge).unwrap();
        let last = client_final(m, password, bare, &server_first);
        match state.step(last.as_bytes(), lookup)? {
            Step::Done(user, _) => Ok(user),
            Step::Continue(..) => panic!("expected the end"),
        }
    }

    #[test]
    fn right_password_authenticates_and_wrong_one_does_not() {
        for m in Mechanism::ALL {
            let cred = Credential::new(m, "secret", 4096);
            assert_eq!(exchange(m, &cred, "secret").unwrap(), "al,ice");
            assert_eq!(exchange(m, &cred, "wrong"), Err(ScramError::InvalidProof));
            assert!(cred.matches_password(m, "secret"));
            assert!(!cred.matches_password(m, "secret "));
        }
    }

    #[test]
    fn nonces_are_checked_as_kafka_checks_them() {
        let m = Mechanism::Sha256;
        let cred = Credential::new(m, "pw", 4096);
        let lookup = |_: &str, _: Mechanism| Some(cred.clone());
        let bare = "n=u,r=client-nonce";
        let run = |nonce: &dyn Fn(&str) -> String| {
            let Ok(Step::Continue(state, challenge)) =
                ScramServer::Start(m).step(format!("n,,{bare}").as_bytes(), lookup)
            else {
                panic!("expected a challenge")
            };
            let server_first = String::from_utf8(challenge).unwrap();
            state.step(client_final_with(m, "pw", bare, &server_first, nonce).as_bytes(), lookup).map(|_| ())
        };
        assert!(run(&|n| n.to_string()).is_ok());
        // librdkafka before 2.1 sends its nonce twice; Kafka accepts it (the nonce ends with the server's part).
        assert!(run(&|n| format!("client-nonce{n}")).is_ok());
        assert_eq!(run(&|_| "client-nonce-forged".to_string()), Err(ScramError::Malformed("nonce mismatch")));
    }

    #[test]
    fn unknown_users_and_garbage_are_refused() {
        let lookup = |_: &str, _: Mechanism| None;
        assert!(matches!(
            ScramServer::Start(Mechanism::Sha256).step(b"n,,n=bob,r=abc", lookup),
            Err(ScramError::UnknownUser)
        ));
        for bad in [&b""[..], b"n,,", b"p=tls,,n=a,r=b", b"n,,n=a", b"\xff\xfe", b"n,,n=a=ZZ,r=x"] {
            assert!(ScramServer::Start(Mechanism::Sha256).step(bad, lookup).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn add_scram_specs_parse_like_kafka_storage() {
        let u = ScramUser::parse("SCRAM-SHA-512=[name=admin,password=admin-secret,iterations=8192]").unwrap();
        assert_eq!(
            (u.mechanism, u.name.as_str(), u.password.as_str(), u.iterations),
            (Mechanism::Sha512, "admin", "admin-secret", 8192)
        );
        assert!(!format!("{u:?}").contains("admin-secret"));
        assert_eq!(ScramUser::parse("SCRAM-SHA-256=[name=\"a\",password=\"b\"]").unwrap().iterations, 4096);
        for bad in [
            "PLAIN=[name=a,password=b]",
            "SCRAM-SHA-256=[name=a]",
            "SCRAM-SHA-256=name=a,password=b",
            "SCRAM-SHA-256=[name=a,password=b,iterations=10]",
        ] {
            assert!(ScramUser::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc7677_test_vector_derives_the_same_keys() {
        // RFC 7677 section 3: user "user", password "pencil", 4096 iterations.
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = Mechanism::Sha256.salted_password(b"pencil", &salt, 4096);
        let cred = Credential::from_salted_password(Mechanism::Sha256, salt, &salted, 4096);
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let without_proof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let server_sig = Mechanism::Sha256.hmac(&cred.server_key, auth.as_bytes());
        assert_eq!(B64.encode(server_sig), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }
}
