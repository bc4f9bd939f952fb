//! Anonymous trials: `POST /api/v1/trial` creates a small trial tenant and answers its token.

use actix_web::{HttpRequest, HttpResponse, post, web};

use crate::error::ApiError;
use crate::routes::tenants::TenantCreated;
use crate::startup::AppState;

/// Starts a trial, no token needed: a trial tenant on the trial plan (small quotas, tasks without
/// network), ending after the configured lifetime, and its `trial` token (shown once). Per client
/// address: a strict signup rate, a few trials a day (one more blocks the address: 403
/// `ip_blocked`), and none while a recent trial of the address used up its task-seconds (403
/// `trial_refused`).
#[utoipa::path(post, path = "/api/v1/trial", tag = "trial",
    responses(
        (status = 201, body = TenantCreated),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[post("/api/v1/trial")]
pub(crate) async fn start(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let settings = &state.config.trial;
    if !settings.enabled {
        return Err(ApiError::NotFound { code: "route_not_found", detail: "trials are not offered".into() });
    }
    let ip = crate::auth::client_ip(&req).ok_or_else(|| ApiError::internal("no client address"))?;
    let rules = gofer_billing::trials::TrialRules {
        plan: settings.plan.clone(),
        lifetime: time::Duration::seconds(i64::try_from(settings.lifetime_s).unwrap_or(i64::MAX)),
        max_per_address_per_day: settings.max_per_address_per_day,
        exhausted_refusal: time::Duration::seconds(i64::try_from(settings.exhausted_refusal_s).unwrap_or(i64::MAX)),
    };
    let address = crate::limits::client_key(ip).to_string();
    match gofer_billing::trials::start(&state.pool, &address, &rules).await {
        Ok((tenant, secret)) => {
            Ok(HttpResponse::Created().json(TenantCreated { tenant, token: secret.expose().to_owned() }))
        }
        Err(gofer_billing::BillingError::TrialRefused { abuse: true, .. }) => {
            let block_s = state.config.ip_blocks.trial_abuse_block_s;
            crate::limits::block_client(&state, ip, "trial_signups", block_s).await;
            let until = time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(block_s);
            let until = until.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            Err(ApiError::Forbidden {
                code: "ip_blocked",
                detail: format!("too many trials from this client address; it is blocked until {until}"),
            })
        }
        Err(e) => Err(e.into()),
    }
}
