/*-------------------------------------------------------------------------
 *
 * queue.h
 *		The delivery queue's SQL: claim due deliveries, record attempts.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOKS_QUEUE_H
#define WEBHOOKS_QUEUE_H

#include "postgres.h"

#include "utils/timestamp.h"
#include "utils/uuid.h"

/* A page of events the worker read (reader.c) */
typedef struct ReadPage ReadPage;

/*
 * A delivery to attempt: claimed from the queue (id is its row), or read
 * from the events (id 0, page its page; it has no row until it fails).
 */
typedef struct Delivery
{
	int64		id;
	ReadPage   *page;
	pg_uuid_t	webhook_id;
	pg_uuid_t	event_id;
	char	   *event;
	char	   *community_id;
	char	   *payload;		/* NULL if the event is no longer kept */
	TimestampTz emitted_at;
	uint64		event_txid;
	int32		payload_bytes;
	int			attempts;		/* attempts made before this one */
	char	   *url;			/* NULL if the webhook is gone or inactive */
	char	   *secret;
	char	   *previous_secret;	/* while a rotation's overlap lasts */
	char	   *header_lines;	/* the webhook's own headers, or NULL */
} Delivery;

/* What became of a delivery after an attempt. */
typedef enum AttemptOutcome
{
	OUTCOME_DELIVERED = 'd',	/* 2xx: the delivery is done */
	OUTCOME_RETRY = 'r',		/* failed; try again at next_attempt_at */
	OUTCOME_FAILED = 'f',		/* failed for good */
	OUTCOME_GONE = 'g',			/* 410 Gone: failed, and the webhook is
								 * switched off */
	OUTCOME_TEST = 't',			/* a webhook_test ping: log only */
	OUTCOME_SPILL = 's'			/* read, not attempted: into the queue */
} AttemptOutcome;

/*
 * One attempt to write to the log (and to apply to its delivery: a read
 * one that is not done gets its queue row, made of the fields below).
 */
typedef struct AttemptRecord
{
	int64		delivery_id;	/* 0: read, no queue row yet */
	ReadPage   *page;
	const char *community_id;
	TimestampTz emitted_at;
	uint64		event_txid;
	int32		payload_bytes;
	pg_uuid_t	webhook_id;
	pg_uuid_t	event_id;
	const char *event;
	int			attempt;		/* 1 for the first */
	int			status_code;	/* 0 when there was no HTTP answer */
	int			response_time_ms;
	const char *error;			/* NULL on success */
	const char *response_body;	/* kept for failures only, else NULL */
	TimestampTz started_at;
	AttemptOutcome outcome;
	TimestampTz next_attempt_at;	/* for OUTCOME_RETRY */
	bool		no_request;		/* recorded without a request being made */
} AttemptRecord;

/*
 * What the worker holds (requests in flight or waiting for a slot), per
 * webhook and per community, for a claim to leave out what they could
 * not start now: no webhook beyond webhooks.max_requests_per_endpoint, no
 * community beyond community_cap, the share of one community, and no more
 * payload bytes than byte_budget.
 */
typedef struct HeldRequests
{
	int			nwebhooks;
	pg_uuid_t  *webhooks;
	int32	   *per_webhook;
	int			ncommunities;
	char	  **communities;
	int32	   *per_community;
	int32		community_cap;
	int64		byte_budget;	/* payload bytes a claim may add */
} HeldRequests;

/* Each runs inside the caller's transaction, with SPI connected. */
extern int64 webhooks_queue_release_orphans(Datum held);
extern int	webhooks_queue_claim(int limit, HeldRequests *held,
								 Delivery **deliveries, MemoryContext cxt);
extern bool webhooks_queue_next_due(HeldRequests *held, TimestampTz *due);
extern int	webhooks_queue_record(AttemptRecord *records, int n,
								  bool *deferred);

extern void webhooks_queue_health(AttemptRecord *records, int n,
								  bool *deferred);
extern int	webhooks_queue_disable_due(pg_uuid_t *ids, int n,
									   int disable_after_s,
									   const char *disable_after);
extern void webhooks_queue_forget_deleted(void);
extern int	webhooks_queue_inactive(pg_uuid_t *ids, int n, pg_uuid_t *gone);

/* subscriptions.c: the worker's copy of the active webhooks */
typedef struct Subscriber
{
	pg_uuid_t	id;
	TimestampTz since;			/* created_at to the millisecond */
	char	   *url;
	char	   *secret;
	char	   *previous_secret;
	TimestampTz previous_secret_until;
	char	   *header_lines;	/* "name: value" lines, or NULL */
	int			nevents;
	char	  **events;			/* the event types it subscribes to */
	struct varlena *filter;		/* jsonpath, or NULL */
} Subscriber;

extern void webhooks_subscribers_check(void);
extern void webhooks_subscribers_load(const char **community_ids, int n);
extern Subscriber *webhooks_subscribers_of(const char *community_id, int *n);
extern bool webhooks_subscriber_wants(Subscriber *s, const char *type,
									  TimestampTz emitted_at, Datum payload);
extern const char *webhooks_subscriber_previous_secret(Subscriber *s,
													   TimestampTz now);

/* reader.c: committed events become deliveries */
extern bool webhooks_reader_start(void);
extern int	webhooks_reader_read(int limit, int64 byte_budget,
								 Delivery **deliveries, MemoryContext cxt);
extern bool webhooks_reader_more(void);
extern void webhooks_reader_done(ReadPage *page, int n);
extern void webhooks_reader_save(void);
extern void webhooks_reader_forget_saved(void);

/* partitions.c: daily partitions of the events and the log */
extern bool webhooks_maintain_partitions(int64 retention_s);

#endif							/* WEBHOOKS_QUEUE_H */
