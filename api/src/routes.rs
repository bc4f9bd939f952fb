//! Route table: every route of the service, grouped by resource.

use actix_web::web;

pub(crate) mod attach;
pub(crate) mod configs;
pub(crate) mod deployments;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod inspect;
pub(crate) mod ip_blocks;
pub(crate) mod logs;
pub(crate) mod namespaces;
pub(crate) mod objects;
pub(crate) mod pipelines;
pub(crate) mod plans;
pub(crate) mod runs;
pub(crate) mod secrets;
pub(crate) mod tenants;
pub(crate) mod tokens;
pub(crate) mod trial;
pub(crate) mod usage;

use futures_util::StreamExt;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::ApiError;

/// Registers every route on the app. The same registration writes the OpenAPI document's paths
/// (`crate::openapi::document`), so a route is listed once.
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    // actix tries routes in registration order, one regex per route with path parameters, and
    // the request-metrics label (`match_pattern`) walks the same order again: the most read
    // routes come first so they cost a few regexes instead of dozens (docs/benchmarks.md). Where
    // two patterns could match the same path the method tells them apart (`runs/cancel-all` is a
    // POST), or the literal one comes first (`tokens/whoami` before `tokens/{id}`).
    cfg.service(runs::get)
        .service(runs::list)
        .service(runs::get_task)
        .service(runs::list_tasks)
        .service(logs::task_logs)
        .service(tokens::whoami)
        .service(health::health)
        .service(health::ready)
        .service(health::openapi_json)
        .service(crate::prometheus::scrape)
        .service(tenants::create)
        .service(tenants::list)
        .service(tenants::get)
        .service(tenants::suspend)
        .service(tenants::resume)
        .service(tenants::remove)
        .service(tenants::convert)
        .service(trial::challenge)
        .service(trial::start)
        .service(ip_blocks::list)
        .service(ip_blocks::create)
        .service(ip_blocks::remove)
        .service(plans::create)
        .service(plans::list)
        .service(plans::get)
        .service(plans::update)
        .service(plans::remove)
        .service(plans::assign)
        .service(usage::tenant_usage)
        .service(usage::operator_usage)
        .service(tokens::create)
        .service(tokens::list)
        .service(tokens::get)
        .service(tokens::revoke)
        .service(namespaces::create)
        .service(namespaces::list)
        .service(namespaces::get)
        .service(namespaces::update)
        .service(namespaces::remove)
        .service(pipelines::register_config)
        .service(runs::cancel_all)
        .service(pipelines::list)
        .service(pipelines::get)
        .service(pipelines::stats)
        .service(pipelines::update)
        .service(pipelines::remove)
        .service(configs::list)
        .service(configs::get)
        .service(configs::diff)
        .service(deployments::create)
        .service(deployments::list)
        .service(deployments::get)
        .service(deployments::rollback)
        .service(runs::start)
        .service(attach::attach)
        .service(objects::list_pipeline_objects)
        .service(objects::put_pipeline_object)
        .service(objects::get_pipeline_object)
        .service(objects::delete_pipeline_object)
        .service(objects::list_run_objects)
        .service(objects::put_run_object)
        .service(objects::get_run_object)
        .service(objects::delete_run_object)
        .service(runs::list_attempts)
        .service(runs::cancel)
        .service(events::list)
        .service(secrets::list_pipeline_secrets)
        .service(secrets::put_pipeline_secret)
        .service(secrets::get_pipeline_secret)
        .service(secrets::delete_pipeline_secret)
        .service(secrets::list_global_secrets)
        .service(secrets::put_global_secret)
        .service(secrets::get_global_secret)
        .service(secrets::delete_global_secret)
        .service(inspect::timeline_of)
        .service(inspect::debug);
}

/// Reads a raw JSON body of at most `limit` bytes, refusing other content types.
pub(crate) async fn read_json_body(
    req: &actix_web::HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let is_json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<actix_web::mime::Mime>().ok())
        .is_some_and(|m| m.subtype() == actix_web::mime::JSON || m.suffix() == Some(actix_web::mime::JSON));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::InvalidBody(gofer_core::json::JsonError { code: "invalid_json", message: e.to_string() })
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
