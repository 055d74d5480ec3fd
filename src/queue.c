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

#include "queue.h"
#include "webhooks.h"

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr lock_plan = NULL;
static SPIPlanPtr record_plan = NULL;

/*
 * The webhooks that have pending deliveries, found by skipping through the
 * partial index on (webhook_id, next_attempt_at, id): one index descent per
 * such webhook, however many deliveries each has, and none for webhooks
 * with nothing queued.
 */
#define PENDING_WEBHOOKS \
"WITH RECURSIVE hooks(webhook_id) AS (" \
"  (SELECT webhook_id FROM webhooks.deliveries" \
"   WHERE state = 'pending' ORDER BY webhook_id LIMIT 1)" \
"  UNION ALL" \
"  SELECT (SELECT d.webhook_id FROM webhooks.deliveries d" \
"          WHERE d.state = 'pending' AND d.webhook_id > h.webhook_id" \
"          ORDER BY d.webhook_id LIMIT 1)" \
"  FROM hooks h WHERE h.webhook_id IS NOT NULL" \
"), busy AS (" \
"  SELECT * FROM unnest($2::uuid[], $4::int4[]) AS b(webhook_id, used)" \
"), free AS (" \
"  SELECT h.webhook_id, $3 - coalesce(b.used, 0) AS slots" \
"  FROM hooks h LEFT JOIN busy b ON b.webhook_id = h.webhook_id" \
"  WHERE h.webhook_id IS NOT NULL AND $3 - coalesce(b.used, 0) > 0" \
")"

/*
 * Due deliveries are taken per webhook, oldest due first, and no more per
 * webhook than it has free request slots ($3 = max_requests_per_endpoint
 * minus what the worker holds for it: $2/$4 list the webhooks it holds
 * requests for, with how many).  So a claim never takes rows a busy webhook
 * could not send now, a webhook with a huge backlog cannot hide anyone
 * else's rows, and a claim costs one index descent per webhook with
 * pending rows plus the rows it takes.  The url and secret are joined only
 * to the rows claimed.
 */
static const char *claim_sql =
PENDING_WEBHOOKS
", due AS ("
"  SELECT p.id, p.next_attempt_at"
"  FROM free f"
"  CROSS JOIN LATERAL ("
"    SELECT d.id, d.next_attempt_at FROM webhooks.deliveries d"
"    WHERE d.webhook_id = f.webhook_id AND d.state = 'pending'"
"      AND d.next_attempt_at <= now()"
"    ORDER BY d.next_attempt_at, d.id"
"    LIMIT LEAST($1, f.slots)) p"
"  ORDER BY p.next_attempt_at, p.id"
"  LIMIT $1"
"), c AS ("
"  SELECT d.id FROM webhooks.deliveries d"
"  WHERE d.id IN (SELECT id FROM due) AND d.state = 'pending'"
"  FOR UPDATE SKIP LOCKED"
"), u AS ("
"  UPDATE webhooks.deliveries d SET state = 'sending'"
"  FROM c WHERE d.id = c.id"
"  RETURNING d.id, d.webhook_id, d.event_id, d.event, d.community_id,"
"    d.emitted_at, d.attempts, d.event_txid"
") "
"SELECT u.id, u.webhook_id, u.event_id, u.event, u.community_id,"
"       (SELECT e.payload::text FROM webhooks.events e"
"        WHERE e.txid = u.event_txid AND e.id = u.event_id"
"          AND e.created_at = u.emitted_at),"
"       u.emitted_at, u.attempts, w.url, w.secret"
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

static const char *lock_sql =
"SELECT 1 FROM webhooks.deliveries WHERE id = ANY ($1) ORDER BY id FOR UPDATE";

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
"  WHERE EXISTS (SELECT 1 FROM webhooks.webhooks w WHERE w.id = r.webhook_id)"
"), delivered AS ("
"  DELETE FROM webhooks.deliveries d USING r"
"  WHERE d.id = r.delivery_id AND r.outcome = 'd'"
") "
"UPDATE webhooks.deliveries d SET"
"  state = CASE WHEN r.outcome = 'r' AND EXISTS ("
"            SELECT 1 FROM webhooks.webhooks w"
"            WHERE w.id = d.webhook_id AND w.is_active)"
"          THEN 'pending' ELSE 'failed' END,"
"  attempts = r.attempt,"
"  next_attempt_at = coalesce(r.next_attempt_at, d.next_attempt_at),"
"  last_attempt_at = r.created_at,"
"  last_status = r.status_code,"
"  last_error = r.error "
"FROM r WHERE d.id = r.delivery_id AND r.outcome IN ('r', 'f')";

/* Prepare a statement once for the life of the process. */
static SPIPlanPtr
prepare_once(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
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
 * After a restart, deliveries left 'sending' by the previous worker were
 * never recorded: they go back to 'pending' and are sent again (with the
 * same webhook-id, so receivers can drop the duplicate).
 */
int64
webhooks_queue_reset_sending(void)
{
	int			ret = SPI_execute("UPDATE webhooks.deliveries SET state = 'pending' "
								  "WHERE state = 'sending'", false, 0);

	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not reset deliveries: %s",
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

/*
 * Claim up to limit due deliveries, no more per webhook than its free
 * slots: busy[i] has used[i] of webhooks_max_per_endpoint taken.  The
 * rows are copied into cxt.  Returns how many were claimed.
 */
int
webhooks_queue_claim(int limit, pg_uuid_t *busy, int32 *used, int nbusy,
					 Delivery **deliveries, MemoryContext cxt)
{
	Oid			argtypes[4] = {INT4OID, UUIDARRAYOID, INT4OID, INT4ARRAYOID};
	Datum		args[4];
	SPIPlanPtr	plan = prepare_once(&claim_plan, claim_sql, 4, argtypes);
	MemoryContext caller = cxt;
	Delivery   *result;
	int			ret;
	int			n;

	args[0] = Int32GetDatum(limit);
	args[1] = uuid_array(busy, nbusy);
	args[2] = Int32GetDatum(webhooks_max_per_endpoint);
	args[3] = int4_array(used, nbusy);
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
		MemoryContextSwitchTo(old);
	}
	*deliveries = result;
	return n;
}

/*
 * When the next pending delivery of a webhook with a free slot is due.
 * Returns false if there is none; the busy webhooks' own completions lead
 * to the next claim.
 */
bool
webhooks_queue_next_due(pg_uuid_t *busy, int32 *used, int nbusy,
						TimestampTz *due)
{
	Oid			argtypes[4] = {INT4OID, UUIDARRAYOID, INT4OID, INT4ARRAYOID};
	Datum		args[4];
	bool		isnull;
	int			ret;

	args[0] = Int32GetDatum(1);
	args[1] = uuid_array(busy, nbusy);
	args[2] = Int32GetDatum(webhooks_max_per_endpoint);
	args[3] = int4_array(used, nbusy);
	ret = SPI_execute_plan(prepare_once(&next_due_plan, next_due_sql, 4,
										argtypes),
						   args, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not find the next due delivery: %s",
			 SPI_result_code_string(ret));
	*due = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1,
											 &isnull));
	return !isnull;
}

/*
 * Record a batch of attempts: a log row each (unless the webhook is gone),
 * and for real deliveries, delete the delivered ones and reschedule or
 * fail the rest.  n must be at least 1.
 */
void
webhooks_queue_record(AttemptRecord *records, int n)
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
	Datum	   *lock_ids = palloc(sizeof(Datum) * n);
	int			nlock = 0;
	int			ret;

	for (int i = 0; i < n; i++)
	{
		AttemptRecord *r = &records[i];

		ids[i] = Int64GetDatum(r->delivery_id);
		webhook_ids[i] = r->webhook_id;
		event_ids[i] = r->event_id;
		event[i] = CStringGetTextDatum(r->event);
		attempt[i] = Int32GetDatum(r->attempt);
		status[i] = Int32GetDatum(r->status_code);
		status_null[i] = (r->status_code == 0);
		elapsed[i] = Int32GetDatum(r->response_time_ms);
		error_null[i] = (r->error == NULL);
		error[i] = error_null[i] ? (Datum) 0 : CStringGetTextDatum(r->error);
		body_null[i] = (r->response_body == NULL);
		body[i] = body_null[i] ? (Datum) 0 :
			CStringGetTextDatum(r->response_body);
		started[i] = TimestampTzGetDatum(r->started_at);
		outcome[i] = CharGetDatum((char) r->outcome);
		next_null[i] = (r->outcome != OUTCOME_RETRY);
		next[i] = TimestampTzGetDatum(r->next_attempt_at);
		if (r->outcome != OUTCOME_TEST)
			lock_ids[nlock++] = Int64GetDatum(r->delivery_id);
	}

	args[0] = make_array(ids, NULL, n, INT8OID);
	args[1] = uuid_array(webhook_ids, n);
	args[2] = uuid_array(event_ids, n);
	args[3] = make_array(event, NULL, n, TEXTOID);
	args[4] = make_array(attempt, NULL, n, INT4OID);
	args[5] = make_array(status, status_null, n, INT4OID);
	args[6] = make_array(elapsed, NULL, n, INT4OID);
	args[7] = make_array(error, error_null, n, TEXTOID);
	args[8] = make_array(body, body_null, n, TEXTOID);
	args[9] = make_array(started, NULL, n, TIMESTAMPTZOID);
	args[10] = make_array(outcome, NULL, n, CHAROID);
	args[11] = make_array(next, next_null, n, TIMESTAMPTZOID);

	if (nlock > 0)
	{
		Oid			lock_types[1] = {INT8ARRAYOID};
		Datum		lock_args[1] = {make_array(lock_ids, NULL, nlock, INT8OID)};

		ret = SPI_execute_plan(prepare_once(&lock_plan, lock_sql, 1,
											lock_types),
							   lock_args, NULL, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not lock deliveries: %s",
				 SPI_result_code_string(ret));
	}

	ret = SPI_execute_plan(prepare_once(&record_plan, record_sql, 12,
										argtypes),
						   args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not record attempts: %s",
			 SPI_result_code_string(ret));
}

/* Put one delivery the worker holds back to 'pending', due now. */
void
webhooks_queue_requeue(int64 delivery_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(delivery_id)};
	int			ret;

	ret = SPI_execute_with_args("UPDATE webhooks.deliveries"
								" SET state = 'pending', next_attempt_at = now()"
								" WHERE id = $1 AND state = 'sending'",
								1, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not requeue delivery: %s",
			 SPI_result_code_string(ret));
}
