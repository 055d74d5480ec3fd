--
-- security: no code a caller controls runs with the extension owner's rights
--
-- 1.0 declared emit() and emit_trigger() SECURITY DEFINER, and
-- emit_trigger() turned the caller's row into JSON as the owner.  Turning a
-- row into JSON calls the casts to json of its columns' types, which any
-- role may create for types of its own in pg_temp: an emit-only role became
-- superuser.  Since 1.0.1 the payload is built with the caller's rights and
-- only the fixed queueing statement runs as the owner.
--
SELECT extversion FROM pg_extension WHERE extname = 'webhooks';
SELECT p.oid::regprocedure AS function, p.prosecdef
FROM pg_proc p
WHERE p.pronamespace = 'webhooks'::regnamespace
  AND p.proname IN ('emit', 'emit_trigger')
ORDER BY 1::text;

CREATE ROLE regress_emitter LOGIN;
GRANT USAGE ON SCHEMA webhooks TO regress_emitter;
GRANT EXECUTE ON FUNCTION webhooks.emit(text, text, jsonb),
                          webhooks.emit_trigger() TO regress_emitter;
SELECT id AS hook FROM webhooks.webhook_create('sec', 'https://example.com/s',
    ARRAY['member.joined']) \gset

-- The attack of the audit, step by step, as the emit-only role.
SET ROLE regress_emitter;
CREATE TYPE pg_temp.mood AS ENUM ('x');
CREATE FUNCTION pg_temp.mood_to_json(pg_temp.mood) RETURNS json
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'ALTER ROLE regress_emitter SUPERUSER';
    RETURN '"x"';
END $$;
CREATE CAST (pg_temp.mood AS json) WITH FUNCTION pg_temp.mood_to_json(pg_temp.mood);
CREATE TEMP TABLE t (community_id text, m pg_temp.mood);
CREATE TRIGGER t_emit AFTER INSERT ON t FOR EACH ROW
    EXECUTE FUNCTION webhooks.emit_trigger('member.joined');
-- The cast runs as the caller, who may not grant itself SUPERUSER.
SELECT sqlstate_of($$INSERT INTO t VALUES ('sec', 'x')$$);
RESET ROLE;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_emitter';
-- Nothing was recorded by the failed INSERT.
SELECT count(*) FROM webhooks.events WHERE community_id = 'sec';

-- The cast sees the caller as current_user, not the owner.
SET ROLE regress_emitter;
CREATE FUNCTION pg_temp.mood_whoami(pg_temp.mood) RETURNS json
LANGUAGE sql AS $$ SELECT to_json(current_user::text) $$;
DROP CAST (pg_temp.mood AS json);
CREATE CAST (pg_temp.mood AS json) WITH FUNCTION pg_temp.mood_whoami(pg_temp.mood);
INSERT INTO t VALUES ('sec', 'x');
-- The emit-only role still cannot read the queue...
SELECT sqlstate_of('SELECT * FROM webhooks.deliveries');
-- ...nor call what it was not granted.
SELECT sqlstate_of($$SELECT webhooks.webhook_list('sec')$$);
RESET ROLE;
SELECT payload FROM webhooks.events WHERE community_id = 'sec';

-- emit() too runs with the caller's rights, and still records the event.
SET ROLE regress_emitter;
SELECT webhooks.emit('sec', 'member.joined', '{"n": 2}') IS NOT NULL AS emitted;
SELECT sqlstate_of('SELECT * FROM webhooks.events');
RESET ROLE;
SELECT count(*) FROM webhooks.events WHERE community_id = 'sec';

--
-- Installed 1.0 with this library: emit_trigger refuses to run until the
-- extension is updated, rather than run a caller's cast as the owner.
--
DELETE FROM webhooks.deliveries;
DELETE FROM webhooks.webhooks;
DROP TRIGGER t_emit ON t;
DROP EXTENSION webhooks;
CREATE EXTENSION webhooks VERSION '1.0';
SELECT p.proname, p.prosecdef
FROM pg_proc p
WHERE p.pronamespace = 'webhooks'::regnamespace
  AND p.proname IN ('emit', 'emit_trigger')
ORDER BY 1;
GRANT USAGE ON SCHEMA webhooks TO regress_emitter;
GRANT EXECUTE ON FUNCTION webhooks.emit(text, text, jsonb),
                          webhooks.emit_trigger() TO regress_emitter;
SELECT id AS hook FROM webhooks.webhook_create('sec', 'https://example.com/s',
    ARRAY['member.joined']) \gset
SET ROLE regress_emitter;
CREATE TRIGGER t_emit AFTER INSERT ON t FOR EACH ROW
    EXECUTE FUNCTION webhooks.emit_trigger('member.joined');
DROP CAST (pg_temp.mood AS json);
CREATE CAST (pg_temp.mood AS json) WITH FUNCTION pg_temp.mood_to_json(pg_temp.mood);
SELECT sqlstate_of($$INSERT INTO t VALUES ('sec', 'x')$$);
RESET ROLE;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_emitter';
SELECT count(*) FROM webhooks.deliveries;

-- The update turns both functions into SECURITY INVOKER; the attack then
-- fails as above, and an ordinary row is emitted.
ALTER EXTENSION webhooks UPDATE TO '1.0.1';
SELECT extversion FROM pg_extension WHERE extname = 'webhooks';
SELECT p.proname, p.prosecdef
FROM pg_proc p
WHERE p.pronamespace = 'webhooks'::regnamespace
  AND p.proname IN ('emit', 'emit_trigger')
ORDER BY 1;
SET ROLE regress_emitter;
SELECT sqlstate_of($$INSERT INTO t VALUES ('sec', 'x')$$);
DROP CAST (pg_temp.mood AS json);
INSERT INTO t VALUES ('sec', 'x');
RESET ROLE;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_emitter';
SELECT event, payload FROM webhooks.deliveries;

-- Updating to 1.1 carries the queued delivery over: its event is kept
-- (with txid 0: it was emitted before 1.1), the delivery points at it, and
-- event_get finds it; the trigger now records events.
ALTER EXTENSION webhooks UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'webhooks';
SELECT e.type, e.payload, e.txid, e.created_at = d.emitted_at AS same_time
FROM webhooks.events e JOIN webhooks.deliveries d ON d.event_id = e.id;
SELECT d.event, d.state, d.attempts, d.event_txid,
       (webhooks.event_get('sec', d.event_id)).payload
FROM webhooks.deliveries d;
SET ROLE regress_emitter;
INSERT INTO t VALUES ('sec', 'x');
RESET ROLE;
SELECT type, payload, txid <> '0' AS own_txid FROM webhooks.events ORDER BY created_at;

-- Leave the extension as the other files expect it.
DELETE FROM webhooks.deliveries;
DELETE FROM webhooks.webhooks;
DROP TABLE t;
DROP EXTENSION webhooks;
CREATE EXTENSION webhooks;
SELECT extversion FROM pg_extension WHERE extname = 'webhooks';
DROP OWNED BY regress_emitter;
DROP ROLE regress_emitter;
