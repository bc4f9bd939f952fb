-- Deployments (issue 4): a pipeline state (active/disabled), a state per config version, deployment
-- records with their step logs, and the runs a canary routed. Expand only: new columns have
-- defaults and existing rows are backfilled, so code already deployed keeps working.

ALTER TABLE pipelines
    ADD COLUMN state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'disabled'));

ALTER TABLE pipeline_configs
    ADD COLUMN state text NOT NULL DEFAULT 'unreleased'
        CHECK (state IN ('live', 'canary', 'unreleased', 'deprecated')),
    ADD COLUMN deprecated_at timestamptz;

-- Before this migration every registration went live at once: the live version is live and
-- every older one was replaced.
UPDATE pipeline_configs c
SET state = CASE WHEN c.version = p.live_version THEN 'live' ELSE 'deprecated' END,
    deprecated_at = CASE WHEN c.version = p.live_version THEN NULL ELSE now() END
FROM pipelines p
WHERE p.tenant_id = c.tenant_id AND p.namespace_id = c.namespace_id AND p.id = c.pipeline_id;

-- Registration looks a config up by its canonical hash (dedupe).
CREATE INDEX pipeline_configs_by_hash ON pipeline_configs (tenant_id, namespace_id, pipeline_id, config_hash);
-- At most one live and one canary version per pipeline.
CREATE UNIQUE INDEX pipeline_configs_one_live ON pipeline_configs (tenant_id, namespace_id, pipeline_id)
    WHERE state = 'live';
CREATE UNIQUE INDEX pipeline_configs_one_canary ON pipeline_configs (tenant_id, namespace_id, pipeline_id)
    WHERE state = 'canary';

CREATE TABLE deployments (
    tenant_id         text NOT NULL,
    namespace_id      text NOT NULL,
    pipeline_id       text NOT NULL,
    -- Counted per pipeline, allocated under the pipeline's row lock.
    id                bigint NOT NULL CHECK (id >= 1),
    kind              text NOT NULL CHECK (kind IN ('immediate', 'canary')),
    from_version      bigint,
    to_version        bigint NOT NULL,
    state             text NOT NULL CHECK (state IN ('running', 'complete')),
    status            text NOT NULL CHECK (status IN ('unknown', 'successful', 'failed', 'rolled_back')),
    status_reason     text,
    canary_percent    integer CHECK (canary_percent BETWEEN 1 AND 99),
    max_failure_rate  double precision CHECK (max_failure_rate BETWEEN 0 AND 1),
    min_runs          integer CHECK (min_runs BETWEEN 1 AND 1000),
    -- Routing counters: runs started while the canary ran, and how many went to it.
    routed_runs       bigint NOT NULL DEFAULT 0,
    routed_to_canary  bigint NOT NULL DEFAULT 0,
    -- Completed canary runs counted, and how many of them failed.
    canary_runs       bigint NOT NULL DEFAULT 0,
    canary_failures   bigint NOT NULL DEFAULT 0,
    started_at        timestamptz NOT NULL DEFAULT now(),
    ended_at          timestamptz,
    PRIMARY KEY (tenant_id, namespace_id, pipeline_id, id),
    FOREIGN KEY (tenant_id, namespace_id, pipeline_id) REFERENCES pipelines (tenant_id, namespace_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, namespace_id, pipeline_id, to_version)
        REFERENCES pipeline_configs (tenant_id, namespace_id, pipeline_id, version) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, namespace_id, pipeline_id, from_version)
        REFERENCES pipeline_configs (tenant_id, namespace_id, pipeline_id, version) ON DELETE CASCADE,
    CHECK ((kind = 'canary') = (canary_percent IS NOT NULL AND max_failure_rate IS NOT NULL AND min_runs IS NOT NULL)),
    CHECK ((state = 'running') = (status = 'unknown'))
);
-- Only one deployment may be in progress per pipeline.
CREATE UNIQUE INDEX deployments_one_running ON deployments (tenant_id, namespace_id, pipeline_id)
    WHERE state = 'running';

-- The steps of each deployment, oldest first.
CREATE TABLE deployment_log (
    tenant_id      text NOT NULL,
    namespace_id   text NOT NULL,
    pipeline_id    text NOT NULL,
    deployment_id  bigint NOT NULL,
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    logged_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    message        text NOT NULL,
    PRIMARY KEY (tenant_id, namespace_id, pipeline_id, deployment_id, seq),
    FOREIGN KEY (tenant_id, namespace_id, pipeline_id, deployment_id)
        REFERENCES deployments (tenant_id, namespace_id, pipeline_id, id) ON DELETE CASCADE
);

-- Which runs a canary routed, and to which side. The row is written while the run's id is
-- allocated, before the run row exists, hence the deferred foreign key to runs.
CREATE TABLE deployment_runs (
    tenant_id       text NOT NULL,
    namespace_id    text NOT NULL,
    pipeline_id     text NOT NULL,
    run_id          bigint NOT NULL,
    deployment_id   bigint NOT NULL,
    canary          boolean NOT NULL,
    -- Set once when a canary run's completion is counted (or skipped, for a cancelled run).
    counted_status  text CHECK (counted_status IN ('successful', 'failed', 'cancelled', 'unknown')),
    PRIMARY KEY (tenant_id, namespace_id, pipeline_id, run_id),
    FOREIGN KEY (tenant_id, namespace_id, pipeline_id, deployment_id)
        REFERENCES deployments (tenant_id, namespace_id, pipeline_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, namespace_id, pipeline_id, run_id)
        REFERENCES runs (tenant_id, namespace_id, pipeline_id, id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX deployment_runs_by_deployment ON deployment_runs (tenant_id, namespace_id, pipeline_id, deployment_id);

-- Every live version now comes from a deployment: record one for each existing live version.
INSERT INTO deployments (tenant_id, namespace_id, pipeline_id, id, kind, from_version, to_version, state, status,
                         status_reason, started_at, ended_at)
SELECT p.tenant_id, p.namespace_id, p.id, 1, 'immediate', NULL, p.live_version, 'complete', 'successful',
       'recorded when deployments were introduced', c.created_at, c.created_at
FROM pipelines p
JOIN pipeline_configs c
  ON c.tenant_id = p.tenant_id AND c.namespace_id = p.namespace_id AND c.pipeline_id = p.id AND c.version = p.live_version;
INSERT INTO deployment_log (tenant_id, namespace_id, pipeline_id, deployment_id, logged_at, message)
SELECT tenant_id, namespace_id, pipeline_id, id, started_at,
       'version ' || to_version || ' was live when deployments were introduced'
FROM deployments;
