-- Defence in depth: row-level security on every tenant-owned table. Tenant-scoped work runs in
-- transactions that switch to the role gofer_tenant and set app.tenant_id
-- (`SELECT set_config('role', 'gofer_tenant', true), set_config('app.tenant_id', $1, true)`),
-- so a query that forgets its tenant filter still sees and changes only that tenant's rows.
-- The service's own login role owns the tables and is not subject to the policies: the engine's
-- cross-tenant work (claims, takeovers, deadlines, purges) and operators' work use it on purpose.

-- Roles belong to the cluster, not the database: several databases of one cluster (tests make one
-- per test) may run this at once, so a role or grant made concurrently is not an error.
DO $$
BEGIN
    BEGIN
        CREATE ROLE gofer_tenant NOLOGIN NOBYPASSRLS;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
    END;
    -- The login role must be able to switch to it (superusers always can).
    IF NOT pg_has_role(current_user, 'gofer_tenant', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT gofer_tenant TO %I', current_user);
        EXCEPTION WHEN unique_violation OR internal_error THEN
            NULL; -- granted by a concurrent migration ("tuple concurrently updated")
        END;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO gofer_tenant;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO gofer_tenant;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO gofer_tenant;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO gofer_tenant;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO gofer_tenant;
-- Tenant-scoped work never needs these.
REVOKE ALL ON metadata, _sqlx_migrations FROM gofer_tenant;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = current_setting('app.tenant_id', true))
    WITH CHECK (id = current_setting('app.tenant_id', true));

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['api_tokens', 'namespaces', 'pipelines', 'pipeline_configs', 'runs',
                             'task_executions', 'task_attempts', 'events', 'deployments',
                             'deployment_log', 'deployment_runs']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I
                 USING (tenant_id = current_setting(''app.tenant_id'', true))
                 WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', t);
    END LOOP;
END
$$;
