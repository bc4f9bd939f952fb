-- Whether a plan's tenants are untrusted (anonymous trials): the local sandbox refuses their tasks
-- on a host that cannot limit each task with cgroups, unless the operator opts out.

ALTER TABLE plans ADD COLUMN untrusted boolean NOT NULL DEFAULT false;

UPDATE plans SET untrusted = true WHERE id = 'trial';
