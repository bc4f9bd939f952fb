-- Foundation schema: tenants, tokens, namespaces, pipelines and their config versions,
-- runs and task executions (the run queue). Every tenant-owned table is keyed by tenant first.

CREATE TABLE metadata (
    key         text PRIMARY KEY,
    value       text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenants (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    -- SHA-256 of the secret; the secret itself is never stored.
    hash         bytea NOT NULL UNIQUE,
    kind         text NOT NULL CHECK (kind IN ('operator', 'tenant')),
    tenant_id    text REFERENCES tenants (id) ON DELETE CASCADE,
    role         text NOT NULL CHECK (role IN ('operator', 'admin', 'write', 'read')),
    description  text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    CHECK ((kind = 'operator') = (tenant_id IS NULL))
);
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id);

CREATE TABLE namespaces (
    tenant_id    text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id           text NOT NULL,
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    modified_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE pipelines (
    tenant_id     text NOT NULL,
    namespace_id  text NOT NULL,
    id            text NOT NULL,
    live_version  bigint,
    -- Run numbers are allocated per pipeline under this row's lock.
    next_run_id   bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    modified_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, namespace_id, id),
    FOREIGN KEY (tenant_id, namespace_id) REFERENCES namespaces (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE pipeline_configs (
    tenant_id     text NOT NULL,
    namespace_id  text NOT NULL,
    pipeline_id   text NOT NULL,
    version       bigint NOT NULL CHECK (version >= 1),
    config        jsonb NOT NULL,
    config_hash   text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, namespace_id, pipeline_id, version),
    FOREIGN KEY (tenant_id, namespace_id, pipeline_id) REFERENCES pipelines (tenant_id, namespace_id, id) ON DELETE CASCADE
);

CREATE TABLE runs (
    tenant_id           text NOT NULL,
    namespace_id        text NOT NULL,
    pipeline_id         text NOT NULL,
    id                  bigint NOT NULL CHECK (id >= 1),
    config_version      bigint NOT NULL,
    state               text NOT NULL CHECK (state IN ('pending', 'running', 'complete')),
    status              text NOT NULL CHECK (status IN ('unknown', 'successful', 'failed', 'cancelled')),
    status_reason       text,
    status_description  text,
    variables           jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    ended_at            timestamptz,
    PRIMARY KEY (tenant_id, namespace_id, pipeline_id, id),
    FOREIGN KEY (tenant_id, namespace_id, pipeline_id, config_version)
        REFERENCES pipeline_configs (tenant_id, namespace_id, pipeline_id, version) ON DELETE CASCADE
);
CREATE INDEX runs_unfinished ON runs (tenant_id) WHERE state <> 'complete';

CREATE TABLE task_executions (
    tenant_id           text NOT NULL,
    namespace_id        text NOT NULL,
    pipeline_id         text NOT NULL,
    run_id              bigint NOT NULL,
    task_id             text NOT NULL,
    image               text NOT NULL,
    attempt             integer NOT NULL DEFAULT 1,
    state               text NOT NULL CHECK (state IN ('waiting', 'queued', 'running', 'complete')),
    status              text NOT NULL CHECK (status IN ('unknown', 'successful', 'failed', 'cancelled', 'skipped')),
    status_reason       text,
    status_description  text,
    exit_code           integer,
    scheduler_id        text,
    -- The replica that dispatched it and until when its claim holds.
    lease_owner         uuid,
    lease_until         timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    queued_at           timestamptz,
    started_at          timestamptz,
    ended_at            timestamptz,
    PRIMARY KEY (tenant_id, namespace_id, pipeline_id, run_id, task_id),
    FOREIGN KEY (tenant_id, namespace_id, pipeline_id, run_id)
        REFERENCES runs (tenant_id, namespace_id, pipeline_id, id) ON DELETE CASCADE
);
-- The queue: claims scan only queued rows, oldest first.
CREATE INDEX task_executions_queue ON task_executions (queued_at) WHERE state = 'queued';
CREATE INDEX task_executions_leases ON task_executions (lease_until) WHERE state = 'running';
