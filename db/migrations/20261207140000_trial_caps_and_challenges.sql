-- Trials are capped per network as well as per address (IPv4 /24; IPv6 /56 and /48) and by a
-- global budget per hour: both count recent trials by time, so they need an index by time alone.
CREATE INDEX trials_by_time ON trials (created_at);

-- Proof-of-work challenges of trial sign-ups that were spent: a challenge buys one trial. Kept
-- until the challenge expires (it cannot be presented after that anyway), then swept.
CREATE TABLE trial_challenges_used (
    id          text PRIMARY KEY,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX trial_challenges_used_expiry ON trial_challenges_used (expires_at);

-- Abuse bookkeeping: never reachable from tenant-scoped transactions.
REVOKE ALL ON trial_challenges_used FROM gofer_tenant;
