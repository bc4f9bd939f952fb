-- Readers hand out a tenant's events in stream order, (xact_id, id), up to the oldest transaction
-- still in flight (engine::events explains why plain id order could skip a late commit). These
-- indexes serve that order for a whole tenant and for a namespace, pipeline or run filter.

CREATE INDEX events_by_tenant_position ON events (tenant_id, xact_id, id);
CREATE INDEX events_by_scope_position ON events (tenant_id, namespace_id, pipeline_id, run_id, xact_id, id);
