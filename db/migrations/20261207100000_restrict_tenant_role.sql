-- The tenant role (gofer_tenant, see enable_row_level_security) gets only what tenant-scoped
-- transactions use. Until now every table created after that migration got SELECT, INSERT, UPDATE
-- and DELETE through the default privileges, so a tenant-scoped transaction could rewrite `plans`
-- (every tenant's limits), its own `tenants` row (plan, suspension, quota) and the metering ledger.
-- Writes to these go through the service's own role (operators, the engine's cross-tenant work).
-- tests/tests/db_privileges.rs lists the tenant role's privileges on every table.

-- Read at admission (plan limits) by tenant-scoped transactions; written by operators only.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON plans FROM gofer_tenant;
-- Tenants are created, suspended, converted and removed by operators and periodic jobs.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON tenants FROM gofer_tenant;
-- The metering ledger is written by the engine when an attempt ends; tenants read their usage.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON usage_records FROM gofer_tenant;

-- Trials hold a tenant id but outlive their tenant; no tenant role access (revoked when created),
-- and row-level security like every table with a tenant_id, should a grant ever come.
ALTER TABLE trials ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON trials
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- Fail closed: a table created from now on grants the tenant role nothing until its migration
-- says what the role may do with it.
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM gofer_tenant;
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE, SELECT ON SEQUENCES FROM gofer_tenant;
