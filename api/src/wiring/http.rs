//! The HTTP server: middleware, extractor errors as problems, the routes, and the answer to a
//! path no route has.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};

use crate::error::ApiError;
use crate::state::AppState;

/// Serves the API on `listener` with `state`.
pub(super) fn serve(listener: TcpListener, state: web::Data<AppState>) -> std::io::Result<Server> {
    let max_body = state.config.max_body_bytes;
    let http_workers = state.config.http_workers;
    let routes = web::Data::new(crate::contract::RouteTable::new(crate::openapi::document()));
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(crate::admission::rate_limit))
            .wrap(actix_web::middleware::from_fn(crate::prometheus::record_request))
            .wrap(tracing_actix_web::TracingLogger::<crate::request_span::RequestSpan>::new())
            .app_data(state.clone())
            .app_data(web::JsonConfig::default().limit(max_body).error_handler(|err, _| ApiError::from(err).into()))
            .app_data(web::PathConfig::default().error_handler(|err, _| {
                ApiError::InvalidParameter { code: "invalid_path", detail: err.to_string() }.into()
            }))
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                ApiError::InvalidParameter { code: "invalid_query", detail: err.to_string() }.into()
            }))
            .app_data(routes.clone())
            .configure(|cfg| crate::routes::configure(&mut utoipa_actix_web::service_config::ServiceConfig::new(cfg)))
            .default_service(web::to(
                |req: actix_web::HttpRequest, routes: web::Data<crate::contract::RouteTable>| async move {
                    crate::contract::no_route(&routes, req.method().as_str(), req.path())
                },
            ))
    });
    let server = if http_workers > 0 { server.workers(http_workers) } else { server };
    let server = server.listen(listener)?.run();
    Ok(server)
}
