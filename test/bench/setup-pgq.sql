-- PgQ beside webhooks: the same insert, its trigger calling
-- pgq.insert_event (Debian's postgresql-15-pgq3).
CREATE EXTENSION IF NOT EXISTS pgq;
SELECT pgq.create_queue('bench');
CREATE TABLE bench.members_pgq (LIKE bench.members_plain INCLUDING ALL);
CREATE FUNCTION bench.insert_pgq() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgq.insert_event('bench', 'member.joined', to_jsonb(NEW)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER members_pgq AFTER INSERT ON bench.members_pgq
    FOR EACH ROW EXECUTE FUNCTION bench.insert_pgq();
