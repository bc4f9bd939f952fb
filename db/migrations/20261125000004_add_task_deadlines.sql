-- When a dispatched task execution is stopped for running too long (its own timeout).
ALTER TABLE task_executions ADD COLUMN deadline_at timestamptz;
