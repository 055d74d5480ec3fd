/*-------------------------------------------------------------------------
 *
 * reader.c
 *		Reading committed events into deliveries, and where reading stands.
 *
 * emit() appends an event with its transaction's id (txid) and nothing
 * else; the worker turns events into deliveries after they commit.  Event
 * ids and times are made before commit, so a transaction that commits
 * late can hold lower ids than events already read: reading in id or time
 * order would skip it.  Instead, as PgQ does, reading goes by windows
 * between two snapshots: a window holds the events of the transactions
 * visible in its end snapshot (cur) and not in its start (prev):
 *
 *   - txids from prev's xmax up to cur's xmax, visible in cur (they
 *     started after prev was taken and have committed since), found by a
 *     range scan of the (txid, id) index;
 *   - txids that were in progress at prev (its xip list) and are visible
 *     in cur, found one by one.
 *
 * A transaction still in progress at cur is in cur's xip list, so the next
 * window holds it.  Nothing is skipped under any interleaving of commits,
 * long transactions and two-phase commit (specs/reader.spec), and nothing
 * is read twice.
 *
 * A window is read in pages, in (txid, id) order, each page up to a limit
 * of events, straight into deliveries in the worker's memory (one per
 * active subscribed webhook of the event's community whose filter matches):
 * no row is written for a delivery that succeeds at its first attempt but
 * its attempt's log row.  A delivery that fails, or waits too long for its
 * endpoint, becomes a queue row (webhooks.deliveries) when its record is
 * written.  Each page counts its deliveries not yet recorded; the position
 * saved in webhooks.reader is the start of the oldest page with any left,
 * so it moves only past what is recorded.
 *
 * After a crash the worker reads again from the saved position.  It may
 * then meet deliveries the previous worker recorded after it saved that
 * position; the windows that start before this worker did are read with
 * dedupe, which leaves out every delivery that already has a queue row or
 * an attempt logged since the position's snapshot was taken.  So a kill -9
 * at any moment loses nothing and repeats only what was in flight.
 *
 * Only the worker reads while it runs: it holds an advisory lock, and
 * webhooks.read_events() (the same method in SQL, queueing every delivery,
 * for a database whose worker is not running) refuses to run without it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/ilist.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/uuid.h"
#include "utils/xid8.h"

#include "queue.h"
#include "webhooks.h"

/* The advisory lock of the reading worker (sql/webhooks--1.0.1--1.1.sql) */
#define WEBHOOKS_READER_LOCK "2011963244, 1"

/* A point in the order of reading (see webhooks.reader) */
typedef struct ReadPosition
{
	char	   *snapshot;		/* every txid visible here is done */
	TimestampTz snapshot_at;	/* when it was taken (or earlier) */
	char	   *upto;			/* a window begun after it, or NULL */
	TimestampTz upto_at;
	uint64		after_txid;		/* ... done up to here in that window */
	pg_uuid_t	after_id;
} ReadPosition;

/* A page of events read, with its deliveries not yet recorded */
struct ReadPage
{
	dlist_node	node;
	ReadPosition start;			/* where reading stood before it */
	int64		outstanding;
};

static MemoryContext reader_cxt = NULL;
static ReadPosition far;		/* where the next page starts */
static ReadPosition saved;		/* what webhooks.reader says */
static TimestampTz since;		/* webhooks.reader.since */
static TimestampTz started_at;	/* when this worker began reading */
static dlist_head pages = DLIST_STATIC_INIT(pages);
static bool window_full = false;	/* the last page was full */
static int	fanout = 1;			/* deliveries per event, last page (rounded up) */

static SPIPlanPtr page_plan = NULL;
static SPIPlanPtr queued_plan = NULL;
static SPIPlanPtr save_plan = NULL;

/*
 * Up to $6 events of the window ($1, $2) after ($3, $4) in (txid, id)
 * order, no more payload bytes than $7 (but one event at least); each row
 * says how many events there were before the bytes were counted.  Who
 * receives them is the worker's to work out (subscriptions.c).
 *
 * Each part of the window starts its index scan at the cursor, never at
 * the window's start: a transaction of 100k events is read in pages, and
 * a page that began at its first event would make the read quadratic.
 * Transactions in progress at $1 (its xip list) and visible in $2 are
 * read one by one, each from (txid = x, id > the cursor's id if x is the
 * cursor's txid); the rest, from ($8, $9): the cursor, or the last point
 * before $1's xmax if the cursor is short of it.
 */
#define EVENT_COLUMNS \
"e.txid, e.id, e.type, e.community_id, e.created_at, e.payload_bytes, e.payload"

static const char *page_sql =
"WITH p AS MATERIALIZED ("
"  SELECT u.*, row_number() OVER w AS n, sum(u.payload_bytes) OVER w AS bytes"
"  FROM (SELECT * FROM ("
"    (SELECT " EVENT_COLUMNS
"     FROM (SELECT x FROM pg_snapshot_xip($1) x"
"           WHERE x >= $3 AND pg_visible_in_snapshot(x, $2)) xs"
"     CROSS JOIN LATERAL ("
"       SELECT " EVENT_COLUMNS " FROM webhooks.events e"
"       WHERE e.txid = xs.x"
"         AND e.id > CASE WHEN xs.x = $3 THEN $4"
"                    ELSE '00000000-0000-0000-0000-000000000000'::uuid END"
"         AND e.created_at >= $5"
"       ORDER BY e.id LIMIT $6) e"
"     ORDER BY e.txid, e.id LIMIT $6)"
"    UNION ALL"
"    (SELECT " EVENT_COLUMNS " FROM webhooks.events e"
"     WHERE (e.txid, e.id) > ($8, $9)"
"       AND e.txid < pg_snapshot_xmax($2)"
"       AND pg_visible_in_snapshot(e.txid, $2) AND e.created_at >= $5"
"     ORDER BY e.txid, e.id LIMIT $6)"
"    ) a ORDER BY a.txid, a.id LIMIT $6) u"
"  WINDOW w AS (ORDER BY u.txid, u.id)"
") "
"SELECT p.txid, p.id, p.type, p.community_id, p.created_at, p.payload_bytes,"
"       p.payload, (SELECT count(*) FROM p)"
"  FROM p WHERE p.n = 1 OR p.bytes <= $7";

/*
 * After a crash: the (event, webhook) pairs of a page's events that
 * already have a queue row, left out as those with an attempt logged since
 * the position's snapshot are (see attempted).
 */
static const char *queued_sql =
"SELECT d.event_id, d.webhook_id FROM webhooks.deliveries d"
" WHERE d.event_id = ANY ($1)";

/*
 * The (event, webhook) pairs with an attempt logged since the saved
 * position's snapshot was taken, loaded once when a restarted worker
 * begins to read with dedupe (one index range per webhook: linear in what
 * was logged since, where a lookup per delivery would be quadratic), and
 * dropped when it is done with dedupe.
 */
typedef struct AttemptedKey
{
	pg_uuid_t	event_id;
	pg_uuid_t	webhook_id;
} AttemptedKey;

static HTAB *attempted = NULL;

/* Add to attempted the (event_id, webhook_id) rows SPI just returned. */
static void
add_pairs(void)
{
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		AttemptedKey key;
		bool		isnull;

		key.event_id = *DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i],
													SPI_tuptable->tupdesc, 1,
													&isnull));
		key.webhook_id = *DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i],
													  SPI_tuptable->tupdesc, 2,
													  &isnull));
		(void) hash_search(attempted, &key, HASH_ENTER, NULL);
	}
}

static void
load_attempted(TimestampTz from)
{
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		args[1] = {TimestampTzGetDatum(from)};
	HASHCTL		ctl;
	int			ret;

	ret = SPI_execute_with_args("SELECT a.event_id, a.webhook_id"
								" FROM webhooks.webhooks w CROSS JOIN LATERAL ("
								"  SELECT a.event_id, a.webhook_id"
								"  FROM webhooks.delivery_attempts a"
								"  WHERE a.webhook_id = w.id AND a.created_at >= $1) a",
								1, types, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not look up recent attempts: %s",
			 SPI_result_code_string(ret));
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(AttemptedKey);
	ctl.entrysize = sizeof(AttemptedKey);
	ctl.hcxt = reader_cxt;
	attempted = hash_create("webhooks attempted", Max(SPI_processed, 64), &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	add_pairs();
	ereport(LOG,
			(errmsg("webhooks: reading again from the saved position, leaving out " UINT64_FORMAT " deliveries attempted since",
					SPI_processed)));
}

/* Add to attempted the pairs of these events that have a queue row. */
static void
add_queued(Datum event_ids)
{
	Oid			types[1] = {UUIDARRAYOID};
	Datum		args[1] = {event_ids};
	int			ret;

	ret = SPI_execute_plan(webhooks_prepare_once(&queued_plan, queued_sql, 1,
												 types),
						   args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not look up queued deliveries: %s",
			 SPI_result_code_string(ret));
	add_pairs();
}

static const char *save_sql =
"UPDATE webhooks.reader SET snapshot = $1::pg_snapshot, read_at = $2,"
" upto = $3::pg_snapshot, after_txid = $4, after_id = $5";

static Datum
snapshot_datum(const char *text)
{
	return OidInputFunctionCall(F_PG_SNAPSHOT_IN, (char *) text, InvalidOid, -1);
}

/* A snapshot's xmax, from its text (xmin:xmax:xip,...). */
static uint64
snapshot_xmax(const char *text)
{
	const char *colon = strchr(text, ':');

	if (colon == NULL)
		elog(ERROR, "malformed snapshot \"%s\"", text);
	return strtou64(colon + 1, NULL, 10);
}

static Datum
xid8_datum(uint64 xid)
{
	return FullTransactionIdGetDatum(FullTransactionIdFromU64(xid));
}

static char *
keep(const char *s)
{
	return s ? MemoryContextStrdup(reader_cxt, s) : NULL;
}

static void
copy_position(ReadPosition *to, const ReadPosition *from)
{
	if (to->snapshot)
		pfree(to->snapshot);
	if (to->upto)
		pfree(to->upto);
	*to = *from;
	to->snapshot = keep(from->snapshot);
	to->upto = keep(from->upto);
}

static bool
same_position(const ReadPosition *a, const ReadPosition *b)
{
	return strcmp(a->snapshot, b->snapshot) == 0 &&
		a->snapshot_at == b->snapshot_at &&
		(a->upto == NULL) == (b->upto == NULL) &&
		(a->upto == NULL ||
		 (strcmp(a->upto, b->upto) == 0 && a->after_txid == b->after_txid &&
		  memcmp(&a->after_id, &b->after_id, sizeof(pg_uuid_t)) == 0));
}

/*
 * Take the reading lock and load the position.  Returns false if someone
 * holds the lock (webhooks.read_events() at work): try again later.  In
 * the caller's transaction, with SPI connected.
 */
bool
webhooks_reader_start(void)
{
	bool		isnull;
	SPITupleTable *t;
	int			ret;

	ret = SPI_execute("SELECT pg_try_advisory_lock(" WEBHOOKS_READER_LOCK ")",
					  false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not take the reader's lock: %s",
			 SPI_result_code_string(ret));
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									SPI_tuptable->tupdesc, 1, &isnull)))
		return false;

	ret = SPI_execute("SELECT snapshot::text, read_at, since, upto::text,"
					  " after_txid, after_id FROM webhooks.reader", false, 2);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "webhooks.reader must hold one row");
	t = SPI_tuptable;

	if (reader_cxt == NULL)
		reader_cxt = AllocSetContextCreate(TopMemoryContext, "webhooks reader",
										   ALLOCSET_SMALL_SIZES);
	memset(&far, 0, sizeof(far));
	far.snapshot = keep(SPI_getvalue(t->vals[0], t->tupdesc, 1));
	far.snapshot_at = DatumGetTimestampTz(SPI_getbinval(t->vals[0], t->tupdesc,
														2, &isnull));
	since = DatumGetTimestampTz(SPI_getbinval(t->vals[0], t->tupdesc, 3,
											  &isnull));
	far.upto = keep(SPI_getvalue(t->vals[0], t->tupdesc, 4));
	if (far.upto)
	{
		/* when upto was taken is not kept: no earlier than the snapshot */
		far.upto_at = far.snapshot_at;
		far.after_txid = U64FromFullTransactionId(
			DatumGetFullTransactionId(SPI_getbinval(t->vals[0], t->tupdesc, 5,
													&isnull)));
		far.after_id = *DatumGetUUIDP(SPI_getbinval(t->vals[0], t->tupdesc, 6,
													&isnull));
	}
	memset(&saved, 0, sizeof(saved));
	copy_position(&saved, &far);
	started_at = GetCurrentTransactionStartTimestamp();
	window_full = false;
	return true;
}

/* Whether the last page was full: more of its window is waiting. */
bool
webhooks_reader_more(void)
{
	return window_full;
}

/* (txid, id) order */
static int
compare_event(uint64 txid_a, const pg_uuid_t *id_a, uint64 txid_b,
			  const pg_uuid_t *id_b)
{
	if (txid_a != txid_b)
		return txid_a < txid_b ? -1 : 1;
	return memcmp(id_a, id_b, sizeof(pg_uuid_t));
}

/*
 * Read a page of about limit deliveries (as many events as the last
 * page's fan-out allows) and at most byte_budget payload bytes (but one
 * event at least) of the window in progress (opening one, from the
 * position to a snapshot taken now, if none is) into deliveries, copied
 * into cxt, each with its page.  Returns how many.  In the caller's
 * transaction, with SPI connected; no statement of it may have written
 * yet.
 */
int
webhooks_reader_read(int limit, int64 byte_budget, Delivery **deliveries,
					 MemoryContext cxt)
{
	ReadPosition start;
	Oid			types[9] = {PG_SNAPSHOTOID, PG_SNAPSHOTOID, XID8OID, UUIDOID,
		TIMESTAMPTZOID, INT4OID, INT8OID, XID8OID, UUIDOID};
	Datum		args[9];
	uint64		prev_xmax;
	pg_uuid_t	last_uuid;
	bool		dedupe;
	SPITupleTable *t;
	uint64		nevents;
	Delivery   *result;
	int			room;
	int64		ncounted = 0;
	int64		skipped = 0;
	uint64		last_txid = 0;
	pg_uuid_t	last_id;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	int			n = 0;
	int			ret;
	ReadPage   *page;
	MemoryContext old;

	*deliveries = NULL;
	if (far.upto == NULL)
	{
		bool		isnull;

		ret = SPI_execute("SELECT pg_current_snapshot()::text, now()", true, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not take a snapshot: %s",
				 SPI_result_code_string(ret));
		far.upto = keep(SPI_getvalue(SPI_tuptable->vals[0],
									 SPI_tuptable->tupdesc, 1));
		far.upto_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc,
														2, &isnull));
		far.after_txid = 0;
		memset(&far.after_id, 0, sizeof(pg_uuid_t));
	}
	/* after the window's snapshot, before the webhooks are looked up */
	webhooks_subscribers_check();

	/* a window begun before this worker: its predecessor may have read it */
	dedupe = far.snapshot_at < started_at;
	args[0] = snapshot_datum(far.snapshot);
	args[1] = snapshot_datum(far.upto);
	args[2] = xid8_datum(far.after_txid);
	args[3] = UUIDPGetDatum(&far.after_id);
	args[4] = TimestampTzGetDatum(since);
	limit = Max(1, limit / fanout);
	args[5] = Int32GetDatum(limit);
	args[6] = Int64GetDatum(byte_budget);
	if (dedupe && attempted == NULL)
		load_attempted(far.snapshot_at);
	else if (!dedupe && attempted != NULL)
	{
		hash_destroy(attempted);
		attempted = NULL;
	}
	/* the txids from prev's xmax on: from the cursor, or just before xmax */
	prev_xmax = snapshot_xmax(far.snapshot);
	memset(&last_uuid, 0xff, sizeof(pg_uuid_t));
	if (far.after_txid < prev_xmax)
	{
		args[7] = xid8_datum(prev_xmax - 1);
		args[8] = UUIDPGetDatum(&last_uuid);
	}
	else
	{
		args[7] = args[2];
		args[8] = args[3];
	}
	ret = SPI_execute_plan(webhooks_prepare_once(&page_plan, page_sql, 9, types),
						   args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read events: %s", SPI_result_code_string(ret));
	t = SPI_tuptable;
	nevents = SPI_processed;

	/* the events' strings, once each, and their communities' webhooks */
	old = MemoryContextSwitchTo(cxt);
	{
		const char **community_ids = palloc(sizeof(char *) * Max(nevents, 1));
		ArrayBuildState *ids = NULL;

		for (uint64 i = 0; i < nevents; i++)
			community_ids[i] = SPI_getvalue(t->vals[i], t->tupdesc, 4);
		MemoryContextSwitchTo(old);
		webhooks_subscribers_load(community_ids, (int) nevents);
		if (dedupe)
		{
			for (uint64 i = 0; i < nevents; i++)
			{
				bool		isnull;

				ids = accumArrayResult(ids, SPI_getbinval(t->vals[i], t->tupdesc,
														  2, &isnull),
									   false, UUIDOID, CurrentMemoryContext);
			}
			if (ids != NULL)
				add_queued(makeArrayResult(ids, CurrentMemoryContext));
		}
		old = MemoryContextSwitchTo(cxt);

		/* a delivery per subscriber, at most */
		room = 0;
		for (uint64 i = 0; i < nevents; i++)
		{
			int			nsubs;

			(void) webhooks_subscribers_of(community_ids[i], &nsubs);
			room += nsubs;
		}
		result = palloc0(sizeof(Delivery) * Max(room, 1));

		for (uint64 i = 0; i < nevents; i++)
		{
			HeapTuple	tup = t->vals[i];
			TupleDesc	desc = t->tupdesc;
			bool		isnull;
			uint64		txid;
			pg_uuid_t	id;
			char	   *type = NULL;
			char	   *body = NULL;
			TimestampTz emitted_at;
			Datum		payload;
			Subscriber *subs;
			int			nsubs;

			ncounted = DatumGetInt64(SPI_getbinval(tup, desc, 8, &isnull));
			txid = U64FromFullTransactionId(
				DatumGetFullTransactionId(SPI_getbinval(tup, desc, 1, &isnull)));
			id = *DatumGetUUIDP(SPI_getbinval(tup, desc, 2, &isnull));
			if (last_txid == 0 || compare_event(txid, &id, last_txid, &last_id) > 0)
			{
				last_txid = txid;
				last_id = id;
			}
			subs = webhooks_subscribers_of(community_ids[i], &nsubs);
			if (nsubs == 0)
				continue;		/* a community without webhooks */
			emitted_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
			payload = SPI_getbinval(tup, desc, 7, &isnull);
			for (int k = 0; k < nsubs; k++)
			{
				Subscriber *s = &subs[k];
				Delivery   *d;

				if (type == NULL)
					type = SPI_getvalue(tup, desc, 3);
				if (!webhooks_subscriber_wants(s, type, emitted_at, payload))
					continue;
				if (attempted != NULL)
				{
					AttemptedKey key;

					key.event_id = id;
					key.webhook_id = s->id;
					if (hash_search(attempted, &key, HASH_FIND, NULL) != NULL)
					{
						skipped++;
						continue;	/* its predecessor attempted it */
					}
				}
				/* the body once, shared by the event's deliveries */
				if (body == NULL)
				{
					Jsonb	   *jb = DatumGetJsonbP(payload);

					body = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
				}

				d = &result[n++];
				d->webhook_id = s->id;
				d->event_id = id;
				d->event_txid = txid;
				d->emitted_at = emitted_at;
				d->payload_bytes = DatumGetInt32(SPI_getbinval(tup, desc, 6,
															   &isnull));
				d->event = type;
				d->community_id = (char *) community_ids[i];
				d->payload = body;
				/* the copy's strings: they live until the next read */
				d->url = s->url;
				d->secret = s->secret;
				d->previous_secret =
					(char *) webhooks_subscriber_previous_secret(s, now);
				d->header_lines = s->header_lines;
			}
		}
	}
	MemoryContextSwitchTo(old);

	if (nevents > 0)
		fanout = Max(1, (int) ((n + skipped + nevents - 1) / nevents));

	/* where this page starts, for the position (copied once it is read) */
	memset(&start, 0, sizeof(start));
	copy_position(&start, &far);

	/* move on: within the window, or past it when it is all read */
	window_full = (ncounted >= limit || nevents < ncounted);
	if (window_full)
	{
		far.after_txid = last_txid;
		far.after_id = last_id;
	}
	else
	{
		pfree(far.snapshot);
		far.snapshot = far.upto;
		far.snapshot_at = far.upto_at;
		far.upto = NULL;
		far.after_txid = 0;
		memset(&far.after_id, 0, sizeof(pg_uuid_t));
	}

	if (n == 0)
	{
		copy_position(&start, &(ReadPosition) {0});
		return 0;
	}
	page = MemoryContextAllocZero(reader_cxt, sizeof(ReadPage));
	page->start = start;
	page->outstanding = n;
	dlist_push_tail(&pages, &page->node);
	for (int i = 0; i < n; i++)
		result[i].page = page;
	*deliveries = result;
	return n;
}

/*
 * n deliveries of a page are recorded (committed): it is done when none
 * is left.
 */
void
webhooks_reader_done(ReadPage *page, int n)
{
	page->outstanding -= n;
	Assert(page->outstanding >= 0);
	/* pages before the oldest with work left are of no more use */
	while (!dlist_is_empty(&pages))
	{
		ReadPage   *head = dlist_head_element(ReadPage, node, &pages);

		if (head->outstanding > 0)
			break;
		dlist_pop_head_node(&pages);
		copy_position(&head->start, &(ReadPosition) {0});
		pfree(head);
	}
}

/*
 * Save where reading stands, if it moved: the start of the oldest page
 * with deliveries not yet recorded, or where the next page starts.  In the
 * caller's transaction, with SPI connected.
 */
void
webhooks_reader_save(void)
{
	const ReadPosition *done = &far;
	Oid			types[5] = {TEXTOID, TIMESTAMPTZOID, TEXTOID, XID8OID, UUIDOID};
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int			ret;

	/* the head page has work left (done ones are popped) */
	if (!dlist_is_empty(&pages))
		done = &dlist_head_element(ReadPage, node, &pages)->start;
	if (saved.snapshot != NULL && same_position(done, &saved))
		return;

	args[0] = CStringGetTextDatum(done->snapshot);
	args[1] = TimestampTzGetDatum(done->snapshot_at);
	if (done->upto)
	{
		args[2] = CStringGetTextDatum(done->upto);
		args[3] = xid8_datum(done->after_txid);
		args[4] = UUIDPGetDatum((pg_uuid_t *) &done->after_id);
	}
	else
		nulls[2] = nulls[3] = nulls[4] = 'n';
	ret = SPI_execute_plan(webhooks_prepare_once(&save_plan, save_sql, 5, types),
						   args, nulls, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not save the read position: %s",
			 SPI_result_code_string(ret));
	copy_position(&saved, done);
}

/*
 * The saved position is not to be trusted (the transaction that saved it
 * failed): save it again next time.
 */
void
webhooks_reader_forget_saved(void)
{
	copy_position(&saved, &(ReadPosition) {0});
}
