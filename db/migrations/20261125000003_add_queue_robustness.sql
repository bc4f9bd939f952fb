-- The robust queue: attempts with their own outcome, retries with backoff, waiting reasons,
-- cancellation, run deadlines, initiators and the node a task ran on.

ALTER TABLE runs
    ADD COLUMN initiator            jsonb NOT NULL DEFAULT '{"kind":"system","id":"unknown"}',
    ADD COLUMN deadline_at          timestamptz,
    ADD COLUMN cancel_requested_at  timestamptz,
    -- 'user' or 'timeout': decides the run's final status when it was stopped.
    ADD COLUMN cancel_reason        text CHECK (cancel_reason IN ('user', 'timeout'));
CREATE INDEX runs_deadlines ON runs (deadline_at) WHERE state <> 'complete';

ALTER TABLE task_executions
    ADD COLUMN waiting_reason  text,
    -- Not claimable before this time (retry backoff).
    ADD COLUMN run_after       timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN infra_failures  integer NOT NULL DEFAULT 0,
    ADD COLUMN own_failures    integer NOT NULL DEFAULT 0,
    ADD COLUMN node            text;

CREATE TABLE task_attempts (
    tenant_id           text NOT NULL,
    namespace_id        text NOT NULL,
    pipeline_id         text NOT NULL,
    run_id              bigint NOT NULL,
    task_id             text NOT NULL,
    attempt             integer NOT NULL CHECK (attempt >= 1),
    scheduler_id        text NOT NULL,
    node                text,
    state               text NOT NULL CHECK (state IN ('running', 'complete')),
    status              text NOT NULL CHECK (status IN ('unknown', 'successful', 'failed', 'cancelled')),
    status_reason       text,
    status_description  text,
    exit_code           integer,
    -- Whether the engine ran the task again after this attempt.
    retried             boolean NOT NULL DEFAULT false,
    started_at          timestamptz NOT NULL DEFAULT now(),
    ended_at            timestamptz,
    PRIMARY KEY (tenant_id, namespace_id, pipeline_id, run_id, task_id, attempt),
    FOREIGN KEY (tenant_id, namespace_id, pipeline_id, run_id, task_id)
        REFERENCES task_executions (tenant_id, namespace_id, pipeline_id, run_id, task_id) ON DELETE CASCADE
);
