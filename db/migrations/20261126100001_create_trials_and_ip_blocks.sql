-- Trials: anonymous visitors get a small tenant on the trial plan with a `trial` token. Every
-- trial records the client address that created it; the record outlives the trial tenant (no
-- foreign key), so signups per address per day and used-up trials keep counting after removal.

ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_kind_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_kind_check CHECK (kind IN ('operator', 'tenant', 'trial'));

-- Set on trial tenants: when the trial ends (suspended, then removed by a periodic job).
ALTER TABLE tenants ADD COLUMN trial_expires_at timestamptz;
CREATE INDEX tenants_trial_expiry ON tenants (trial_expires_at) WHERE trial_expires_at IS NOT NULL;

CREATE TABLE trials (
    tenant_id     text PRIMARY KEY,
    -- The client key: an IPv4 address, or an IPv6 /64 written as its network address.
    client_ip     text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    -- When its task-seconds ran out (copied from the tenant when the tenant is removed).
    exhausted_at  timestamptz,
    converted_at  timestamptz,
    removed_at    timestamptz
);
CREATE INDEX trials_by_client ON trials (client_ip, created_at);

-- Client addresses refused with 403 ip_blocked until expires_at. Replicas keep them in memory,
-- reloaded on NOTIFY gofer_ip_blocks and periodically.
CREATE TABLE ip_blocks (
    client_ip   text PRIMARY KEY,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX ip_blocks_expiry ON ip_blocks (expires_at);

-- Operator and abuse bookkeeping: never reachable from tenant-scoped transactions.
REVOKE ALL ON trials, ip_blocks FROM gofer_tenant;
