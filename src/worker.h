/*-------------------------------------------------------------------------
 *
 * worker.h
 *		The launcher and the delivery worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOKS_WORKER_H
#define WEBHOOKS_WORKER_H

#include "postgres.h"

extern void webhooks_register_launcher(void);

extern PGDLLEXPORT void webhooks_launcher_main(Datum main_arg);
extern PGDLLEXPORT void webhooks_worker_main(Datum main_arg);

/* vacuum.c */
extern bool webhooks_start_queue_vacuum(const char *dbname);
extern PGDLLEXPORT void webhooks_vacuum_main(Datum main_arg);

#endif							/* WEBHOOKS_WORKER_H */
