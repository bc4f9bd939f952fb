-- The W3C traceparent of the request that started a run (NULL when tracing is off), so the
-- engine's spans for the run's task executions join the request's trace on whichever replica
-- claims them.
ALTER TABLE runs ADD COLUMN trace_parent text;
