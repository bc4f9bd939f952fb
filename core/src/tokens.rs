//! Minting run tokens, as the engine needs it (the tenants crate implements it with JWTs).

use time::OffsetDateTime;

use crate::{NamespaceId, PipelineId, RunId, TenantId};

/// Mints the token a task gets as `GOFER_API_TOKEN` when it sets `inject_api_token`.
pub trait RunTokenMinter: Send + Sync + 'static {
    /// A token valid for this run only, until `expires` (or until the run completes).
    fn mint(
        &self,
        tenant: &TenantId,
        namespace: &NamespaceId,
        pipeline: &PipelineId,
        run: RunId,
        expires: OffsetDateTime,
    ) -> Result<String, String>;
}
