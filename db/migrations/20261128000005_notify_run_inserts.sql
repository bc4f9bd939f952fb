-- Replicas remember which runs a page of a pipeline's run list holds (api run_cache): that
-- changes only when runs are added or deleted. Deletes notify `gofer_runs_deleted` already
-- (migration `notify_run_deletes`); every statement inserting runs now notifies
-- `gofer_runs_added` once per tenant it touched, and every replica forgets that tenant's pages
-- when the insert commits. Both triggers share one function, the channel being its argument and
-- the rows the statement changed its transition table `changed_runs`.
CREATE FUNCTION gofer_notify_runs_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], tenant_id) FROM (SELECT DISTINCT tenant_id FROM changed_runs) t;
    RETURN NULL;
END
$$;

DROP TRIGGER runs_deleted_notify ON runs;
DROP FUNCTION gofer_notify_run_deletes();

CREATE TRIGGER runs_deleted_notify AFTER DELETE ON runs
    REFERENCING OLD TABLE AS changed_runs
    FOR EACH STATEMENT EXECUTE FUNCTION gofer_notify_runs_changed('gofer_runs_deleted');

CREATE TRIGGER runs_added_notify AFTER INSERT ON runs
    REFERENCING NEW TABLE AS changed_runs
    FOR EACH STATEMENT EXECUTE FUNCTION gofer_notify_runs_changed('gofer_runs_added');
