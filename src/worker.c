/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The delivery worker: reads committed events into deliveries, claims
 *		due ones from the queue, sends them many at a time, and records
 *		every attempt.
 *
 * One loop, never blocked on the network or holding a transaction across
 * HTTP:
 *   1. take the requests libcurl has finished, decide delivered / retry /
 *      failed, and free their slot (starting the next request waiting for
 *      that webhook or its community);
 *   2. record finished attempts in one transaction per batch: a log row
 *      each, and a queue row for a delivery read from the events that is
 *      not done (reader.c, queue.c);
 *   3. read a page of newly committed events into deliveries and start
 *      them, in one short transaction, while there is room;
 *   4. claim due deliveries from the queue (retries, spilled ones) in one
 *      short transaction and start them;
 *   5. move to the queue what waited in memory too long;
 *   6. wait on the latch, libcurl's sockets and timers together.
 * A commit that emitted events sets the latch (webhooks.c), a due retry
 * is a timer, and with nothing to do the worker looks once a second for
 * work it was not woken for (rows restored or re-queued by hand).
 *
 * Each webhook has at most webhooks.max_requests_per_endpoint requests in
 * flight, each community its share of webhooks.max_concurrent_requests;
 * deliveries beyond that wait in memory, a webhook at its limit is left
 * out of the next claim, and what waits too long (or behind a stalled
 * endpoint) goes to the queue, so a slow endpoint keeps its own deliveries
 * waiting and no one else's.
 *
 * The worker's own commits are asynchronous: a commit lost in a crash only
 * means an attempt is made again, which at-least-once delivery allows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "http.h"
#include "queue.h"
#include "webhooks.h"
#include "worker.h"

/* How long finished attempts may wait to be recorded with others */
#define RECORD_DELAY_MS 20
/* How long before recording again attempts an application's lock held off */
#define DEFER_MS 200
/* How long before trying again to record what could not be written */
#define RECORD_RETRY_MS 5000
/* How often deliveries marked in flight by no live worker are released */
#define RELEASE_INTERVAL_MS (10 * 1000L)
/* How often partitions are made ahead and dropped past the retention */
#define MAINTAIN_INTERVAL_MS (3600 * 1000L)
/* Longest an idle worker goes without looking for work it was not woken
 * for (rows restored or re-queued by hand, a missed wake-up) */
#define POLL_INTERVAL_MS 1000
/* The worker's lock timeout: a net, since it skips what others lock */
#define WORKER_LOCK_TIMEOUT "5s"
/* Longest wait a Retry-After header may impose */
#define MAX_RETRY_AFTER_MS (24 * 3600 * 1000L)
/* How long a delivery read from the events may wait in memory for a slot */
#define SPILL_MS 1000
/* How often to look for such deliveries */
#define SPILL_CHECK_MS 50
/* An endpoint or community at its limit that finished nothing for this
 * long is stalled: what would wait for it goes to the queue at once */
#define STALL_MS 250
/* How long after its last timeout an endpoint keeps to one request */
#define TIMED_OUT_KEPT_MS (24 * 60 * 60 * 1000L)
/* How often to look for the extension while it is not installed */
#define EXTENSION_POLL_MS 1000

/* A community's share of the worker's requests */
typedef struct Community
{
	char		id[WEBHOOKS_MAX_COMMUNITY_ID_BYTES + 1];	/* hash key */
	int			in_flight;
	int64		bytes_in_flight;	/* the bodies of its requests in flight */
	bool		byte_blocked;	/* a request waits for community_byte_cap */
	TimestampTz progress_at;	/* its last request finished (or it began) */
	dlist_head	endpoints;		/* its Endpoints */
} Community;

/* One webhook's share of the worker's requests */
typedef struct Endpoint
{
	pg_uuid_t	webhook_id;		/* hash key */
	Community  *community;
	dlist_node	community_node; /* in community->endpoints */
	int			in_flight;
	int			nqueued;
	TimestampTz progress_at;	/* its last request finished (or it began) */
	bool		queue_backed;	/* it may have rows in the queue to claim */
	dlist_head	queued;			/* requests waiting for a free slot */
	bool		gone;			/* answered 410 Gone: send it nothing more */
} Endpoint;

/* A webhook whose last attempt found no answer in time (see endpoint_cap) */
typedef struct TimedOut
{
	pg_uuid_t	webhook_id;		/* hash key */
	TimestampTz at;				/* that attempt's end */
} TimedOut;

/*
 * What the worker keeps with each request (its owner): the attempt's
 * record, filled in from the delivery when the request is made and
 * finished with the answer, then copied to the records to write.
 */
typedef struct Attempt
{
	dlist_node	live_node;		/* in live_attempts while it lives */
	AttemptRecord rec;			/* its strings live in the request */
	TimestampTz queued_at;		/* when it began to wait for a slot */
} Attempt;

static WebhooksClient *client = NULL;

/* Every Attempt with a request, queued or in flight */
static dlist_head live_attempts = DLIST_STATIC_INIT(live_attempts);

/* One event's request body, shared by its requests */
typedef struct SharedBody
{
	pg_uuid_t	event_id;		/* hash key */
	char	   *body;			/* in bodies_cxt */
	size_t		len;
	int			refs;			/* requests using it */
} SharedBody;

static HTAB *bodies = NULL;
static MemoryContext bodies_cxt = NULL;
static int64 bytes_held = 0;	/* in bodies */

#define MAX_BYTES_IN_FLIGHT ((int64) webhooks_max_bytes_in_flight_kb * 1024)

static void release_body(pg_uuid_t *event_id);
static HTAB *endpoints = NULL;
static HTAB *timed_out = NULL;	/* TimedOut entries, by webhook */
static HTAB *communities = NULL;
static int	queued_total = 0;

static MemoryContext requests_cxt = NULL;	/* parent of every request */
static MemoryContext records_cxt = NULL;	/* attempts not yet recorded */
static MemoryContext claim_cxt = NULL;	/* one claim's or one read's rows */

/* Queue rows written after which the queue is vacuumed (vacuum.c) */
#define VACUUM_EVERY 100000

/* Queue rows changed or made since the last VACUUM of it was started */
static int64 queue_rows_since_vacuum = 0;

/* Request slots freed since the last claim */
static int	freed_since_claim = 0;

static AttemptRecord *records = NULL;
static int	nrecords = 0;
static int	records_size = 0;
static TimestampTz first_record_at = 0;
/* Attempts an application's lock held off are not recorded before this */
static TimestampTz records_deferred_until = 0;

/* The memory context the loop was in before the current transaction. */
static MemoryContext work_cxt = NULL;

/*
 * Start and end a short transaction with SPI connected.  Ending it (commit
 * or abort) returns to the memory context the caller was in: otherwise it
 * would be TopMemoryContext, and what the loop allocates next would never
 * be freed.
 */
/* True while the worker runs a statement (between begin_work and end_work) */
static volatile sig_atomic_t in_work = false;

/*
 * SIGTERM: stop.  Between statements, the loop sees the flag, records
 * what has finished and exits; inside a statement (waiting for a lock,
 * say) the statement is ended at once, as a backend's would be, and what
 * was in flight is sent again by the next worker.
 */
static void
handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	ShutdownRequestPending = true;
	if (in_work)
	{
		InterruptPending = true;
		ProcDiePending = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}

static void
begin_work(const char *activity)
{
	in_work = true;
	/* A cancel request may end this statement (see webhooks_worker_main). */
	RESUME_CANCEL_INTERRUPTS();
	work_cxt = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	in_work = false;
	HOLD_CANCEL_INTERRUPTS();
	MemoryContextSwitchTo(work_cxt);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* After an ERROR caught in the loop: report it and roll back. */
static void
recover_from_error(MemoryContext cxt)
{
	MemoryContextSwitchTo(cxt);
	EmitErrorReport();
	FlushErrorState();
	AbortCurrentTransaction();
	in_work = false;
	/* the ERROR reset the hold-off count; hold cancels again */
	if (QueryCancelHoldoffCount == 0)
		HOLD_CANCEL_INTERRUPTS();
	QueryCancelPending = false;
	MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Give up the worker slot and the latch when the worker goes away. */
static void
unpublish_worker(int code, Datum arg)
{
	if (webhooks_shared == NULL)
		return;
	SpinLockAcquire(&webhooks_shared->mutex);
	if (webhooks_shared->worker_pid == MyProcPid)
	{
		webhooks_shared->worker_latch = NULL;
		webhooks_shared->worker_pid = 0;
	}
	SpinLockRelease(&webhooks_shared->mutex);
}

/*
 * Take the one delivery worker slot, under the lock, unless a live
 * process holds it.  Without shared memory (not preloaded) there is no
 * launcher either, so nothing to guard.
 */
static bool
claim_worker_slot(void)
{
	bool		claimed;

	if (webhooks_shared == NULL)
		return true;
	SpinLockAcquire(&webhooks_shared->mutex);
	claimed = (webhooks_shared->stepping_aside == 0 &&
			   (webhooks_shared->worker_pid == 0 ||
				webhooks_shared->worker_pid == MyProcPid ||
				kill(webhooks_shared->worker_pid, 0) != 0));
	if (claimed)
	{
		webhooks_shared->worker_pid = MyProcPid;
		webhooks_shared->worker_latch = NULL;
		strlcpy(webhooks_shared->worker_db, MyBgworkerEntry->bgw_extra,
				NAMEDATALEN);
	}
	SpinLockRelease(&webhooks_shared->mutex);
	return claimed;
}

/* The installed version of the extension, or NULL (in a transaction). */
static char *
installed_version(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *version = NULL;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("webhooks"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = MemoryContextStrdup(TopMemoryContext,
										  TextDatumGetCString(d));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

/*
 * Wait until the extension is installed in this database, at the version
 * this library's worker serves (an older one is updated first).
 */
static bool
wait_for_extension(void)
{
	bool		said_missing = false;
	bool		said_old = false;

	for (;;)
	{
		char	   *version;

		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			return false;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		version = installed_version();
		CommitTransactionCommand();
		if (version != NULL && strcmp(version, WEBHOOKS_SCHEMA_VERSION) == 0)
		{
			pfree(version);
			return true;
		}

		if (version == NULL && !said_missing)
		{
			ereport(LOG,
					(errmsg("webhooks: extension \"webhooks\" is not installed in database \"%s\" yet; waiting",
							MyBgworkerEntry->bgw_extra)));
			said_missing = true;
		}
		else if (version != NULL && !said_old)
		{
			ereport(LOG,
					(errmsg("webhooks: extension \"webhooks\" %s in database \"%s\" needs an update to %s; waiting",
							version, MyBgworkerEntry->bgw_extra,
							WEBHOOKS_SCHEMA_VERSION),
					 errhint("Run ALTER EXTENSION webhooks UPDATE; queued deliveries are kept and sent after it.")));
			said_old = true;
		}
		if (version != NULL)
			pfree(version);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 EXTENSION_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * The most requests one community may have in flight: an equal share of
 * webhooks.max_concurrent_requests with the communities holding requests
 * now and one more, so however many communities have endpoints that hang,
 * a share is left for one that has an event to send, which then waits for
 * nobody else's timeouts; never below max_requests_per_endpoint, so that
 * one community's endpoint is not held below its own limit.
 */
static int
community_cap(long ncommunities)
{
	return Max(webhooks_max_per_endpoint,
			   webhooks_max_concurrent / (Max(ncommunities, 1) + 1));
}

/*
 * The most body bytes one community's requests may have in flight, shared
 * as community_cap shares requests: webhooks.max_bytes_in_flight bounds
 * the bodies the worker holds, so without a share of its own, one
 * community whose endpoints hang with large payloads would hold all of it
 * until they time out, and nobody's events would be read meanwhile.  A
 * community with nothing in flight may always start one request, however
 * large.
 */
static int64
community_byte_cap(long ncommunities)
{
	return MAX_BYTES_IN_FLIGHT / (Max(ncommunities, 1) + 1);
}

/* Whether a community may start a request with a body of len bytes */
static bool
byte_room(Community *c, size_t len)
{
	return c->in_flight == 0 ||
		c->bytes_in_flight + (int64) len <=
		community_byte_cap(hash_get_num_entries(communities));
}

/*
 * A community waits for its byte share while a request of it is queued;
 * once its queues are empty (a webhook changed, or answered 410 Gone), it
 * no longer counts as full, unless it is stalled: that one stays full for
 * claims until one of its requests finishes (finish_attempt).
 */
static void
recheck_byte_blocked(Community *c)
{
	dlist_iter	iter;

	if (!c->byte_blocked ||
		TimestampDifferenceExceeds(c->progress_at, GetCurrentTimestamp(),
								   STALL_MS))
		return;
	dlist_foreach(iter, &c->endpoints)
		if (dlist_container(Endpoint, community_node, iter.cur)->nqueued > 0)
			return;
	c->byte_blocked = false;
}

/* Whether a webhook's last attempt found no answer in time */
static bool
is_timed_out(const pg_uuid_t *webhook_id)
{
	return hash_get_num_entries(timed_out) > 0 &&
		hash_search(timed_out, webhook_id, HASH_FIND, NULL) != NULL;
}

/*
 * The most requests one endpoint may have in flight: max_requests_per_endpoint,
 * or one while its last attempt found no answer within webhooks.timeout
 * (until an attempt gets an HTTP answer, or TIMED_OUT_KEPT_MS pass without
 * another timeout).  A hanging endpoint would otherwise hold its full share
 * of the worker's requests a timeout at a time, over and over: a few of
 * them, in as many communities, could take every request the worker may
 * make.  One at a time, it still gets tried, and its first answer gives it
 * its share back.
 */
static int
endpoint_cap(Endpoint *ep)
{
	return is_timed_out(&ep->webhook_id) ? 1 : webhooks_max_per_endpoint;
}

/* Whether an endpoint's entry holds nothing: no request, no 410 Gone */
static bool
endpoint_idle(Endpoint *ep)
{
	return ep->in_flight == 0 && ep->nqueued == 0 && !ep->gone;
}

/* The endpoint entry of a webhook (and of its community), made if new. */
static Endpoint *
endpoint_for(pg_uuid_t *webhook_id, const char *community_id)
{
	bool		found;
	Endpoint   *ep = hash_search(endpoints, webhook_id, HASH_ENTER, &found);

	if (!found)
	{
		char		key[WEBHOOKS_MAX_COMMUNITY_ID_BYTES + 1];
		Community  *c;

		strlcpy(key, community_id, sizeof(key));
		c = hash_search(communities, key, HASH_ENTER, &found);
		if (!found)
		{
			c->in_flight = 0;
			c->bytes_in_flight = 0;
			c->byte_blocked = false;
			c->progress_at = GetCurrentTimestamp();
			dlist_init(&c->endpoints);
		}
		ep->community = c;
		dlist_push_tail(&c->endpoints, &ep->community_node);
		ep->in_flight = 0;
		ep->nqueued = 0;
		ep->progress_at = GetCurrentTimestamp();
		ep->queue_backed = false;
		ep->gone = false;
		dlist_init(&ep->queued);
	}
	return ep;
}

/*
 * Whether a request for this endpoint would wait, behind a limit that
 * nothing has moved for STALL_MS: the endpoint's own, or its community's
 * (in requests or in bytes).  (A slow endpoint still finishes requests;
 * one that hangs does not.)
 */
static bool
stalled(Endpoint *ep, TimestampTz now)
{
	if (ep->gone)
		return false;
	if (ep->in_flight >= endpoint_cap(ep))
		return TimestampDifferenceExceeds(ep->progress_at, now, STALL_MS);
	if (ep->community->in_flight >=
		community_cap(hash_get_num_entries(communities)) ||
		ep->community->byte_blocked)
		return TimestampDifferenceExceeds(ep->community->progress_at, now,
										  STALL_MS);
	return false;
}

/* Forget an endpoint that holds nothing (and its community, likewise). */
static void
forget_endpoint(Endpoint *ep)
{
	Community  *c = ep->community;
	pg_uuid_t	key = ep->webhook_id;

	dlist_delete(&ep->community_node);
	hash_search(endpoints, &key, HASH_REMOVE, NULL);
	if (dlist_is_empty(&c->endpoints))
		hash_search(communities, c->id, HASH_REMOVE, NULL);
}

static void drop_request(WebhookRequest *req, const char *why);

/*
 * Start queued requests of this endpoint while it has free slots and its
 * community has too, in requests and in bytes; if it answered 410 Gone,
 * record them as failed without sending.
 */
static void
start_queued(Endpoint *ep)
{
	Community  *c = ep->community;
	int			cap = community_cap(hash_get_num_entries(communities));

	while (ep->nqueued > 0 &&
		   (ep->gone || (ep->in_flight < endpoint_cap(ep) &&
						 c->in_flight < cap)))
	{
		WebhookRequest *req = dlist_container(WebhookRequest, node,
											  dlist_head_node(&ep->queued));

		if (!ep->gone && !byte_room(c, req->body_len))
		{
			c->byte_blocked = true;
			break;
		}
		dlist_pop_head_node(&ep->queued);
		ep->nqueued--;
		queued_total--;
		if (ep->gone)
		{
			drop_request(req, "the webhook was disabled: the endpoint answered 410 Gone");
			continue;
		}
		ep->in_flight++;
		c->in_flight++;
		c->bytes_in_flight += req->body_len;
		webhooks_client_add(client, req);
	}
	if (ep->nqueued == 0)
		recheck_byte_blocked(c);
}

/* Start a request now, or queue it behind its endpoint's limit. */
static void
submit(Endpoint *ep, WebhookRequest *req)
{
	((Attempt *) req->owner)->queued_at = GetCurrentTimestamp();
	if (((Attempt *) req->owner)->rec.delivery_id != 0)
		ep->queue_backed = true;
	dlist_push_tail(&ep->queued, &req->node);
	ep->nqueued++;
	queued_total++;
	start_queued(ep);
}

/* Room for one more attempt record. */
static AttemptRecord *
new_record(void)
{
	if (nrecords == records_size)
	{
		int			size = Max(64, records_size * 2);
		AttemptRecord *grown = MemoryContextAlloc(records_cxt,
												  sizeof(AttemptRecord) * size);

		if (nrecords > 0)
			memcpy(grown, records, sizeof(AttemptRecord) * nrecords);
		records = grown;
		records_size = size;
	}
	if (nrecords == 0)
		first_record_at = GetCurrentTimestamp();
	memset(&records[nrecords], 0, sizeof(AttemptRecord));
	return &records[nrecords++];
}

/* Copy a record's strings into records_cxt. */
static void
keep_strings(AttemptRecord *r, MemoryContext cxt)
{
	r->event = MemoryContextStrdup(cxt, r->event);
	if (r->community_id)
		r->community_id = MemoryContextStrdup(cxt, r->community_id);
	if (r->error)
		r->error = MemoryContextStrdup(cxt, r->error);
	if (r->response_body)
		r->response_body = MemoryContextStrdup(cxt, r->response_body);
}

/* A finished attempt's record goes to those to write. */
static AttemptRecord *
add_record(Attempt *a)
{
	AttemptRecord *r = new_record();

	*r = a->rec;
	keep_strings(r, records_cxt);
	return r;
}

/*
 * When a failed attempt is tried again: the schedule's delay plus up to
 * 10% random jitter (never earlier), or later if the endpoint asked with
 * Retry-After.  OUTCOME_FAILED when no attempt is left.
 */
static AttemptOutcome
plan_retry(int attempts_made, int64 retry_after_s, TimestampTz *next)
{
	int64		delay_ms = webhooks_retry_delay_ms(attempts_made);

	if (delay_ms < 0)
		return OUTCOME_FAILED;
	delay_ms += (int64) (pg_prng_double(&pg_global_prng_state) * delay_ms / 10);
	/* capped in seconds first: any int64 may come from the header */
	if (retry_after_s > 0)
		delay_ms = Max(delay_ms,
					   Min(retry_after_s, MAX_RETRY_AFTER_MS / 1000) * 1000);
	*next = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay_ms);
	return OUTCOME_RETRY;
}

static void spill_endpoint(Endpoint *ep, bool stuck, bool claimed_too,
						   TimestampTz before);

/*
 * Keep an endpoint to one request after a timeout, and give it its share
 * back once it answers (endpoint_cap).  Deliveries already claimed for it
 * and waiting for a slot go back to the queue: at one request per
 * timeout, they would hold their rows for long.
 */
static void
note_timeout(pg_uuid_t *webhook_id, WebhookRequest *req, Endpoint *ep)
{
	bool		found;

	if (req->timed_out)
	{
		TimedOut   *t = hash_search(timed_out, webhook_id, HASH_ENTER, &found);

		t->at = GetCurrentTimestamp();
		if (!found && ep != NULL)
			spill_endpoint(ep, true, true, t->at);
	}
	else if (req->status_code > 0 && hash_get_num_entries(timed_out) > 0)
		(void) hash_search(timed_out, webhook_id, HASH_REMOVE, NULL);
}

/* Turn a finished request into an attempt record and free its slot. */
static void
finish_attempt(WebhookRequest *req)
{
	Attempt    *a = (Attempt *) req->owner;
	AttemptRecord *r = &a->rec;
	Endpoint   *ep = hash_search(endpoints, &r->webhook_id, HASH_FIND, NULL);

	r->status_code = (int) req->status_code;
	r->response_time_ms = req->response_time_ms;
	r->started_at = req->started_at;
	if (req->error == NULL)
		r->outcome = OUTCOME_DELIVERED;
	else
	{
		r->error = req->error;
		if (req->response_len > 0)
			r->response_body = req->response;
		/* Standard Webhooks: 410 asks to be removed.  No retry. */
		if (req->status_code == 410)
			r->outcome = OUTCOME_GONE;
		else
			r->outcome = plan_retry(r->attempt, req->retry_after_s,
									&r->next_attempt_at);
	}
	(void) add_record(a);
	if (r->outcome == OUTCOME_GONE && ep != NULL)
		ep->gone = true;
	note_timeout(&r->webhook_id, req, ep);

	/* a slot freed where the queue may have work: claim again soon */
	if (ep != NULL && r->outcome == OUTCOME_RETRY)
		ep->queue_backed = true;
	if (ep != NULL && ep->queue_backed)
		freed_since_claim++;

	/* a (and r) live in the request's memory: done with them before the free */
	dlist_delete(&a->live_node);
	release_body(&r->event_id);
	if (ep != NULL)
		ep->community->bytes_in_flight -= req->body_len;
	webhooks_request_free(req);
	if (ep != NULL)
	{
		Community  *c = ep->community;
		bool		was_full = c->byte_blocked || c->in_flight >=
			community_cap(hash_get_num_entries(communities));

		ep->in_flight--;
		c->in_flight--;
		c->byte_blocked = false;
		ep->progress_at = c->progress_at = GetCurrentTimestamp();
		start_queued(ep);
		/* a slot of a community at its cap: another endpoint may use it */
		if (was_full)
		{
			dlist_iter	iter;

			dlist_foreach(iter, &c->endpoints)
				start_queued(dlist_container(Endpoint, community_node,
											 iter.cur));
		}
		/* a gone endpoint's entry stays, to keep it out of claims */
		if (endpoint_idle(ep))
			forget_endpoint(ep);
	}
}

/*
 * Record, without sending, a queued request (its endpoint's counts are
 * the caller's), and free it: failed, when its webhook is switched off,
 * or spilled (why NULL) into the queue.
 */
static void
drop_request(WebhookRequest *req, const char *why)
{
	Attempt    *a = (Attempt *) req->owner;
	AttemptRecord *r = &a->rec;

	r->error = why;
	r->started_at = GetCurrentTimestamp();
	r->outcome = why ? OUTCOME_FAILED : OUTCOME_SPILL;
	r->no_request = true;
	(void) add_record(a);

	dlist_delete(&a->live_node);
	release_body(&r->event_id);
	webhooks_request_free(req);
}

/*
 * Deliveries read from the events that have waited SPILL_MS for their
 * endpoint (or its community), or wait behind a stalled one, go to the
 * queue, where claims share the worker between webhooks and communities
 * as their slots come free: a slow endpoint's backlog holds neither the
 * worker's memory nor the reading of everyone else's events.  With all,
 * every delivery waiting goes, claimed ones too (their rows go back to
 * pending): a webhook changed, and claims see it as it is now.
 */
static void
spill_waiting(bool all)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz before = TimestampTzPlusMilliseconds(now, -SPILL_MS);
	HASH_SEQ_STATUS status;
	Endpoint   *ep;

	hash_seq_init(&status, endpoints);
	while ((ep = hash_seq_search(&status)) != NULL)
	{
		bool		stuck = all || stalled(ep, now);

		/*
		 * Claimed deliveries wait for a slot of their own webhook, which
		 * claims counted; not for bytes, which they could not: those of a
		 * stalled community go back too.
		 */
		spill_endpoint(ep, stuck,
					   all || (stuck && ep->community->byte_blocked), before);
		/* (a stalled community stays full for claims until it moves) */
		if (all)
			recheck_byte_blocked(ep->community);
		if (endpoint_idle(ep))
			forget_endpoint(ep);
	}
}

/*
 * One endpoint's part of spill_waiting: what waits since before, or all of
 * it if stuck; claimed deliveries only if claimed_too.
 */
static void
spill_endpoint(Endpoint *ep, bool stuck, bool claimed_too, TimestampTz before)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &ep->queued)
	{
		WebhookRequest *req = dlist_container(WebhookRequest, node, iter.cur);
		Attempt    *a = (Attempt *) req->owner;

		if (!stuck && a->queued_at > before)
			break;				/* the rest came later */
		if (a->rec.delivery_id != 0 && !claimed_too)
			continue;			/* claimed: it has its slot's turn coming */
		dlist_delete(&req->node);
		ep->nqueued--;
		queued_total--;
		ep->queue_backed = true;
		drop_request(req, NULL);
	}
}

/* Some work for run_in_transaction */
typedef void (*WorkFunction) (void *arg);

/*
 * Run fn(arg) in a short transaction.  On an ERROR, log it, roll back and
 * return false: one failure must not stop the worker.
 */
static bool
run_in_transaction(const char *activity, WorkFunction fn, void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		begin_work(activity);
		fn(arg);
		end_work();
	}
	PG_CATCH();
	{
		recover_from_error(cxt);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* Attempts to record, for run_in_transaction */
typedef struct RecordBatch
{
	AttemptRecord *records;
	int			n;
	bool	   *deferred;		/* out: left for later, per record */
} RecordBatch;

/* webhooks.disable_after as written in the settings, for the reason */
static const char *
disable_after_text(void)
{
	return GetConfigOption("webhooks.disable_after", false, false);
}

/*
 * Record a batch in one transaction: the attempts, the health of their
 * webhooks, and the switching off of those whose health now says so (410
 * Gone, or failing for webhooks.disable_after).
 */
static void
record_batch(void *arg)
{
	RecordBatch *batch = (RecordBatch *) arg;
	pg_uuid_t  *ids = palloc(sizeof(pg_uuid_t) * batch->n);
	int			n = 0;

	webhooks_queue_record(batch->records, batch->n, batch->deferred);
	webhooks_queue_health(batch->records, batch->n, batch->deferred);
	for (int i = 0; i < batch->n; i++)
		if (!batch->deferred[i] && !batch->records[i].no_request &&
			batch->records[i].outcome != OUTCOME_DELIVERED &&
			batch->records[i].outcome != OUTCOME_TEST)
			ids[n++] = batch->records[i].webhook_id;
	(void) webhooks_queue_disable_due(ids, n, webhooks_disable_after_s,
									  disable_after_text());
}

static bool
try_record(AttemptRecord *recs, int n, bool *deferred)
{
	RecordBatch batch = {recs, n, deferred};

	return run_in_transaction("recording delivery attempts", record_batch,
							  &batch);
}

/*
 * Move the records kept for later (the first nrecords) into a fresh
 * context and free the old one, with everything the recorded ones held: an
 * application may hold a lock for hours.
 */
static void
keep_deferred_records(void)
{
	MemoryContext fresh = AllocSetContextCreate(TopMemoryContext,
												"webhooks records",
												ALLOCSET_DEFAULT_SIZES);
	AttemptRecord *copy = MemoryContextAlloc(fresh,
											 sizeof(AttemptRecord) * nrecords);

	for (int i = 0; i < nrecords; i++)
	{
		AttemptRecord *r = &copy[i];

		*r = records[i];
		keep_strings(r, fresh);
	}
	MemoryContextDelete(records_cxt);
	records_cxt = fresh;
	records = copy;
	records_size = nrecords;
}

/*
 * Record every finished attempt in one transaction.  If the batch fails,
 * each attempt is tried alone, so one bad row cannot hold back the rest;
 * a claimed delivery's attempt that still fails stays unrecorded, and its
 * delivery, held by nobody, is released and sent again (release_orphans);
 * a read one's is kept and tried again RECORD_RETRY_MS later.  Returns
 * whether deliveries were spilled into the queue (a claim may take them).  An attempt whose
 * delivery an application's transaction has locked (webhook_delete not
 * yet committed) is kept and recorded a little later: the worker never
 * waits for the application, and nobody else's attempts wait with it.
 */
static bool
record_attempts(void)
{
	bool	   *deferred;
	bool	   *recorded;
	int			kept = 0;
	bool		retry_failed = false;
	bool		spilled = false;

	if (nrecords == 0)
		return false;

	deferred = palloc0(sizeof(bool) * nrecords);
	recorded = palloc(sizeof(bool) * nrecords);
	if (try_record(records, nrecords, deferred))
		memset(recorded, true, sizeof(bool) * nrecords);
	else
	{
		for (int i = 0; i < nrecords; i++)
		{
			deferred[i] = false;
			recorded[i] = try_record(&records[i], 1, &deferred[i]);
			if (recorded[i])
				continue;
			if (records[i].delivery_id != 0)
				ereport(WARNING,
						(errmsg("webhooks: could not record attempt %d of delivery " INT64_FORMAT "; it is sent again",
								records[i].attempt, records[i].delivery_id),
						 errdetail("Its delivery stays marked in flight until the worker releases what it does not hold (every 10 s).")));
			else if (records[i].outcome != OUTCOME_TEST)
				ereport(WARNING,
						(errmsg("webhooks: could not record attempt %d of event %s to webhook %s; trying again in %d s",
								records[i].attempt,
								webhooks_uuid_to_cstring(&records[i].event_id),
								webhooks_uuid_to_cstring(&records[i].webhook_id),
								RECORD_RETRY_MS / 1000),
						 errdetail("The read position stays before its event until it is recorded.")));
		}
	}

	for (int i = 0; i < nrecords; i++)
	{
		/*
		 * Kept for later: those an application's lock held off, and read
		 * ones that could not be written (they have no row to fall back
		 * on, and the read position waits for them).
		 */
		if (deferred[i] || (!recorded[i] && records[i].delivery_id == 0 &&
							records[i].outcome != OUTCOME_TEST))
		{
			if (!deferred[i])
				retry_failed = true;
			records[kept++] = records[i];
		}
		else if (recorded[i] && records[i].page != NULL)
			webhooks_reader_done(records[i].page, 1);
		if (records[i].outcome == OUTCOME_SPILL && recorded[i] && !deferred[i])
			spilled = true;
		if (recorded[i] && !deferred[i] &&
			(records[i].delivery_id != 0 ||
			 records[i].outcome != OUTCOME_DELIVERED))
			queue_rows_since_vacuum++;
	}
	if (queue_rows_since_vacuum >= VACUUM_EVERY &&
		webhooks_start_queue_vacuum(MyBgworkerEntry->bgw_extra))
		queue_rows_since_vacuum = 0;

	nrecords = kept;
	if (kept > 0)
	{
		keep_deferred_records();
		records_deferred_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															 retry_failed ? RECORD_RETRY_MS : DEFER_MS);
		return spilled;
	}
	MemoryContextReset(records_cxt);
	records = NULL;
	records_size = 0;
	return spilled;
}

/*
 * What the worker holds, per webhook and per community, for the next
 * claim (in the current memory context), and each community's cap (see
 * community_cap; a community waiting for its byte share counts as full).
 */
static void
held_requests(HeldRequests *held)
{
	HASH_SEQ_STATUS status;
	Community  *c;
	TimedOut   *t;
	long		nwebhooks = Max(hash_get_num_entries(endpoints) +
								hash_get_num_entries(timed_out), 1);
	long		ncommunities = Max(hash_get_num_entries(communities), 1);
	int			n = 0;

	held->webhooks = palloc(sizeof(pg_uuid_t) * nwebhooks);
	held->per_webhook = palloc(sizeof(int32) * nwebhooks);
	held->communities = palloc(sizeof(char *) * ncommunities);
	held->per_community = palloc(sizeof(int32) * ncommunities);
	held->ncommunities = 0;
	hash_seq_init(&status, communities);
	while ((c = hash_seq_search(&status)) != NULL)
	{
		dlist_iter	iter;
		int32		used = 0;

		dlist_foreach(iter, &c->endpoints)
		{
			Endpoint   *ep = dlist_container(Endpoint, community_node, iter.cur);

			held->webhooks[n] = ep->webhook_id;
			held->per_webhook[n] = ep->in_flight + ep->nqueued;
			used += held->per_webhook[n];
			/* answered 410 Gone: no slot until it is switched off */
			if (ep->gone)
				held->per_webhook[n] = webhooks_max_per_endpoint;
			/* timed out: the slots beyond its one are taken */
			else if (is_timed_out(&ep->webhook_id))
				held->per_webhook[n] += webhooks_max_per_endpoint - 1;
			n++;
		}
		/* waiting for its byte share: no more claims until it moves */
		if (c->byte_blocked)
			used = Max(used, community_cap(hash_get_num_entries(communities)));
		held->communities[held->ncommunities] = c->id;
		held->per_community[held->ncommunities] = used;
		held->ncommunities++;
	}
	/* timed-out webhooks holding nothing now: one slot each */
	hash_seq_init(&status, timed_out);
	while ((t = hash_seq_search(&status)) != NULL)
	{
		if (hash_search(endpoints, &t->webhook_id, HASH_FIND, NULL) != NULL)
			continue;
		held->webhooks[n] = t->webhook_id;
		held->per_webhook[n] = webhooks_max_per_endpoint - 1;
		n++;
	}
	held->nwebhooks = n;
	held->community_cap = community_cap(held->ncommunities);
	held->byte_budget = Max(MAX_BYTES_IN_FLIGHT - bytes_held, 0);
}

/*
 * The body of an event's requests, built once and shared by all of them
 * (the envelope holds nothing per webhook; only the signature differs):
 * sets msg->body.  What the worker holds in bodies is counted in
 * bytes_held, against webhooks.max_bytes_in_flight.
 */
static void
acquire_body(pg_uuid_t *event_id, WebhookMessage *msg)
{
	SharedBody *b = hash_search(bodies, event_id, HASH_FIND, NULL);

	if (b == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(bodies_cxt);
		size_t		len;
		char	   *body = webhooks_build_body(msg, &len);

		MemoryContextSwitchTo(old);
		b = hash_search(bodies, event_id, HASH_ENTER, NULL);
		b->body = body;
		b->len = len;
		b->refs = 0;
		bytes_held += len;
	}
	b->refs++;
	msg->body = b->body;
	msg->body_len = b->len;
}

/* A request is done with its event's body; the last one frees it. */
static void
release_body(pg_uuid_t *event_id)
{
	SharedBody *b = hash_search(bodies, event_id, HASH_FIND, NULL);

	if (b == NULL || --b->refs > 0)
		return;
	bytes_held -= b->len;
	pfree(b->body);
	hash_search(bodies, event_id, HASH_REMOVE, NULL);
}

/* The record of an attempt of a delivery, as far as the delivery tells. */
static void
record_of(AttemptRecord *r, Delivery *d)
{
	memset(r, 0, sizeof(AttemptRecord));
	r->delivery_id = d->id;
	r->page = d->page;
	r->webhook_id = d->webhook_id;
	r->event_id = d->event_id;
	r->event = d->event;
	r->community_id = d->community_id;
	r->emitted_at = d->emitted_at;
	r->event_txid = d->event_txid;
	r->payload_bytes = d->payload_bytes;
	r->attempt = d->attempts + 1;
}

/* Build the request of one delivery, owned by an Attempt. */
static WebhookRequest *
build_request(Delivery *d)
{
	WebhookMessage msg;
	WebhookRequest *req;
	Attempt    *a;

	msg.url = d->url;
	msg.secret = d->secret;
	msg.previous_secret = d->previous_secret;
	msg.header_lines = d->header_lines;
	msg.event_id = webhooks_uuid_to_cstring(&d->event_id);
	msg.event = d->event;
	msg.community_id = d->community_id;
	msg.payload = d->payload;
	msg.emitted_at = d->emitted_at;

	acquire_body(&d->event_id, &msg);
	PG_TRY();
	{
		req = webhooks_request_new(&msg, requests_cxt);
	}
	PG_CATCH();
	{
		release_body(&d->event_id);
		PG_RE_THROW();
	}
	PG_END_TRY();
	a = MemoryContextAlloc(req->cxt, sizeof(Attempt));
	dlist_push_tail(&live_attempts, &a->live_node);
	record_of(&a->rec, d);
	a->rec.event = MemoryContextStrdup(req->cxt, d->event);
	a->rec.community_id = MemoryContextStrdup(req->cxt, d->community_id);
	req->owner = a;
	return req;
}

/*
 * Record a delivery without sending it: failed, when it cannot be
 * attempted (why), or spilled into the queue (why NULL).
 */
static void
record_unsent(Delivery *d, const char *why)
{
	AttemptRecord *r = new_record();

	record_of(r, d);
	r->error = why;
	r->started_at = GetCurrentTimestamp();
	r->outcome = why ? OUTCOME_FAILED : OUTCOME_SPILL;
	r->no_request = true;
	keep_strings(r, records_cxt);
}

/*
 * Build and start (or queue) one delivery's request; one read from the
 * events that would wait behind a stalled endpoint goes to the queue.
 */
static void
start_delivery(Delivery *d)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (d->url == NULL)
	{
		record_unsent(d, "the webhook was deleted or deactivated");
		return;
	}
	if (d->payload == NULL)
	{
		record_unsent(d, "the event is no longer kept (webhooks.log_retention)");
		return;
	}
	if (d->id == 0)
	{
		Endpoint   *ep = hash_search(endpoints, &d->webhook_id, HASH_FIND,
										 NULL);

		if (ep != NULL && stalled(ep, GetCurrentTimestamp()))
		{
			ep->queue_backed = true;
			record_unsent(d, NULL);
			return;
		}
	}
	PG_TRY();
	{
		submit(endpoint_for(&d->webhook_id, d->community_id), build_request(d));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		record_unsent(d, edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/* Deliveries taken in a transaction, for run_in_transaction */
typedef struct Taken
{
	int			limit;
	HeldRequests *held;			/* claims: what the worker holds */
	bool	   *has_due;		/* claims: out, whether one is due later */
	TimestampTz *next_due;		/* claims: out, when */
	Delivery   *deliveries;		/* out, in claim_cxt */
	int			n;				/* out */
} Taken;

static void
claim(void *arg)
{
	Taken	   *t = (Taken *) arg;

	t->n = webhooks_queue_claim(t->limit, t->held, &t->deliveries, claim_cxt);
	if (t->n < t->limit)
		*t->has_due = webhooks_queue_next_due(t->held, t->next_due);
}

static void
read_page(void *arg)
{
	Taken	   *t = (Taken *) arg;

	t->n = webhooks_reader_read(t->limit,
								Max(MAX_BYTES_IN_FLIGHT - bytes_held, 0),
								&t->deliveries, claim_cxt);
	webhooks_reader_save();
}

/*
 * Claim up to limit due deliveries in one transaction, then start them.
 * Returns how many were claimed, or -1 after an error.
 */
static int
claim_and_start(int limit, HeldRequests *held, bool *has_due,
				TimestampTz *next_due)
{
	Taken		t = {limit, held, has_due, next_due, NULL, 0};

	MemoryContextReset(claim_cxt);
	if (!run_in_transaction("claiming deliveries", claim, &t))
		return -1;
	for (int i = 0; i < t.n; i++)
		start_delivery(&t.deliveries[i]);
	return t.n;
}

/*
 * Read a page of about limit deliveries from the committed events and
 * start them, and save where reading stands, in one transaction.  Returns
 * how many deliveries, or -1 after an error (what was read is started all
 * the same: reading writes nothing, and the saved position is not
 * trusted).
 */
static int
read_and_start(int limit)
{
	Taken		t = {limit, NULL, NULL, NULL, NULL, 0};
	bool		ok;

	MemoryContextReset(claim_cxt);
	ok = run_in_transaction("reading events", read_page, &t);
	if (!ok)
		webhooks_reader_forget_saved();
	for (int i = 0; i < t.n; i++)
		start_delivery(&t.deliveries[i]);
	return ok ? t.n : -1;
}

static void
maintain_partitions(void *arg)
{
	/* DDL on tables the application writes: never wait long for it */
	SetConfigOption("lock_timeout", "200ms", PGC_SUSET, PGC_S_OVERRIDE);
	*(bool *) arg = webhooks_maintain_partitions(webhooks_log_retention_s);
	webhooks_queue_forget_deleted();
	SetConfigOption("lock_timeout", WORKER_LOCK_TIMEOUT, PGC_SUSET,
					PGC_S_OVERRIDE);
}

/*
 * Make the coming days' partitions and drop expired ones.  Returns false
 * if that failed (a lock not granted in time, say) or had to wait (a
 * restore at work): try again soon.
 */
static bool
maintain(void)
{
	bool		done = false;
	bool		ok = run_in_transaction("maintaining partitions",
										maintain_partitions, &done);

	if (!ok)
		SetConfigOption("lock_timeout", WORKER_LOCK_TIMEOUT, PGC_SUSET,
						PGC_S_OVERRIDE);
	return ok && done;
}

/*
 * Forget the timed-out state of webhooks deleted or switched off: it
 * would otherwise stay in every claim's arguments for TIMED_OUT_KEPT_MS.
 * (One switched on again starts over with its full share, as a new URL
 * would: its first timeout brings the state back.)
 */
static void
forget_inactive_timed_out(void)
{
	long		n = hash_get_num_entries(timed_out);
	pg_uuid_t  *ids;
	pg_uuid_t  *gone;
	HASH_SEQ_STATUS status;
	TimedOut   *t;
	int			i = 0;
	int			ngone;

	if (n == 0)
		return;
	ids = palloc(sizeof(pg_uuid_t) * n);
	gone = palloc(sizeof(pg_uuid_t) * n);
	hash_seq_init(&status, timed_out);
	while ((t = hash_seq_search(&status)) != NULL)
		ids[i++] = t->webhook_id;
	ngone = webhooks_queue_inactive(ids, i, gone);
	for (int k = 0; k < ngone; k++)
		(void) hash_search(timed_out, &gone[k], HASH_REMOVE, NULL);
}

static void
release_orphans_in_transaction(void *arg)
{
	dlist_iter	iter;
	ArrayBuildState *held = initArrayResult(INT8OID, CurrentMemoryContext,
											false);
	int64		released;

	for (int i = 0; i < nrecords; i++)
		if (records[i].delivery_id != 0)
			accumArrayResult(held, Int64GetDatum(records[i].delivery_id),
							 false, INT8OID, CurrentMemoryContext);
	dlist_foreach(iter, &live_attempts)
	{
		Attempt    *a = dlist_container(Attempt, live_node, iter.cur);

		if (a->rec.delivery_id != 0)
			accumArrayResult(held, Int64GetDatum(a->rec.delivery_id), false,
							 INT8OID, CurrentMemoryContext);
	}
	released = webhooks_queue_release_orphans(makeArrayResult(held,
															  CurrentMemoryContext));
	forget_inactive_timed_out();
	/* and switch off what an application's lock held off before */
	(void) webhooks_queue_disable_due(NULL, 0, webhooks_disable_after_s,
									  disable_after_text());
	if (released > 0)
		ereport(LOG,
				(errmsg("webhooks: " INT64_FORMAT " deliveries marked in flight by no running worker (left by an earlier one, or restored) will be sent again",
						released)));
}

/*
 * Put back to 'pending' the deliveries marked 'sending' that this worker
 * does not hold (queued, in flight, or waiting to be recorded).
 */
static void
release_orphans(void)
{
	HASH_SEQ_STATUS status;
	Endpoint   *ep;
	TimedOut   *t;

	(void) run_in_transaction("releasing orphaned deliveries",
							  release_orphans_in_transaction, NULL);

	/*
	 * Endpoints that answered 410 Gone were kept out of claims until their
	 * webhook was switched off (done by now, unless an application's lock
	 * still holds it off, or a person switched it on again): let them go.
	 * At worst one more request finds the endpoint still gone.
	 */
	hash_seq_init(&status, endpoints);
	while ((ep = hash_seq_search(&status)) != NULL)
	{
		ep->gone = false;
		if (endpoint_idle(ep))
			forget_endpoint(ep);
	}

	/* a webhook that has not timed out for long starts over */
	hash_seq_init(&status, timed_out);
	while ((t = hash_seq_search(&status)) != NULL)
		if (TimestampDifferenceExceeds(t->at, GetCurrentTimestamp(),
									   TIMED_OUT_KEPT_MS))
			(void) hash_search(timed_out, &t->webhook_id, HASH_REMOVE, NULL);
}

static void
save_position(void *arg)
{
	webhooks_reader_save();
}

static void
start_reading(void *arg)
{
	*(bool *) arg = webhooks_reader_start();
}

/* Milliseconds from now until t, rounded up; 0 once t is past. */
static long
ms_until(TimestampTz t)
{
	return TimestampDifferenceMilliseconds(GetCurrentTimestamp(), t);
}

/* The worker's loop, until shutdown. */
static void
deliver_forever(void)
{
	MemoryContext loop_cxt = AllocSetContextCreate(TopMemoryContext,
												   "webhooks loop",
												   ALLOCSET_DEFAULT_SIZES);
	bool		claim_now = true;
	bool		read_now = true;
	bool		has_due = false;
	TimestampTz next_due = 0;
	TimestampTz next_maintain = 0;
	TimestampTz next_release = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   RELEASE_INTERVAL_MS);
	TimestampTz next_poll = 0;
	TimestampTz next_spill = 0;
	TimestampTz next_read = 0;
	uint64		changes_seen = pg_atomic_read_u64(&webhooks_shared->webhooks_changed);
	uint64		changes;

	for (;;)
	{
		WebhookRequest *req;
		int			busy;
		int			free_slots;
		int			min_claim;
		bool		room;
		long		timeout = -1;

		MemoryContextSwitchTo(loop_cxt);
		MemoryContextReset(loop_cxt);
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			break;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			webhooks_client_configure(client);
			claim_now = true;
		}

		/*
		 * A webhook changed (deactivated, deleted, a new URL or secret):
		 * what waits in memory goes to the queue, whose claims see the
		 * webhook as it is now.
		 */
		changes = pg_atomic_read_u64(&webhooks_shared->webhooks_changed);
		if (changes != changes_seen)
		{
			changes_seen = changes;
			spill_waiting(true);
		}

		/* 1. Finished requests become records and free their slots. */
		while ((req = webhooks_client_next_done(client)) != NULL)
			finish_attempt(req);

		/* 2. Record them in batches. */
		busy = webhooks_client_in_flight(client) + queued_total;
		if (nrecords > 0 && ms_until(records_deferred_until) == 0 &&
			(nrecords >= webhooks_batch_size || busy == 0 ||
			 ms_until(TimestampTzPlusMilliseconds(first_record_at,
												  RECORD_DELAY_MS)) == 0))
		{
			if (record_attempts())
				claim_now = true;
		}

		/*
		 * 3. Read newly committed events into deliveries and start them
		 * (when woken, at least every POLL_INTERVAL_MS, and at once while
		 * a window has more), and claim due deliveries from the queue,
		 * while there is room.  Claim again once half a webhook's worth of
		 * slots came free, without waiting for the attempts to be
		 * recorded: an endpoint at its limit must not idle while its
		 * backlog waits.
		 */
		if (ms_until(next_poll) == 0)
		{
			read_now = claim_now = true;
			next_poll = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													POLL_INTERVAL_MS);
		}
		if (!claim_now && has_due && ms_until(next_due) == 0)
			claim_now = true;
		if (freed_since_claim >= Max(1, webhooks_max_per_endpoint / 2))
			claim_now = true;
		min_claim = Max(1, Min(webhooks_batch_size, webhooks_max_concurrent) / 4);
		free_slots = webhooks_max_concurrent - busy;
		room = (free_slots >= min_claim || (busy == 0 && free_slots > 0)) &&
			(bytes_held < MAX_BYTES_IN_FLIGHT || busy == 0);
		if (room && (read_now || webhooks_reader_more()) &&
			ms_until(next_read) == 0)
		{
			read_now = false;
			/* after an error (logged), read again in a second */
			if (read_and_start(Min(free_slots, webhooks_batch_size)) < 0)
				next_read = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														1000);
			busy = webhooks_client_in_flight(client) + queued_total;
			free_slots = webhooks_max_concurrent - busy;
			room = (free_slots >= min_claim || (busy == 0 && free_slots > 0)) &&
				(bytes_held < MAX_BYTES_IN_FLIGHT || busy == 0);
		}

		if (claim_now && room)
		{
			HeldRequests held;
			int			limit = Min(free_slots, webhooks_batch_size);
			int			n;

			held_requests(&held);
			has_due = false;
			freed_since_claim = 0;
			n = claim_and_start(limit, &held, &has_due, &next_due);
			if (n < 0)
			{
				/* The error is logged; try again in a second. */
				claim_now = false;
				has_due = true;
				next_due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   1000);
			}
			else if (n < limit)
			{
				claim_now = false;
				/* Due rows that could not be claimed: look again shortly. */
				if (has_due && ms_until(next_due) == 0)
					next_due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   10);
			}
			continue;			/* start over: records may be waiting */
		}

		/* 4. What waits in memory too long goes to the queue. */
		if (queued_total > 0 && ms_until(next_spill) == 0)
		{
			spill_waiting(false);
			next_spill = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 SPILL_CHECK_MS);
		}

		/* 5. Chores. */
		if (ms_until(next_release) == 0)
		{
			release_orphans();
			next_release = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   RELEASE_INTERVAL_MS);
		}
		if (ms_until(next_maintain) == 0)
			next_maintain = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														maintain() ? MAINTAIN_INTERVAL_MS : 60 * 1000);

		/* 6. Wait for sockets, timers, the latch, or the next due time. */
		if (nrecords > 0)
			timeout = Max(ms_until(TimestampTzPlusMilliseconds(first_record_at,
															   RECORD_DELAY_MS)),
						  ms_until(records_deferred_until));
		if (has_due && !claim_now)
		{
			long		due = ms_until(next_due);

			if (timeout < 0 || due < timeout)
				timeout = due;
		}
		{
			long		soonest = Min(Min(ms_until(next_maintain),
										  ms_until(next_poll)),
									  ms_until(next_release));

			if (queued_total > 0)
				soonest = Min(soonest, ms_until(next_spill));
			if (timeout < 0 || soonest < timeout)
				timeout = soonest;
		}

		pgstat_report_activity(STATE_IDLE, NULL);
		if (webhooks_client_wait(client, timeout, PG_WAIT_EXTENSION) & WL_LATCH_SET)
			read_now = claim_now = true;
	}
}

/* Entry point of the delivery worker. */
void
webhooks_worker_main(Datum main_arg)
{
	char		dbname[BGW_EXTRALEN];
	HASHCTL		ctl;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, handle_sigterm);
	BackgroundWorkerUnblockSignals();

	strlcpy(dbname, MyBgworkerEntry->bgw_extra, sizeof(dbname));
	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	pgstat_report_appname("webhooks worker");

	/*
	 * pg_cancel_backend() may cancel a statement of the worker's (the
	 * statement fails, is logged, and its work is done again), but never
	 * the worker: between statements, where an ERROR would end the
	 * process, cancel requests are held off and dropped.
	 */
	HOLD_CANCEL_INTERRUPTS();

	/*
	 * Claim the database's one delivery worker slot first, before waiting
	 * for anything: a second worker (a restarted launcher's, while this
	 * one waits for CREATE EXTENSION) leaves at once.
	 */
	if (!claim_worker_slot())
	{
		ereport(LOG,
				(errmsg("webhooks: another delivery worker is running, or a command needs database \"%s\" alone; exiting",
						dbname)));
		proc_exit(0);
	}
	before_shmem_exit(unpublish_worker, (Datum) 0);

	/* Only schema-qualified names are used; resolve nothing elsewhere. */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET,
					PGC_S_OVERRIDE);
	/* A lost commit of the worker's only repeats an attempt. */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/*
	 * The database's defaults for sessions are not the worker's.  It never
	 * means to wait for a lock (claims and records skip rows an
	 * application holds); a lock timeout is the net under that.  Its own
	 * statements have no time limit: the first read after an outage may
	 * be long, and would otherwise never finish.
	 */
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET,
					PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", WORKER_LOCK_TIMEOUT, PGC_SUSET,
					PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	/* a new snapshot per statement: reading depends on it (subscriptions.c) */
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * A backlog committed at once has one next_attempt_at, and before
	 * ANALYZE the planner would sort all of it on every claim instead of
	 * reading the first rows of the due index.  No statement of the
	 * worker's needs a sort, so never choose one.
	 */
	SetConfigOption("enable_sort", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * Likewise, plans made while the queue was nearly empty (one row
	 * estimated) must stay right when a million rows arrive before the next
	 * ANALYZE: every statement here is driven by a few ids or an index
	 * range, so keep the planner on index paths.
	 */
	SetConfigOption("enable_seqscan", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("enable_bitmapscan", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/* Short queries only: never spend 100+ ms compiling one (enable_sort
	 * = off inflates the cost of any plan that must sort past jit_above_cost). */
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	if (!wait_for_extension())
		proc_exit(0);

	requests_cxt = AllocSetContextCreate(TopMemoryContext, "webhooks requests",
										 ALLOCSET_DEFAULT_SIZES);
	records_cxt = AllocSetContextCreate(TopMemoryContext, "webhooks records",
										ALLOCSET_DEFAULT_SIZES);
	claim_cxt = AllocSetContextCreate(TopMemoryContext, "webhooks claim",
									  ALLOCSET_DEFAULT_SIZES);
	bodies_cxt = AllocSetContextCreate(TopMemoryContext, "webhooks bodies",
									   ALLOCSET_DEFAULT_SIZES);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(Endpoint);
	ctl.hcxt = TopMemoryContext;
	endpoints = hash_create("webhooks endpoints", 256, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ctl.keysize = WEBHOOKS_MAX_COMMUNITY_ID_BYTES + 1;
	ctl.entrysize = sizeof(Community);
	communities = hash_create("webhooks communities", 256, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(TimedOut);
	timed_out = hash_create("webhooks timed out", 64, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(SharedBody);
	bodies = hash_create("webhooks bodies", 1024, &ctl,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	MemoryContextSwitchTo(TopMemoryContext);
	client = webhooks_client_create(0);

	/*
	 * Read from where the previous worker stood (webhooks.read_events() may
	 * hold the reading lock a moment), and make again the attempts it left
	 * unrecorded.
	 */
	for (;;)
	{
		bool		reading = false;

		if (run_in_transaction("starting to read events", start_reading,
							   &reading) && reading)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 EXTENSION_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			proc_exit(0);
	}
	release_orphans();

	if (webhooks_shared != NULL)
		webhooks_shared->worker_latch = MyLatch;

	ereport(LOG,
			(errmsg("webhooks: delivery worker started for database \"%s\"",
					dbname)));

	deliver_forever();

	/* Keep what was finished; what is in flight is sent again next time. */
	{
		WebhookRequest *req;

		while ((req = webhooks_client_next_done(client)) != NULL)
			finish_attempt(req);
	}
	(void) record_attempts();
	(void) run_in_transaction("saving the read position", save_position, NULL);
	proc_exit(0);
}
