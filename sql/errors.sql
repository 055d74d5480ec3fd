--
-- errors: every kind of bad input gets a specific SQLSTATE and a clear
-- message, and changes nothing
--
\set nil '00000000-0000-0000-0000-000000000000'

-- One webhook to aim the calls at, with one pending delivery.
SELECT id AS w FROM webhooks.webhook_create('c1', 'https://example.com/w',
                                            ARRAY['member.joined']) \gset
SELECT webhooks.emit('c1', 'member.joined', '{"k": "v"}') IS NOT NULL AS emitted;
SELECT queued FROM webhooks.read_events();

-- A snapshot of every table, to compare with after the errors.
-- (webhooks by their text form: jsonpath has no equality)
CREATE TEMP TABLE snap_webhooks AS SELECT w.id, w::text AS row FROM webhooks.webhooks w;
CREATE TEMP TABLE snap_health AS SELECT * FROM webhooks.webhook_health;
CREATE TEMP TABLE snap_deliveries AS SELECT * FROM webhooks.deliveries;
CREATE TEMP TABLE snap_attempts AS SELECT * FROM webhooks.delivery_attempts;
CREATE TEMP TABLE snap_event_types AS SELECT * FROM webhooks.event_types;
CREATE TEMP TABLE snap_events AS SELECT * FROM webhooks.events;

-- Show only the outcome line of each call.
\t on

--
-- url
--
-- NULL
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', NULL, '{member.joined}')$$);
-- empty
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', '', '{member.joined}')$$);
-- unparsable
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://', '{member.joined}')$$);
-- (no host: libcurl reads the first path segment as the host)
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https:///path', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https:////x/y', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://exa<mple.com/', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://[::1/', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com:99999/', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', '://example.com/', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'not a url', '{member.joined}')$$);
-- not absolute
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'example.com/x', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', '/hook', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', '//example.com/hook', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https:example.com', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', '/hook?next=https://example.com/', '{member.joined}')$$);
-- a scheme other than https
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'ftp://example.com/x', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'file:///etc/passwd', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'gopher://example.com/', '{member.joined}')$$);
-- http, while webhooks.allow_http is off
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'http://example.com/x', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'HTTP://example.com/x', '{member.joined}')$$);
-- credentials
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://user:pw@example.com/', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://user@example.com/', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://:pw@example.com/', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://user;auth=NTLM@example.com/', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com\@evil.example/', '{member.joined}')$$);
-- even empty ones: libcurl would send "Authorization: Basic Og=="
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://:@example.com/', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://@example.com/', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://@example.com:8443/', '{member.joined}')$$);
-- port 0
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com:0/', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com:00000/', '{member.joined}')$$);
-- spaces and control characters
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/a b', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', ' https://example.com/', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/ ', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', E'https://example.com/\tx', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', E'https://example.com/\nx', '{member.joined}')$$);
-- longer than 2048 bytes (the limit counts bytes, not characters)
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/' || repeat('a', 2029), '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/' || repeat('é', 1015), '{member.joined}')$$);
-- the same checks in webhook_update
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L, url => '')$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L, url => '/hook')$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L, url => 'ftp://example.com/')$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L, url => 'http://example.com/')$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L, url => 'https://u:p@example.com/')$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L, url => 'https://example.com/ x')$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L, url => 'https://example.com/' || repeat('a', 2029))$$, :'w'));

--
-- events
--
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/', NULL)$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/', '{}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/', ARRAY['member.joined', NULL])$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/', ARRAY[NULL]::text[])$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/', ARRAY['member.joined', 'member.exploded'])$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/', ARRAY['Member.Joined'])$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/', ARRAY[''])$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/', ARRAY['test.ping'])$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/', ARRAY[['member.joined'], ['member.left']])$$);
-- the same checks in webhook_update
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L, events => '{}')$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L, events => ARRAY[NULL]::text[])$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L, events => ARRAY['member.nope'])$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L, events => ARRAY[['member.joined']])$$, :'w'));
-- more than 1000 names (duplicates count: the bound comes before any work)
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/', array_fill('member.joined'::text, ARRAY[1001]))$$);
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L, events => (SELECT array_agg('e.' || i) FROM generate_series(1, 60000) i))$$, :'w'));
-- is_active may be left out but not given as NULL in create
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/', '{member.joined}', NULL)$$);

--
-- community_id NULL or empty, for every function
--
SELECT sqlstate_of($$SELECT webhooks.webhook_create(NULL, 'https://example.com/', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('', 'https://example.com/', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_list(NULL)$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_list('')$$);
SELECT sqlstate_of(format($$SELECT webhooks.webhook_get(NULL, %L)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_get('', %L)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update(NULL, %L, is_active => false)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('', %L, is_active => false)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_delete(NULL, %L)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_delete('', %L)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_secret(NULL, %L)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_secret('', %L)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_logs(NULL, %L)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_logs('', %L)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_test(NULL, %L)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_test('', %L)$$, :'w'));
SELECT sqlstate_of($$SELECT webhooks.emit(NULL, 'member.joined', '{}')$$);
SELECT sqlstate_of($$SELECT webhooks.emit('', 'member.joined', '{}')$$);
-- longer than 1024 bytes: a clear error, not the btree's
SELECT sqlstate_of($$SELECT webhooks.webhook_create(repeat('c', 6400), 'https://example.com/', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create(repeat('é', 513), 'https://example.com/', '{member.joined}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_list(repeat('c', 1025))$$);
SELECT sqlstate_of($$SELECT webhooks.emit(repeat('c', 6400), 'member.joined', '{}')$$);

--
-- webhook id NULL, or not found
--
SELECT sqlstate_of($$SELECT webhooks.webhook_get('c1', NULL)$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_update('c1', NULL, is_active => false)$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_update('c1', NULL)$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_delete('c1', NULL)$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_secret('c1', NULL)$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_logs('c1', NULL)$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_test('c1', NULL)$$);
SELECT sqlstate_of(format($$SELECT webhooks.webhook_get('c1', %L)$$, :'nil'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L, is_active => false)$$, :'nil'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L)$$, :'nil'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_delete('c1', %L)$$, :'nil'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_secret('c1', %L)$$, :'nil'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_logs('c1', %L)$$, :'nil'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_test('c1', %L)$$, :'nil'));
-- a malformed id is PostgreSQL's own error
SELECT sqlstate_of($$SELECT webhooks.webhook_get('c1', 'not-a-uuid')$$);

--
-- webhook_logs paging
--
SELECT sqlstate_of(format($$SELECT webhooks.webhook_logs('c1', %L, page => 0)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_logs('c1', %L, page => -1)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_logs('c1', %L, per_page => 0)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_logs('c1', %L, per_page => 51)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_logs('c1', %L, per_page => -5)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_logs('c1', %L, page => NULL)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_logs('c1', %L, per_page => NULL)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_logs('c1', %L, NULL, NULL)$$, :'w'));
-- paging is checked whatever the id
SELECT sqlstate_of(format($$SELECT webhooks.webhook_logs('c1', %L, page => 0)$$, :'nil'));
-- the bounds themselves are accepted
SELECT sqlstate_of(format($$SELECT webhooks.webhook_logs('c1', %L, per_page => 50)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_logs('c1', %L, page => 1, per_page => 1)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_logs('c1', %L, page => 2147483647, per_page => 50)$$, :'w'));

--
-- emit
--
SELECT sqlstate_of($$SELECT webhooks.emit('c1', 'member.exploded', '{}')$$);
SELECT sqlstate_of($$SELECT webhooks.emit('c1', 'member.exploded')$$);
SELECT sqlstate_of($$SELECT webhooks.emit('c1', '', '{}')$$);
SELECT sqlstate_of($$SELECT webhooks.emit('c1', NULL, '{}')$$);
SELECT sqlstate_of($$SELECT webhooks.emit('c1', 'member.joined', NULL)$$);
-- an unknown event type is an error even where nobody subscribes
SELECT sqlstate_of($$SELECT webhooks.emit('nobody-here', 'member.exploded')$$);
-- a payload larger than webhooks.max_payload_size (1MB by default)
SELECT sqlstate_of($$SELECT webhooks.emit('c1', 'member.joined', jsonb_build_object('big', repeat('x', 1100000)))$$);

--
-- event_get, webhook_replay, webhook_recover
--
SELECT id AS ev FROM webhooks.events WHERE community_id = 'c1' LIMIT 1 \gset
SELECT sqlstate_of($$SELECT webhooks.event_get(NULL, '00000000-0000-0000-0000-000000000000')$$);
SELECT sqlstate_of(format($$SELECT webhooks.event_get('', %L)$$, :'ev'));
SELECT sqlstate_of($$SELECT webhooks.event_get('c1', NULL)$$);
-- another community's event is "not found", like a missing one
SELECT sqlstate_of(format($$SELECT webhooks.event_get('c2', %L)$$, :'ev'));
SELECT sqlstate_of(format($$SELECT webhooks.event_get('c1', %L)$$, :'nil'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_replay('c1', %L, NULL)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_replay('c1', NULL, %L)$$, :'ev'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_replay('c1', %L, %L)$$, :'nil', :'ev'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_replay('c2', %L, %L)$$, :'w', :'ev'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_replay('c1', %L, %L)$$, :'w', :'nil'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_recover('c1', %L, NULL)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_recover('c2', %L, now())$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_recover('c1', %L, now())$$, :'nil'));
-- an inactive webhook: 55000, for both
SELECT id AS off FROM webhooks.webhook_create('c1', 'https://example.com/off',
    '{member.joined}', false) \gset
SELECT sqlstate_of(format($$SELECT webhooks.webhook_replay('c1', %L, %L)$$, :'off', :'ev'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_recover('c1', %L, '-infinity')$$, :'off'));
SELECT webhooks.webhook_delete('c1', :'off');

--
-- headers (22023, and values never shown), filter, rotation, stats
--
-- not an object, a value not a string
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '[]')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '"x"')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"X-A": 1}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"X-A": null}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"X-A": ["a"]}')$$);
-- names the extension sets, or that govern the connection (any case)
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"Webhook-Signature": "v1,forged"}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"webhook-id": "x"}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"Content-Type": "text/plain"}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"CONTENT-LENGTH": "1"}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"Host": "evil.example"}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"User-Agent": "x"}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"Transfer-Encoding": "chunked"}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"Connection": "close"}')$$);
-- not header text: CR, LF, tab or space in a name, an empty name, CR/LF/NUL-like controls in a value
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"X-A\r\nX-B": "v"}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"X A": "v"}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"X-A:": "v"}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"": "v"}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"X-A": "secret\r\nX-Injected: 1"}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"X-A": "a\nb"}')$$);
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"X-A": "a\u0001b"}')$$);
-- a name twice, case aside
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => '{"X-A": "1", "x-a": "2"}')$$);
-- more than 32, more than 8 KiB
SELECT sqlstate_of(format($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => %L)$$,
    (SELECT jsonb_object_agg('X-H' || i, 'v') FROM generate_series(1, 33) i)));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => %L)$$,
    jsonb_build_object('X-Big', repeat('v', 8200))));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', headers => %L)$$,
    (SELECT jsonb_object_agg('X-H' || i, repeat('v', 300)) FROM generate_series(1, 30) i)));
-- the same checks on update
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L, headers => '{"Webhook-Timestamp": "1"}')$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L, headers => '{"X-A": "a\r\n"}')$$, :'w'));
-- an invalid filter is the jsonpath type's own syntax error
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', filter => '$.a ? (@ >')$$);
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L, filter => 'not a path')$$, :'w'));
-- a variable: the worker passes none, so such a filter could only fail
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'https://example.com/h', '{member.joined}', filter => '$ ? (@.a > $min)')$$);
SELECT sqlstate_of(format($$SELECT webhooks.webhook_update('c1', %L, filter => '$.a ? (@ == $x)')$$, :'w'));
-- rotation: NULL or negative overlap, another community's webhook
SELECT sqlstate_of(format($$SELECT webhooks.webhook_rotate_secret('c1', %L, NULL)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_rotate_secret('c1', %L, '-1 second')$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_rotate_secret('c1', %L, '1 hour -2 days')$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_rotate_secret('c2', %L)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_rotate_secret('c1', %L)$$, :'nil'));
SELECT sqlstate_of($$SELECT webhooks.webhook_rotate_secret(NULL, '00000000-0000-0000-0000-000000000000')$$);
-- stats: scoped like the rest
SELECT sqlstate_of(format($$SELECT webhooks.webhook_stats('c2', %L)$$, :'w'));
SELECT sqlstate_of(format($$SELECT webhooks.webhook_stats('c1', %L)$$, :'nil'));
SELECT sqlstate_of($$SELECT webhooks.webhook_stats('c1', NULL)$$);

\t off

-- Nothing changed.
SELECT (SELECT count(*) FROM webhooks.webhooks) AS webhooks,
       (SELECT count(*) FROM webhooks.deliveries) AS deliveries,
       (SELECT count(*) FROM webhooks.delivery_attempts) AS attempts,
       (SELECT count(*) FROM webhooks.events) AS events,
       (SELECT count(*) FROM webhooks.event_types) AS event_types;
SELECT count(*) AS changed_webhooks FROM (
    (SELECT w.id, w::text FROM webhooks.webhooks w EXCEPT ALL SELECT * FROM snap_webhooks)
    UNION ALL
    (SELECT * FROM snap_webhooks EXCEPT ALL SELECT w.id, w::text FROM webhooks.webhooks w)) x;
SELECT count(*) AS changed_health FROM (
    (SELECT * FROM webhooks.webhook_health EXCEPT ALL SELECT * FROM snap_health)
    UNION ALL
    (SELECT * FROM snap_health EXCEPT ALL SELECT * FROM webhooks.webhook_health)) x;
-- (the rows that differ: should be none)
SELECT url, events FROM webhooks.webhooks w
WHERE NOT EXISTS (SELECT 1 FROM snap_webhooks s WHERE s.id = w.id);
SELECT count(*) AS changed_deliveries FROM (
    (SELECT * FROM webhooks.deliveries EXCEPT ALL SELECT * FROM snap_deliveries)
    UNION ALL
    (SELECT * FROM snap_deliveries EXCEPT ALL SELECT * FROM webhooks.deliveries)) x;
SELECT count(*) AS changed_attempts FROM (
    (SELECT * FROM webhooks.delivery_attempts EXCEPT ALL SELECT * FROM snap_attempts)
    UNION ALL
    (SELECT * FROM snap_attempts EXCEPT ALL SELECT * FROM webhooks.delivery_attempts)) x;
SELECT count(*) AS changed_events FROM (
    (SELECT * FROM webhooks.events EXCEPT ALL SELECT * FROM snap_events)
    UNION ALL
    (SELECT * FROM snap_events EXCEPT ALL SELECT * FROM webhooks.events)) x;
SELECT count(*) AS changed_event_types FROM (
    (SELECT * FROM webhooks.event_types EXCEPT ALL SELECT * FROM snap_event_types)
    UNION ALL
    (SELECT * FROM snap_event_types EXCEPT ALL SELECT * FROM webhooks.event_types)) x;

--
-- What is accepted at the edges
--
-- exactly 2048 bytes
SELECT length(url) AS chars, octet_length(url) AS bytes
FROM webhooks.webhook_create('c1', 'https://example.com/' || repeat('a', 2028),
                             '{member.joined}');
SELECT length(url) AS chars, octet_length(url) AS bytes
FROM webhooks.webhook_create('c1', 'https://example.com/' || repeat('é', 1014),
                             '{member.joined}');
-- the scheme in capitals, a port, a query, a fragment, an IP address
SELECT url FROM webhooks.webhook_create('c1', 'HTTPS://Example.COM/Path',
                                        '{member.joined}');
SELECT url FROM webhooks.webhook_create('c1', 'https://example.com:8443/p?a=1&b=%20#f',
                                        '{member.joined}');
SELECT url FROM webhooks.webhook_create('c1', 'https://[2001:db8::1]/hook',
                                        '{member.joined}');
-- http, once a superuser turns allow_http on
SET webhooks.allow_http = on;
SELECT url FROM webhooks.webhook_create('c1', 'http://example.com/dev',
                                        '{member.joined}');
RESET webhooks.allow_http;
-- ...and off again, http is refused for new urls
SELECT sqlstate_of($$SELECT webhooks.webhook_create('c1', 'http://example.com/dev2', '{member.joined}')$$);
-- a community id of exactly 1024 bytes
SELECT octet_length(community_id) FROM webhooks.webhook_create(repeat('é', 512),
    'https://example.com/long', '{member.joined}');
SELECT count(*) FROM webhooks.webhook_list(repeat('é', 512));
-- 1000 names, duplicates dropped, first of each kept in order
SELECT events FROM webhooks.webhook_create('c1', 'https://example.com/dups',
    array_fill('member.left'::text, ARRAY[500])
    || array_fill('member.joined'::text, ARRAY[499]) || '{member.left}'::text[]);
-- an event type an operator added
INSERT INTO webhooks.event_types VALUES ('invoice.paid', 'An invoice was paid');
SELECT events FROM webhooks.webhook_create('c1', 'https://example.com/inv',
                                           '{invoice.paid}');
SELECT count(*) FROM webhooks.webhook_list('c1');

-- Clean up for the next files.
DELETE FROM webhooks.deliveries;
DELETE FROM webhooks.webhooks;
DELETE FROM webhooks.event_types WHERE name = 'invoice.paid';
