-- Tenant-scoped reads in one round trip, for the hottest routes (`GET …/runs/{run}` and the run
-- list). A tenant-scoped transaction costs BEGIN, the set_config statement, the read and the end
-- of the transaction: four round trips for one row. These functions switch to the role
-- gofer_tenant and set app.tenant_id themselves (local to the statement's implicit transaction),
-- then read, so row-level security holds exactly as in a scoped transaction: PL/pgSQL plans each
-- statement when it first runs it, after the switch, and re-plans when the role differs.
-- Callers run them on their own (autocommit), never inside a transaction that goes on to do
-- other work, since the role stays switched until the transaction ends.

CREATE FUNCTION gofer_tenant_run(p_tenant text, p_namespace text, p_pipeline text, p_run bigint)
RETURNS SETOF runs LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('role', 'gofer_tenant', true), set_config('app.tenant_id', p_tenant, true);
    RETURN QUERY SELECT * FROM runs
        WHERE tenant_id = p_tenant AND namespace_id = p_namespace AND pipeline_id = p_pipeline AND id = p_run;
END
$$;

CREATE FUNCTION gofer_tenant_runs(p_tenant text, p_namespace text, p_pipeline text, p_before bigint, p_limit bigint)
RETURNS SETOF runs LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('role', 'gofer_tenant', true), set_config('app.tenant_id', p_tenant, true);
    RETURN QUERY SELECT * FROM runs
        WHERE tenant_id = p_tenant AND namespace_id = p_namespace AND pipeline_id = p_pipeline
          AND (p_before IS NULL OR id < p_before)
        ORDER BY id DESC LIMIT p_limit;
END
$$;

-- Only the service's login role (the owner) calls them.
REVOKE ALL ON FUNCTION gofer_tenant_run(text, text, text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION gofer_tenant_runs(text, text, text, bigint, bigint) FROM PUBLIC;
