-- Replicas remember which runs a page of a pipeline's run list holds (api run_cache): that
-- changes only when runs are added or deleted. Deletes notify `gofer_runs_deleted` already
-- (migration `notify_run_deletes`); every statement inserting runs now notifies
-- `gofer_runs_added` once per tenant it touched, and every replica forgets that tenant's pages
-- when the insert commits.
CREATE FUNCTION gofer_notify_run_inserts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gofer_runs_added', tenant_id) FROM (SELECT DISTINCT tenant_id FROM added_runs) t;
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_added_notify AFTER INSERT ON runs
    REFERENCING NEW TABLE AS added_runs
    FOR EACH STATEMENT EXECUTE FUNCTION gofer_notify_run_inserts();
