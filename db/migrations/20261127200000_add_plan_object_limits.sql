-- Pipeline object limits move from the service config onto plans: how many pipeline objects one
-- pipeline keeps and how many bytes they hold together; past either, the oldest are evicted.
-- (object_storage_bytes stays the tenant-wide total over all its pipelines.)

ALTER TABLE plans
    ADD COLUMN max_pipeline_objects      integer NOT NULL DEFAULT 1000 CHECK (max_pipeline_objects >= 1),
    ADD COLUMN max_pipeline_object_bytes bigint NOT NULL DEFAULT 1073741824 CHECK (max_pipeline_object_bytes >= 0);

UPDATE plans SET max_pipeline_objects = 10, max_pipeline_object_bytes = 5242880 WHERE id = 'trial';
