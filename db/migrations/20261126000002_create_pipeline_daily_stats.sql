-- Per pipeline and UTC day: how its runs ended and how long they took. Written in the transaction
-- that completes a run (one upsert per run), so the stats route reads at most 30 rows per pipeline
-- however many runs there were. Durations are counted in buckets (upper bounds in seconds, the
-- last one open): 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, +inf.
CREATE TABLE pipeline_daily_stats (
    tenant_id        text NOT NULL,
    namespace_id     text NOT NULL,
    pipeline_id      text NOT NULL,
    day              date NOT NULL,
    runs             bigint NOT NULL DEFAULT 0,
    successful       bigint NOT NULL DEFAULT 0,
    failed           bigint NOT NULL DEFAULT 0,
    cancelled        bigint NOT NULL DEFAULT 0,
    duration_sum_s   double precision NOT NULL DEFAULT 0,
    duration_max_s   double precision NOT NULL DEFAULT 0,
    duration_buckets bigint[] NOT NULL,
    PRIMARY KEY (tenant_id, namespace_id, pipeline_id, day),
    FOREIGN KEY (tenant_id, namespace_id, pipeline_id) REFERENCES pipelines (tenant_id, namespace_id, id) ON DELETE CASCADE
);

ALTER TABLE pipeline_daily_stats ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON pipeline_daily_stats
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- Runs that completed before this table existed.
WITH done AS (
    SELECT tenant_id, namespace_id, pipeline_id, (ended_at AT TIME ZONE 'UTC')::date AS day, status,
           EXTRACT(EPOCH FROM ended_at - started_at)::float8 AS seconds
    FROM runs WHERE state = 'complete' AND ended_at IS NOT NULL AND started_at IS NOT NULL
), bucketed AS (
    SELECT tenant_id, namespace_id, pipeline_id, day,
           width_bucket(seconds, ARRAY[1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200]::float8[]) AS bucket,
           count(*) AS n
    FROM done GROUP BY 1, 2, 3, 4, 5
)
INSERT INTO pipeline_daily_stats (tenant_id, namespace_id, pipeline_id, day, runs, successful, failed, cancelled,
                                  duration_sum_s, duration_max_s, duration_buckets)
SELECT d.tenant_id, d.namespace_id, d.pipeline_id, d.day, count(*),
       count(*) FILTER (WHERE d.status = 'successful'), count(*) FILTER (WHERE d.status = 'failed'),
       count(*) FILTER (WHERE d.status = 'cancelled'), sum(d.seconds), max(d.seconds),
       (SELECT array_agg(COALESCE(b.n, 0) ORDER BY g)
        FROM generate_series(0, 12) g
        LEFT JOIN bucketed b ON (b.tenant_id, b.namespace_id, b.pipeline_id, b.day, b.bucket)
                              = (d.tenant_id, d.namespace_id, d.pipeline_id, d.day, g))
FROM done d
GROUP BY d.tenant_id, d.namespace_id, d.pipeline_id, d.day;
