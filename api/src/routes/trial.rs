//! Anonymous trials: `POST /api/v1/trial/challenges` hands out a proof-of-work challenge, and
//! `POST /api/v1/trial` with its solution creates a small trial tenant and answers its token.

use actix_web::{HttpRequest, HttpResponse, post, web};
use gofer_core::model::{TrialChallenge, TrialProof};
use gofer_core::proof_of_work;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::routes::tenants::TenantCreated;
use crate::state::AppState;

/// The audience of challenges, signed as assertions with the run-token keys (so every replica
/// checks what any replica handed out).
const CHALLENGE_AUDIENCE: &str = "gofer-trial-challenge";

/// What a challenge asserts: its unique id, the client key it was issued to, and the work asked.
#[derive(Serialize, Deserialize)]
struct ChallengeClaims {
    jti: String,
    sub: String,
    bits: u8,
}

fn not_offered() -> ApiError {
    ApiError::NotFound { code: "route_not_found", detail: "trials are not offered".into() }
}

fn client_key(req: &HttpRequest) -> Result<std::net::IpAddr, ApiError> {
    let ip = crate::auth::client_ip(req).ok_or_else(|| ApiError::internal("no client address"))?;
    Ok(crate::limits::client_key(ip))
}

/// Hands out a proof-of-work challenge for one trial sign-up, bound to the client's address and
/// valid for `trial.challenge_ttl_s`: find a `nonce` such that SHA-256 of `"{challenge}:{nonce}"`
/// starts with `bits` zero bits (about 2^bits hashes), then `POST /api/v1/trial` with both.
#[utoipa::path(tag = "trial",
    responses(
        (status = 201, body = TrialChallenge),
        (status = 404, description = "`route_not_found`: trials are not offered (`trial.enabled` is false)", body = crate::error::Problem,
            content_type = "application/problem+json"),
    ))]
#[post("/api/v1/trial/challenges")]
pub(crate) async fn challenge(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let settings = state.billing.trial_settings();
    if !settings.enabled {
        return Err(not_offered());
    }
    let bits = settings.proof_of_work_bits.min(proof_of_work::MAX_BITS);
    let expires = OffsetDateTime::now_utc() + std::time::Duration::from_secs(settings.challenge_ttl_s);
    let claims =
        ChallengeClaims { jti: uuid::Uuid::new_v4().simple().to_string(), sub: client_key(&req)?.to_string(), bits };
    let challenge = state
        .run_tokens
        .sign_assertion(CHALLENGE_AUDIENCE, claims, expires)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(HttpResponse::Created().json(TrialChallenge {
        challenge,
        algorithm: proof_of_work::ALGORITHM.into(),
        bits,
        expires,
    }))
}

fn bad_proof(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter { code, detail: detail.into() }
}

/// A proof of the right shape that does not hold: a challenge not handed out (or to someone
/// else, or expired), or a nonce that does not solve it.
fn failed_proof(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::Unprocessable { code, detail: detail.into() }
}

/// Checks a sign-up's proof of work: a challenge this service signed for this client, unexpired,
/// and a nonce that solves it. Answers the challenge to spend. `None` when no work is asked.
fn checked_proof(
    state: &AppState,
    body: &[u8],
    client: std::net::IpAddr,
) -> Result<Option<gofer_billing::trials::SpentChallenge>, ApiError> {
    if state.billing.trial_settings().proof_of_work_bits == 0 {
        return Ok(None);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad_proof(
            "proof_of_work_required",
            "challenge, nonce: a trial is paid for with a proof of work: POST /api/v1/trial/challenges, \
             solve it, then send {\"challenge\": …, \"nonce\": …}",
        ));
    }
    let proof: TrialProof = gofer_core::json::from_slice(body).map_err(|e| bad_proof("invalid_body", e.message))?;
    let Some((claims, expires)) =
        state.run_tokens.verify_assertion::<ChallengeClaims>(CHALLENGE_AUDIENCE, &proof.challenge)
    else {
        return Err(failed_proof(
            "challenge_invalid",
            "challenge: not one this service handed out, or expired; ask for a new one",
        ));
    };
    if claims.sub != client.to_string() {
        return Err(failed_proof("challenge_invalid", "challenge: it was handed out to another client address"));
    }
    if !proof_of_work::meets(&proof.challenge, proof.nonce, claims.bits) {
        return Err(failed_proof(
            "proof_of_work_invalid",
            format!("nonce: {} does not solve the challenge ({} leading zero bits wanted)", proof.nonce, claims.bits),
        ));
    }
    Ok(Some(gofer_billing::trials::SpentChallenge { id: claims.jti, expires }))
}

/// Starts a trial, no token needed: a trial tenant on the trial plan (small quotas, tasks without
/// network), ending after the configured lifetime, and its `trial` token (shown once). The body
/// is a solved challenge of `POST /api/v1/trial/challenges` (each buys one trial; 400
/// `proof_of_work_required`, `challenge_invalid`, `proof_of_work_invalid`; 409 `challenge_spent`).
/// Per client address: a strict signup rate, a few trials a day (one more blocks the address:
/// 403 `ip_blocked`), and none while a recent trial of the address used up its task-seconds; per
/// network around it (IPv4 /24, IPv6 /56 and /48) a few more a day, and a budget per hour for the
/// whole service (403 `trial_refused`, naming the limit and when it lifts).
#[utoipa::path(tag = "trial",
    request_body(content = TrialProof, description = "A solved challenge (the server takes none when `trial.proof_of_work_bits` is 0)"),
    responses(
        (status = 201, body = TenantCreated),
        (status = 404, description = "`route_not_found`: trials are not offered (`trial.enabled` is false)", body = crate::error::Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "`challenge_spent`: the challenge bought a trial already", body = crate::error::Problem,
            content_type = "application/problem+json"),
    ))]
#[post("/api/v1/trial")]
pub(crate) async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let settings = state.billing.trial_settings();
    if !settings.enabled {
        return Err(not_offered());
    }
    let ip = crate::auth::client_ip(&req).ok_or_else(|| ApiError::internal("no client address"))?;
    let address = client_key(&req)?;
    let spent = checked_proof(&state, &body, address)?;
    match state.billing.start_trial(address, spent.as_ref()).await {
        Ok((tenant, secret)) => {
            Ok(HttpResponse::Created().json(TenantCreated { tenant, token: secret.expose().to_owned() }))
        }
        Err(gofer_billing::BillingError::TrialRefused { abuse: true, .. }) => {
            let block_s = state.config.ip_blocks.trial_abuse_block_s;
            state.ip_blocks.block_client(&state.pool, ip, "trial_signups", block_s).await;
            let until = time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(block_s);
            let until = until.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            Err(ApiError::Forbidden {
                code: "ip_blocked",
                detail: format!(
                    "trial limit max_per_address_per_day: too many trials from this client address; it is blocked until {until}"
                ),
            })
        }
        Err(e) => Err(e.into()),
    }
}
