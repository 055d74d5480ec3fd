--
-- logs: webhook_logs pages through a webhook's delivery attempts, newest
-- first, with an index scan
--
\set base '''2024-01-01 00:00:00+00''::timestamptz'

SELECT id AS l FROM webhooks.webhook_create('c1', 'https://example.com/l',
                                            ARRAY['member.joined']) \gset
SELECT id AS m FROM webhooks.webhook_create('c1', 'https://example.com/m',
                                            ARRAY['member.joined']) \gset
SELECT id AS n FROM webhooks.webhook_create('c2', 'https://example.com/n',
                                            ARRAY['member.joined']) \gset

-- The columns: those of the spec, then more detail.
SELECT * FROM webhooks.webhook_logs('c1', :'l') LIMIT 0;

-- No attempts yet: no rows.
SELECT count(*) FROM webhooks.webhook_logs('c1', :'l');

-- 120 attempts of l, one a second; 30 of m and 30 of n in between.
INSERT INTO webhooks.delivery_attempts
    (webhook_id, event_id, event, attempt, status_code, response_time_ms,
     error, created_at)
SELECT :'l', gen_random_uuid(), 'l.' || i, 1 + i % 3,
       CASE WHEN i % 10 = 0 THEN NULL WHEN i % 4 = 0 THEN 500 ELSE 200 END,
       i, CASE WHEN i % 10 = 0 THEN 'timeout' END,
       :base + i * interval '1 second'
FROM generate_series(1, 120) i;
INSERT INTO webhooks.delivery_attempts
    (webhook_id, event_id, event, attempt, status_code, response_time_ms,
     created_at)
SELECT w, gen_random_uuid(), 'other.' || i, 1, 200, i,
       :base + i * interval '4 seconds' + interval '500 ms'
FROM generate_series(1, 30) i, (VALUES (:'m'::uuid), (:'n'::uuid)) AS v(w);

-- Page 1, 20 a page by default: the newest 20 of l.
SELECT event, status_code, response_time_ms, attempt, error,
       extract(epoch FROM created_at - :base) AS second
FROM webhooks.webhook_logs('c1', :'l');
-- The defaults are page 1 and 20 a page.
SELECT count(*) FROM webhooks.webhook_logs('c1', :'l');
SELECT count(*) FROM webhooks.webhook_logs('c1', :'l', 2);
SELECT string_agg(event, ' ') FROM webhooks.webhook_logs('c1', :'l', 2);
SELECT string_agg(event, ' ')
FROM webhooks.webhook_logs('c1', :'l', page => 2, per_page => 20);
-- Page 3 of 50 a page: the oldest 20, a partial page.
SELECT count(*), min(event), max(event),
       string_agg(event, ' ') AS events
FROM webhooks.webhook_logs('c1', :'l', page => 3, per_page => 50);
-- Beyond the end: empty pages.
SELECT count(*) FROM webhooks.webhook_logs('c1', :'l', page => 4, per_page => 50);
SELECT count(*) FROM webhooks.webhook_logs('c1', :'l', page => 7);
SELECT count(*) FROM webhooks.webhook_logs('c1', :'l', page => 1000000, per_page => 50);
-- One a page.
SELECT event FROM webhooks.webhook_logs('c1', :'l', page => 1, per_page => 1);
SELECT event FROM webhooks.webhook_logs('c1', :'l', page => 120, per_page => 1);
SELECT count(*) FROM webhooks.webhook_logs('c1', :'l', page => 121, per_page => 1);

-- All six pages of 20 together are every attempt of l, newest first, once.
SELECT count(*) AS rows, count(DISTINCT a.id) AS distinct_ids,
       bool_and(a.event ~ '^l\.') AS only_l,
       array_agg(a.response_time_ms ORDER BY p, a.ordinality)
       = (SELECT array_agg(i ORDER BY i DESC) FROM generate_series(1, 120) i)
       AS newest_first
FROM generate_series(1, 6) p,
     LATERAL webhooks.webhook_logs('c1', :'l', p) WITH ORDINALITY AS a;
-- The rows are the stored attempts.
SELECT count(*) AS mismatches
FROM webhooks.webhook_logs('c1', :'l', 1, 50) g
JOIN webhooks.delivery_attempts a USING (id)
WHERE (g.event, g.status_code, g.response_time_ms, g.created_at, g.event_id,
       g.attempt, g.error)
      IS DISTINCT FROM
      (a.event, a.status_code, a.response_time_ms, a.created_at, a.event_id,
       a.attempt, a.error)
   OR a.webhook_id <> :'l';

-- The other webhooks see only their own attempts.
SELECT count(*), bool_and(event ~ '^other\.') AS only_other,
       max(response_time_ms), min(response_time_ms)
FROM webhooks.webhook_logs('c1', :'m', 1, 50);
SELECT count(*), bool_and(event ~ '^other\.') AS only_other
FROM webhooks.webhook_logs('c2', :'n', 1, 50);
-- Another community's webhook is not found.
SELECT sqlstate_of(format('SELECT webhooks.webhook_logs(%L, %L)', 'c2', :'l'));
SELECT sqlstate_of(format('SELECT webhooks.webhook_logs(%L, %L)', 'c1', :'n'));

-- Attempts at the same instant come newest id first.
INSERT INTO webhooks.delivery_attempts
    (id, webhook_id, event_id, event, attempt, created_at)
VALUES ('00000000-0000-7000-8000-000000000001', :'l', gen_random_uuid(),
        'tie.1', 1, :base + interval '1 hour'),
       ('00000000-0000-7000-8000-000000000002', :'l', gen_random_uuid(),
        'tie.2', 1, :base + interval '1 hour');
SELECT event FROM webhooks.webhook_logs('c1', :'l', 1, 3);

--
-- The query of webhook_logs is an index scan, read backwards, however big
-- the table.
--
INSERT INTO webhooks.delivery_attempts
    (webhook_id, event_id, event, attempt, status_code, created_at)
SELECT ('00000000-0000-4000-8000-' || lpad((i % 50)::text, 12, '0'))::uuid,
       gen_random_uuid(), 'member.joined', 1, 200,
       :base + i * interval '1 second'
FROM generate_series(1, 20000) i;
ANALYZE webhooks.delivery_attempts;
-- (the query in src/api.c, with its parameters as literals)
EXPLAIN (COSTS OFF)
SELECT id, event, status_code, response_time_ms, created_at, event_id, attempt, error
FROM webhooks.delivery_attempts
WHERE webhook_id OPERATOR(pg_catalog.=) '00000000-0000-4000-8000-000000000007'::uuid
ORDER BY created_at DESC, id DESC LIMIT 20 OFFSET 0;
EXPLAIN (COSTS OFF)
SELECT id, event, status_code, response_time_ms, created_at, event_id, attempt, error
FROM webhooks.delivery_attempts
WHERE webhook_id OPERATOR(pg_catalog.=) '00000000-0000-4000-8000-000000000007'::uuid
ORDER BY created_at DESC, id DESC LIMIT 50 OFFSET 0;
-- The same as a generic plan, with parameters as SPI passes them.
PREPARE logs_query(uuid, int, bigint) AS
SELECT id, event, status_code, response_time_ms, created_at, event_id, attempt, error
FROM webhooks.delivery_attempts
WHERE webhook_id OPERATOR(pg_catalog.=) $1
ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF)
EXECUTE logs_query('00000000-0000-4000-8000-000000000007', 20, 0);
DEALLOCATE logs_query;
-- Later pages: the rows skipped come from the index alone, the page's rows
-- from the table (the second query in src/api.c), as a generic plan too.
PREPARE logs_later(uuid, int, bigint) AS
SELECT a.id, a.event, a.status_code, a.response_time_ms,
       a.created_at, a.event_id, a.attempt, a.error
FROM (SELECT k.created_at, k.id
      FROM webhooks.delivery_attempts k
      WHERE k.webhook_id OPERATOR(pg_catalog.=) $1
      ORDER BY k.created_at DESC, k.id DESC LIMIT $2 OFFSET $3) k
CROSS JOIN LATERAL (
  SELECT * FROM webhooks.delivery_attempts a
  WHERE a.webhook_id OPERATOR(pg_catalog.=) $1
    AND a.created_at OPERATOR(pg_catalog.=) k.created_at
    AND a.id OPERATOR(pg_catalog.=) k.id LIMIT 1) a
ORDER BY k.created_at DESC, k.id DESC;
EXPLAIN (COSTS OFF)
EXECUTE logs_later('00000000-0000-4000-8000-000000000007', 50, 300);
RESET plan_cache_mode;
DEALLOCATE logs_later;
-- And the function still returns l's rows only.
SELECT count(*), bool_and(event ~ '^(l|tie)\.') AS only_l
FROM webhooks.webhook_logs('c1', :'l', 3, 50);

-- Clean up for the next files.
SELECT webhooks.webhook_delete('c1', :'l');
SELECT webhooks.webhook_delete('c1', :'m');
SELECT webhooks.webhook_delete('c2', :'n');
-- A deleted webhook's log is not found.
SELECT sqlstate_of(format('SELECT webhooks.webhook_logs(%L, %L)', 'c1', :'l'));
TRUNCATE webhooks.delivery_attempts;
