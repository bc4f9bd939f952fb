//! The OpenAPI document, generated from the handlers (utoipa) and committed as docs/openapi.json.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::contract::Contract;
use crate::routes;

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Gofer API", description = "Hosted, multi-tenant pipeline runner. Errors are RFC 9457 problem details with a stable `code`; lists take `limit` and `cursor` and answer `{items, next_cursor}`."),
    paths(
        routes::health::health,
        routes::health::ready,
        crate::prometheus::scrape,
        routes::health::openapi_json,
        routes::tenants::create,
        routes::tenants::list,
        routes::tenants::get,
        routes::tenants::suspend,
        routes::tenants::resume,
        routes::tenants::remove,
        routes::tenants::convert,
        routes::trial::challenge,
        routes::trial::start,
        routes::ip_blocks::list,
        routes::ip_blocks::create,
        routes::ip_blocks::remove,
        routes::plans::create,
        routes::plans::list,
        routes::plans::get,
        routes::plans::update,
        routes::plans::remove,
        routes::plans::assign,
        routes::usage::tenant_usage,
        routes::usage::operator_usage,
        routes::tokens::create,
        routes::tokens::list,
        routes::tokens::whoami,
        routes::tokens::get,
        routes::tokens::revoke,
        routes::namespaces::create,
        routes::namespaces::list,
        routes::namespaces::get,
        routes::namespaces::update,
        routes::namespaces::remove,
        routes::pipelines::register_config,
        routes::pipelines::list,
        routes::pipelines::get,
        routes::pipelines::stats,
        routes::pipelines::update,
        routes::pipelines::remove,
        routes::configs::list,
        routes::configs::get,
        routes::configs::diff,
        routes::deployments::create,
        routes::deployments::list,
        routes::deployments::get,
        routes::deployments::rollback,
        routes::runs::start,
        routes::runs::list,
        routes::runs::get,
        routes::runs::list_tasks,
        routes::runs::get_task,
        routes::runs::list_attempts,
        routes::runs::cancel,
        routes::runs::cancel_all,
        routes::inspect::timeline_of,
        routes::inspect::debug,
        routes::logs::task_logs,
        routes::attach::attach,
        routes::objects::put_pipeline_object,
        routes::objects::get_pipeline_object,
        routes::objects::delete_pipeline_object,
        routes::objects::list_pipeline_objects,
        routes::objects::put_run_object,
        routes::objects::get_run_object,
        routes::objects::delete_run_object,
        routes::objects::list_run_objects,
        routes::events::list,
        routes::secrets::list_pipeline_secrets,
        routes::secrets::put_pipeline_secret,
        routes::secrets::get_pipeline_secret,
        routes::secrets::delete_pipeline_secret,
        routes::secrets::list_global_secrets,
        routes::secrets::put_global_secret,
        routes::secrets::get_global_secret,
        routes::secrets::delete_global_secret,
    ),
    components(schemas(crate::error::Problem)),
    modifiers(&BearerAuth, &Contract),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/openapi.json must be exactly what the code generates. Regenerate with
    /// `GOFER_BLESS=1 cargo test -p gofer-api openapi`.
    #[test]
    fn committed_openapi_document_matches_the_code() {
        let generated = ApiDoc::openapi().to_pretty_json().expect("serializable") + "\n";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        if std::env::var_os("GOFER_BLESS").is_some() {
            std::fs::write(&path, &generated).expect("write docs/openapi.json");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json is out of date; run GOFER_BLESS=1 cargo test -p gofer-api openapi"
        );
    }
}
