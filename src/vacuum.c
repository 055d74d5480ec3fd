/*-------------------------------------------------------------------------
 *
 * vacuum.c
 *		VACUUM of the delivery queue, in a short-lived background worker.
 *
 * Every delivery leaves a dead entry at the head of the due index, where
 * each claim starts reading, until VACUUM removes it; at ten thousand
 * deliveries a second autovacuum (a minute between looks) falls far
 * behind, and claims slow down by half over a million-row backlog.  So
 * the delivery worker asks for a VACUUM of webhooks.deliveries after every
 * so many finished deliveries.  It runs in a process of its own, so that
 * the delivery worker never stops serving its requests while it runs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/vacuum.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "utils/memutils.h"
#include "postmaster/bgworker.h"

#include "worker.h"

static BackgroundWorkerHandle *vacuum_handle = NULL;

/*
 * Start a VACUUM of the queue in database dbname, unless one is still
 * running.  Returns false if none could be started now.
 */
bool
webhooks_start_queue_vacuum(const char *dbname)
{
	BackgroundWorker worker;
	pid_t		pid;

	if (vacuum_handle != NULL)
	{
		if (GetBackgroundWorkerPid(vacuum_handle, &pid) != BGWH_STOPPED)
			return false;
		pfree(vacuum_handle);
		vacuum_handle = NULL;
	}

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "webhooks");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "webhooks_vacuum_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "webhooks vacuum of the queue");
	snprintf(worker.bgw_type, BGW_MAXLEN, "webhooks vacuum");
	strlcpy(worker.bgw_extra, dbname, BGW_EXTRALEN);

	/* The handle outlives the caller's memory context. */
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		bool		started = RegisterDynamicBackgroundWorker(&worker,
															  &vacuum_handle);

		MemoryContextSwitchTo(old);
		return started;
	}
}

/* Entry point: VACUUM webhooks.deliveries, then exit. */
void
webhooks_vacuum_main(Datum main_arg)
{
	VacuumStmt *stmt = makeNode(VacuumStmt);
	RangeVar   *rel = makeRangeVar("webhooks", "deliveries", -1);

	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(MyBgworkerEntry->bgw_extra, NULL, 0);
	pgstat_report_appname("webhooks vacuum");

	stmt->options = NIL;
	stmt->rels = list_make1(makeVacuumRelation(rel, InvalidOid, NIL));
	stmt->is_vacuumcmd = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "VACUUM webhooks.deliveries");
	/* As for a top-level statement: VACUUM runs its own transactions. */
	ExecVacuum(make_parsestate(NULL), stmt, true);
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}
