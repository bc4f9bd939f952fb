-- What an IP block refuses: `anonymous` (automatic blocks, and operators' by default) refuses
-- requests without a token, trial sign-ups, trial tenants' tokens and failed authentications, and
-- lets a paying tenant's or an operator's verified token through (many people share an address);
-- `all` (set by an operator for a hostile network) refuses everyone.
ALTER TABLE ip_blocks ADD COLUMN scope text NOT NULL DEFAULT 'anonymous' CHECK (scope IN ('anonymous', 'all'));
