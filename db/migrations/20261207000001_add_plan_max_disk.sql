-- The disk a plan's task may write in its work directory (`/job`), in MiB: the local sandbox sizes
-- the directory to it and Nomad jobs ask for it as ephemeral disk. Trials get a small one.

ALTER TABLE plans
    ADD COLUMN max_disk_mb integer NOT NULL DEFAULT 10240 CHECK (max_disk_mb >= 1);

UPDATE plans SET max_disk_mb = 256 WHERE id = 'trial';
