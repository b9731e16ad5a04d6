//! SaslHandshake and SaslAuthenticate, and the raw SASL tokens of SaslHandshake v0.
//!
//! A failed authentication gets `SASL_AUTHENTICATION_FAILED` with a generic message, then the
//! connection is closed; the broker logs the peer, mechanism and reason, never the secret.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, FrameError, RequestContext, Response};
use crate::broker::Broker;
use crate::security::sasl::{AuthError, AuthStep, SaslMechanism, Session};

pub async fn handshake(ctx: &RequestContext, req: SaslHandshakeRequest) -> SaslHandshakeResponse {
    let security = &ctx.broker.security;
    let resp = SaslHandshakeResponse::default()
        .with_mechanisms(security.mechanisms.iter().map(|m| str_bytes(m.as_str())).collect());
    if !ctx.session.listener.protocol.uses_sasl() {
        return resp.with_error_code(ResponseError::IllegalSaslState.code());
    }
    let name = req.mechanism.as_str();
    let Some(mechanism) =
        security.mechanisms.iter().any(|m| m == name).then(|| SaslMechanism::from_name(name)).flatten()
    else {
        tracing::info!(peer = %ctx.peer, mechanism = name, "SASL mechanism not enabled; closing");
        ctx.session.close_after_response();
        return resp.with_error_code(ResponseError::UnsupportedSaslMechanism.code());
    };
    if let Err(reason) = ctx.session.handshake(mechanism, ctx.version) {
        tracing::info!(peer = %ctx.peer, reason, "unexpected SaslHandshake; closing");
        ctx.session.close_after_response();
        return resp.with_error_code(ResponseError::IllegalSaslState.code());
    }
    resp
}

pub async fn authenticate(ctx: &RequestContext, req: SaslAuthenticateRequest) -> SaslAuthenticateResponse {
    let resp = SaslAuthenticateResponse::default();
    if !ctx.session.listener.protocol.uses_sasl() || !ctx.session.in_exchange() {
        ctx.session.close_after_response();
        return resp
            .with_error_code(ResponseError::IllegalSaslState.code())
            .with_error_message(Some(str_bytes("SaslAuthenticate without a SaslHandshake")));
    }
    match step(&ctx.broker, &ctx.session, req.auth_bytes).await {
        Ok(AuthStep::Challenge(challenge)) => resp.with_auth_bytes(Bytes::from(challenge)),
        Ok(AuthStep::Done { reply, lifetime_ms, .. }) => {
            let resp = resp.with_auth_bytes(Bytes::from(reply));
            if ctx.version >= 1 {
                resp.with_session_lifetime_ms(lifetime_ms)
            } else {
                resp
            }
        }
        Err(mechanism) => {
            ctx.session.close_after_response();
            resp.with_error_code(ResponseError::SaslAuthenticationFailed.code()).with_error_message(Some(str_bytes(
                format!("Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"),
            )))
        }
    }
}

/// A raw SASL token after SaslHandshake v0: answered with the raw reply (size-prefixed, no
/// header). A failure closes the connection, as Kafka does for this old flow.
pub async fn raw_token(broker: &Arc<Broker>, session: &Arc<Session>, token: Bytes) -> Result<Response, FrameError> {
    match step(broker, session, token).await {
        Ok(AuthStep::Challenge(reply)) | Ok(AuthStep::Done { reply, .. }) => {
            let mut frame = Vec::with_capacity(4 + reply.len());
            frame.extend_from_slice(&(reply.len() as u32).to_be_bytes());
            frame.extend_from_slice(&reply);
            Ok(Response::Frame(Bytes::from(frame)))
        }
        Err(_) => Err(FrameError::AuthenticationFailed),
    }
}

/// Runs one step of the session's exchange; on failure logs why and returns the mechanism.
/// The step runs on a blocking thread: PLAIN derives a salted password (thousands of HMAC
/// rounds), which must not stall the connections sharing this worker.
async fn step(broker: &Arc<Broker>, session: &Arc<Session>, token: Bytes) -> Result<AuthStep, &'static str> {
    let mechanism = session.mechanism_name();
    let (b, s) = (broker.clone(), session.clone());
    let stepped = tokio::task::spawn_blocking(move || {
        let security = &b.security;
        let plain_users = security.plain_users(&s.listener.name);
        s.authenticate(&token, |user, m| security.credential(user, m), plain_users, security.reauth_ms)
    })
    .await;
    let Ok(stepped) = stepped else {
        tracing::error!(peer = %session.peer, "authentication step panicked");
        return Err(mechanism);
    };
    match stepped {
        Ok(step) => {
            if let AuthStep::Done { principal, .. } = &step {
                tracing::debug!(peer = %session.peer, %principal, mechanism, "authenticated");
            }
            Ok(step)
        }
        Err(e) => {
            log_failure(session, mechanism, &e);
            Err(mechanism)
        }
    }
}

fn log_failure(session: &Session, mechanism: &str, e: &AuthError) {
    tracing::warn!(peer = %session.peer, listener = %session.listener.name, mechanism, reason = %e, "failed authentication");
}
