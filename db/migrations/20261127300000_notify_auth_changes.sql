-- Replicas keep verified API tokens in memory for a few seconds (gofer_tenants::cache). Every
-- change that can make a token invalid or change what it may do notifies the channel gofer_auth,
-- with the tenant concerned ('*': everyone), so that each replica evicts at once. Triggers catch
-- every path (revocation, purge, expiry edits, trial conversion, suspension, tenant deletion and
-- its cascade, plan changes) without each caller having to remember. Postgres delivers a
-- transaction's notifications on commit and folds identical ones.

CREATE FUNCTION gofer_notify_auth_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'api_tokens' THEN
        PERFORM pg_notify('gofer_auth', COALESCE(OLD.tenant_id, '*'));
    ELSIF TG_TABLE_NAME = 'tenants' THEN
        PERFORM pg_notify('gofer_auth', OLD.id);
    ELSE
        PERFORM pg_notify('gofer_auth', '*');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER api_tokens_auth_change AFTER UPDATE OR DELETE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION gofer_notify_auth_change();
CREATE TRIGGER tenants_auth_change AFTER UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION gofer_notify_auth_change();
CREATE TRIGGER plans_auth_change AFTER UPDATE OR DELETE ON plans
    FOR EACH STATEMENT EXECUTE FUNCTION gofer_notify_auth_change();
