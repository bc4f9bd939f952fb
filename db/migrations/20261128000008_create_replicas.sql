-- How replicas reach each other. With the local scheduler a task's sandbox lives in the process
-- of the replica that started it (the task's lease owner), so an attach arriving at any other
-- replica is forwarded to that one's URL. One row per replica process, keyed by its engine's
-- lease-owner id; each replica refreshes its row every minute (`seen_at`), and rows not seen for
-- ten minutes whose replica watches no task are pruned.
CREATE TABLE replicas (
    id uuid PRIMARY KEY,
    url text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now()
);

-- Service data, not tenant data: not for the tenant role.
REVOKE ALL ON replicas FROM gofer_tenant;
