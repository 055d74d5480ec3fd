/*-------------------------------------------------------------------------
 *
 * subscriptions.c
 *		The delivery worker's copy of the active webhooks, by community:
 *		who receives an event it reads.
 *
 * Reading matches each event to the active webhooks of its community that
 * subscribe to its type, existed when it was emitted (to the millisecond,
 * as the log shows times) and whose filter, if any, matches its payload.
 * Looking that up in SQL for every event cost a join per event in every
 * page; the worker keeps the webhooks of the communities it meets instead,
 * loaded in one statement per page for those it has not met yet.
 *
 * A change to webhooks.webhooks (any INSERT, UPDATE, DELETE or TRUNCATE:
 * the API's, the worker's own switch-off, an operator's SQL, a restore)
 * makes its transaction count itself in shared memory: "begun" just before
 * it commits, "ended" once it has (or has aborted).  Before it reads a
 * page, the worker reads ended, then begun:
 *
 *   - equal to each other and to the count its copy was made at: no
 *     change has begun since, and the copy holds;
 *   - otherwise the copy is dropped, and what the page needs is loaded
 *     again by statements that start after this check.
 *
 * Why that never misses a change the page's events could see: a change
 * visible in the window's snapshot had begun before that snapshot was
 * taken, so before this check.  If it has also ended, the copy's count is
 * behind and the copy is remade with it visible; if it has not, begun is
 * ahead of ended, and the copy (loaded after a snapshot that may or may
 * not see it) is used for this page only and checked again for the next.
 * COMMIT PREPARED counts itself as a change (webhooks.c): what it makes
 * visible was written in another session.
 *
 * That needs each statement of the worker's transactions to take a new
 * snapshot: the worker reads in READ COMMITTED, whatever the database's
 * default.  The triggers fire always, replicas' apply included; only a
 * change made with the triggers disabled (ALTER TABLE ... DISABLE TRIGGER
 * ALL, as a data-only pg_restore --disable-triggers does) goes unseen, and
 * the copy is made again a minute after it was made in any case.
 *
 * The copy is bounded: past MAX_COMMUNITIES communities it is dropped and
 * begun again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "queue.h"
#include "webhooks.h"

/* Communities held before the copy is begun again */
#define MAX_COMMUNITIES 10000
/* The copy's age at which it is made again all the same */
#define MAX_AGE_MS (60 * 1000)

typedef struct CachedCommunity
{
	char		community_id[WEBHOOKS_MAX_COMMUNITY_ID_BYTES + 1];	/* key */
	int			nsubscribers;
	Subscriber *subscribers;	/* in the order they were created */
} CachedCommunity;

static MemoryContext cache_cxt = NULL;
static HTAB *communities = NULL;
/* the changes counted when the copy was begun; invalid: drop it next time */
static uint64 cache_changes = 0;
static bool cache_valid = false;
static TimestampTz cache_made_at = 0;
/* webhooks.filter_matches(jsonb, jsonpath), once a filter needs it */
static FmgrInfo filter_fn;
static bool filter_fn_ready = false;

static SPIPlanPtr load_plan = NULL;

static const char *load_sql =
"SELECT w.community_id, w.id, date_trunc('milliseconds', w.created_at),"
"       w.url, w.secret, w.previous_secret, w.previous_secret_until,"
"       " WEBHOOKS_HEADER_LINES_SQL("w") ", w.events, w.filter"
"  FROM webhooks.webhooks w"
" WHERE w.community_id = ANY ($1) AND w.is_active"
" ORDER BY w.community_id, w.created_at, w.id";

/* Begin the copy again, empty. */
static void
reset_cache(void)
{
	HASHCTL		ctl;

	if (cache_cxt == NULL)
		cache_cxt = AllocSetContextCreate(TopMemoryContext,
										  "webhooks subscribers",
										  ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(cache_cxt);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = WEBHOOKS_MAX_COMMUNITY_ID_BYTES + 1;
	ctl.entrysize = sizeof(CachedCommunity);
	ctl.hcxt = cache_cxt;
	communities = hash_create("webhooks subscribers", 256, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	filter_fn_ready = false;
}

/*
 * Keep the copy only if no change to the webhooks has begun since it was
 * made (see the file's header).  Call after the snapshot of what is about
 * to be read was taken, and before webhooks_subscribers_load.
 */
void
webhooks_subscribers_check(void)
{
	uint64		ended = pg_atomic_read_u64(&webhooks_shared->cache_changes_ended);
	uint64		begun;

	pg_memory_barrier();
	begun = pg_atomic_read_u64(&webhooks_shared->cache_changes_begun);
	if (communities != NULL && cache_valid && begun == ended &&
		begun == cache_changes &&
		!TimestampDifferenceExceeds(cache_made_at, GetCurrentTimestamp(),
									MAX_AGE_MS))
		return;
	reset_cache();
	cache_made_at = GetCurrentTimestamp();
	cache_changes = begun;
	cache_valid = (begun == ended);
}

/* The text[] of a webhook's event types as C strings, in cache_cxt */
static void
load_event_types(Subscriber *s, Datum array, MemoryContext scratch)
{
	MemoryContext old = MemoryContextSwitchTo(scratch);
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	deconstruct_array(DatumGetArrayTypeP(array), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, &nulls, &n);
	MemoryContextSwitchTo(old);
	s->events = palloc(sizeof(char *) * Max(n, 1));
	s->nevents = 0;
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			s->events[s->nevents++] = TextDatumGetCString(elems[i]);
}

/* A string column, copied into the current context, or NULL */
static char *
string_of(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * Make sure each of these n communities is in the copy, with its active
 * webhooks (none, for most): one statement for those that are not.  In
 * the caller's transaction, with SPI connected.
 */
void
webhooks_subscribers_load(const char **community_ids, int n)
{
	ArrayBuildState *missing = NULL;
	Oid			types[1] = {TEXTARRAYOID};
	Datum		args[1];
	MemoryContext old;
	SPITupleTable *t;
	int			nmissing = 0;
	bool		was_valid;
	int			ret;

	Assert(communities != NULL);

	/*
	 * Until the statement's rows are in, the entries made here say "no
	 * webhooks": if it fails (a cancel, a lock timeout), the copy must not
	 * be trusted again.
	 */
	was_valid = cache_valid;
	cache_valid = false;
	for (int pass = 0; pass < 2; pass++)
	{
		for (int i = 0; i < n; i++)
		{
			bool		found;
			CachedCommunity *c = hash_search(communities, community_ids[i],
											 HASH_ENTER, &found);

			if (found)
				continue;
			c->nsubscribers = 0;
			c->subscribers = NULL;
			missing = accumArrayResult(missing,
									   CStringGetTextDatum(community_ids[i]),
									   false, TEXTOID, CurrentMemoryContext);
			nmissing++;
		}
		/* past the limit: the copy begins again with this page's */
		if (pass > 0 || hash_get_num_entries(communities) <= MAX_COMMUNITIES)
			break;
		reset_cache();
		missing = NULL;
		nmissing = 0;
	}
	if (nmissing == 0)
	{
		cache_valid = was_valid;
		return;
	}

	args[0] = makeArrayResult(missing, CurrentMemoryContext);
	ret = SPI_execute_plan(webhooks_prepare_once(&load_plan, load_sql, 1, types),
						   args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not look up webhooks: %s",
			 SPI_result_code_string(ret));
	t = SPI_tuptable;

	/* rows come grouped by community: each group's array at once */
	old = MemoryContextSwitchTo(cache_cxt);
	for (uint64 i = 0; i < SPI_processed;)
	{
		char	   *community_id = string_of(t->vals[i], t->tupdesc, 1);
		CachedCommunity *c = hash_search(communities, community_id, HASH_FIND,
										 NULL);
		uint64		end = i;

		if (c == NULL)
			elog(ERROR, "webhooks of a community not asked for");
		while (end < SPI_processed)
		{
			char	   *next = string_of(t->vals[end], t->tupdesc, 1);
			bool		same = strcmp(next, community_id) == 0;

			pfree(next);
			if (!same)
				break;
			end++;
		}
		c->nsubscribers = (int) (end - i);
		c->subscribers = palloc0(sizeof(Subscriber) * c->nsubscribers);
		for (int k = 0; i < end; i++, k++)
		{
			HeapTuple	tup = t->vals[i];
			TupleDesc	desc = t->tupdesc;
			Subscriber *s = &c->subscribers[k];
			bool		isnull;
			Datum		d;

			s->id = *DatumGetUUIDP(SPI_getbinval(tup, desc, 2, &isnull));
			s->since = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
			s->url = string_of(tup, desc, 4);
			s->secret = string_of(tup, desc, 5);
			s->previous_secret = string_of(tup, desc, 6);
			d = SPI_getbinval(tup, desc, 7, &isnull);
			s->previous_secret_until = isnull ? DT_NOBEGIN : DatumGetTimestampTz(d);
			s->header_lines = string_of(tup, desc, 8);
			load_event_types(s, SPI_getbinval(tup, desc, 9, &isnull), old);
			d = SPI_getbinval(tup, desc, 10, &isnull);
			s->filter = isnull ? NULL : PG_DETOAST_DATUM_COPY(d);
		}
		pfree(community_id);
	}
	MemoryContextSwitchTo(old);
	cache_valid = was_valid;
}

/*
 * The active webhooks of a community the copy holds (it must: see
 * webhooks_subscribers_load), and how many.  What they point to lives until
 * the next webhooks_subscribers_check.
 */
Subscriber *
webhooks_subscribers_of(const char *community_id, int *n)
{
	CachedCommunity *c = hash_search(communities, community_id, HASH_FIND,
									 NULL);

	if (c == NULL)
		elog(ERROR, "the webhooks of community \"%s\" were not loaded",
			 community_id);
	*n = c->nsubscribers;
	return c->subscribers;
}

/*
 * Whether a webhook receives an event of this type, emitted then, with
 * this payload (a jsonb Datum): as webhooks.queue_window() decides in SQL.
 * A filter that fails to evaluate is a non-match (filter_matches).
 */
bool
webhooks_subscriber_wants(Subscriber *s, const char *type,
						  TimestampTz emitted_at, Datum payload)
{
	bool		subscribed = false;

	if (s->since > emitted_at)
		return false;
	for (int i = 0; i < s->nevents && !subscribed; i++)
		subscribed = strcmp(s->events[i], type) == 0;
	if (!subscribed)
		return false;
	if (s->filter == NULL)
		return true;
	if (!filter_fn_ready)
	{
		Oid			fn = DatumGetObjectId(
			DirectFunctionCall1(to_regprocedure,
								CStringGetTextDatum("webhooks.filter_matches(jsonb,jsonpath)")));

		if (!OidIsValid(fn))
			elog(ERROR, "function webhooks.filter_matches(jsonb, jsonpath) does not exist");
		fmgr_info_cxt(fn, &filter_fn, cache_cxt);
		filter_fn_ready = true;
	}
	/* NULL (a strict path that found nothing, say) is no match */
	{
		LOCAL_FCINFO(fcinfo, 2);
		Datum		result;

		InitFunctionCallInfoData(*fcinfo, &filter_fn, 2, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = payload;
		fcinfo->args[0].isnull = false;
		fcinfo->args[1].value = PointerGetDatum(s->filter);
		fcinfo->args[1].isnull = false;
		result = FunctionCallInvoke(fcinfo);
		return !fcinfo->isnull && DatumGetBool(result);
	}
}

/* The secret that signs second during a rotation's overlap, or NULL. */
const char *
webhooks_subscriber_previous_secret(Subscriber *s, TimestampTz now)
{
	return s->previous_secret_until > now ? s->previous_secret : NULL;
}
