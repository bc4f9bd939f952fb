-- A run carries its pipeline's `parallelism` (copied from its config version when it is created),
-- so the claim checks it from the run row instead of parsing every candidate run's config JSON.
ALTER TABLE runs ADD COLUMN parallelism integer NOT NULL DEFAULT 0 CHECK (parallelism >= 0);

UPDATE runs r SET parallelism = COALESCE((c.config->>'parallelism')::int, 0)
FROM pipeline_configs c
WHERE (c.tenant_id, c.namespace_id, c.pipeline_id, c.version) = (r.tenant_id, r.namespace_id, r.pipeline_id, r.config_version)
  AND COALESCE((c.config->>'parallelism')::int, 0) > 0;
