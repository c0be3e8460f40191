/* relay_event.c -- what the outbox relay produces: CloudEvents and dead letters.
 *
 * An outbox row becomes a structured CloudEvent whose data is the row's jsonb
 * text as PostgreSQL wrote it; when the worker knows the job type and it has
 * a schema, data that fails it becomes a dead letter with the worker's
 * headers instead. Not for: producing (relay.c). Any thread (no state).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "event.h"
#include "relay_int.h"
#include "schema.h"
#include "worker_int.h"

/* Appends s to the malloc'ed *buf (length *len, capacity *cap), growing it;
 * aborts when out of memory. */
void
sl__relay_append(char **buf, size_t *len, size_t *cap, const char *s)
{
	size_t n = strlen(s);

	while (*len + n + 1 > *cap) {
		*cap = *cap ? *cap * 2 : 256;
		if ((*buf = realloc(*buf, *cap)) == NULL)
			abort();
	}
	memcpy(*buf + *len, s, n + 1);
	*len += n;
}

/* Appends `s` to *buf as a JSON string. The connection's client_encoding is
 * UTF8, so s is UTF-8; should it not be (a SQL_ASCII database), its bytes go
 * out unchecked and the consuming worker fails the job as invalid_json,
 * rather than the relay stopping on the row. */
static void
append_json_string(char **buf, size_t *len, size_t *cap, const char *s)
{
	json_t *j = json_string_nocheck(s);
	char *text = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;

	if (text == NULL)
		abort(); /* out of memory */
	sl__relay_append(buf, len, cap, text);
	free(text);
	json_decref(j);
}

/* Builds the structured CloudEvent of an outbox row: specversion, id,
 * source, type, time, datacontenttype and data, in that order; data is the
 * row's jsonb text as PostgreSQL writes it. Returns a new malloc'ed string. */
char *
sl__relay_event_text(const char *id, const char *source, const char *type, const char *time,
                     const char *data)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;

	sl__relay_append(&buf, &len, &cap, "{\"specversion\":\"1.0\",\"id\":");
	append_json_string(&buf, &len, &cap, id);
	sl__relay_append(&buf, &len, &cap, ",\"source\":");
	append_json_string(&buf, &len, &cap, source);
	sl__relay_append(&buf, &len, &cap, ",\"type\":");
	append_json_string(&buf, &len, &cap, type);
	sl__relay_append(&buf, &len, &cap, ",\"time\":");
	append_json_string(&buf, &len, &cap, time);
	sl__relay_append(&buf, &len, &cap, ",\"datacontenttype\":\"application/json\",\"data\":");
	sl__relay_append(&buf, &len, &cap, data);
	sl__relay_append(&buf, &len, &cap, "}");
	return buf;
}

/* Checks data against the schema of the worker's job type `type`, when the
 * worker knows it and it has one. Returns 0 when it passes (or cannot be
 * checked here), else -1 with a dead-letter code (OUT, >= 32 bytes) and
 * message. */
int
sl__relay_check_data(const struct sl_worker *w, const char *type, const char *data, char *code, char *msg,
                     size_t msg_size)
{
	const struct sl_job_type_rt *jt = NULL;
	struct sl_schema_error errs[4];
	json_error_t jerr;
	json_t *doc;
	size_t i, n_errs = 0;
	int rc;

	for (i = 0; i < w->n_types; i++)
		if (strcmp(w->types[i].conf->type, type) == 0)
			jt = &w->types[i];
	if (jt == NULL || jt->schema == NULL)
		return 0;
	if ((doc = json_loads(data, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		/* jsonb holds numbers jansson cannot (beyond 64-bit integers). */
		snprintf(code, 32, "%s", SL_ERR_NUMBER_OUT_OF_RANGE);
		snprintf(msg, msg_size, "data cannot be read: %s", jerr.text);
		return -1;
	}
	rc = sl_schema_validate(jt->schema, doc, errs, 4, &n_errs);
	json_decref(doc);
	if (rc == 0)
		return 0;
	snprintf(code, 32, "%s", SL_ERR_SCHEMA_VIOLATION);
	sl_schema_errors_format(errs, n_errs, msg, msg_size);
	return -1;
}

/* Dead-letter headers as the worker writes them (worker.c); an outbox row
 * was never in a topic, so its partition and offset are -1 and its source
 * topic is the one it was meant for (a replay sends it there). */
rd_kafka_headers_t *
sl__relay_dead_letter_headers(const char *code, const char *message, const char *topic)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new(8);

	rd_kafka_header_add(h, "sluice-error-code", -1, code, -1);
	rd_kafka_header_add(h, "sluice-error-message", -1, message, -1);
	rd_kafka_header_add(h, "sluice-source-topic", -1, topic, -1);
	rd_kafka_header_add(h, "sluice-source-partition", -1, "-1", -1);
	rd_kafka_header_add(h, "sluice-source-offset", -1, "-1", -1);
	rd_kafka_header_add(h, "sluice-attempts", -1, "0", -1);
	rd_kafka_header_add(h, "sluice-outbox", -1, "1", -1);
	return h;
}
