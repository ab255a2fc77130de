-- Every committed write of a sandbox record is announced on channel `berth_sandbox_changes`
-- (payload: `<id> <updated_at nanos>`), so the other processes sharing the database take it at
-- once instead of at their next poll. NOTIFY inside a transaction is delivered on commit only.
CREATE FUNCTION berth_announce_sandbox_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('berth_sandbox_changes', NEW.id || ' ' || NEW.updated_at);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER sandboxes_announce_change
    AFTER INSERT OR UPDATE ON sandboxes
    FOR EACH ROW EXECUTE FUNCTION berth_announce_sandbox_change();
