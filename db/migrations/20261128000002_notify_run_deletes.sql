-- Replicas keep complete runs in memory for `GET …/runs/{run}` (a complete run never changes).
-- Only a delete (of the run's pipeline, namespace or tenant, cascading) can make such an entry
-- wrong, so every statement deleting runs notifies `gofer_runs_deleted` once per tenant it
-- touched, and every replica forgets that tenant's runs when the delete commits.
CREATE FUNCTION gofer_notify_run_deletes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gofer_runs_deleted', tenant_id) FROM (SELECT DISTINCT tenant_id FROM deleted_runs) t;
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_deleted_notify AFTER DELETE ON runs
    REFERENCING OLD TABLE AS deleted_runs
    FOR EACH STATEMENT EXECUTE FUNCTION gofer_notify_run_deletes();
