-- A finishing task in one round trip, for the engine's conclude (once per task): the fenced
-- completion of the task execution, its attempt, the usage ledger row, the `task_completed` event
-- and its notification (as one statement, formerly sent by the engine itself), then, when the
-- fence held, the run's lock and its task states read after the lock was granted (as
-- `gofer_lock_run_states`, which it calls: each PL/pgSQL statement takes a new snapshot, so the
-- last of several siblings finishing together sees every other one complete).
--
-- Parameters, in order: the task ($1–$5: tenant, namespace, pipeline, run, task), the attempt
-- ($6 number, $7 its status, $8 reason code, $9 description, $10 exit code, $11 retried, $12 CPU
-- millicores and $13 memory MiB metered, $14 node), $15 the task's status, $16 the replica that
-- must hold its lease, $17 the event kind, $18 the event payload, $19 the events channel.
--
-- Answers: one row `(false, NULL…)` when the fence failed (another transition got there first;
-- nothing written); else one row `(true, cancel_reason, task_id, state, status)` per task
-- execution of the run; no row if the run is missing.
CREATE FUNCTION gofer_finish_task_and_lock(
    text, text, text, bigint, text,
    integer, text, text, text, integer, boolean, integer, integer, text,
    text, uuid, text, jsonb, text)
RETURNS TABLE (finished boolean, cancel_reason text, task_id text, state text, status text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_finished bigint;
BEGIN
    WITH done AS (
        UPDATE task_executions SET state = 'complete', status = $15, status_reason = $8,
            status_description = $9, exit_code = $10, ended_at = now(), lease_owner = NULL,
            lease_until = NULL, waiting_reason = NULL, node = COALESCE($14, node)
        WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND task_id = $5
          AND state = 'running' AND lease_owner = $16
        RETURNING tenant_id
    ), closed AS (
        UPDATE task_attempts SET state = 'complete', status = $7, status_reason = $8, status_description = $9,
            exit_code = $10, retried = $11, ended_at = now(), node = COALESCE($14, node)
        WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND task_id = $5
          AND attempt = $6 AND EXISTS (SELECT 1 FROM done)
        RETURNING tenant_id, namespace_id, pipeline_id, run_id, task_id, attempt, started_at, ended_at
    ), metered AS (
        INSERT INTO usage_records (tenant_id, namespace_id, pipeline_id, run_id, task_id, attempt, plan_id,
                                   task_ms, cpu_millis, memory_mb, started_at, finished_at)
        SELECT c.tenant_id, c.namespace_id, c.pipeline_id, c.run_id, c.task_id, c.attempt, n.plan_id,
               GREATEST(0, (extract(epoch FROM c.ended_at - c.started_at) * 1000)::bigint), $12, $13,
               c.started_at, c.ended_at
        FROM closed c JOIN tenants n ON n.id = c.tenant_id
        ON CONFLICT DO NOTHING
    ), recorded AS (
        INSERT INTO events (tenant_id, kind, namespace_id, pipeline_id, run_id, task_id, payload)
        SELECT $1, $17, $2, $3, $4, $5, $18 FROM done
    )
    SELECT count(*) INTO v_finished FROM (SELECT pg_notify($19, tenant_id) FROM done) notified;
    IF v_finished = 0 THEN
        RETURN QUERY SELECT false, NULL::text, NULL::text, NULL::text, NULL::text;
        RETURN;
    END IF;
    RETURN QUERY SELECT true, l.cancel_reason, l.task_id, l.state, l.status
        FROM gofer_lock_run_states($1, $2, $3, $4) l;
END
$$;

-- Only the service's login role (the owner) calls it.
REVOKE ALL ON FUNCTION gofer_finish_task_and_lock(text, text, text, bigint, text, integer, text, text, text, integer,
    boolean, integer, integer, text, text, uuid, text, jsonb, text) FROM PUBLIC;
