//! The middleware every request passes before its route: who is asking, IP and
//! authentication-failure blocks, and rate limits. The limiters themselves are in
//! [`crate::limits`] and [`crate::blocks`]; this is where they meet the request and the state.

use std::net::IpAddr;

use crate::blocks::Caller;
use crate::error::ApiError;
use crate::limits::{Bucket, ClientIp, Decision, TokenRateKey, resolve_client_ip};

fn bucket_of(method: &actix_web::http::Method, path: &str) -> Bucket {
    if method != actix_web::http::Method::POST {
        Bucket::General
    } else if path == "/api/v1/trial" {
        Bucket::TrialSignup
    } else if path.starts_with("/api/v1/") && path.ends_with("/runs") {
        Bucket::StartRuns
    } else {
        Bucket::General
    }
}

fn set_headers(headers: &mut actix_web::http::header::HeaderMap, decision: &Decision) {
    use actix_web::http::header::{HeaderName, HeaderValue};
    for (name, value) in [
        ("ratelimit-limit", decision.limit.to_string()),
        ("ratelimit-remaining", decision.remaining.to_string()),
        ("ratelimit-reset", decision.reset_s.to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// Middleware: resolves the client address, finds out who is asking ([`Caller`]: a presented
/// API token is verified here, from the replica's cache when it can, and the outcome kept for the
/// extractors), applies IP blocks and authentication-failure blocks to callers they refuse
/// ([`crate::blocks::refuses`]: a paying tenant's or an operator's token passes an automatic
/// block), then limits the request per token (or per address without a verified one); answers 429
/// `rate_limited` with `Retry-After` over the limit, and puts `RateLimit-Limit/Remaining/Reset` on
/// every limited route's answer. Health probes are exempt.
pub async fn rate_limit(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<actix_web::body::BoxBody>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    use actix_web::HttpMessage;
    let Some(state) = req.app_data::<actix_web::web::Data<crate::state::AppState>>().cloned() else {
        return next.call(req).await;
    };
    let peer = req.peer_addr().map(|a| a.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let ip = resolve_client_ip(peer, forwarded, &state.config.trusted_proxies);
    req.extensions_mut().insert(ClientIp(ip));
    let path = req.path().to_owned();
    if path == "/health" || path == "/ready" {
        return next.call(req).await;
    }
    let ip_block = state.ip_blocks.block(ip);
    let failures_block = state.auth_failures.check_blocked(ip).err();
    let bearer = crate::auth::bearer_of(req.headers());
    let (caller, check) = match &bearer {
        None => (Caller::Anonymous, None),
        Some(token) => {
            crate::auth::check_bearer(&state, token, ip, ip_block.is_some() || failures_block.is_some()).await
        }
    };
    req.extensions_mut().insert(caller);
    if let Some(check) = check {
        req.extensions_mut().insert(check);
    }
    let blocks_route = path.starts_with("/api/v1/ip-blocks");
    if let Some(block) = &ip_block
        && crate::blocks::refuses(block, caller, blocks_route)
    {
        return Ok(req.into_response(actix_web::ResponseError::error_response(&crate::blocks::ip_blocked(block))));
    }
    if let Some(refusal) = failures_block
        && caller != Caller::Verified
        && !blocks_route
    {
        return Ok(req.into_response(actix_web::ResponseError::error_response(&refusal)));
    }
    if !state.config.rate_limits.enabled {
        return call_route(req, next, &path).await;
    }
    let token_key = bearer.as_deref().map(|t| hex::encode(&gofer_tenants::token::hash_secret(t)[..16]));
    if let Some(key) = &token_key {
        req.extensions_mut().insert(TokenRateKey(key.clone()));
        if let Some(crate::auth::BearerCheck::Verified(auth)) = req.extensions().get::<crate::auth::BearerCheck>() {
            state.request_limits.learn(key, auth.requests_per_minute, auth.trial);
        } else if caller == Caller::Verified {
            // A run token: the default token rate, in its own bucket.
            state.request_limits.learn(key, None, false);
        }
    }
    let decision = state.request_limits.check(bucket_of(req.method(), &path), token_key.as_deref(), ip);
    if let Some(retry_after_s) = decision.retry_after_s {
        // A verified token over its own limit says nothing about the others at its address.
        if caller != Caller::Verified && state.ip_blocks.strike(ip) {
            state
                .ip_blocks
                .block_client(&state.pool, ip, "rate_limits", state.config.ip_blocks.rate_limit_block_s)
                .await;
        }
        let mut response = actix_web::ResponseError::error_response(&ApiError::RateLimited { retry_after_s });
        set_headers(response.headers_mut(), &decision);
        return Ok(req.into_response(response));
    }
    let mut response = call_route(req, next, &path).await?;
    set_headers(response.headers_mut(), &decision);
    Ok(response)
}

/// Calls the route. A path of the document asked with a method it does not have is answered 405
/// with `Allow` even when a route with a parameter took it (`DELETE /api/v1/tokens/whoami` reaches
/// `DELETE /api/v1/tokens/{id}` and fails there as an invalid id): checked only when the route
/// answered 400 or 404, so the route table costs nothing on the way of a good request.
async fn call_route(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<actix_web::body::BoxBody>,
    path: &str,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let routes = req.app_data::<actix_web::web::Data<crate::contract::RouteTable>>().cloned();
    let method = req.method().clone();
    let response = next.call(req).await?;
    if !matches!(response.status().as_u16(), 400 | 404) {
        return Ok(response);
    }
    let Some(routes) = routes else { return Ok(response) };
    match crate::contract::no_route(&routes, method.as_str(), path) {
        refusal @ ApiError::MethodNotAllowed { .. }
            if routes.methods(path).is_some_and(|m| !m.contains(&method.as_str())) =>
        {
            let request = response.request().clone();
            Ok(actix_web::dev::ServiceResponse::new(request, actix_web::ResponseError::error_response(&refusal)))
        }
        _ => Ok(response),
    }
}
