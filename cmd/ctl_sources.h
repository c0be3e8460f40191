/* ctl_sources.h -- what sluicectl reads, as JSON, for the CLI and the console alike.
 *
 * Each subcommand that reads a source (the dead-letter topic, a consumer
 * group's lag, a worker's /metrics, the outbox and schedules) exposes here
 * the function it prints from, so that `sluicectl console` shows the same
 * figures from the same code. Every function returns a new jansson reference
 * (the caller json_decref()s it) or NULL with the reason in errbuf, takes
 * bounded waits (timeout_ms), and touches only what it creates: they may be
 * called from any thread, several at once.
 *
 * Not for: printing (each subcommand formats its own output) or anything
 * that changes state beyond sl_ctl_dlq_replay_json().
 */
#ifndef SL_CTL_SOURCES_H
#define SL_CTL_SOURCES_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

/* Which messages of a topic sl_ctl_dlq_read_json() and
 * sl_ctl_dlq_replay_json() select; every member that is set must match.
 * Strings are borrowed. Start from SL_CTL_DLQ_QUERY_ALL. */
struct sl_ctl_dlq_query {
	const char *code;          /* sluice-error-code; NULL: any */
	const char *type;          /* the value's "type" ("": values without one); NULL: any */
	const char *id;            /* the value's "id"; NULL: any */
	const char *subject;       /* the value's "subject" (a result's job id); NULL: any */
	const char *key;           /* the message key; NULL: any */
	int32_t partition;         /* with offset: one message; -1: any */
	int64_t offset;
	long limit;                /* at most this many; -1: no limit */
	int pending;               /* only letters not marked as replayed */
};

#define SL_CTL_DLQ_QUERY_ALL { NULL, NULL, NULL, NULL, NULL, -1, -1, -1, 0 }

/* Reads `topic` (a dead-letter topic, or any topic of JSON messages such as
 * a result topic) from its start to its end as they are now. Returns a new
 * object: "read" and "selected" (counts) and "letters", an array with one
 * object per selected message as `sluicectl dlq list --json` prints it, plus
 * "replayed" (a marker names it) and, when with_value, "value" (or
 * "value_base64" when not UTF-8). Metadata waits up to timeout_ms;
 * deadline_ms (sl_ctl_now_ms() time, 0: none) bounds the whole read. NULL
 * with the reason in errbuf. */
json_t *sl_ctl_dlq_read_json(const char *brokers, const char *topic, const struct sl_ctl_dlq_query *q,
                             int with_value, int timeout_ms, int64_t deadline_ms, char *errbuf,
                             size_t errbuf_size);

/* Replays the letters of dead-letter topic `topic` that q selects, as
 * `sluicectl dlq replay` does (to their source topic and partition, marked
 * as replayed once delivered). Returns a new object: "selected",
 * "replayed", "failed", "skipped" (counts), "ids" (the job ids of the
 * letters delivered) and "error" (the first delivery failure) when one
 * failed. NULL with the reason in errbuf when the topic could not be read. */
json_t *sl_ctl_dlq_replay_json(const char *brokers, const char *topic, const struct sl_ctl_dlq_query *q,
                               int timeout_ms, char *errbuf, size_t errbuf_size);

/* A consumer group's lag as `sluicectl lag --json` prints it: a new object
 * with "group", "partitions" (array of {topic, partition, committed, end,
 * lag, lag_seconds}), "total" (messages) and "oldest_seconds". The topics
 * are `topics` (n_topics of them); none means every topic in which the group
 * has committed offsets. Each request to the brokers waits up to
 * timeout_ms. NULL with the reason in errbuf; *no_offsets (OUT, may be NULL)
 * is set to 1 when it failed because the group has no committed offsets. */
json_t *sl_ctl_lag_json(const char *brokers, const char *group, char *const *topics, size_t n_topics,
                        int timeout_ms, int *no_offsets, char *errbuf, size_t errbuf_size);

/* A worker's /metrics and /readyz summarised as `sluicectl status --json`
 * prints them: a new object ("url", "ready", "ready_reason", "version",
 * "in_flight", "executor_utilisation", "jobs", "lag", ...). NULL with the
 * reason in errbuf when the worker cannot be reached within timeout_ms. */
json_t *sl_ctl_status_json(const char *url, int timeout_ms, char *errbuf, size_t errbuf_size);

/* Writes the URL at which a worker listening on `listen` (its http.listen)
 * is reached from this host into buf. Returns 0, or -1 with the reason in
 * errbuf (the listener is off, or its port is ephemeral). */
int sl_ctl_listen_url(const char *listen, char *buf, size_t buf_size, char *errbuf, size_t errbuf_size);

/* The outbox as `sluicectl outbox --json` prints it: a new object (depth,
 * behind_watermark, lag_seconds, delayed, next_delayed_in_seconds, shards,
 * leases, relays, oldest_transaction). conn is borrowed. NULL with the
 * server's message in errbuf (the outbox migration missing says so). */
json_t *sl_ctl_outbox_json(PGconn *conn, char *errbuf, size_t errbuf_size);

/* The recurring jobs as `sluicectl schedule list --json` prints them: a new
 * array of {name, cron, tz, type, key, next, last, fires, data, last_error}.
 * conn is borrowed. NULL with the server's message in errbuf. */
json_t *sl_ctl_schedules_json(PGconn *conn, char *errbuf, size_t errbuf_size);

#endif
