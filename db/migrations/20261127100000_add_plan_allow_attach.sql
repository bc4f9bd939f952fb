-- Whether a plan's tenants may attach to their running tasks (`…/tasks/{task}/attach`). Trials may not.

ALTER TABLE plans ADD COLUMN allow_attach boolean NOT NULL DEFAULT true;

UPDATE plans SET allow_attach = false WHERE id = 'trial';
