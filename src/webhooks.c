/*-------------------------------------------------------------------------
 *
 * webhooks.c
 *		Module entry: settings, shared memory, the commit-time wake-up of
 *		the delivery worker, and registration of the launcher.
 *
 * _PG_init only hands off: settings live in guc.c, the workers in
 * worker.c, libcurl in http.c.  The transaction callback that wakes the
 * worker is registered here once per process, never per transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/utility.h"

#include "http.h"
#include "webhooks.h"
#include "worker.h"

PG_MODULE_MAGIC;

WebhooksShared *webhooks_shared = NULL;

/* Set when this transaction queued a delivery; cleared at its end. */
static bool wake_at_commit = false;
static bool changed_at_commit = false;
static bool cache_changed_at_commit = false;
/* counted in cache_changes_begun: to count in cache_changes_ended at the end */
static bool cache_change_begun = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

void		_PG_init(void);

/* Reserve room for the shared state (PostgreSQL 15 asks in this hook). */
static void
webhooks_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(WebhooksShared)));
}

/* Create or attach to the shared state. */
static void
webhooks_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	webhooks_attach_shmem();
}

void
webhooks_attach_shmem(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	webhooks_shared = ShmemInitStruct("webhooks", sizeof(WebhooksShared),
									  &found);
	if (!found)
	{
		memset(webhooks_shared, 0, sizeof(WebhooksShared));
		SpinLockInit(&webhooks_shared->mutex);
		pg_atomic_init_u64(&webhooks_shared->webhooks_changed, 0);
		pg_atomic_init_u64(&webhooks_shared->cache_changes_begun, 0);
		pg_atomic_init_u64(&webhooks_shared->cache_changes_ended, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * The triggers on webhooks.webhooks, for each row changed (and each
 * TRUNCATE):
 * when this transaction commits, the worker's copy of the webhooks is out
 * of date (subscriptions.c), and (unless rows were only added) what it
 * had read for them and not yet sent waits to be claimed, so that it goes
 * out as the webhook is then (or not at all).
 */
PG_FUNCTION_INFO_V1(webhooks_note_change);

Datum
webhooks_note_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("webhooks_note_change() must be called as a trigger")));
	cache_changed_at_commit = wake_at_commit = true;
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		changed_at_commit = true;
	PG_RETURN_POINTER(NULL);
}

/*
 * Ask for the worker to be woken when the current transaction commits.
 * Cheap enough to call per event: it only sets a flag.
 */
void
webhooks_wake_worker_at_commit(void)
{
	wake_at_commit = true;
}

/* A transaction counted as a change to the webhooks has ended. */
static void
change_ended(void)
{
	if (cache_change_begun)
		pg_atomic_fetch_add_u64(&webhooks_shared->cache_changes_ended, 1);
	cache_change_begun = cache_changed_at_commit = false;
}

/* At commit, set the worker's latch if this transaction queued anything. */
static void
webhooks_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			/* before the change is visible: see subscriptions.c */
			if (cache_changed_at_commit && webhooks_shared != NULL &&
				!cache_change_begun)
			{
				pg_atomic_fetch_add_u64(&webhooks_shared->cache_changes_begun, 1);
				cache_change_begun = true;
			}
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (changed_at_commit && webhooks_shared != NULL)
				pg_atomic_fetch_add_u64(&webhooks_shared->webhooks_changed, 1);
			changed_at_commit = false;
			if (wake_at_commit && webhooks_shared != NULL)
			{
				Latch	   *latch = webhooks_shared->worker_latch;

				if (latch != NULL)
					SetLatch(latch);
			}
			wake_at_commit = false;
			change_ended();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:

			/*
			 * A prepared transaction's events are found by the next wake;
			 * its changes to webhooks count at COMMIT PREPARED.
			 */
			wake_at_commit = changed_at_commit = false;
			change_ended();
			break;
		default:
			break;
	}
}

/*
 * COMMIT PREPARED commits deliveries queued by the session that prepared
 * the transaction, whose commit callback never runs: wake the worker when
 * the COMMIT PREPARED statement's own transaction commits.  (A spurious
 * wake-up costs one claim.)
 *
 * Commands that need the worker's database to themselves (DROP DATABASE,
 * renaming it, copying it as a template) first ask the worker to step
 * aside, and let it come back when they are done (launcher.c).
 */
/* The next ProcessUtility hook, or the standard one. */
static void
run_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
			ProcessUtilityContext context, ParamListInfo params,
			QueryEnvironment *queryEnv, DestReceiver *dest,
			QueryCompletion *qc)
{
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

static void
webhooks_process_utility(PlannedStmt *pstmt, const char *queryString,
						 bool readOnlyTree, ProcessUtilityContext context,
						 ParamListInfo params, QueryEnvironment *queryEnv,
						 DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	const char *alone = webhooks_database_wanted_alone(parsetree);

	if (alone != NULL)
	{
		PG_ENSURE_ERROR_CLEANUP(webhooks_step_back, (Datum) 0);
		{
			webhooks_step_aside(alone);
			run_utility(pstmt, queryString, readOnlyTree, context, params,
						queryEnv, dest, qc);
		}
		PG_END_ENSURE_ERROR_CLEANUP(webhooks_step_back, (Datum) 0);
		webhooks_step_back(0, (Datum) 0);
	}
	else if (IsA(parsetree, TransactionStmt) &&
			 ((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED)
	{
		/*
		 * It may make changes to webhooks visible, written by another
		 * session: counted before they are (subscriptions.c).
		 */
		if (webhooks_shared != NULL && !cache_change_begun)
		{
			pg_atomic_fetch_add_u64(&webhooks_shared->cache_changes_begun, 1);
			cache_change_begun = true;
		}
		run_utility(pstmt, queryString, readOnlyTree, context, params,
					queryEnv, dest, qc);
		wake_at_commit = true;
	}
	else
		run_utility(pstmt, queryString, readOnlyTree, context, params,
					queryEnv, dest, qc);
}

/* Module load: define settings; when preloaded, shared memory and workers. */
void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	webhooks_define_gucs();
	RegisterXactCallback(webhooks_xact_callback, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = webhooks_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = webhooks_shmem_startup;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = webhooks_process_utility;

	webhooks_http_global_init();
	webhooks_register_launcher();
}
