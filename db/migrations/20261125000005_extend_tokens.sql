-- Scoped tokens: namespace globs, client IP allowlists, last use; suspended tenants.
ALTER TABLE api_tokens
    ADD COLUMN namespaces     text[] NOT NULL DEFAULT '{}',
    ADD COLUMN allowed_cidrs  text[] NOT NULL DEFAULT '{}',
    ADD COLUMN last_used_at   timestamptz;
CREATE INDEX api_tokens_expiry ON api_tokens (expires_at) WHERE expires_at IS NOT NULL;

ALTER TABLE tenants ADD COLUMN suspended_at timestamptz;
