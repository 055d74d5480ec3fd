/*-------------------------------------------------------------------------
 *
 * queue.c
 *		The SQL the delivery worker runs against the queue and the log.
 *
 * Work is done in batches: one statement claims up to a batch of due
 * deliveries, one records a whole batch of attempts (log rows, deleted
 * deliveries, rescheduled retries).  Plans are prepared once per process.
 * Rows are locked in id order here and in webhook_delete, so the worker
 * and an application changing its webhooks never wait on each other in a
 * cycle.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/uuid.h"
#include "utils/xid8.h"

#include "queue.h"
#include "webhooks.h"

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr lock_plan = NULL;
static SPIPlanPtr record_plan = NULL;

/*
 * The webhooks that have pending deliveries, found by skipping through the
 * partial index on (webhook_id, next_attempt_at, id): one index descent per
 * such webhook, however many deliveries each has, and none for webhooks
 * with nothing queued.  Each comes with its community and its free slots:
 * no more than its own ($3 = max_requests_per_endpoint minus what the
 * worker holds for it, $2/$4) nor its community's ($7 = the share one
 * community may hold, minus what the worker holds for it, $5/$6).
 */
#define PENDING_WEBHOOKS \
"WITH RECURSIVE hooks(webhook_id, community_id) AS (" \
"  (SELECT webhook_id, community_id FROM webhooks.deliveries" \
"   WHERE state = 'pending' ORDER BY webhook_id LIMIT 1)" \
"  UNION ALL" \
"  SELECT n.webhook_id, n.community_id FROM hooks h CROSS JOIN LATERAL (" \
"    SELECT d.webhook_id, d.community_id FROM webhooks.deliveries d" \
"    WHERE d.state = 'pending' AND d.webhook_id > h.webhook_id" \
"    ORDER BY d.webhook_id LIMIT 1) n" \
"), busy AS (" \
"  SELECT * FROM unnest($2::uuid[], $4::int4[]) AS b(webhook_id, used)" \
"), cbusy AS (" \
"  SELECT * FROM unnest($5::text[], $6::int4[]) AS c(community_id, used)" \
"), free AS (" \
"  SELECT h.webhook_id, h.community_id," \
"         $3 - coalesce(b.used, 0) AS slots," \
"         $7 - coalesce(c.used, 0) AS cslots" \
"  FROM hooks h" \
"  LEFT JOIN busy b ON b.webhook_id = h.webhook_id" \
"  LEFT JOIN cbusy c ON c.community_id = h.community_id" \
"  WHERE $3 - coalesce(b.used, 0) > 0 AND $7 - coalesce(c.used, 0) > 0" \
")"

/*
 * Due deliveries are taken per webhook, oldest due first, no more per
 * webhook than it has free request slots, no more per community than its
 * share (fair), and no more payload bytes than $8 allows (budget; always
 * one).  So a claim never takes rows a busy webhook could not send now, a
 * webhook with a huge backlog cannot hide anyone else's rows, one
 * community's hanging endpoints leave a share for the others, and a claim
 * costs one index descent per webhook with pending rows plus the rows it
 * takes.  The rows are locked and marked by primary key, from arrays, and
 * their state is checked on the locked row, never in a WHERE clause that
 * the partial due index could serve: plans are made once, often while the
 * queue is nearly empty, and a join planned then walked the whole backlog
 * through that index on every claim (bench: 85,716 rows for 58).  The
 * payload is looked up per claimed row (one probe of the events' index in
 * the event's day), and the url, secrets and headers are joined only to
 * the rows claimed; the payload is NULL once the event is no longer kept.
 */
static const char *claim_sql =
PENDING_WEBHOOKS
", due AS ("
"  SELECT p.id, p.next_attempt_at, p.payload_bytes, f.community_id, f.cslots"
"  FROM free f"
"  CROSS JOIN LATERAL ("
"    SELECT d.id, d.next_attempt_at, d.payload_bytes"
"    FROM webhooks.deliveries d"
"    WHERE d.webhook_id = f.webhook_id AND d.state = 'pending'"
"      AND d.next_attempt_at <= now()"
"    ORDER BY d.next_attempt_at, d.id"
"    LIMIT LEAST($1, f.slots, f.cslots)) p"
"), fair AS ("
"  SELECT r.id, r.next_attempt_at, r.payload_bytes FROM ("
"    SELECT due.*, row_number() OVER (PARTITION BY due.community_id"
"                                     ORDER BY due.next_attempt_at, due.id) AS rn"
"    FROM due) r"
"  WHERE r.rn <= r.cslots"
"  ORDER BY r.next_attempt_at, r.id"
"  LIMIT $1"
"), budget AS ("
"  SELECT b.id FROM ("
"    SELECT f.id, row_number() OVER w AS n,"
"           sum(f.payload_bytes) OVER w AS upto"
"    FROM fair f"
"    WINDOW w AS (ORDER BY f.next_attempt_at, f.id)) b"
"  WHERE b.n = 1 OR b.upto <= $8"
"), c AS ("
"  SELECT d.id, d.state FROM webhooks.deliveries d"
"  WHERE d.id = ANY (ARRAY(SELECT id FROM budget))"
"  FOR UPDATE SKIP LOCKED"
"), u AS ("
"  UPDATE webhooks.deliveries d SET state = 'sending'"
"  WHERE d.id = ANY (ARRAY(SELECT id FROM c WHERE c.state = 'pending'))"
"  RETURNING d.id, d.webhook_id, d.event_id, d.event, d.community_id,"
"    d.emitted_at, d.attempts, d.event_txid"
") "
"SELECT u.id, u.webhook_id, u.event_id, u.event, u.community_id,"
"       (SELECT e.payload::text FROM webhooks.events e"
"        WHERE e.txid = u.event_txid AND e.id = u.event_id"
"          AND e.created_at = u.emitted_at),"
"       u.emitted_at, u.attempts, w.url, w.secret,"
"       " WEBHOOKS_PREVIOUS_SECRET_SQL("w") ","
"       " WEBHOOKS_HEADER_LINES_SQL("w")
"  FROM u"
"  LEFT JOIN webhooks.webhooks w ON w.id = u.webhook_id AND w.is_active";

/* When the next delivery of a webhook with a free slot is due. */
static const char *next_due_sql =
PENDING_WEBHOOKS
"SELECT min(p.next_attempt_at) FROM free f"
"  CROSS JOIN LATERAL ("
"    SELECT d.next_attempt_at FROM webhooks.deliveries d"
"    WHERE d.webhook_id = f.webhook_id AND d.state = 'pending'"
"    ORDER BY d.next_attempt_at, d.id LIMIT 1) p";

static SPIPlanPtr next_due_plan = NULL;

/*
 * The deliveries whose attempts are recorded are locked first, in id order,
 * skipping any that an application's transaction holds (webhook_delete or
 * webhook_update not yet committed): the worker never waits for one.
 */
static const char *lock_sql =
"SELECT id FROM webhooks.deliveries WHERE id = ANY ($1)"
" ORDER BY id FOR UPDATE SKIP LOCKED";

/* Of those not locked, the ones that exist (someone else holds them). */
static const char *exists_sql =
"SELECT id FROM webhooks.deliveries WHERE id = ANY ($1)";

static SPIPlanPtr exists_plan = NULL;

static const char *release_sql =
"UPDATE webhooks.deliveries SET state = 'pending'"
" WHERE state = 'sending' AND NOT (id = ANY ($1))";

static SPIPlanPtr release_plan = NULL;

static const char *record_sql =
"WITH r AS ("
"  SELECT * FROM unnest($1::int8[], $2::uuid[], $3::uuid[], $4::text[],"
"                       $5::int4[], $6::int4[], $7::int4[], $8::text[],"
"                       $9::text[], $10::timestamptz[], $11::\"char\"[],"
"                       $12::timestamptz[])"
"    AS r(delivery_id, webhook_id, event_id, event, attempt, status_code,"
"         response_time_ms, error, response_body, created_at, outcome,"
"         next_attempt_at)"
"), logged AS ("
"  INSERT INTO webhooks.delivery_attempts (webhook_id, event_id, event,"
"         attempt, status_code, response_time_ms, error, response_body,"
"         created_at)"
"  SELECT r.webhook_id, r.event_id, r.event, r.attempt, r.status_code,"
"         r.response_time_ms, r.error, r.response_body, r.created_at"
"  FROM r"
"  WHERE r.outcome <> 's'"
"    AND EXISTS (SELECT 1 FROM webhooks.webhooks w WHERE w.id = r.webhook_id)"
"), delivered AS ("
"  DELETE FROM webhooks.deliveries d"
"  WHERE d.id = ANY (ARRAY(SELECT delivery_id FROM r WHERE outcome = 'd'))"
") "
"UPDATE webhooks.deliveries d SET"
"  state = CASE WHEN r.outcome = 's' THEN 'pending'"
"          WHEN r.outcome = 'r' AND EXISTS ("
"            SELECT 1 FROM webhooks.webhooks w"
"            WHERE w.id = d.webhook_id AND w.is_active)"
"          THEN 'pending' ELSE 'failed' END,"
"  attempts = CASE WHEN r.outcome = 's' THEN d.attempts ELSE r.attempt END,"
"  next_attempt_at = coalesce(r.next_attempt_at, d.next_attempt_at),"
"  last_attempt_at = CASE WHEN r.outcome = 's' THEN d.last_attempt_at"
"                    ELSE r.created_at END,"
"  last_status = CASE WHEN r.outcome = 's' THEN d.last_status"
"                ELSE r.status_code END,"
"  last_error = CASE WHEN r.outcome = 's' THEN d.last_error ELSE r.error END "
"FROM r WHERE d.id = r.delivery_id AND r.outcome IN ('r', 'f', 'g', 's')"
"  AND d.id = ANY (ARRAY(SELECT delivery_id FROM r"
"                        WHERE outcome IN ('r', 'f', 'g', 's')))";

/* qsort / bsearch order of int64s */
static int
compare_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/* Prepare a statement once for the life of the process. */
SPIPlanPtr
webhooks_prepare_once(SPIPlanPtr *plan, const char *sql, int nargs,
					  Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, argtypes);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	return *plan;
}

/* A one-dimensional array of n values of the given type (nulls optional). */
static Datum
make_array(Datum *elems, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  elemtype, typlen, typbyval,
											  typalign));
}

static Datum
uuid_array(pg_uuid_t *uuids, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = UUIDPGetDatum(&uuids[i]);
	return make_array(elems, NULL, n, UUIDOID);
}

/*
 * Deliveries marked 'sending' that this worker does not hold (held: an
 * int8[] of delivery ids) go back to 'pending', due as they were: in-flight
 * state must not outlive the process that owns it.  They were left by an
 * earlier worker that stopped before recording them, or came with a
 * restored dump; they are sent again with the same webhook-id, so
 * receivers can drop a duplicate.  A partial index finds them.  Returns
 * how many.
 */
int64
webhooks_queue_release_orphans(Datum held)
{
	Oid			types[1] = {INT8ARRAYOID};
	Datum		args[1] = {held};
	int			ret;

	ret = SPI_execute_plan(webhooks_prepare_once(&release_plan, release_sql, 1,
												 types),
						   args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not release deliveries: %s",
			 SPI_result_code_string(ret));
	return (int64) SPI_processed;
}

/* A one-dimensional int4 array. */
static Datum
int4_array(int32 *values, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = Int32GetDatum(values[i]);
	return make_array(elems, NULL, n, INT4OID);
}

/* The claim's parameters $2 to $7: what the worker holds (see queue.h). */
static void
held_args(HeldRequests *held, Datum *args)
{
	Datum	   *communities = palloc(sizeof(Datum) * Max(held->ncommunities, 1));

	for (int i = 0; i < held->ncommunities; i++)
		communities[i] = CStringGetTextDatum(held->communities[i]);
	args[1] = uuid_array(held->webhooks, held->nwebhooks);
	args[2] = Int32GetDatum(webhooks_max_per_endpoint);
	args[3] = int4_array(held->per_webhook, held->nwebhooks);
	args[4] = make_array(communities, NULL, held->ncommunities, TEXTOID);
	args[5] = int4_array(held->per_community, held->ncommunities);
	args[6] = Int32GetDatum(held->community_cap);
	args[7] = Int64GetDatum(held->byte_budget);
}

static Oid	claim_argtypes[8] = {INT4OID, UUIDARRAYOID, INT4OID, INT4ARRAYOID,
TEXTARRAYOID, INT4ARRAYOID, INT4OID, INT8OID};

/*
 * Claim up to limit due deliveries, no more per webhook, nor per
 * community, than it has free slots given what the worker holds, and no
 * more payload bytes than held->byte_budget (but at least one delivery).  The
 * rows are copied into cxt.  Returns how many were claimed.
 */
int
webhooks_queue_claim(int limit, HeldRequests *held, Delivery **deliveries,
					 MemoryContext cxt)
{
	Datum		args[8];
	SPIPlanPtr	plan = webhooks_prepare_once(&claim_plan, claim_sql, 8,
											 claim_argtypes);
	MemoryContext caller = cxt;
	Delivery   *result;
	int			ret;
	int			n;

	args[0] = Int32GetDatum(limit);
	held_args(held, args);
	ret = SPI_execute_plan(plan, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not claim deliveries: %s",
			 SPI_result_code_string(ret));

	n = (int) SPI_processed;
	result = MemoryContextAllocZero(caller, sizeof(Delivery) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Delivery   *d = &result[i];
		bool		isnull;
		MemoryContext old;

		d->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		d->webhook_id = *DatumGetUUIDP(SPI_getbinval(tup, desc, 2, &isnull));
		d->event_id = *DatumGetUUIDP(SPI_getbinval(tup, desc, 3, &isnull));
		d->emitted_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 7,
														  &isnull));
		d->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull));

		old = MemoryContextSwitchTo(caller);
		d->event = SPI_getvalue(tup, desc, 4);
		d->community_id = SPI_getvalue(tup, desc, 5);
		d->payload = SPI_getvalue(tup, desc, 6);
		d->url = SPI_getvalue(tup, desc, 9);
		d->secret = SPI_getvalue(tup, desc, 10);
		d->previous_secret = SPI_getvalue(tup, desc, 11);
		d->header_lines = SPI_getvalue(tup, desc, 12);
		MemoryContextSwitchTo(old);
	}
	*deliveries = result;
	return n;
}

/*
 * When the next pending delivery of a webhook with a free slot (its own
 * and its community's) is due.  Returns false if there is none; the busy
 * webhooks' own completions lead to the next claim.
 */
bool
webhooks_queue_next_due(HeldRequests *held, TimestampTz *due)
{
	Datum		args[8];
	bool		isnull;
	int			ret;

	args[0] = Int32GetDatum(1);
	held_args(held, args);
	ret = SPI_execute_plan(webhooks_prepare_once(&next_due_plan, next_due_sql, 8,
										claim_argtypes),
						   args, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not find the next due delivery: %s",
			 SPI_result_code_string(ret));
	*due = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1,
											 &isnull));
	return !isnull;
}

/* Run a statement over an int8 array; the ids it returns, sorted. */
static int64 *
ids_from(SPIPlanPtr *plan, const char *sql, Datum *ids, int n, int *nout)
{
	Oid			types[1] = {INT8ARRAYOID};
	Datum		args[1] = {make_array(ids, NULL, n, INT8OID)};
	int64	   *out;
	int			ret;

	ret = SPI_execute_plan(webhooks_prepare_once(plan, sql, 1, types), args, NULL,
						   false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not look up deliveries: %s",
			 SPI_result_code_string(ret));
	out = palloc(sizeof(int64) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		out[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
											 SPI_tuptable->tupdesc, 1, &isnull));
	}
	*nout = (int) SPI_processed;
	qsort(out, *nout, sizeof(int64), compare_int64);
	return out;
}

static bool
contains(int64 *sorted, int n, int64 id)
{
	return bsearch(&id, sorted, n, sizeof(int64), compare_int64) != NULL;
}

/*
 * Mark in deferred[] the attempts whose delivery an application's
 * transaction has locked: they are recorded later, when it is done.
 * Locks the others.  Returns how many were deferred.
 */
static int
lock_deliveries(AttemptRecord *records, int n, bool *deferred)
{
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *missed = palloc(sizeof(Datum) * n);
	int			nids = 0;
	int			nmissed = 0;
	int			nlocked;
	int			nheld;
	int64	   *locked;
	int64	   *held;
	int			ndeferred = 0;

	memset(deferred, 0, sizeof(bool) * n);
	for (int i = 0; i < n; i++)
		if (records[i].delivery_id != 0)
			ids[nids++] = Int64GetDatum(records[i].delivery_id);
	if (nids == 0)
		return 0;

	locked = ids_from(&lock_plan, lock_sql, ids, nids, &nlocked);
	for (int i = 0; i < nids; i++)
		if (!contains(locked, nlocked, DatumGetInt64(ids[i])))
			missed[nmissed++] = ids[i];
	if (nmissed == 0)
		return 0;

	/* not locked: gone (deleted with its webhook), or held by someone */
	held = ids_from(&exists_plan, exists_sql, missed, nmissed, &nheld);
	for (int i = 0; i < n; i++)
		if (records[i].delivery_id != 0 &&
			contains(held, nheld, records[i].delivery_id))
		{
			deferred[i] = true;
			ndeferred++;
		}
	return ndeferred;
}

/*
 * Deliveries read from the events that are not done get their queue row:
 * pending to be retried or to be sent from the queue (spilled: it waited
 * too long in memory for its endpoint, or its webhook changed), while the
 * webhook is active, else failed.  Nothing for a webhook deleted meanwhile.  The webhook is read,
 * never locked.
 */
static const char *queue_read_sql =
"INSERT INTO webhooks.deliveries (webhook_id, event_id, event, community_id,"
"       emitted_at, event_txid, payload_bytes, state, attempts,"
"       next_attempt_at, last_attempt_at, last_status, last_error)"
"SELECT r.webhook_id, r.event_id, r.event, r.community_id, r.emitted_at,"
"       r.event_txid, r.payload_bytes,"
"       CASE WHEN r.outcome IN ('s', 'r') AND w.is_active"
"         THEN 'pending' ELSE 'failed' END,"
"       r.attempts, coalesce(r.next_attempt_at, now()), r.last_attempt_at,"
"       r.last_status,"
"       CASE WHEN r.outcome = 's' AND NOT w.is_active"
"         THEN 'webhook deactivated' ELSE r.last_error END"
"  FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[],"
"              $5::timestamptz[], $6::xid8[], $7::int4[], $8::\"char\"[],"
"              $9::int4[], $10::timestamptz[], $11::timestamptz[],"
"              $12::int4[], $13::text[])"
"    AS r(webhook_id, event_id, event, community_id, emitted_at, event_txid,"
"         payload_bytes, outcome, attempts, next_attempt_at, last_attempt_at,"
"         last_status, last_error)"
"  JOIN webhooks.webhooks w ON w.id = r.webhook_id";

static SPIPlanPtr queue_read_plan = NULL;

static void
queue_read(AttemptRecord *records, int n)
{
	Oid			types[13] = {UUIDARRAYOID, UUIDARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, TIMESTAMPTZARRAYOID, get_array_type(XID8OID),
		INT4ARRAYOID, get_array_type(CHAROID), INT4ARRAYOID,
	TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID, TEXTARRAYOID};
	Datum		args[13];
	pg_uuid_t  *webhook_ids = palloc(sizeof(pg_uuid_t) * n);
	pg_uuid_t  *event_ids = palloc(sizeof(pg_uuid_t) * n);
	Datum	   *event = palloc(sizeof(Datum) * n);
	Datum	   *community = palloc(sizeof(Datum) * n);
	Datum	   *emitted = palloc(sizeof(Datum) * n);
	Datum	   *txid = palloc(sizeof(Datum) * n);
	Datum	   *bytes = palloc(sizeof(Datum) * n);
	Datum	   *outcome = palloc(sizeof(Datum) * n);
	Datum	   *attempts = palloc(sizeof(Datum) * n);
	Datum	   *next = palloc(sizeof(Datum) * n);
	bool	   *next_null = palloc(sizeof(bool) * n);
	Datum	   *last_at = palloc(sizeof(Datum) * n);
	bool	   *last_null = palloc(sizeof(bool) * n);
	Datum	   *status = palloc(sizeof(Datum) * n);
	bool	   *status_null = palloc(sizeof(bool) * n);
	Datum	   *error = palloc(sizeof(Datum) * n);
	bool	   *error_null = palloc(sizeof(bool) * n);
	int			m = 0;
	int			ret;

	for (int i = 0; i < n; i++)
	{
		AttemptRecord *r = &records[i];
		bool		spilled = (r->outcome == OUTCOME_SPILL);

		if (r->delivery_id != 0 || r->outcome == OUTCOME_TEST ||
			r->outcome == OUTCOME_DELIVERED)
			continue;
		webhook_ids[m] = r->webhook_id;
		event_ids[m] = r->event_id;
		event[m] = CStringGetTextDatum(r->event);
		community[m] = CStringGetTextDatum(r->community_id);
		emitted[m] = TimestampTzGetDatum(r->emitted_at);
		txid[m] = FullTransactionIdGetDatum(FullTransactionIdFromU64(r->event_txid));
		bytes[m] = Int32GetDatum(r->payload_bytes);
		outcome[m] = CharGetDatum((char) r->outcome);
		attempts[m] = Int32GetDatum(spilled ? 0 : r->attempt);
		next_null[m] = (r->outcome != OUTCOME_RETRY);
		next[m] = TimestampTzGetDatum(r->next_attempt_at);
		last_null[m] = spilled;
		last_at[m] = TimestampTzGetDatum(r->started_at);
		status_null[m] = spilled || r->status_code == 0;
		status[m] = Int32GetDatum(r->status_code);
		error_null[m] = spilled || r->error == NULL;
		error[m] = error_null[m] ? (Datum) 0 : CStringGetTextDatum(r->error);
		m++;
	}
	if (m == 0)
		return;
	args[0] = uuid_array(webhook_ids, m);
	args[1] = uuid_array(event_ids, m);
	args[2] = make_array(event, NULL, m, TEXTOID);
	args[3] = make_array(community, NULL, m, TEXTOID);
	args[4] = make_array(emitted, NULL, m, TIMESTAMPTZOID);
	args[5] = make_array(txid, NULL, m, XID8OID);
	args[6] = make_array(bytes, NULL, m, INT4OID);
	args[7] = make_array(outcome, NULL, m, CHAROID);
	args[8] = make_array(attempts, NULL, m, INT4OID);
	args[9] = make_array(next, next_null, m, TIMESTAMPTZOID);
	args[10] = make_array(last_at, last_null, m, TIMESTAMPTZOID);
	args[11] = make_array(status, status_null, m, INT4OID);
	args[12] = make_array(error, error_null, m, TEXTOID);
	ret = SPI_execute_plan(webhooks_prepare_once(&queue_read_plan,
												 queue_read_sql, 13, types),
						   args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not queue deliveries: %s",
			 SPI_result_code_string(ret));
}

/*
 * Record a batch of attempts: a log row each (unless the webhook is gone),
 * and for queued deliveries, delete the delivered ones and reschedule or
 * fail the rest; read ones that are not done get a queue row (spilled
 * ones: that row only).  An attempt whose delivery an application's transaction
 * has locked is left out and marked in deferred[] (n entries), for the
 * caller to record later.  Returns how many were deferred.
 */
int
webhooks_queue_record(AttemptRecord *records, int n, bool *deferred)
{
	Oid			argtypes[12] = {INT8ARRAYOID, UUIDARRAYOID, UUIDARRAYOID,
		TEXTARRAYOID, INT4ARRAYOID, INT4ARRAYOID, INT4ARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID,
	get_array_type(CHAROID), TIMESTAMPTZARRAYOID};
	Datum		args[12];
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *event = palloc(sizeof(Datum) * n);
	Datum	   *attempt = palloc(sizeof(Datum) * n);
	Datum	   *status = palloc(sizeof(Datum) * n);
	bool	   *status_null = palloc(sizeof(bool) * n);
	Datum	   *elapsed = palloc(sizeof(Datum) * n);
	Datum	   *error = palloc(sizeof(Datum) * n);
	bool	   *error_null = palloc(sizeof(bool) * n);
	Datum	   *body = palloc(sizeof(Datum) * n);
	bool	   *body_null = palloc(sizeof(bool) * n);
	Datum	   *started = palloc(sizeof(Datum) * n);
	Datum	   *outcome = palloc(sizeof(Datum) * n);
	Datum	   *next = palloc(sizeof(Datum) * n);
	bool	   *next_null = palloc(sizeof(bool) * n);
	pg_uuid_t  *webhook_ids = palloc(sizeof(pg_uuid_t) * n);
	pg_uuid_t  *event_ids = palloc(sizeof(pg_uuid_t) * n);
	int			ndeferred = lock_deliveries(records, n, deferred);
	int			m = 0;
	int			ret;

	for (int i = 0; i < n; i++)
	{
		AttemptRecord *r = &records[i];

		/* a read one spilled has no row yet: queue_read makes it */
		if (deferred[i] || (r->outcome == OUTCOME_SPILL && r->delivery_id == 0))
			continue;
		ids[m] = Int64GetDatum(r->delivery_id);
		webhook_ids[m] = r->webhook_id;
		event_ids[m] = r->event_id;
		event[m] = CStringGetTextDatum(r->event);
		attempt[m] = Int32GetDatum(r->attempt);
		status[m] = Int32GetDatum(r->status_code);
		status_null[m] = (r->status_code == 0);
		elapsed[m] = Int32GetDatum(r->response_time_ms);
		error_null[m] = (r->error == NULL);
		error[m] = error_null[m] ? (Datum) 0 : CStringGetTextDatum(r->error);
		body_null[m] = (r->response_body == NULL);
		body[m] = body_null[m] ? (Datum) 0 :
			CStringGetTextDatum(r->response_body);
		started[m] = TimestampTzGetDatum(r->started_at);
		outcome[m] = CharGetDatum((char) r->outcome);
		next_null[m] = (r->outcome != OUTCOME_RETRY);
		next[m] = TimestampTzGetDatum(r->next_attempt_at);
		m++;
	}
	queue_read(records, n);
	if (m == 0)
		return ndeferred;

	args[0] = make_array(ids, NULL, m, INT8OID);
	args[1] = uuid_array(webhook_ids, m);
	args[2] = uuid_array(event_ids, m);
	args[3] = make_array(event, NULL, m, TEXTOID);
	args[4] = make_array(attempt, NULL, m, INT4OID);
	args[5] = make_array(status, status_null, m, INT4OID);
	args[6] = make_array(elapsed, NULL, m, INT4OID);
	args[7] = make_array(error, error_null, m, TEXTOID);
	args[8] = make_array(body, body_null, m, TEXTOID);
	args[9] = make_array(started, NULL, m, TIMESTAMPTZOID);
	args[10] = make_array(outcome, NULL, m, CHAROID);
	args[11] = make_array(next, next_null, m, TIMESTAMPTZOID);

	ret = SPI_execute_plan(webhooks_prepare_once(&record_plan, record_sql, 12,
										argtypes),
						   args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not record attempts: %s",
			 SPI_result_code_string(ret));
	return ndeferred;
}

/*
 * Health per webhook (webhooks.webhook_health), from a batch of recorded
 * attempts: one upsert per webhook in the batch, of rows only the worker
 * writes.  failing_since is the first failure after the last success (a
 * failure from before the webhook was last activated does not count), and
 * gone_at the last 410 Gone; and the attempts of each hour, by response
 * time bucket (webhook_hourly, for webhook_stats).  Attempts that made no request (the webhook
 * or the event was gone already) are not the endpoint's doing and are
 * left out.
 */
static const char *health_sql =
"WITH r AS ("
"  SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::\"char\"[],"
"                       $4::int4[])"
"    AS r(webhook_id, created_at, outcome, ms)"
"), hourly AS ("
"  INSERT INTO webhooks.webhook_hourly AS t (webhook_id, hour, bucket,"
"         attempts, successes)"
"  SELECT r.webhook_id, date_trunc('hour', r.created_at),"
"         width_bucket(r.ms, webhooks.response_buckets()),"
"         count(*), count(*) FILTER (WHERE r.outcome = 'd')"
"  FROM r GROUP BY 1, 2, 3"
"  ON CONFLICT (webhook_id, hour, bucket) DO UPDATE SET"
"    attempts = t.attempts + excluded.attempts,"
"    successes = t.successes + excluded.successes"
"), agg AS ("
"  SELECT r.webhook_id,"
"    max(r.created_at) FILTER (WHERE r.outcome = 'd') AS last_ok,"
"    max(r.created_at) FILTER (WHERE r.outcome <> 'd') AS last_bad,"
"    max(r.created_at) FILTER (WHERE r.outcome = 'g') AS gone,"
"    count(*) FILTER (WHERE r.outcome = 'd') AS delivered,"
"    count(*) FILTER (WHERE r.outcome <> 'd') AS failed,"
"    count(*) FILTER (WHERE r.outcome = 'r') AS retries,"
"    count(*) FILTER (WHERE r.outcome IN ('f', 'g')) AS gave_up"
"  FROM r GROUP BY r.webhook_id"
"), batch AS ("
"  SELECT a.*, w.active_since,"
"    (SELECT min(r.created_at) FROM r"
"     WHERE r.webhook_id = a.webhook_id AND r.outcome <> 'd'"
"       AND r.created_at > coalesce(a.last_ok, '-infinity')) AS first_bad"
"  FROM agg a JOIN webhooks.webhooks w ON w.id = a.webhook_id"
") "
"INSERT INTO webhooks.webhook_health AS h (webhook_id, last_success_at,"
"       last_failure_at, failing_since, gone_at, delivered, failed_attempts,"
"       retries, gave_up)"
"SELECT b.webhook_id, b.last_ok, b.last_bad, b.first_bad, b.gone, b.delivered,"
"       b.failed, b.retries, b.gave_up"
" FROM batch b WHERE true "	/* else ON would start a join clause */
"ON CONFLICT (webhook_id) DO UPDATE SET"
"  last_success_at = greatest(h.last_success_at, excluded.last_success_at),"
"  last_failure_at = greatest(h.last_failure_at, excluded.last_failure_at),"
"  failing_since = CASE"
"    WHEN excluded.last_success_at IS NOT NULL THEN excluded.failing_since"
"    WHEN h.failing_since IS NULL OR h.failing_since < (SELECT b.active_since"
"         FROM batch b WHERE b.webhook_id = h.webhook_id)"
"      THEN excluded.failing_since"
"    ELSE h.failing_since END,"
"  gone_at = greatest(h.gone_at, excluded.gone_at),"
"  delivered = h.delivered + excluded.delivered,"
"  failed_attempts = h.failed_attempts + excluded.failed_attempts,"
"  retries = h.retries + excluded.retries,"
"  gave_up = h.gave_up + excluded.gave_up";

static SPIPlanPtr health_plan = NULL;

/* Record the health of the webhooks of a batch (see health_sql). */
void
webhooks_queue_health(AttemptRecord *records, int n, bool *deferred)
{
	Oid			types[4] = {UUIDARRAYOID, TIMESTAMPTZARRAYOID,
	get_array_type(CHAROID), INT4ARRAYOID};
	Datum		args[4];
	pg_uuid_t  *ids = palloc(sizeof(pg_uuid_t) * Max(n, 1));
	Datum	   *started = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *outcome = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *elapsed = palloc(sizeof(Datum) * Max(n, 1));
	int			m = 0;
	int			ret;

	for (int i = 0; i < n; i++)
	{
		if (deferred[i] || records[i].outcome == OUTCOME_TEST ||
			records[i].no_request)
			continue;
		ids[m] = records[i].webhook_id;
		started[m] = TimestampTzGetDatum(records[i].started_at);
		outcome[m] = CharGetDatum((char) records[i].outcome);
		elapsed[m] = Int32GetDatum(records[i].response_time_ms);
		m++;
	}
	if (m == 0)
		return;
	args[0] = uuid_array(ids, m);
	args[1] = make_array(started, NULL, m, TIMESTAMPTZOID);
	args[2] = make_array(outcome, NULL, m, CHAROID);
	args[3] = make_array(elapsed, NULL, m, INT4OID);
	ret = SPI_execute_plan(webhooks_prepare_once(&health_plan, health_sql, 4,
												 types),
						   args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not record webhook health: %s",
			 SPI_result_code_string(ret));
}

/*
 * Switch off, the worker's way, the active webhooks (of ids, or all when
 * ids is NULL) whose health says so: a 410 Gone since their last
 * activation, or failures spanning webhooks.disable_after ($2 seconds;
 * $3 its text) since then, with no success between.  Each becomes
 * inactive with its reason and time, its pending deliveries fail, its
 * health row counts it, and a webhook.disabled event is emitted in its
 * community (delivered to its other subscribed webhooks).  A webhook an
 * application's transaction holds is skipped, never waited for: its
 * health row still says so, and a later call (after the next batch, or
 * the worker's 10 s timer, or after a restart) switches it off.  A person
 * who activates it meanwhile moves active_since past the evidence, and it
 * stays on.  Returns how many were switched off.
 */
static const char *disable_sql =
"WITH c AS ("
"  SELECT w.id, CASE WHEN h.gone_at >= w.active_since"
"    THEN 'the endpoint answered 410 Gone'"
"    ELSE 'every attempt failed for ' || $3 || ' (webhooks.disable_after)'"
"    END AS reason"
"  FROM webhooks.webhook_health h"
"  JOIN webhooks.webhooks w ON w.id = h.webhook_id AND w.is_active"
"  WHERE ($1::uuid[] IS NULL OR h.webhook_id = ANY ($1))"
"    AND (h.gone_at >= w.active_since"
"         OR ($2 > 0 AND h.failing_since >= w.active_since"
"             AND h.last_failure_at - h.failing_since"
"                 >= $2 * interval '1 second'))"
"), l AS ("
"  SELECT w.id FROM webhooks.webhooks w"
"  WHERE w.id IN (SELECT id FROM c) AND w.is_active"
"  ORDER BY w.id FOR UPDATE SKIP LOCKED"
"), off AS ("
"  UPDATE webhooks.webhooks w SET is_active = false, disabled_reason = c.reason,"
"         disabled_at = now(), updated_at = now()"
"  FROM l JOIN c ON c.id = l.id WHERE w.id = l.id"
"  RETURNING w.id, w.community_id, w.url, c.reason"
"), counted AS ("
"  UPDATE webhooks.webhook_health h SET disabled = h.disabled + 1"
"  FROM off WHERE h.webhook_id = off.id"
"), failed AS ("
"  UPDATE webhooks.deliveries d"
"  SET state = 'failed', last_error = 'webhook disabled: ' || off.reason"
"  FROM off WHERE d.webhook_id = off.id AND d.id = ANY (ARRAY("
"    SELECT p.id FROM webhooks.deliveries p"
"    WHERE p.webhook_id IN (SELECT id FROM off) AND p.state = 'pending'"
"    ORDER BY p.id FOR UPDATE SKIP LOCKED))"
") "
"SELECT off.id, off.community_id,"
"       jsonb_build_object('webhook_id', off.id, 'url', off.url,"
"                          'reason', off.reason)"
"FROM off";

static SPIPlanPtr disable_plan = NULL;

int
webhooks_queue_disable_due(pg_uuid_t *ids, int n, int disable_after_s,
						   const char *disable_after)
{
	Oid			types[3] = {UUIDARRAYOID, INT4OID, TEXTOID};
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};
	SPITupleTable *off;
	uint64		noff;
	int			ret;

	if (ids != NULL && n == 0)
		return 0;
	args[0] = ids ? uuid_array(ids, n) : (Datum) 0;
	nulls[0] = ids ? ' ' : 'n';
	args[1] = Int32GetDatum(disable_after_s);
	args[2] = CStringGetTextDatum(disable_after);
	ret = SPI_execute_plan(webhooks_prepare_once(&disable_plan, disable_sql, 3,
												 types),
						   args, nulls, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not disable webhooks: %s",
			 SPI_result_code_string(ret));
	off = SPI_tuptable;
	noff = SPI_processed;	/* the trigger on webhooks marks the change */

	for (uint64 i = 0; i < noff; i++)
	{
		bool		isnull;
		pg_uuid_t  *id = DatumGetUUIDP(SPI_getbinval(off->vals[i], off->tupdesc,
													 1, &isnull));
		char	   *community_id = SPI_getvalue(off->vals[i], off->tupdesc, 2);
		Datum		payload = SPI_getbinval(off->vals[i], off->tupdesc, 3,
											&isnull);
		pg_uuid_t	event_id;

		ereport(LOG,
				(errmsg("webhooks: webhook %s of community \"%s\" was disabled",
						webhooks_uuid_to_cstring(id), community_id)));
		if (!webhooks_append_event(&event_id, community_id,
								   WEBHOOKS_DISABLED_EVENT, payload))
			ereport(WARNING,
					(errmsg("webhooks: event type \"%s\" is missing; no event announces the disabled webhook",
							WEBHOOKS_DISABLED_EVENT)));
	}
	return (int) noff;
}

/*
 * Of these webhooks, the ones deleted or switched off since: fills
 * gone[] (room for n) and returns how many.
 */
static SPIPlanPtr inactive_plan = NULL;

int
webhooks_queue_inactive(pg_uuid_t *ids, int n, pg_uuid_t *gone)
{
	Oid			types[1] = {UUIDARRAYOID};
	Datum		args[1];
	int			ret;

	if (n == 0)
		return 0;
	args[0] = uuid_array(ids, n);
	ret = SPI_execute_plan(webhooks_prepare_once(&inactive_plan,
												 "SELECT i.id FROM pg_catalog.unnest($1) i(id)"
												 " WHERE NOT EXISTS (SELECT 1 FROM webhooks.webhooks w"
												 " WHERE w.id = i.id AND w.is_active)",
												 1, types),
						   args, NULL, true, n);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not look up webhooks: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		gone[i] = *DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i],
											   SPI_tuptable->tupdesc, 1,
											   &isnull));
	}
	return (int) SPI_processed;
}

/*
 * Health rows of webhooks deleted since (no foreign key removes them), and
 * hourly figures older than webhook_stats reads.
 */
void
webhooks_queue_forget_deleted(void)
{
	int			ret = SPI_execute("DELETE FROM webhooks.webhook_health h"
								  " WHERE NOT EXISTS (SELECT 1 FROM webhooks.webhooks w"
								  " WHERE w.id = h.webhook_id)", false, 0);

	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not forget deleted webhooks: %s",
			 SPI_result_code_string(ret));
	ret = SPI_execute("DELETE FROM webhooks.webhook_hourly h"
					  " WHERE h.hour < now() - interval '2 days'"
					  " OR NOT EXISTS (SELECT 1 FROM webhooks.webhooks w"
					  " WHERE w.id = h.webhook_id)", false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not forget old hourly figures: %s",
			 SPI_result_code_string(ret));
}
