/* event.h -- CloudEvents 1.0 jobs in (structured JSON or binary mode), result events out.
 *
 * sl_event_decode() turns a Kafka message value in structured mode into a
 * job or a precise error (the codes below are part of the contract: they
 * appear in results and dead letters); sl_event_decode_binary() does the same
 * for binary content mode, where the attributes are ce_* headers and the value
 * is the data (the CloudEvents Kafka protocol binding), and
 * sl_event_decode_message() picks between them as that binding says. sl_event_result() builds the result event text that is stored in
 * the ledger and published, byte for byte, on every delivery.
 *
 * Not for: schema validation (schema.h) or Kafka I/O. All functions are
 * thread-safe (no shared state).
 */
#ifndef SL_EVENT_H
#define SL_EVENT_H

#include <stddef.h>
#include <jansson.h>

/* Error codes of jobs that cannot be processed (status `failed`). */
#define SL_ERR_MESSAGE_TOO_LARGE     "message_too_large"     /* value above limits.max_job_bytes */
#define SL_ERR_EMPTY_MESSAGE         "empty_message"         /* null or empty value */
#define SL_ERR_INVALID_JSON          "invalid_json"          /* not JSON, or not UTF-8 */
#define SL_ERR_NUMBER_OUT_OF_RANGE   "number_out_of_range"   /* an integer or real jansson cannot hold */
#define SL_ERR_NOT_AN_OBJECT         "not_an_object"         /* valid JSON, but not an object */
#define SL_ERR_MISSING_ATTRIBUTE     "missing_attribute"     /* id, source, type or specversion absent */
#define SL_ERR_INVALID_ATTRIBUTE     "invalid_attribute"     /* a context attribute of the wrong kind or empty */
#define SL_ERR_UNSUPPORTED_VERSION   "unsupported_specversion" /* specversion other than "1.0" */
#define SL_ERR_INVALID_DATA          "invalid_data"          /* data absent, or not an object */
#define SL_ERR_UNKNOWN_TYPE          "unknown_type"          /* no handler for the type */
#define SL_ERR_SCHEMA_VIOLATION      "schema_violation"      /* data fails the type's JSON Schema */
#define SL_ERR_RETRIES_EXHAUSTED     "retries_exhausted"     /* transient failures past the limit */
#define SL_ERR_HANDLER_ERROR         "handler_error"         /* permanent failure inside the handler */
#define SL_ERR_INVALID_OUTPUT        "invalid_output"        /* a SQL handler returned no JSON object or NULL */
#define SL_ERR_RETRY_REQUESTED       "retry_requested"       /* sluice.retry() in a SQL handler */
#define SL_ERR_HANDLER_UNAVAILABLE   "handler_unavailable"   /* a SQL handler's function missing or not permitted */
#define SL_ERR_RESULT_TOO_LARGE      "result_too_large"      /* result event above limits.max_result_bytes */

/* A decoded job. Strings point into `root` (borrowed from it). */
struct sl_event {
	json_t *root;              /* the whole event; new reference, owned */
	const char *id;
	const char *source;
	const char *type;
	const char *subject;       /* NULL when absent */
	const char *time;          /* NULL when absent */
	json_t *data;              /* borrowed from root; an object */
};

/* Decodes `len` bytes of `value` (not NUL-terminated; may be NULL) as a
 * CloudEvent. On success returns 0 and fills *ev (release it with
 * sl_event_clear()). On failure returns -1, leaves *ev cleared, copies one of
 * the SL_ERR_* codes into code (at least 32 bytes) and a one-line message
 * naming what is wrong and where into errbuf. `max_bytes` of 0 means no limit.
 * Requires `data` to be a JSON object (every sluice job type takes one). */
int sl_event_decode(const void *value, size_t len, size_t max_bytes, struct sl_event *ev,
                    char *code, char *errbuf, size_t errbuf_size);

/* A Kafka message header, borrowed from the message: `name` NUL-terminated,
 * `len` bytes of `value` (NULL for a header without a value, which counts as
 * absent). Kept free of librdkafka types, so this module does not need it. */
struct sl_event_header {
	const char *name;
	const void *value;
	size_t len;
};

/* The most headers a caller needs to pass: each of the seven that binary mode
 * reads (sl_event_binary_header()) once, with room to see duplicates. */
#define SL_EVENT_MAX_HEADERS 16

/* Returns 1 when binary mode reads the header `name`: ce_specversion, ce_id,
 * ce_source, ce_type, ce_subject, ce_time or content-type (exact, lowercase
 * names, as the Kafka binding writes them); else 0. Callers pass only these. */
int sl_event_binary_header(const char *name);

/* Decodes a message in binary content mode: the attributes come from the
 * headers (n_headers of them, borrowed; others than those of
 * sl_event_binary_header() are ignored), ce_X being attribute X and
 * content-type being datacontenttype, and `data` is the value (len bytes, may
 * be NULL), parsed as JSON when content-type is absent or application/json.
 * Fills *ev exactly as sl_event_decode() would for the structured event with
 * the same attributes and data, with the same checks and error codes; in
 * addition a header that appears twice, holds a NUL byte or is not UTF-8 is
 * SL_ERR_INVALID_ATTRIBUTE, and an empty value SL_ERR_INVALID_DATA. max_bytes
 * bounds the value. Extension attributes (other ce_* headers) are not kept.
 * Returns 0 or -1 as sl_event_decode() does. */
int sl_event_decode_binary(const void *value, size_t len, const struct sl_event_header *headers,
                           size_t n_headers, size_t max_bytes, struct sl_event *ev, char *code,
                           char *errbuf, size_t errbuf_size);

/* Decodes a message in whichever mode it is in: binary when one of `headers`
 * is ce_specversion (sl_event_decode_binary()), else structured
 * (sl_event_decode(), headers unused). Same contract as those two. */
int sl_event_decode_message(const void *value, size_t len, const struct sl_event_header *headers,
                            size_t n_headers, size_t max_bytes, struct sl_event *ev, char *code,
                            char *errbuf, size_t errbuf_size);

/* Releases what sl_event_decode() filled and zeroes *ev. NULL-safe and
 * idempotent. */
void sl_event_clear(struct sl_event *ev);

/* What a result event says about its job. The job fields may be NULL (a
 * message that was not a CloudEvent has no id). */
struct sl_result {
	const char *status;        /* "succeeded", "rejected" or "failed" */
	const char *job_id;
	const char *job_source;
	const char *job_type;
	json_t *output;            /* borrowed; on success, may be NULL */
	const char *error_code;    /* otherwise */
	const char *error_message;
};

/* Builds a result event (CloudEvents 1.0, structured JSON, compact, keys in a
 * fixed order): specversion "1.0", id `result_id`, source `result_source`,
 * type job_type + ".result" (or "sluice.unknown.result" when job_type is
 * NULL), subject the job id (omitted when NULL), time `time_rfc3339`,
 * datacontenttype "application/json", data {status, id, source, type, output
 * | error{code, message}}. Returns a new malloc'ed NUL-terminated string the
 * caller frees, or NULL when out of memory. */
char *sl_event_result(const struct sl_result *r, const char *result_id, const char *result_source,
                      const char *time_rfc3339);

/* Writes a random (version 4) UUID, 36 characters and a NUL, into out. */
void sl_event_uuid(char out[37]);

/* Writes the current UTC time as RFC 3339 with microseconds
 * ("2026-11-28T21:38:12.123456Z") into out. */
void sl_event_now(char out[32]);

#endif
