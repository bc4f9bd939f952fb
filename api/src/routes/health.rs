//! Liveness, readiness and the OpenAPI document.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// Health answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(tag = "system", responses((status = 200, body = Health)))]
#[get("/health")]
pub(crate) async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Readiness: the database answers and every migration this build knows is applied.
#[utoipa::path(tag = "system", responses(
    (status = 200, body = Health),
    (status = 503, description = "`unavailable`: the database does not answer, or a migration this build knows is not applied",
        body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[get("/ready")]
pub(crate) async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let expected = state.migrator.iter().filter(|m| m.migration_type.is_up_migration()).count() as i64;
    let applied: Result<i64, sqlx::Error> =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success").fetch_one(&state.pool).await;
    match applied {
        Ok(n) if n >= expected => Ok(HttpResponse::Ok().json(Health { status: "ready" })),
        Ok(n) => Err(ApiError::Unavailable(format!("{n} of {expected} migrations applied"))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::Unavailable("the database is unreachable".into()))
        }
    }
}

/// The OpenAPI document of this API.
#[utoipa::path(tag = "system", responses((status = 200, description = "OpenAPI 3.1 document")))]
#[get("/api/v1/openapi.json")]
pub(crate) async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
}
