-- Secrets (issue 8). `secrets` holds metadata of pipeline and tenant-global secrets in every
-- backend (so lists paginate here and never call Vault); `secret_values` holds the values of the
-- embedded Postgres store, AES-256-GCM encrypted, with the id of the key that sealed each one.

CREATE TABLE secrets (
    tenant_id     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- 'global' or 'namespaces/<ns>/pipelines/<p>' (the path inside the tenant, as in the stores).
    scope         text NOT NULL,
    key           text NOT NULL,
    -- Set for pipeline secrets, NULL for global ones: the foreign key then does not apply.
    namespace_id  text,
    pipeline_id   text,
    -- Global secrets only: the namespace globs the secret is granted to (none: granted to none).
    namespaces    text[] NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- The token that last set the value.
    updated_by    uuid,
    PRIMARY KEY (tenant_id, scope, key),
    CHECK ((namespace_id IS NULL) = (pipeline_id IS NULL)),
    CHECK ((scope = 'global') = (namespace_id IS NULL)),
    -- Deleting a pipeline (or its namespace, or the tenant) deletes its secrets' metadata; the
    -- values are removed from the store by the code that deletes.
    FOREIGN KEY (tenant_id, namespace_id, pipeline_id) REFERENCES pipelines (tenant_id, namespace_id, id)
        ON DELETE CASCADE
);

CREATE TABLE secret_values (
    tenant_id   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- '<scope>/<key>' inside the tenant.
    path        text NOT NULL,
    key_id      text NOT NULL,
    nonce       bytea NOT NULL,
    ciphertext  bytea NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, path)
);
-- Re-encryption after a key rotation finds values sealed by old keys.
CREATE INDEX secret_values_key_id ON secret_values (key_id);

ALTER TABLE secrets ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON secrets
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

ALTER TABLE secret_values ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON secret_values
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
-- Only the store (the service's own role) reads values; tenant-scoped work never sees them at all.
REVOKE ALL ON secret_values FROM gofer_tenant;
