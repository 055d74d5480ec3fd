--
-- management: create, list, get, update, delete, secret; community isolation
--
\set VERBOSITY terse
\set nil '00000000-0000-0000-0000-000000000000'

-- The columns each function returns, in order.
SELECT p.proname,
       string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod),
                  ', ' ORDER BY a.attnum) AS columns
FROM pg_proc p
JOIN pg_type t ON t.oid = p.prorettype
JOIN pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0
WHERE p.pronamespace = 'webhooks'::regnamespace
GROUP BY p.proname
ORDER BY p.proname;

--
-- webhook_create
--
-- Keep what create returned (with the secret) to compare with later.
CREATE TEMP TABLE made AS
SELECT 'a'::text AS name, *
FROM webhooks.webhook_create('c1', 'https://example.com/hooks/a',
                             ARRAY['member.joined', 'payment.completed']);
INSERT INTO made
SELECT 'b', * FROM webhooks.webhook_create('c1', 'https://example.com/hooks/b',
                                           ARRAY['member.joined'], false);
-- Named arguments, duplicate events removed (first occurrence order kept).
INSERT INTO made
SELECT 'c', * FROM webhooks.webhook_create(
    community_id => 'c1',
    url => 'https://hooks.example.org:8443/path?x=1&y=2#frag',
    events => ARRAY['payment.failed', 'member.left', 'payment.failed',
                    'member.left', 'payment.failed'],
    is_active => true);
-- Another community's webhook.
INSERT INTO made
SELECT 'd', * FROM webhooks.webhook_create('c2', 'https://example.net/d',
                                           ARRAY['member.joined']);

-- Every returned column.  The secret is whsec_ and 32 random bytes in
-- base64; ids and secrets are all different.
SELECT name, id IS NOT NULL AS has_id, community_id, url, events, is_active,
       secret ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS secret_ok,
       length(secret) AS secret_len,
       created_at = updated_at AS created_eq_updated,
       created_at <= now() AS created_in_past
FROM made ORDER BY name;
SELECT count(DISTINCT id) AS ids, count(DISTINCT secret) AS secrets FROM made;
SELECT id AS a FROM made WHERE name = 'a' \gset
SELECT id AS b FROM made WHERE name = 'b' \gset
SELECT id AS c FROM made WHERE name = 'c' \gset
SELECT id AS d FROM made WHERE name = 'd' \gset

-- The table holds exactly what create returned.
SELECT m.name,
       (w.id, w.community_id, w.url, w.events, w.is_active, w.secret,
        w.created_at, w.updated_at)
       = (m.id, m.community_id, m.url, m.events, m.is_active, m.secret,
          m.created_at, m.updated_at) AS same
FROM made m JOIN webhooks.webhooks w USING (id)
ORDER BY m.name;

--
-- webhook_list: the community's webhooks, oldest first, never the secret
--
SELECT * FROM webhooks.webhook_list('c1') LIMIT 0;
SELECT m.name, l.community_id, l.url, l.events, l.is_active,
       l.created_at = m.created_at AS created_ok,
       l.updated_at = m.updated_at AS updated_ok
FROM webhooks.webhook_list('c1') WITH ORDINALITY AS l
JOIN made m USING (id)
ORDER BY l.ordinality;
SELECT m.name, l.url
FROM webhooks.webhook_list('c2') l JOIN made m USING (id);
-- A community without webhooks has an empty list.
SELECT count(*) FROM webhooks.webhook_list('c3');
-- Community ids are compared exactly.
SELECT count(*) FROM webhooks.webhook_list('C1');
SELECT count(*) FROM webhooks.webhook_list('c1 ');

--
-- webhook_get
--
SELECT * FROM webhooks.webhook_get('c1', :'a') LIMIT 0;
SELECT g.id = :'a' AS id_ok, g.community_id, g.url, g.events, g.is_active,
       g.created_at = m.created_at AS created_ok,
       g.updated_at = m.updated_at AS updated_ok
FROM webhooks.webhook_get('c1', :'a') g JOIN made m USING (id);
SELECT url, is_active FROM webhooks.webhook_get(community_id => 'c1', id => :'b');

--
-- webhook_secret: the secret create showed
--
SELECT webhooks.webhook_secret('c1', :'a') = secret AS same_secret
FROM made WHERE name = 'a';
SELECT webhooks.webhook_secret('c2', :'d') = secret AS same_secret
FROM made WHERE name = 'd';

--
-- webhook_update: any subset, with named arguments
--
SELECT updated_at AS before FROM webhooks.webhooks WHERE id = :'a' \gset
-- Nothing given: unchanged, and updated_at is not bumped.
SELECT u.url, u.events, u.is_active, u.updated_at = :'before' AS updated_same
FROM webhooks.webhook_update(community_id => 'c1', id => :'a') u;
-- Explicit NULLs are the same as leaving the arguments out.
SELECT u.url, u.events, u.is_active, u.updated_at = :'before' AS updated_same
FROM webhooks.webhook_update('c1', :'a', url => NULL, events => NULL,
                             is_active => NULL) u;
SELECT updated_at = :'before' AS updated_same
FROM webhooks.webhooks WHERE id = :'a';

-- The result has the columns of webhook_list.
SELECT * FROM webhooks.webhook_update('c1', :'a') LIMIT 0;

-- url alone
SELECT u.url, u.events, u.is_active, u.updated_at > :'before' AS bumped,
       u.created_at = m.created_at AS created_same
FROM webhooks.webhook_update('c1', :'a', url => 'https://example.com/hooks/a2') u
JOIN made m USING (id);
SELECT updated_at AS before FROM webhooks.webhooks WHERE id = :'a' \gset

-- events alone (duplicates removed)
SELECT u.url, u.events, u.is_active, u.updated_at > :'before' AS bumped
FROM webhooks.webhook_update('c1', :'a',
    events => ARRAY['member.updated', 'member.updated', 'payment.refunded']) u;
SELECT updated_at AS before FROM webhooks.webhooks WHERE id = :'a' \gset

-- is_active alone
SELECT u.url, u.events, u.is_active, u.updated_at > :'before' AS bumped
FROM webhooks.webhook_update('c1', :'a', is_active => false) u;
SELECT updated_at AS before FROM webhooks.webhooks WHERE id = :'a' \gset

-- all together
SELECT u.url, u.events, u.is_active, u.updated_at > :'before' AS bumped
FROM webhooks.webhook_update(community_id => 'c1', id => :'a',
                             url => 'https://example.com/hooks/a3',
                             events => ARRAY['member.joined'],
                             is_active => true) u;

-- Setting a field to the value it has still counts as an update.
SELECT updated_at AS before FROM webhooks.webhooks WHERE id = :'a' \gset
SELECT u.url, u.is_active, u.updated_at > :'before' AS bumped
FROM webhooks.webhook_update('c1', :'a', is_active => true) u;

-- The stored row agrees, and the secret never changes.
SELECT w.url, w.events, w.is_active, w.secret = m.secret AS secret_same,
       w.created_at = m.created_at AS created_same,
       w.updated_at > w.created_at AS updated_later
FROM webhooks.webhooks w JOIN made m USING (id)
WHERE w.id = :'a';

-- The other webhooks were not touched.
SELECT m.name,
       (w.url, w.events, w.is_active, w.updated_at)
       = (m.url, m.events, m.is_active, m.updated_at) AS untouched
FROM made m JOIN webhooks.webhooks w USING (id)
WHERE m.name <> 'a'
ORDER BY m.name;

--
-- Deactivating a webhook fails its pending deliveries at once.
--
SELECT webhooks.emit('c1', 'member.joined', '{"n": 1}') IS NOT NULL AS emitted;
SELECT webhooks.emit('c1', 'member.joined', '{"n": 2}') IS NOT NULL AS emitted;
SELECT webhooks.emit('c2', 'member.joined', '{"n": 3}') IS NOT NULL AS emitted;
-- a and d are active and subscribed; b is inactive, c is not subscribed.
SELECT queued FROM webhooks.read_events();
SELECT m.name, d.event, payload_of(d.event_id) AS payload, d.state, d.attempts, d.last_error
FROM webhooks.deliveries d JOIN made m ON m.id = d.webhook_id
ORDER BY d.id;
-- Changing the url or events leaves the queue alone.
SELECT url FROM webhooks.webhook_update('c1', :'a',
                                        url => 'https://example.com/hooks/a4');
SELECT events FROM webhooks.webhook_update('c1', :'a',
    events => ARRAY['member.joined', 'member.left']);
SELECT m.name, payload_of(d.event_id) AS payload, d.state, d.last_error
FROM webhooks.deliveries d JOIN made m ON m.id = d.webhook_id
ORDER BY d.id;
SELECT is_active FROM webhooks.webhook_update('c1', :'a', is_active => false);
SELECT m.name, payload_of(d.event_id) AS payload, d.state, d.attempts, d.last_error
FROM webhooks.deliveries d JOIN made m ON m.id = d.webhook_id
ORDER BY d.id;
-- While inactive, nothing new is queued for it.
SELECT webhooks.emit('c1', 'member.joined', '{"n": 4}') IS NOT NULL AS emitted;
SELECT queued FROM webhooks.read_events();
SELECT count(*) FROM webhooks.deliveries WHERE webhook_id = :'a';
-- Reactivated, it receives new events; the failed deliveries stay failed.
SELECT is_active FROM webhooks.webhook_update('c1', :'a', is_active => true);
SELECT webhooks.emit('c1', 'member.left', '{"n": 5}') IS NOT NULL AS emitted;
SELECT queued FROM webhooks.read_events();
SELECT m.name, d.event, payload_of(d.event_id) AS payload, d.state, d.last_error
FROM webhooks.deliveries d JOIN made m ON m.id = d.webhook_id
ORDER BY d.id;

--
-- Community isolation: another community's webhook is "not found",
-- exactly as a webhook that does not exist.
--
SELECT f.fn, sqlstate_of(format(f.sql, 'c2', :'a')) AS other_community,
       sqlstate_of(format(f.sql, 'c2', :'nil')) AS missing,
       sqlstate_of(format(f.sql, 'c2', :'a'))
       = sqlstate_of(format(f.sql, 'c2', :'nil')) AS same
FROM (VALUES
    ('get', 'SELECT webhooks.webhook_get(%L, %L)'),
    ('update', 'SELECT webhooks.webhook_update(%L, %L, url => ''https://evil.example/'')'),
    ('update none', 'SELECT webhooks.webhook_update(%L, %L)'),
    ('update inactive', 'SELECT webhooks.webhook_update(%L, %L, is_active => false)'),
    ('delete', 'SELECT webhooks.webhook_delete(%L, %L)'),
    ('secret', 'SELECT webhooks.webhook_secret(%L, %L)'),
    ('logs', 'SELECT webhooks.webhook_logs(%L, %L)'),
    ('test', 'SELECT webhooks.webhook_test(%L, %L)')
) AS f(fn, sql)
ORDER BY f.fn;
-- The full message of each.
SELECT sqlstate_of(format('SELECT webhooks.webhook_get(%L, %L)', 'c2', :'a'));
SELECT sqlstate_of(format('SELECT webhooks.webhook_get(%L, %L)', 'c1', :'d'));
-- The message names the id that was asked for.
\set VERBOSITY default
SELECT webhooks.webhook_get('c2', :'nil');
\set VERBOSITY terse
-- Nothing of c1's changed, and its pending deliveries are still there.
SELECT w.url, w.is_active, w.events
FROM webhooks.webhooks w WHERE w.id = :'a';
SELECT count(*) FROM webhooks.deliveries WHERE webhook_id = :'a';
SELECT name FROM made m
WHERE NOT EXISTS (SELECT 1 FROM webhooks.webhooks w WHERE w.id = m.id);

--
-- webhook_delete: permanent, and the queued deliveries go with it.
--
SELECT count(*) FROM webhooks.deliveries WHERE webhook_id = :'a';
SELECT webhooks.webhook_delete('c1', :'a');
SELECT count(*) FROM webhooks.webhooks WHERE id = :'a';
SELECT count(*) FROM webhooks.deliveries WHERE webhook_id = :'a';
SELECT m.name, payload_of(d.event_id) AS payload, d.state
FROM webhooks.deliveries d JOIN made m ON m.id = d.webhook_id
ORDER BY d.id;
-- Deleted means not found, everywhere.
SELECT sqlstate_of(format('SELECT webhooks.webhook_get(%L, %L)', 'c1', :'a'));
SELECT sqlstate_of(format('SELECT webhooks.webhook_delete(%L, %L)', 'c1', :'a'));
SELECT sqlstate_of(format('SELECT webhooks.webhook_secret(%L, %L)', 'c1', :'a'));
SELECT m.name FROM webhooks.webhook_list('c1') l JOIN made m USING (id)
ORDER BY m.name;

-- A delete that is rolled back deletes nothing.
BEGIN;
SELECT webhooks.webhook_delete('c1', :'b');
SELECT count(*) FROM webhooks.webhook_list('c1');
ROLLBACK;
SELECT count(*) FROM webhooks.webhook_list('c1');

-- Clean up for the next files.
SELECT webhooks.webhook_delete('c1', :'b');
SELECT webhooks.webhook_delete('c1', :'c');
SELECT webhooks.webhook_delete('c2', :'d');
SELECT count(*) AS webhooks FROM webhooks.webhooks;
SELECT count(*) AS deliveries FROM webhooks.deliveries;
