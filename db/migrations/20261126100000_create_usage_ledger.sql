-- Metering: one row per finished task attempt, written in the transaction that records how the
-- attempt ended. The primary key is the attempt's, so a replica that repeats the write (or two
-- that race after a takeover) add nothing: usage is counted exactly once.

CREATE TABLE usage_records (
    tenant_id     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    namespace_id  text NOT NULL,
    pipeline_id   text NOT NULL,
    run_id        bigint NOT NULL,
    task_id       text NOT NULL,
    attempt       integer NOT NULL CHECK (attempt >= 1),
    -- The tenant's plan when the attempt ended (plans may be deleted later; history stays).
    plan_id       text NOT NULL,
    -- Wall-clock run time of the attempt, in milliseconds (task-seconds * 1000).
    task_ms       bigint NOT NULL CHECK (task_ms >= 0),
    -- What the task asked for (its config, or the server's defaults).
    cpu_millis    integer NOT NULL,
    memory_mb     integer NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    -- Usage outlives the run, pipeline and namespace it came from: no foreign keys to them.
    PRIMARY KEY (tenant_id, namespace_id, pipeline_id, run_id, task_id, attempt)
);

CREATE INDEX usage_records_by_time ON usage_records (tenant_id, finished_at);

-- Partial usage of attempts still running is counted for quota checks.
CREATE INDEX task_attempts_running ON task_attempts (tenant_id) WHERE state = 'running';

ALTER TABLE usage_records ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_records
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- A run stopped because the tenant's task-seconds ran out.
ALTER TABLE runs DROP CONSTRAINT runs_cancel_reason_check;
ALTER TABLE runs ADD CONSTRAINT runs_cancel_reason_check CHECK (cancel_reason IN ('user', 'timeout', 'quota'));

-- When the engine last found the tenant out of task-seconds (trial abuse checks read it).
ALTER TABLE tenants ADD COLUMN quota_exhausted_at timestamptz;
