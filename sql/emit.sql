--
-- emit: recording events, directly and from row triggers
--
-- emit() and emit_trigger() append one row per event to webhooks.events;
-- the worker then queues one delivery per active subscribed webhook.  This
-- instance's worker serves another database, so webhooks.read_events()
-- does the worker's read where a test looks at the deliveries.
CREATE TEMP TABLE hooks (name text PRIMARY KEY, id uuid);
INSERT INTO hooks
SELECT 'a', id FROM webhooks.webhook_create('c1', 'https://example.com/a',
    ARRAY['member.joined', 'payment.completed']);
INSERT INTO hooks
SELECT 'b', id FROM webhooks.webhook_create('c1', 'https://example.com/b',
    ARRAY['member.joined', 'member.left', 'member.updated']);
INSERT INTO hooks
SELECT 'c', id FROM webhooks.webhook_create('c1', 'https://example.com/c',
    ARRAY['payment.failed']);
INSERT INTO hooks
SELECT 'inactive', id FROM webhooks.webhook_create('c1', 'https://example.com/i',
    ARRAY['member.joined', 'payment.completed'], false);
INSERT INTO hooks
SELECT 'other', id FROM webhooks.webhook_create('c2', 'https://example.com/o',
    ARRAY['member.joined', 'payment.completed']);

-- The queue, one line per delivery: in emit order, then by webhook.
CREATE TEMP VIEW queue AS
SELECT h.name AS webhook, d.event, d.community_id, payload_of(d.event_id) AS payload, d.state,
       d.attempts
FROM webhooks.deliveries d JOIN hooks h ON h.id = d.webhook_id
ORDER BY min(d.id) OVER (PARTITION BY d.event_id), h.name;

--
-- emit
--
-- It returns the event id, a version 7 uuid.
SELECT webhooks.emit('c1', 'member.joined', '{"member": 1}') AS e1 \gset
SELECT pg_typeof(:'e1'::uuid), substr(:'e1', 15, 1) AS version;
-- One delivery per active webhook of c1 subscribed to member.joined: a
-- and b; not c (not subscribed), not inactive, not other (community c2).
SELECT queued FROM webhooks.read_events();
SELECT * FROM queue;
-- Every delivery of the event carries its id, and is due now.
SELECT queued FROM webhooks.read_events();
SELECT count(*), bool_and(event_id = :'e1') AS same_event_id,
       bool_and(next_attempt_at <= now()) AS due_now,
       bool_and(emitted_at <= now()) AS emitted_in_past,
       bool_and(last_attempt_at IS NULL AND last_status IS NULL
                AND last_error IS NULL) AS untried
FROM webhooks.deliveries;
-- Each emit is a new event.
SELECT webhooks.emit('c1', 'member.joined', '{"member": 1}') <> :'e1' AS new_id;

-- No subscriber: an event id, but nothing queued.
SELECT webhooks.emit('c1', 'payment.refunded') IS NOT NULL AS emitted;
SELECT webhooks.emit('nobody', 'member.joined', '{}') IS NOT NULL AS emitted;
SELECT queued FROM webhooks.read_events();
SELECT count(*) FROM webhooks.deliveries
WHERE event = 'payment.refunded' OR community_id = 'nobody';
-- Community ids are compared exactly.
SELECT webhooks.emit('C1', 'member.joined') IS NOT NULL AS emitted;
SELECT queued FROM webhooks.read_events();
SELECT count(*) FROM webhooks.deliveries WHERE community_id <> 'c1';
-- Another community only reaches its own webhooks.
SELECT webhooks.emit('c2', 'payment.completed', '{"amount": 5}') IS NOT NULL AS emitted;
-- The payload is stored as given; the default is {}.
SELECT webhooks.emit('c1', 'payment.failed') IS NOT NULL AS emitted;
SELECT webhooks.emit('c1', 'payment.failed',
    '{"nested": {"a": [1, 2.5, null, true]}, "text": "é ✓ \"q\"", "big": 12345678901234567890}')
    IS NOT NULL AS emitted;
SELECT webhooks.emit('c1', 'payment.failed', '[1, 2, 3]') IS NOT NULL AS emitted;
SELECT webhooks.emit('c1', 'payment.failed', '"just a string"') IS NOT NULL AS emitted;
SELECT webhooks.emit('c1', 'payment.failed', 'null') IS NOT NULL AS emitted;
SELECT webhooks.emit(community_id => 'c1', event => 'payment.failed',
                     payload => '{"named": true}') IS NOT NULL AS emitted;
SELECT queued FROM webhooks.read_events();
SELECT * FROM queue;

-- A rolled-back emit leaves nothing.
SELECT count(*) AS before FROM webhooks.events \gset
BEGIN;
SELECT webhooks.emit('c1', 'member.joined', '{"rolled": "back"}') IS NOT NULL AS emitted;
SELECT count(*) - :before AS recorded_in_transaction FROM webhooks.events;
ROLLBACK;
SELECT count(*) - :before AS recorded FROM webhooks.events;
SELECT queued FROM webhooks.read_events();
-- So does one rolled back to a savepoint; the rest of the transaction stays.
BEGIN;
SELECT webhooks.emit('c1', 'member.left', '{"kept": 1}') IS NOT NULL AS emitted;
SAVEPOINT s;
SELECT webhooks.emit('c1', 'member.left', '{"kept": 0}') IS NOT NULL AS emitted;
ROLLBACK TO SAVEPOINT s;
SELECT webhooks.emit('c1', 'member.left', '{"kept": 2}') IS NOT NULL AS emitted;
COMMIT;
SELECT queued FROM webhooks.read_events();
SELECT webhook, event, payload FROM queue WHERE event = 'member.left';
-- Several emits in one transaction are queued together at commit.
BEGIN;
SELECT webhooks.emit('c1', 'member.joined', '{"batch": 1}') IS NOT NULL AS emitted;
SELECT webhooks.emit('c1', 'member.joined', '{"batch": 2}') IS NOT NULL AS emitted;
COMMIT;
SELECT queued FROM webhooks.read_events();
SELECT webhook, payload FROM queue WHERE payload ? 'batch';

-- The delivery_status view counts what waits, per webhook.
SELECT h.name, s.community_id, s.pending, s.in_flight, s.retrying, s.failed,
       s.next_attempt_at IS NOT NULL AS has_next, s.last_error
FROM webhooks.delivery_status s JOIN hooks h ON h.id = s.webhook_id
ORDER BY h.name;

DELETE FROM webhooks.deliveries;

--
-- emit_trigger
--
CREATE TABLE members (id int PRIMARY KEY, community_id text, name text);
CREATE TRIGGER members_joined AFTER INSERT ON members
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.joined');
CREATE TRIGGER members_updated AFTER UPDATE ON members
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.updated');
CREATE TRIGGER members_left AFTER DELETE ON members
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.left');

-- INSERT: the payload is the new row.
INSERT INTO members VALUES (1, 'c1', 'Ada'), (2, 'c2', 'Bob'), (3, 'c3', 'Cy');
SELECT queued FROM webhooks.read_events();
SELECT * FROM queue;
DELETE FROM webhooks.deliveries;
-- UPDATE: the new row (b subscribes to member.updated; c2 has none).
UPDATE members SET name = 'Ada Lovelace' WHERE id = 1;
UPDATE members SET name = 'Bobby' WHERE id = 2;
SELECT queued FROM webhooks.read_events();
SELECT * FROM queue;
DELETE FROM webhooks.deliveries;
-- DELETE: the old row.
DELETE FROM members WHERE id = 1;
SELECT queued FROM webhooks.read_events();
SELECT * FROM queue;
DELETE FROM webhooks.deliveries;
-- A rolled-back change queues nothing.
SELECT count(*) AS before FROM webhooks.events \gset
BEGIN;
INSERT INTO members VALUES (4, 'c1', 'Dee');
SELECT count(*) - :before AS recorded_in_transaction FROM webhooks.events;
ROLLBACK;
SELECT count(*) - :before AS recorded FROM webhooks.events;
SELECT queued FROM webhooks.read_events();
-- One failing row undoes the whole statement, and its events.
SELECT sqlstate_of($$INSERT INTO members VALUES (5, 'c1', 'Eve'), (6, NULL, 'Nul')$$);
SELECT count(*) - :before AS recorded FROM webhooks.events;
SELECT queued FROM webhooks.read_events();
SELECT count(*) AS members FROM members WHERE id IN (5, 6);

-- The community in another column, named by the second argument.
CREATE TABLE payments (id int, org text, amount int);
CREATE TRIGGER payments_completed AFTER INSERT ON payments
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('payment.completed', 'org');
INSERT INTO payments VALUES (10, 'c1', 500), (11, 'c2', 700), (12, 'c9', 1);
SELECT queued FROM webhooks.read_events();
SELECT * FROM queue;
DELETE FROM webhooks.deliveries;

-- A community column of another type: its text form is the community id.
CREATE TABLE members_by_number (id int, community_id bigint, name text);
CREATE TRIGGER members_by_number_joined AFTER INSERT ON members_by_number
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.joined');
SELECT id AS num FROM webhooks.webhook_create('42', 'https://example.com/42',
                                              ARRAY['member.joined']) \gset
INSERT INTO hooks VALUES ('number', :'num');
INSERT INTO members_by_number VALUES (1, 42, 'Forty-two'), (2, 43, 'Nobody');
SELECT queued FROM webhooks.read_events();
SELECT * FROM queue;
DELETE FROM webhooks.deliveries;

-- A BEFORE trigger emits too, and leaves the row as it is.
CREATE TABLE members_before (id int, community_id text, name text);
CREATE TRIGGER mb_joined BEFORE INSERT ON members_before
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.joined');
CREATE TRIGGER mb_updated BEFORE UPDATE ON members_before
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.updated');
CREATE TRIGGER mb_left BEFORE DELETE ON members_before
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.left');
INSERT INTO members_before VALUES (1, 'c1', 'Ada'), (2, 'c1', 'Bob');
SELECT * FROM members_before ORDER BY id;
UPDATE members_before SET name = 'Bobby' WHERE id = 2;
SELECT * FROM members_before ORDER BY id;
DELETE FROM members_before WHERE id = 1;
SELECT * FROM members_before ORDER BY id;
-- RETURNING sees the row as inserted.
INSERT INTO members_before VALUES (3, 'c1', 'Cy') RETURNING *;
SELECT queued FROM webhooks.read_events();
SELECT * FROM queue;
DELETE FROM webhooks.deliveries;

-- A json column may hold \u0000, which jsonb cannot: the INSERT still
-- succeeds, and the escape arrives as U+FFFD.  An escaped backslash before
-- "u0000" is text, and stays as it is.
CREATE TABLE members_json (id int, community_id text, profile json);
CREATE TRIGGER mj_joined AFTER INSERT ON members_json
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.joined');
INSERT INTO members_json VALUES
    (1, 'c1', '{"bio": "a\u0000b", "n": ["\u0000"]}'),
    (2, 'c1', '{"path": "C:\\u0000"}');
SELECT queued FROM webhooks.read_events();
SELECT payload_of(d.event_id) AS payload FROM webhooks.deliveries d JOIN hooks h ON h.id = d.webhook_id
WHERE h.name = 'a' ORDER BY d.id;
DELETE FROM webhooks.deliveries;
-- A community id longer than 1024 bytes is refused clearly.
SELECT sqlstate_of($$INSERT INTO members_json VALUES (3, repeat('c', 6400), '{}')$$);

--
-- emit_trigger errors
--
-- no community_id column
CREATE TABLE no_community (id int, name text);
CREATE TRIGGER no_community_joined AFTER INSERT ON no_community
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.joined');
SELECT sqlstate_of($$INSERT INTO no_community VALUES (1, 'x')$$);
-- the named column does not exist
CREATE TRIGGER payments_failed AFTER UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('payment.failed', 'organisation');
SELECT sqlstate_of($$UPDATE payments SET amount = 0 WHERE id = 10$$);
DROP TRIGGER payments_failed ON payments;
-- a NULL or empty community in the row
SELECT sqlstate_of($$INSERT INTO members VALUES (7, NULL, 'Nul')$$);
SELECT sqlstate_of($$INSERT INTO payments VALUES (13, NULL, 1)$$);
SELECT sqlstate_of($$INSERT INTO members VALUES (8, '', 'Empty')$$);
SELECT sqlstate_of($$INSERT INTO payments VALUES (14, '', 1)$$);
-- a statement-level trigger
CREATE TRIGGER members_stmt AFTER INSERT ON members
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks.emit_trigger('member.joined');
SELECT sqlstate_of($$INSERT INTO members VALUES (9, 'c1', 'Stmt')$$);
DROP TRIGGER members_stmt ON members;
-- the wrong number of arguments
CREATE TABLE args_test (id int, community_id text);
CREATE TRIGGER no_args AFTER INSERT ON args_test
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger();
SELECT sqlstate_of($$INSERT INTO args_test VALUES (1, 'c1')$$);
DROP TRIGGER no_args ON args_test;
CREATE TRIGGER three_args AFTER INSERT ON args_test
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.joined', 'community_id', 'extra');
SELECT sqlstate_of($$INSERT INTO args_test VALUES (2, 'c1')$$);
DROP TRIGGER three_args ON args_test;
-- an unknown event type
CREATE TRIGGER unknown_event AFTER INSERT ON args_test
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.teleported');
SELECT sqlstate_of($$INSERT INTO args_test VALUES (3, 'c1')$$);
DROP TRIGGER unknown_event ON args_test;
-- called directly, not as a trigger
SELECT sqlstate_of($$SELECT webhooks.emit_trigger()$$);
-- None of the failed statements changed anything.
SELECT count(*) AS queued FROM webhooks.deliveries;
SELECT (SELECT count(*) FROM members) AS members,
       (SELECT count(*) FROM payments) AS payments,
       (SELECT count(*) FROM no_community) AS no_community,
       (SELECT count(*) FROM args_test) AS args_test;

-- Clean up.
DROP TABLE members, payments, members_by_number, members_before,
    members_json, no_community, args_test;
DROP VIEW queue;
SELECT webhooks.webhook_delete(community_id, id)
FROM webhooks.webhooks ORDER BY created_at;
SELECT count(*) AS webhooks FROM webhooks.webhooks;
SELECT count(*) AS deliveries FROM webhooks.deliveries;

-- Dropping and re-creating the extension in the same session: emit's
-- cached statement follows the new tables.
DROP EXTENSION webhooks;
-- (PostgreSQL creates the schema named in the control file without making
-- it a member of the extension, so the empty schema stays)
SELECT count(*) AS schemas FROM pg_namespace WHERE nspname = 'webhooks';
SELECT count(*) AS objects FROM pg_class
WHERE relnamespace = 'webhooks'::regnamespace;
CREATE EXTENSION webhooks;
SELECT id AS fresh FROM webhooks.webhook_create('c1', 'https://example.com/fresh',
                                                ARRAY['member.joined']) \gset
SELECT webhooks.emit('c1', 'member.joined', '{"again": true}') IS NOT NULL AS emitted;
SELECT queued FROM webhooks.read_events();
SELECT webhook_id = :'fresh' AS to_fresh, event, payload_of(d.event_id) AS payload, state
FROM webhooks.deliveries d;
SELECT webhooks.webhook_delete('c1', :'fresh');
SELECT count(*) AS deliveries FROM webhooks.deliveries;

-- emit() has no SET search_path (it is on every row's path), so every name
-- in its statement is qualified: an operator planted on the caller's
-- search_path must change nothing.
CREATE SCHEMA evil;
CREATE FUNCTION evil.always(text, text) RETURNS boolean
  LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.always);
SELECT id AS other FROM webhooks.webhook_create('someone-else',
  'https://example.com/other', ARRAY['member.joined']) \gset
SELECT count(*) > 0 AS some_subscribed_webhook FROM webhooks.webhooks
WHERE is_active AND 'member.joined' = ANY (events);
SET search_path = evil, pg_catalog, public;
SELECT webhooks.emit('no-such-community', 'member.joined') IS NOT NULL AS emitted;
RESET search_path;
SELECT queued FROM webhooks.read_events();
SELECT count(*) AS queued_for_nobody FROM webhooks.deliveries
WHERE community_id = 'no-such-community';
SELECT webhooks.webhook_delete('someone-else', :'other');
DROP SCHEMA evil CASCADE;

-- emit() writes its row without an INSERT statement when the partition
-- lets it (append.c).  A partition an operator has given a CHECK
-- constraint or a trigger gets the row through the statement, so both act
-- on it.
DELETE FROM webhooks.events;
ALTER TABLE webhooks.events_default
  ADD CONSTRAINT small_payloads CHECK (payload_bytes < 28);
SELECT webhooks.emit('c1', 'member.joined', '{"a": 1}') IS NOT NULL AS small;
\set VERBOSITY terse
SELECT webhooks.emit('c1', 'member.joined', '{"a": "far too long for it"}');
\set VERBOSITY default
ALTER TABLE webhooks.events_default DROP CONSTRAINT small_payloads;
CREATE FUNCTION public.event_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE NOTICE 'event % seen by a trigger', NEW.type;
  RETURN NEW;
END $$;
CREATE TRIGGER event_seen BEFORE INSERT ON webhooks.events_default
  FOR EACH ROW EXECUTE FUNCTION public.event_seen();
SELECT webhooks.emit('c1', 'member.left', '{}') IS NOT NULL AS through_trigger;
DROP TRIGGER event_seen ON webhooks.events_default;
DROP FUNCTION public.event_seen();
-- and without them, directly again, with the row's index entry
SELECT webhooks.emit('c1', 'member.updated', '{}') IS NOT NULL AS direct;
SET enable_seqscan = off;
SELECT type, payload FROM webhooks.events WHERE txid > '0' ORDER BY txid, id;
RESET enable_seqscan;
DELETE FROM webhooks.events;

-- Nothing is written in a read-only transaction.
BEGIN READ ONLY;
SELECT webhooks.emit('c1', 'member.joined', '{}');
ROLLBACK;

-- Event types are remembered by each session, and forgotten when the
-- table changes: a type deleted or renamed is refused at once.
INSERT INTO webhooks.event_types (name) VALUES ('test.remembered');
SELECT webhooks.emit('c1', 'test.remembered', '{}') IS NOT NULL AS known;
UPDATE webhooks.event_types SET name = 'test.renamed' WHERE name = 'test.remembered';
SELECT webhooks.emit('c1', 'test.remembered', '{}');
SELECT webhooks.emit('c1', 'test.renamed', '{}') IS NOT NULL AS known;
DELETE FROM webhooks.event_types WHERE name = 'test.renamed';
SELECT webhooks.emit('c1', 'test.renamed', '{}');
SELECT count(*) AS events FROM webhooks.events;
DELETE FROM webhooks.events;
