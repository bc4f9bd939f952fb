-- `gofer_finish_task_and_lock` (migration `create_finish_task_and_lock`) is no longer called: a
-- task completed alone goes through the same statement as a batch of successes
-- (`db::queue::finish_tasks`), then `gofer_lock_run_states`. One copy of the completion SQL.
DROP FUNCTION gofer_finish_task_and_lock(text, text, text, bigint, text, integer, text, text, text, integer,
    boolean, integer, integer, text, text, uuid, text, jsonb, text);
