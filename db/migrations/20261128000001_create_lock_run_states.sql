-- Locks a run's row and reads the states of its task executions in one round trip, for the
-- engine's conclude (the hottest transition: once per task). The lock must come before the read:
-- the last of several siblings finishing together must see every other one complete. One
-- statement could not do both, since its snapshot is taken before it waits for the lock; a
-- PL/pgSQL function runs each statement with a new snapshot (READ COMMITTED), so the read after
-- the lock sees everything committed before the lock was granted. No row: the run is missing.
CREATE FUNCTION gofer_lock_run_states(p_tenant text, p_namespace text, p_pipeline text, p_run bigint)
RETURNS TABLE (cancel_reason text, task_id text, state text, status text) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_reason text;
BEGIN
    SELECT r.cancel_reason INTO v_reason FROM runs r
        WHERE r.tenant_id = p_tenant AND r.namespace_id = p_namespace AND r.pipeline_id = p_pipeline AND r.id = p_run
        FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT v_reason, t.task_id, t.state, t.status FROM task_executions t
        WHERE t.tenant_id = p_tenant AND t.namespace_id = p_namespace AND t.pipeline_id = p_pipeline
          AND t.run_id = p_run;
END
$$;

-- Only the service's login role (the owner) calls it.
REVOKE ALL ON FUNCTION gofer_lock_run_states(text, text, text, bigint) FROM PUBLIC;
