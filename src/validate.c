/*-------------------------------------------------------------------------
 *
 * validate.c
 *		Checks of the arguments the SQL API accepts.
 *
 * Each check raises an ERROR with a specific SQLSTATE and a message that
 * names the bad value, before anything is written, so a rejected call
 * changes nothing.  URLs are parsed by libcurl's URL API, the same parser
 * that later sends the request.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include <curl/curl.h>

#include "access/detoast.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "miscadmin.h"
#include "utils/lsyscache.h"

#include "webhooks.h"

/* The community id argument: neither NULL nor empty. */
char *
check_community_id(FunctionCallInfo fcinfo, int argno)
{
	char	   *community_id;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("community_id must not be null")));

	community_id = TextDatumGetCString(PG_GETARG_DATUM(argno));
	check_community_id_value(community_id);
	return community_id;
}

/*
 * A community id's value: not empty, and no longer than an index entry may
 * be (a longer one would fail deep inside a btree with a less clear error).
 */
void
check_community_id_value(const char *community_id)
{
	size_t		len = strlen(community_id);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("community_id must not be empty")));
	if (len > WEBHOOKS_MAX_COMMUNITY_ID_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("community_id is too long"),
				 errdetail("The community_id is %zu bytes long; the limit is %d bytes.",
						   len, WEBHOOKS_MAX_COMMUNITY_ID_BYTES)));
}

/* An event payload's size, as stored (uncompressed jsonb). */
Size
webhooks_payload_size(Datum payload)
{
	return toast_raw_datum_size(payload) - VARHDRSZ;
}

/* An event's payload: no larger than webhooks.max_payload_size. */
void
webhooks_check_payload_size(Datum payload)
{
	Size		size = webhooks_payload_size(payload);

	if (size > (Size) webhooks_max_payload_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event payload is too large"),
				 errdetail("The payload takes %zu bytes; webhooks.max_payload_size is %d bytes.",
						   size, webhooks_max_payload_size),
				 errhint("Send a reference to the data instead, or raise webhooks.max_payload_size.")));
}

/* The webhook id argument: not NULL. */
pg_uuid_t *
check_webhook_id(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("webhook id must not be null")));
	return PG_GETARG_UUID_P(argno);
}

/* Raise the error for a bad URL, after the caller has freed libcurl's. */
static void
url_error(const char *url, const char *detail, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid webhook url \"%s\"", url),
			 detail ? errdetail("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
}

/* Does the URL start with a scheme and "://"? */
static bool
has_scheme(const char *url)
{
	const char *p = url;

	if (!isalpha((unsigned char) *p))
		return false;
	while (isalnum((unsigned char) *p) || *p == '+' || *p == '-' || *p == '.')
		p++;
	return strncmp(p, "://", 3) == 0;
}

/* True if libcurl finds the given part in the parsed URL. */
static bool
url_has_part(CURLU *handle, CURLUPart part)
{
	char	   *value = NULL;
	bool		has = (curl_url_get(handle, part, &value, 0) == CURLUE_OK &&
					   value != NULL && value[0] != '\0');

	curl_free(value);
	return has;
}

/*
 * Does the URL's authority (between "://" and the next "/", "?" or "#")
 * hold a user-info part, even an empty one ("https://@host/")?
 */
static bool
url_has_userinfo(const char *url)
{
	const char *authority = strstr(url, "://");
	size_t		len;

	if (authority == NULL)
		return false;
	authority += 3;
	len = strcspn(authority, "/?#");
	return memchr(authority, '@', len) != NULL;
}

/* Is the URL's port, when it names one, a port one can connect to? */
static bool
url_port_ok(CURLU *handle)
{
	char	   *port = NULL;
	bool		ok = true;

	if (curl_url_get(handle, CURLUPART_PORT, &port, 0) == CURLUE_OK &&
		port != NULL)
		ok = (strtol(port, NULL, 10) > 0);
	curl_free(port);
	return ok;
}

/*
 * An endpoint URL: absolute, https (http only while webhooks.allow_http is
 * on), with a host, without credentials, at most 2048 bytes.  Returns the
 * URL as given.
 */
char *
check_url(text *url_text)
{
	char	   *url;
	size_t		len;
	CURLU	   *handle;
	CURLUcode	rc;
	char	   *scheme = NULL;
	const char *detail = NULL;
	const char *hint = NULL;
	bool		is_http = false;

	if (url_text == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("url must not be null")));

	url = text_to_cstring(url_text);
	len = strlen(url);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("url must not be empty")));
	if (len > WEBHOOKS_MAX_URL_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("url is too long"),
				 errdetail("The url is %zu bytes long; the limit is %d bytes.",
						   len, WEBHOOKS_MAX_URL_BYTES)));
	for (const unsigned char *p = (const unsigned char *) url; *p; p++)
		if (*p <= ' ' || *p == 0x7f)
			url_error(url, "A url must not contain spaces or control characters.",
					  "Percent-encode them.");
	if (!has_scheme(url))
		url_error(url, "The url is not absolute.",
				  "Give a full url such as https://example.com/webhooks.");

	handle = curl_url();
	if (handle == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));

	rc = curl_url_set(handle, CURLUPART_URL, url, 0);
	if (rc != CURLUE_OK)
		detail = curl_url_strerror(rc);
	else if (curl_url_get(handle, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
		detail = "The url has no scheme.";
	else if (pg_strcasecmp(scheme, "https") != 0 &&
			 !(is_http = (pg_strcasecmp(scheme, "http") == 0)))
	{
		detail = "Only https urls are accepted.";
	}
	else if (is_http && !webhooks_allow_http)
	{
		detail = "Only https urls are accepted.";
		hint = "A superuser may set webhooks.allow_http for development.";
	}
	else if (strstr(url, ":///") == strstr(url, "://"))
	{
		/* libcurl would read "https:///x" as a url for the host "x" */
		detail = "The url has no host.";
	}
	else if (url_has_userinfo(url) ||
			 url_has_part(handle, CURLUPART_USER) ||
			 url_has_part(handle, CURLUPART_PASSWORD) ||
			 url_has_part(handle, CURLUPART_OPTIONS))
	{
		/* even "https://:@host/": libcurl would send "Basic Og==" */
		detail = "A url must not carry credentials.";
		hint = "Authenticate the request by its signature instead.";
	}
	else if (!url_has_part(handle, CURLUPART_HOST))
		detail = "The url has no host.";
	else if (!url_port_ok(handle))
		detail = "The url's port must be between 1 and 65535.";

	curl_free(scheme);
	curl_url_cleanup(handle);

	if (detail != NULL)
		url_error(url, detail, hint);
	return url;
}

/* An event name and where it stood in the caller's array */
typedef struct EventName
{
	text	   *name;
	int			position;
} EventName;

/* Bytewise order of two texts (the "C" collation). */
static int
compare_names(text *a, text *b)
{
	int			alen = VARSIZE_ANY_EXHDR(a);
	int			blen = VARSIZE_ANY_EXHDR(b);
	int			cmp = memcmp(VARDATA_ANY(a), VARDATA_ANY(b), Min(alen, blen));

	return cmp != 0 ? cmp : (alen > blen) - (alen < blen);
}

/* qsort order: by name, then by position, so the first of equals leads. */
static int
compare_event_names(const void *a, const void *b)
{
	const EventName *x = a;
	const EventName *y = b;
	int			cmp = compare_names(x->name, y->name);

	return cmp != 0 ? cmp : (x->position > y->position) - (x->position < y->position);
}

/*
 * The events argument: a non-empty one-dimensional array of known event
 * types without NULLs.  Returns it without duplicates, in the order given.
 */
ArrayType *
check_events(ArrayType *events)
{
	Datum	   *elems;
	bool	   *nulls;
	int			count;
	int			kept = 0;
	Datum		unknown;
	bool		isnull;
	Oid			argtypes[1] = {TEXTARRAYOID};
	Datum		args[1];
	int			ret;

	if (events == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("events must not be null")));
	if (ARR_NDIM(events) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must be a one-dimensional array")));

	deconstruct_array(events, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &count);
	if (count == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must not be empty"),
				 errhint("Subscribe to at least one event type, such as member.joined.")));

	if (count > WEBHOOKS_MAX_EVENTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("too many events"),
				 errdetail("%d event types were given; a webhook may subscribe to at most %d.",
						   count, WEBHOOKS_MAX_EVENTS)));

	/*
	 * Drop duplicates, keeping the first of each in the order given: sort
	 * the names (bytewise, as event_types compares them), so the cost is
	 * O(n log n) in the bounded input.
	 */
	{
		EventName  *sorted = palloc(sizeof(EventName) * count);
		bool	   *duplicate = palloc0(sizeof(bool) * count);

		for (int i = 0; i < count; i++)
		{
			CHECK_FOR_INTERRUPTS();
			if (nulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("events must not contain null")));
			sorted[i].name = DatumGetTextPP(elems[i]);
			sorted[i].position = i;
		}
		qsort(sorted, count, sizeof(EventName), compare_event_names);
		for (int i = 1; i < count; i++)
		{
			CHECK_FOR_INTERRUPTS();
			if (compare_names(sorted[i - 1].name, sorted[i].name) == 0)
				duplicate[sorted[i].position] = true;
		}
		for (int i = 0; i < count; i++)
			if (!duplicate[i])
				elems[kept++] = elems[i];
	}
	events = construct_array(elems, kept, TEXTOID, -1, false, TYPALIGN_INT);

	/* One query finds the first name that event_types does not know. */
	args[0] = PointerGetDatum(events);
	SPI_connect();
	ret = SPI_execute_with_args("SELECT e FROM pg_catalog.unnest($1) WITH ORDINALITY AS u(e, n) "
								"WHERE NOT EXISTS (SELECT 1 FROM webhooks.event_types t "
								"                  WHERE t.name OPERATOR(pg_catalog.=) u.e) "
								"ORDER BY n LIMIT 1",
								1, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(ret));
	if (SPI_processed > 0)
	{
		char	   *name;

		unknown = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								1, &isnull);
		name = TextDatumGetCString(unknown);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown event type \"%s\"", name),
				 errhint("The event types are listed in webhooks.event_types.")));
	}
	SPI_finish();
	return events;
}

/*
 * Headers a webhook adds to its requests.  Those the extension sets itself
 * or that govern the connection are refused: a receiver must be able to
 * trust webhook-* and the framing of what it reads.
 */
static const char *const reserved_headers[] = {
	"content-type", "content-length", "host", "user-agent",
	"transfer-encoding", "connection", "expect", "keep-alive", "te",
	"trailer", "upgrade", "proxy-connection", NULL
};

/* RFC 9110's tchar, in ASCII whatever the locale: a header name's bytes. */
static bool
is_token_char(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		(c >= 'A' && c <= 'Z') ||
		(c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void
header_error(const char *detail_fmt, const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid webhook headers"),
			 name ? errdetail(detail_fmt, name) : errdetail("%s", detail_fmt),
			 errhint("Pass a JSON object of at most %d string values, %d bytes in all, such as '{\"X-Api-Key\": \"...\"}'; '{}' removes them.",
					 WEBHOOKS_MAX_HEADERS, WEBHOOKS_MAX_HEADER_BYTES)));
}

/*
 * The headers argument: a JSON object of string values that are valid
 * header text, no reserved or repeated name (case aside), at most
 * WEBHOOKS_MAX_HEADERS of them and WEBHOOKS_MAX_HEADER_BYTES in all.
 * Returns NULL for an empty object (no headers).  Values never appear in
 * a message: they are often credentials.
 */
Jsonb *
check_headers(Jsonb *headers)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			count = 0;
	Size		total = 0;
	char	  **names;

	if (!JB_ROOT_IS_OBJECT(headers))
		header_error("headers must be a JSON object.", NULL);
	if (JB_ROOT_COUNT(headers) == 0)
		return NULL;
	if (JB_ROOT_COUNT(headers) > WEBHOOKS_MAX_HEADERS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid webhook headers"),
				 errdetail("%u headers given; at most %d are allowed.",
						   JB_ROOT_COUNT(headers), WEBHOOKS_MAX_HEADERS)));
	names = palloc(sizeof(char *) * JB_ROOT_COUNT(headers));

	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *name;

		CHECK_FOR_INTERRUPTS();
		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(v.val.string.val, v.val.string.len);
		if (v.val.string.len == 0)
			header_error("A header name is empty.", NULL);
		/* not echoed: a malformed name may be a pasted credential */
		for (int i = 0; i < v.val.string.len; i++)
			if (!is_token_char((unsigned char) name[i]))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid webhook headers"),
						 errdetail("A header name holds byte 0x%02x at position %d; a name is ASCII letters, digits and !#$%%&'*+-.^_`|~ only.",
								   (unsigned char) name[i], i + 1)));
		for (char *p = name; *p; p++)
			*p = pg_ascii_tolower((unsigned char) *p);
		if (strncmp(name, "webhook-", 8) == 0)
			header_error("Header \"%s\" is set by the extension (webhook-*).", name);
		for (const char *const *r = reserved_headers; *r; r++)
			if (strcmp(name, *r) == 0)
				header_error("Header \"%s\" is set by the extension or governs the connection.", name);
		for (int i = 0; i < count; i++)
			if (strcmp(names[i], name) == 0)
				header_error("Header \"%s\" is given more than once.", name);
		names[count++] = name;
		total += v.val.string.len + 4;	/* name, ": ", CRLF */

		tok = JsonbIteratorNext(&it, &v, true);
		if (tok != WJB_VALUE || v.type != jbvString)
			header_error("The value of header \"%s\" is not a JSON string.", name);
		for (int i = 0; i < v.val.string.len; i++)
		{
			unsigned char c = (unsigned char) v.val.string.val[i];

			/* field-vchar, SP and HTAB; obs-text (UTF-8) allowed */
			if ((c < 0x20 && c != '\t') || c == 0x7f)
				header_error("The value of header \"%s\" holds a control character (CR, LF, NUL or another).", name);
		}
		total += v.val.string.len;
	}
	if (total > WEBHOOKS_MAX_HEADER_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid webhook headers"),
				 errdetail("The headers take %zu bytes; at most %d are allowed.",
						   total, WEBHOOKS_MAX_HEADER_BYTES)));
	return headers;
}
