//! The OpenAPI document, generated from the handlers (utoipa) and committed as docs/openapi.json.

use std::sync::LazyLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

use crate::contract::Contract;
use crate::routes;

/// The document's frame (title, shared schemas); its paths come from the route registration.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gofer API",
        description = "Hosted, multi-tenant pipeline runner. Errors are RFC 9457 problem details with a stable `code`; lists take `limit` and `cursor` and answer `{items, next_cursor}`."
    ),
    components(schemas(crate::error::Problem))
)]
struct ApiDoc;

/// The API's OpenAPI document, built once: the paths collected from the route registration
/// (`routes::configure`) into the frame, then the bearer scheme and the contract's shared parts.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(|| {
        let (_, mut document) = actix_web::App::new()
            .into_utoipa_app()
            .openapi(ApiDoc::openapi())
            .configure(routes::configure)
            .split_for_parts();
        BearerAuth.modify(&mut document);
        Contract.modify(&mut document);
        document
    });
    &DOCUMENT
}

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
        let generated = document().to_pretty_json().expect("serializable") + "\n";
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

    /// Every registered route is in the document, each operation once under an id of its own.
    #[test]
    fn every_operation_has_a_unique_id() {
        let mut ids = std::collections::BTreeSet::new();
        for item in document().paths.paths.values() {
            for operation in [&item.get, &item.put, &item.post, &item.delete, &item.patch].into_iter().flatten() {
                let id = operation.operation_id.clone().expect("every operation has an id");
                assert!(ids.insert(id.clone()), "operation id {id} is used twice");
            }
        }
        assert_eq!(ids.len(), 76, "routes registered in routes::configure");
    }
}
