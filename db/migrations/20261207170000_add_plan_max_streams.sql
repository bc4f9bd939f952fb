-- Long-lived streams a tenant may hold open at once on one replica (issue 19, item 5): event
-- streams, log follows and attach sessions together. Over it, opening another is 429
-- `too_many_streams`. Trials get a few.

ALTER TABLE plans
    ADD COLUMN max_concurrent_streams integer NOT NULL DEFAULT 20 CHECK (max_concurrent_streams >= 0);

UPDATE plans SET max_concurrent_streams = 3 WHERE id = 'trial';
