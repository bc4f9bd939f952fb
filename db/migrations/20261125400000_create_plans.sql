-- Plans: what a tenant may use. Every tenant has one (the default plan unless set).

CREATE TABLE plans (
    id                      text PRIMARY KEY,
    name                    text NOT NULL,
    max_concurrent_tasks    integer NOT NULL CHECK (max_concurrent_tasks >= 1),
    max_task_timeout_s      integer NOT NULL CHECK (max_task_timeout_s >= 1),
    max_run_duration_s      integer NOT NULL CHECK (max_run_duration_s >= 1),
    max_cpu_millis          integer NOT NULL CHECK (max_cpu_millis >= 1),
    max_memory_mb           integer NOT NULL CHECK (max_memory_mb >= 1),
    task_seconds_per_month  bigint NOT NULL CHECK (task_seconds_per_month >= 0),
    object_storage_bytes    bigint NOT NULL CHECK (object_storage_bytes >= 0),
    requests_per_minute     integer NOT NULL CHECK (requests_per_minute >= 1),
    created_at              timestamptz NOT NULL DEFAULT now(),
    modified_at             timestamptz NOT NULL DEFAULT now()
);

INSERT INTO plans (id, name, max_concurrent_tasks, max_task_timeout_s, max_run_duration_s, max_cpu_millis,
                   max_memory_mb, task_seconds_per_month, object_storage_bytes, requests_per_minute)
VALUES ('default', 'Default', 16, 86400, 86400, 8000, 16384, 1000000, 10737418240, 1200),
       ('trial', 'Trial', 1, 60, 300, 500, 128, 600, 10485760, 60);

ALTER TABLE tenants ADD COLUMN plan_id text NOT NULL DEFAULT 'default' REFERENCES plans (id);

-- Tenant-scoped transactions read their plan at admission (plans are not tenant-owned rows).
GRANT SELECT ON plans TO gofer_tenant;
