-- Events: one row per state change, tenant-scoped, streamed to clients (SSE) and paged as history.

CREATE TABLE events (
    id            bigserial PRIMARY KEY,
    tenant_id     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind          text NOT NULL,
    namespace_id  text,
    pipeline_id   text,
    run_id        bigint,
    task_id       text,
    payload       jsonb NOT NULL DEFAULT '{}',
    -- The writing transaction: readers only hand out ids below the oldest transaction still in
    -- flight, so an event that commits late can never be skipped by a client resuming after a
    -- higher id.
    xact_id       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    emitted_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_by_tenant ON events (tenant_id, id);
