-- Where a plan's tasks run: the scheduler's node pool (NULL: the scheduler's default) and whether
-- they may reach the network. Trial tenants run in their own pool without a network.

ALTER TABLE plans
    ADD COLUMN node_pool     text CHECK (node_pool ~ '^[A-Za-z0-9_-]{1,127}$'),
    ADD COLUMN allow_network boolean NOT NULL DEFAULT true;

UPDATE plans SET node_pool = 'gofer-trial', allow_network = false WHERE id = 'trial';
