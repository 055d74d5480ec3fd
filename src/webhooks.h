/*-------------------------------------------------------------------------
 *
 * webhooks.h
 *		Names shared between the files of the webhooks extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOKS_H
#define WEBHOOKS_H

#include "postgres.h"

#include "access/transam.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/nodes.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/array.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#define WEBHOOKS_VERSION "1.1"
/* The extension version whose tables the worker reads and writes */
#define WEBHOOKS_SCHEMA_VERSION "1.1"
#define WEBHOOKS_USER_AGENT "webhooks-postgresql/" WEBHOOKS_VERSION

/* Longest accepted endpoint URL, in bytes */
#define WEBHOOKS_MAX_URL_BYTES 2048

/* Longest accepted community id, in bytes (it is indexed) */
#define WEBHOOKS_MAX_COMMUNITY_ID_BYTES 1024

/* Most event types one call may name (duplicates included) */
#define WEBHOOKS_MAX_EVENTS 1000

/* Most headers a webhook may add, and their size in all (name: value CRLF) */
#define WEBHOOKS_MAX_HEADERS 32
#define WEBHOOKS_MAX_HEADER_BYTES 8192

/* Most retry delays a schedule may hold */
#define WEBHOOKS_MAX_RETRIES 50

/* guc.c: settings */
extern char *webhooks_database_name;
extern bool webhooks_allow_http;
extern bool webhooks_allow_private_addresses;
extern char *webhooks_ssl_ca_file;
extern int	webhooks_timeout_ms;
extern char *webhooks_retry_schedule;
extern int	webhooks_max_concurrent;
extern int	webhooks_max_per_endpoint;
extern int	webhooks_batch_size;
extern int	webhooks_log_retention_s;
extern int	webhooks_max_payload_size;
extern int	webhooks_max_bytes_in_flight_kb;
extern int	webhooks_disable_after_s;

extern void webhooks_define_gucs(void);
extern int	webhooks_max_attempts(void);
extern int64 webhooks_retry_delay_ms(int attempts_made);

/* webhooks.c: shared state and waking the worker */
typedef struct WebhooksShared
{
	slock_t		mutex;			/* protects the fields below */
	Latch	   *worker_latch;	/* the delivery worker's latch, or NULL */
	pid_t		worker_pid;		/* the delivery worker, or 0 */
	char		worker_db[NAMEDATALEN]; /* the database it serves */
	Latch	   *launcher_latch; /* the launcher's latch, or NULL */
	int			stepping_aside; /* commands the worker makes way for */
	pg_atomic_uint64 webhooks_changed;	/* bumped when a webhook changes */
	/* transactions that changed webhooks, about to commit / ended */
	pg_atomic_uint64 cache_changes_begun;
	pg_atomic_uint64 cache_changes_ended;
} WebhooksShared;

extern WebhooksShared *webhooks_shared;

/* launcher.c: making way for commands on the worker's database */
extern const char *webhooks_database_wanted_alone(Node *parsetree);
extern void webhooks_step_aside(const char *dbname);
extern void webhooks_step_back(int code, Datum arg);
extern void webhooks_wake_worker_at_commit(void);
extern void webhooks_attach_shmem(void);

/* validate.c: input checks; each raises a clear ERROR */
extern char *check_community_id(FunctionCallInfo fcinfo, int argno);
extern void check_community_id_value(const char *community_id);
extern Size webhooks_payload_size(Datum payload);
extern void webhooks_check_payload_size(Datum payload);
extern pg_uuid_t *check_webhook_id(FunctionCallInfo fcinfo, int argno);
extern char *check_url(text *url);
extern ArrayType *check_events(ArrayType *events);
extern Jsonb *check_headers(Jsonb *headers);

/* signing.c: secrets, signatures and ids */
extern char *webhooks_new_secret(void);
extern char *webhooks_sign(const char *secret, const char *msg_id,
						   int64 timestamp, const char *body, size_t body_len);
extern void webhooks_uuid_v7_fill(pg_uuid_t *uuid);
extern void webhooks_event_id(pg_uuid_t *uuid, FullTransactionId xid,
							  TimestampTz *created_at);
extern FullTransactionId webhooks_event_id_txid(const pg_uuid_t *uuid);
extern void webhooks_uuid_v7_set_time(pg_uuid_t *uuid, int64 unix_ms);
extern char *webhooks_uuid_to_cstring(const pg_uuid_t *uuid);

/* The event the worker emits when it switches a webhook off */
#define WEBHOOKS_DISABLED_EVENT "webhook.disabled"

/* append.c: append an event (as the extension's owner) */
extern bool webhooks_append_event(pg_uuid_t *event_id, const char *community_id,
								  const char *event, Datum payload);

/* queue.c: a statement prepared once for the life of the process */
extern SPIPlanPtr webhooks_prepare_once(SPIPlanPtr *plan, const char *sql,
										int nargs, Oid *argtypes);

/* What a request to a webhook needs besides its event */
typedef struct WebhookTarget
{
	char	   *url;
	char	   *secret;
	char	   *previous_secret;	/* while a rotation's overlap lasts */
	char	   *header_lines;	/* "name: value" lines, or NULL */
} WebhookTarget;

/*
 * SQL expressions, over webhooks.webhooks aliased w, for the previous
 * secret while it still signs, and the extra headers as lines for libcurl
 * (the names and values were checked by check_headers; "name;" is how
 * libcurl sends an empty value, and a blank one would be dropped).
 */
#define WEBHOOKS_PREVIOUS_SECRET_SQL(w) \
	"CASE WHEN " w ".previous_secret_until > pg_catalog.now() " \
	"THEN " w ".previous_secret END"
#define WEBHOOKS_HEADER_LINES_SQL(w) \
	"(SELECT pg_catalog.string_agg(CASE WHEN pg_catalog.btrim(h.value, E' \\t') = '' " \
	"THEN h.key || ';' ELSE h.key || ': ' || h.value END, E'\\n') " \
	"FROM pg_catalog.jsonb_each_text(" w ".headers) h)"

/* api.c: lookups the other files share */
extern bool webhooks_lookup(const char *community_id, pg_uuid_t *id,
							WebhookTarget *target);
extern void webhooks_raise_not_found(const char *community_id, pg_uuid_t *id);

#endif							/* WEBHOOKS_H */
