-- The run list in two light steps, for replicas that keep complete runs in memory (api
-- run_cache): first only the ids of a page, then full rows only for the runs the replica does not
-- remember. A complete run never changes, so a page of remembered runs costs the database one
-- small read instead of fifty full rows. Tenant-scoped like the functions of
-- `create_tenant_read_functions` (role gofer_tenant and app.tenant_id set locally, row-level
-- security applies); called on their own, never inside a transaction doing other work.

CREATE FUNCTION gofer_tenant_run_ids(p_tenant text, p_namespace text, p_pipeline text, p_before bigint, p_limit bigint)
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('role', 'gofer_tenant', true), set_config('app.tenant_id', p_tenant, true);
    RETURN QUERY SELECT id FROM runs
        WHERE tenant_id = p_tenant AND namespace_id = p_namespace AND pipeline_id = p_pipeline
          AND (p_before IS NULL OR id < p_before)
        ORDER BY id DESC LIMIT p_limit;
END
$$;

CREATE FUNCTION gofer_tenant_runs_by_id(p_tenant text, p_namespace text, p_pipeline text, p_ids bigint[])
RETURNS SETOF runs LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('role', 'gofer_tenant', true), set_config('app.tenant_id', p_tenant, true);
    RETURN QUERY SELECT * FROM runs
        WHERE tenant_id = p_tenant AND namespace_id = p_namespace AND pipeline_id = p_pipeline
          AND id = ANY(p_ids)
        ORDER BY id DESC;
END
$$;

REVOKE ALL ON FUNCTION gofer_tenant_run_ids(text, text, text, bigint, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION gofer_tenant_runs_by_id(text, text, text, bigint[]) FROM PUBLIC;
