-- The chain of runs that led to a run (issue 19, item 10): a run started with a run token (a
-- `kind: gofer` task) records its parent's chain plus its parent, oldest first, as
-- `[{"namespace_id", "pipeline_id", "run_id"}, …]`; a run a user started has none. Starting a
-- run refuses a chain that already holds the pipeline (a loop) or is deeper than
-- `engine.max_run_chain_depth` (core `chain::admit`). Written once, at insert, and never changed.
-- A constant default adds the column without rewriting the table, and code that does not know
-- it keeps working (its runs count as started by a user).
ALTER TABLE runs ADD COLUMN ancestry jsonb NOT NULL DEFAULT '[]';
