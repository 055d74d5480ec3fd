/*-------------------------------------------------------------------------
 *
 * signing.c
 *		Signing secrets, Standard Webhooks signatures, and ids.
 *
 * A secret is "whsec_" followed by the base64 of 32 random bytes.  A
 * signature is "v1," followed by the base64 of HMAC-SHA256 over
 * "{msg_id}.{timestamp}.{body}", keyed with the decoded secret.  Base64 and
 * randomness are PostgreSQL's own; the HMAC is OpenSSL's EVP_MAC, which
 * (unlike pg_hmac) needs no resource owner, so the worker can sign
 * between transactions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/time.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "common/base64.h"
#include "common/sha2.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

#include "webhooks.h"

#define SECRET_PREFIX "whsec_"
#define SECRET_BYTES 32

PG_FUNCTION_INFO_V1(webhooks_uuid_v7);

/* Fill buf with len bytes from the strong random source, or fail. */
static void
strong_random(void *buf, size_t len)
{
	if (!pg_strong_random(buf, len))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
}

/* A new signing secret, palloc'd. */
char *
webhooks_new_secret(void)
{
	uint8		raw[SECRET_BYTES];
	int			enc_len = pg_b64_enc_len(SECRET_BYTES);
	char	   *secret = palloc(strlen(SECRET_PREFIX) + enc_len + 1);
	int			written;

	strong_random(raw, sizeof(raw));
	strcpy(secret, SECRET_PREFIX);
	written = pg_b64_encode((const char *) raw, SECRET_BYTES,
							secret + strlen(SECRET_PREFIX), enc_len);
	if (written < 0)
		elog(ERROR, "could not encode secret");
	secret[strlen(SECRET_PREFIX) + written] = '\0';
	return secret;
}

/*
 * HMAC-SHA256 of prefix and body under key.  One context serves every
 * call: a new one per request cost a fetch of SHA-256 from OpenSSL's
 * provider each time (a tenth of a request's signing).  Returns false if
 * OpenSSL failed; the context is then made afresh next time.
 */
static bool
hmac_sha256(const char *key, int key_len, const char *prefix, int prefix_len,
			const char *body, size_t body_len, uint8 *digest,
			size_t *digest_len)
{
	static EVP_MAC_CTX *ctx = NULL;
	bool		ok;

	if (ctx == NULL)
	{
		EVP_MAC    *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
		OSSL_PARAM	params[2];

		if (hmac == NULL)
			elog(ERROR, "could not load OpenSSL's HMAC");
		ctx = EVP_MAC_CTX_new(hmac);
		EVP_MAC_free(hmac);		/* the context keeps its own reference */
		if (ctx == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
													 "SHA256", 0);
		params[1] = OSSL_PARAM_construct_end();
		if (EVP_MAC_CTX_set_params(ctx, params) != 1)
		{
			EVP_MAC_CTX_free(ctx);
			ctx = NULL;
			elog(ERROR, "could not set up OpenSSL's HMAC-SHA256");
		}
	}
	ok = (EVP_MAC_init(ctx, (const unsigned char *) key, key_len, NULL) == 1 &&
		  EVP_MAC_update(ctx, (const unsigned char *) prefix, prefix_len) == 1 &&
		  EVP_MAC_update(ctx, (const unsigned char *) body, body_len) == 1 &&
		  EVP_MAC_final(ctx, digest, digest_len, PG_SHA256_DIGEST_LENGTH) == 1 &&
		  *digest_len == PG_SHA256_DIGEST_LENGTH);
	if (!ok)
	{
		EVP_MAC_CTX_free(ctx);
		ctx = NULL;
	}
	return ok;
}

/*
 * The webhook-signature header value for one message.  Returns NULL (with
 * no error raised) if the secret cannot be decoded, so that a worker can
 * fail that one delivery instead of stopping.
 */
char *
webhooks_sign(const char *secret, const char *msg_id, int64 timestamp,
			  const char *body, size_t body_len)
{
	const char *encoded = secret;
	int			enc_len;
	char	   *key;
	int			key_len;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char		prefix[128];
	int			prefix_len;
	size_t		digest_len = 0;
	char	   *result;
	int			written;
	bool		ok;

	if (strncmp(secret, SECRET_PREFIX, strlen(SECRET_PREFIX)) == 0)
		encoded += strlen(SECRET_PREFIX);
	enc_len = strlen(encoded);
	key = palloc(pg_b64_dec_len(enc_len) + 1);
	key_len = pg_b64_decode(encoded, enc_len, key, pg_b64_dec_len(enc_len));
	if (key_len <= 0)
	{
		pfree(key);
		return NULL;
	}

	prefix_len = snprintf(prefix, sizeof(prefix), "%s." INT64_FORMAT ".",
						  msg_id, timestamp);

	ok = hmac_sha256(key, key_len, prefix, prefix_len, body, body_len, digest,
					 &digest_len);
	pfree(key);
	if (!ok)
		return NULL;

	result = palloc(3 + pg_b64_enc_len(sizeof(digest)) + 1);
	memcpy(result, "v1,", 3);
	written = pg_b64_encode((const char *) digest, sizeof(digest), result + 3,
							pg_b64_enc_len(sizeof(digest)));
	if (written < 0)
		return NULL;
	result[3 + written] = '\0';
	return result;
}

/* Set the 48-bit Unix-milliseconds prefix of a version 7 UUID. */
void
webhooks_uuid_v7_set_time(pg_uuid_t *uuid, int64 unix_ms)
{
	for (int i = 0; i < 6; i++)
		uuid->data[i] = (unix_ms >> (8 * (5 - i))) & 0xff;
}

/*
 * A version 7 UUID: 48 bits of Unix milliseconds, then random bits, so
 * that ids made later sort later and their index grows at one end.
 */
void
webhooks_uuid_v7_fill(pg_uuid_t *uuid)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	strong_random(uuid->data + 6, UUID_LEN - 6);
	webhooks_uuid_v7_set_time(uuid, (int64) tv.tv_sec * 1000 + tv.tv_usec / 1000);
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x70;	/* version 7 */
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
}

/*
 * An event's id: a version 7 UUID whose 48-bit time is when it was emitted
 * (never earlier than the backend's previous event), whose 12 bits after
 * the version count events within that millisecond, and whose last 62 bits
 * are the emitting transaction's id (webhooks.events.txid).  Unique, since
 * no two transactions share an id and one transaction's events differ in
 * time or count; time-ordered like any version 7 UUID; and it leads
 * event_get to the event through the events' only index, (txid, id).
 * *created_at receives the id's time.
 */
void
webhooks_event_id(pg_uuid_t *uuid, FullTransactionId xid,
				   TimestampTz *created_at)
{
	static int64 last_ms = 0;
	static int	count = 0;
	struct timeval tv;
	int64		ms;
	uint64		x = U64FromFullTransactionId(xid);

	gettimeofday(&tv, NULL);
	ms = (int64) tv.tv_sec * 1000 + tv.tv_usec / 1000;
	if (ms > last_ms)
	{
		last_ms = ms;
		count = 0;
	}
	else if (++count > 0xfff)
	{
		/* 4096 in one millisecond: borrow the next one */
		last_ms++;
		count = 0;
	}
	webhooks_uuid_v7_set_time(uuid, last_ms);
	uuid->data[6] = 0x70 | ((count >> 8) & 0x0f);	/* version 7 */
	uuid->data[7] = count & 0xff;
	uuid->data[8] = 0x80 | ((x >> 56) & 0x3f);	/* RFC 4122 variant */
	for (int i = 9; i < UUID_LEN; i++)
		uuid->data[i] = (x >> (8 * (UUID_LEN - 1 - i))) & 0xff;

	*created_at = (TimestampTz) (last_ms -
								 (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) *
								 SECS_PER_DAY * 1000) * 1000;
}

/* The transaction id an event id carries (see webhooks_event_id). */
FullTransactionId
webhooks_event_id_txid(const pg_uuid_t *uuid)
{
	uint64		x = (uint64) (uuid->data[8] & 0x3f) << 56;

	for (int i = 9; i < UUID_LEN; i++)
		x |= (uint64) uuid->data[i] << (8 * (UUID_LEN - 1 - i));
	return FullTransactionIdFromU64(x);
}

/* SQL: webhooks.uuid_v7() */
Datum
webhooks_uuid_v7(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	webhooks_uuid_v7_fill(uuid);
	PG_RETURN_UUID_P(uuid);
}

/* The canonical text form of a UUID, palloc'd. */
char *
webhooks_uuid_to_cstring(const pg_uuid_t *uuid)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out,
											   UUIDPGetDatum((pg_uuid_t *) uuid)));
}
