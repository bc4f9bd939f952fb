//! IP blocks (operator routes): client addresses refused with 403 `ip_blocked` until they expire.

use actix_web::{HttpResponse, delete, get, post, web};
use gofer_core::model::{BlockScope, IpBlock, Page};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Guarded, Operator};
use crate::error::ApiError;
use crate::pagination::{PageQuery, page};
use crate::state::AppState;

/// Body of `POST /api/v1/ip-blocks`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIpBlock {
    /// An IPv4 or IPv6 address (IPv6 blocks its whole /64).
    pub address: String,
    /// How long, in seconds (1 to 31536000).
    #[schema(minimum = 1, maximum = 31_536_000)]
    pub duration_s: u64,
    /// Why (free text, 1 to 200 characters, no control characters; default `operator`).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub reason: Option<String>,
    /// What the block refuses: `anonymous` (the default: requests without a token, trial sign-ups,
    /// trial tokens and failed authentications; paying tenants' and operators' tokens pass) or
    /// `all` (everyone, except these routes). An existing block's scope is only ever widened.
    #[serde(default)]
    #[schema(value_type = Option<BlockScope>)]
    pub scope: Option<String>,
}

/// One block.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct IpBlockResponse {
    /// The block.
    pub block: IpBlock,
}

fn client(address: &str) -> Result<std::net::IpAddr, ApiError> {
    let parsed = crate::contract::IP_ADDRESS.is_match(address).then(|| address.parse::<std::net::IpAddr>().ok());
    parsed.flatten().map(crate::limits::client_key).ok_or_else(|| ApiError::InvalidParameter {
        code: "invalid_field",
        detail: format!("address: \"{address}\" is not an IP address such as 192.0.2.1 or 2001:db8::1"),
    })
}

/// Lists active blocks, by address.
#[utoipa::path(tag = "ip-blocks", params(PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<IpBlock>)))]
#[get("/api/v1/ip-blocks")]
pub(crate) async fn list(
    _: Operator,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let request = query.parse::<String>()?;
    if request.after.as_deref().is_some_and(|after| !crate::contract::IP_ADDRESS.is_match(after)) {
        return Err(ApiError::InvalidParameter {
            code: "invalid_cursor",
            detail: "cursor: not a key of this list (an IP address)".into(),
        });
    }
    let result = state.billing.list_ip_blocks(&request).await?;
    Ok(HttpResponse::Ok().json(page(result)))
}

/// Blocks a client address for a while (an existing block is only extended); every replica
/// refuses it at once.
#[utoipa::path(tag = "ip-blocks", request_body = CreateIpBlock,
    security(("bearer" = [])),
    responses(
        (status = 201, body = IpBlockResponse),
    ))]
#[post("/api/v1/ip-blocks")]
pub(crate) async fn create(
    guarded: Guarded<Operator, crate::body::JsonBody<CreateIpBlock>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Guarded(_, body) = guarded;
    let ip = client(&body.address)?;
    if !(1..=365 * 24 * 3600).contains(&body.duration_s) {
        return Err(ApiError::InvalidParameter {
            code: "invalid_field",
            detail: "duration_s: from 1 to 31536000".into(),
        });
    }
    let reason = body.reason.clone().unwrap_or_else(|| "operator".into());
    if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return Err(ApiError::InvalidParameter {
            code: "invalid_field",
            detail: "reason: 1 to 200 characters, no control characters".into(),
        });
    }
    let scope = match body.scope.as_deref() {
        None => BlockScope::Anonymous,
        Some(scope) => BlockScope::parse(scope).ok_or_else(|| ApiError::InvalidParameter {
            code: "invalid_field",
            detail: format!("scope: one of anonymous, all (got \"{scope}\")"),
        })?,
    };
    let duration = time::Duration::seconds(i64::try_from(body.duration_s).unwrap_or(i64::MAX));
    let block = state.billing.block_ip(&ip.to_string(), &reason, duration, scope).await?;
    let active = crate::blocks::ActiveBlock { until: block.expires, scope: block.scope, reason: block.reason.clone() };
    state.ip_blocks.insert(ip, active);
    Ok(HttpResponse::Created().json(IpBlockResponse { block }))
}

/// Removes a block at once, on every replica.
#[utoipa::path(tag = "ip-blocks",
    params(("address" = String, Path, description = "The blocked address")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed"),
    ))]
#[delete("/api/v1/ip-blocks/{address}")]
pub(crate) async fn remove(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let ip = client(&path)?;
    state.billing.unblock_ip(&ip.to_string()).await?;
    crate::jobs::reload_ip_blocks(&state.pool, &state.ip_blocks)
        .await
        .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    Ok(HttpResponse::NoContent().finish())
}
