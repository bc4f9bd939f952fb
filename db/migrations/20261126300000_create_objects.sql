-- Object metadata: what is in the object store, so lists paginate and quotas are summed without
-- listing the store. run_id 0 marks a pipeline object; run objects carry their run's number.
-- expired_at is set when run-object expiry removed the content (the row stays so reads can say
-- `object_expired`).

CREATE TABLE objects (
    tenant_id     text NOT NULL,
    namespace_id  text NOT NULL,
    pipeline_id   text NOT NULL,
    run_id        bigint NOT NULL CHECK (run_id >= 0),
    key           text NOT NULL,
    size          bigint NOT NULL CHECK (size >= 0),
    sha256        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expired_at    timestamptz,
    PRIMARY KEY (tenant_id, namespace_id, pipeline_id, run_id, key),
    FOREIGN KEY (tenant_id, namespace_id, pipeline_id) REFERENCES pipelines (tenant_id, namespace_id, id) ON DELETE CASCADE
);

-- Eviction picks the tenant's oldest pipeline objects; expiry scans unexpired run objects.
CREATE INDEX objects_pipeline_objects_by_age ON objects (tenant_id, created_at) WHERE run_id = 0;
CREATE INDEX objects_live_run_objects ON objects (tenant_id, namespace_id, pipeline_id, run_id)
    WHERE run_id > 0 AND expired_at IS NULL;

ALTER TABLE objects ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON objects
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON objects TO gofer_tenant;

-- Logs of finished task attempts move to the object store: when they were moved, the shape of
-- what was moved (raw bytes written, bytes of the kept head, raw position where the kept tail
-- starts: equal to the head's length when nothing was cut), and when the retention job removed
-- them (reads then answer `logs_expired`).
ALTER TABLE task_attempts
    ADD COLUMN log_archived_at timestamptz,
    ADD COLUMN log_raw_bytes bigint,
    ADD COLUMN log_head_bytes bigint,
    ADD COLUMN log_tail_start bigint,
    ADD COLUMN log_expired_at timestamptz;
CREATE INDEX task_attempts_logs_to_archive ON task_attempts (ended_at) WHERE log_archived_at IS NULL AND state = 'complete';
CREATE INDEX task_attempts_logs_to_expire ON task_attempts (ended_at) WHERE log_expired_at IS NULL AND state = 'complete';
