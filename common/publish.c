/* publish.c -- a job's outcome goes out: its result, its dead letter, and
 * their delivery reports.
 *
 * The executors hand finished jobs back (executor.c); here, on the consumer
 * thread, each job's result is produced to its result topic, and a failed
 * job's original message to the dead-letter topic with sluice-* headers
 * saying why. The producer is idempotent with acks=all; a record that
 * cannot be produced or delivered is produced again a second later, for as
 * long as it takes: the job's offset must not move until every record of
 * it is acknowledged (partition.c). Values are not copied: the job owns
 * them until its delivery report.
 *
 * A topic whose max.message.bytes was lowered after the worker started
 * (which sized its batches to the limits then, kafka.c) refuses whole
 * batches of records each small enough for it. A record refused as too
 * large is produced again through a second producer, made then, that sends
 * each record in a batch of its own: only a record larger than the topic's
 * limit by itself stays refused.
 *
 * Not for: building results (outcome.c) or the clients (kafka.c).
 * Consumer thread.
 */
#include "publish.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "executor.h"
#include "kafka.h"
#include "log.h"
#include "ops.h"
#include "partition.h"

/* Tags in the delivery opaque: which record of the job it is. */
#define REC_RESULT 0u
#define REC_DLQ    1u

/* Seconds between two lines about records that could not be produced or
 * delivered: with a result topic missing, every record of every job in
 * flight fails again each second, and a line each would bury the log. */
#define RECORD_ERROR_INTERVAL 10.0

/* Logs that a record failed: the first at once, then one line per
 * RECORD_ERROR_INTERVAL, which says how many went unsaid since. */
static void record_error(struct sl_worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
record_error(struct sl_worker *w, const char *fmt, ...)
{
	char line[1024];
	double now = sl_now();
	va_list ap;

	if (w->record_error_at != 0 && now - w->record_error_at < RECORD_ERROR_INTERVAL) {
		w->record_errors_unsaid++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (w->record_errors_unsaid > 0)
		sl_log_error("%s (and %ld more records failed in the last %.0f s)", line, w->record_errors_unsaid,
		             now - w->record_error_at);
	else
		sl_log_error("%s", line);
	w->record_error_at = now;
	w->record_errors_unsaid = 0;
}

/* Returns new headers for a job's dead letter (the producer takes them):
 * the original message's, without any sluice-* of an earlier failure,
 * then why and where this one failed; `omitted` says why the value is left
 * out, NULL when it is not. */
static rd_kafka_headers_t *
dead_letter_headers(const struct sl_job *job, const char *omitted)
{
	rd_kafka_headers_t *orig = NULL, *h;
	char buf[32];
	static const char *const ours[] = { "sluice-error-code", "sluice-error-message", "sluice-source-topic",
		                            "sluice-source-partition", "sluice-source-offset", "sluice-attempts",
		                            "sluice-value-omitted", NULL };
	const char *const *o;

	if (rd_kafka_message_headers(job->msg, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig != NULL)
		h = rd_kafka_headers_copy(orig);
	else
		h = rd_kafka_headers_new(8);
	/* A replayed dead letter that failed again carries our old headers. */
	for (o = ours; *o != NULL; o++)
		rd_kafka_header_remove(h, *o);
	rd_kafka_header_add(h, "sluice-error-code", -1, job->dlq_code, -1);
	rd_kafka_header_add(h, "sluice-error-message", -1, job->dlq_message, -1);
	rd_kafka_header_add(h, "sluice-source-topic", -1, job->part->topic, -1);
	snprintf(buf, sizeof(buf), "%d", (int)job->part->partition);
	rd_kafka_header_add(h, "sluice-source-partition", -1, buf, -1);
	snprintf(buf, sizeof(buf), "%" PRId64, job->offset);
	rd_kafka_header_add(h, "sluice-source-offset", -1, buf, -1);
	snprintf(buf, sizeof(buf), "%d", job->attempts);
	rd_kafka_header_add(h, "sluice-attempts", -1, buf, -1);
	if (omitted != NULL)
		rd_kafka_header_add(h, "sluice-value-omitted", -1, omitted, -1);
	return h;
}

/* Whether topic needs a key on every record (sl_publish_key_keyless()). */
static int
needs_key(const struct sl_worker *w, const char *topic)
{
	size_t i;

	for (i = 0; i < w->n_keyed_topics; i++)
		if (strcmp(w->keyed_topics[i], topic) == 0)
			return 1;
	return 0;
}

void
sl_publish_key_keyless(struct sl_worker *w, const char *topic)
{
	size_t n = w->n_keyed_topics;

	if (needs_key(w, topic))
		return;
	if ((w->keyed_topics = realloc(w->keyed_topics, (n + 1) * sizeof(*w->keyed_topics))) == NULL ||
	    (w->keyed_topics[n] = strdup(topic)) == NULL)
		abort();
	w->n_keyed_topics++;
	sl_log_info("topic \"%s\" is compacted (cleanup.policy) and refuses records without a key: results and dead "
	            "letters of jobs without a key go there keyed by the job's \"topic:partition:offset\"", topic);
}

/* The key of a job's records to topic: the job's own; for a job without
 * one, to a topic that needs one, "topic:partition:offset" in buf (the same
 * for every delivery of the message). */
static const void *
record_key(const struct sl_worker *w, const struct sl_job *job, const char *topic, char *buf, size_t buf_size,
           size_t *len)
{
	const rd_kafka_message_t *m = job->msg;

	*len = m->key_len;
	if ((m->key != NULL && m->key_len > 0) || !needs_key(w, topic))
		return m->key;
	*len = (size_t)snprintf(buf, buf_size, "%s:%d:%" PRId64, job->part->topic, (int)job->part->partition,
	                        job->offset);
	if (*len >= buf_size)
		*len = buf_size - 1;
	return buf;
}

/* The producer that sends each record alone (w->alone), made the first
 * time a record needs it; the batching one when it cannot be made. */
static rd_kafka_t *
alone_producer(struct sl_worker *w)
{
	char errbuf[512];

	if (w->alone == NULL && (w->alone = sl_kafka_producer_alone(w, errbuf, sizeof(errbuf))) == NULL)
		sl_log_error("%s", errbuf);
	return w->alone != NULL ? w->alone : w->producer;
}

/* Produces one record of a job; with `alone`, in a batch of its own
 * (through w->alone). Values are not copied: the job owns them until its
 * delivery report. Returns 0, or -1 after logging. */
static int
produce_record(struct sl_worker *w, struct sl_job *job, unsigned rec, const char *omitted, int alone)
{
	rd_kafka_t *rk = alone ? alone_producer(w) : w->producer;
	const rd_kafka_message_t *m = job->msg;
	rd_kafka_headers_t *hdrs = NULL;
	rd_kafka_resp_err_t err;
	const char *topic;
	const void *key;
	char key_buf[320];
	size_t key_len;
	void *opaque = (void *)((uintptr_t)job | rec);
	int waited = 0;

	for (;;) {
		if (rec == REC_RESULT) {
			topic = job->result_topic ? job->result_topic : w->cfg->result_topic;
			key = record_key(w, job, topic, key_buf, sizeof(key_buf), &key_len);
			err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
			                        RD_KAFKA_V_KEY(key, key_len),
			                        RD_KAFKA_V_VALUE(job->result, strlen(job->result)),
			                        RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
		} else {
			topic = w->cfg->dlq_topic;
			key = record_key(w, job, topic, key_buf, sizeof(key_buf), &key_len);
			hdrs = dead_letter_headers(job, omitted);
			err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
			                        RD_KAFKA_V_KEY(key, key_len),
			                        RD_KAFKA_V_VALUE(omitted ? NULL : m->payload, omitted ? 0 : m->len),
			                        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
			if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
				rd_kafka_headers_destroy(hdrs); /* not taken over on failure */
		}
		/* A full queue drains as deliveries are served; after a second of
		 * it the record goes to the retry list, so the consumer thread
		 * gets back to polling and to its signals. */
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || ++waited > 100)
			break;
		rd_kafka_poll(rk, 10);
	}
	if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && rec == REC_DLQ && omitted == NULL) {
		/* Larger than the producer takes (message.max.bytes): refused
		 * here, not in a delivery report, and it would be refused on
		 * every retry. Like a dead letter too large for its topic, it
		 * goes without its value. */
		sl_log_error("dead letter of %s [%d] offset %" PRId64 " too large to produce; sending it without its value",
		             job->part->topic, (int)job->part->partition, job->offset);
		return produce_record(w, job, rec, "too large for the producer (message.max.bytes)", alone);
	}
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		sl_ops_kafka_error(w, rd_kafka_err2name(err));
		record_error(w, "could not produce the %s of %s [%d] offset %" PRId64 " to \"%s\": %s; retrying",
		             rec == REC_RESULT ? "result" : "dead letter", job->part->topic, (int)job->part->partition,
		             job->offset, topic, rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

/* A record that could not be produced or delivered is produced again after
 * a pause: the job's offset must not move until it is acknowledged. */
struct sl_retry_rec {
	struct sl_retry_rec *next;
	struct sl_job *job;
	unsigned rec;
	const char *omitted;
	int alone;
	double at;
};


/* Produces record `rec` of job again in a second (w->retries). */
static void
retry_later(struct sl_worker *w, struct sl_job *job, unsigned rec, const char *omitted, int alone)
{
	struct sl_retry_rec *r = calloc(1, sizeof(*r));

	if (r == NULL)
		abort();
	r->job = job;
	r->rec = rec;
	r->omitted = omitted;
	r->alone = alone;
	r->at = sl_now() + 1.0;
	r->next = w->retries;
	w->retries = r;
}

void
sl_publish_retry_due(struct sl_worker *w)
{
	struct sl_retry_rec **pp = &w->retries, *r;
	double now = sl_now();

	while ((r = *pp) != NULL) {
		if (r->at > now) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		if (produce_record(w, r->job, r->rec, r->omitted, r->alone) < 0)
			retry_later(w, r->job, r->rec, r->omitted, r->alone);
		free(r);
	}
}

void
sl_publish_delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct sl_worker *w = opaque;
	unsigned rec = (unsigned)((uintptr_t)m->_private & 1u);
	struct sl_job *job = (struct sl_job *)((uintptr_t)m->_private & ~(uintptr_t)1u);
	int alone = rk == w->alone;
	int too_large = m->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
	                (rec == REC_DLQ && m->err == RD_KAFKA_RESP_ERR_INVALID_RECORD);

	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		sl_ops_kafka_error(w, rd_kafka_err2name(m->err));
		if (m->err == RD_KAFKA_RESP_ERR_INVALID_RECORD && m->key == NULL &&
		    !needs_key(w, rd_kafka_topic_name(m->rkt))) {
			/* Compacted since the worker started, or not known then. */
			sl_publish_key_keyless(w, rd_kafka_topic_name(m->rkt));
			retry_later(w, job, rec, NULL, alone);
			return;
		}
		if (too_large && !alone) {
			/* Perhaps only its batch was: alone, it may fit. */
			if (w->alone == NULL) {
				sl_log_warn("topic \"%s\" refused a batch of records as too large: its max.message.bytes is "
				            "below the batches this worker makes (lowered since the worker started?); "
				            "records it refuses go one to a batch from now on, and a restart sizes the "
				            "batches to the topics' limits again",
				            rd_kafka_topic_name(m->rkt));
				(void)alone_producer(w);
			}
			retry_later(w, job, rec, NULL, 1);
			return;
		}
		/* A dead letter larger than its topic allows keeps its coordinates
		 * (sluice-source-*) and loses the value rather than blocking the
		 * partition forever; the original is still in the source topic. */
		if (too_large && rec == REC_DLQ) {
			sl_log_error("dead letter of %s [%d] offset %" PRId64 " too large for \"%s\"; sending it without its value",
			             job->part->topic, (int)job->part->partition, job->offset, w->cfg->dlq_topic);
			retry_later(w, job, REC_DLQ, "too large for the dead-letter topic", 1);
			return;
		}
		/* The ledger holds this result (the job is finished): nothing else
		 * may be published for it, so its partition waits for the topic. */
		if (too_large)
			record_error(w, "topic \"%s\" refused the result of %s [%d] offset %" PRId64 " (%zu bytes) as too large "
			             "(max.message.bytes); retrying: the ledger holds this result, so while the topic's "
			             "limit is below it the partition waits",
			             rd_kafka_topic_name(m->rkt), job->part->topic, (int)job->part->partition, job->offset,
			             m->len);
		else
			record_error(w, "could not deliver the %s of %s [%d] offset %" PRId64 ": %s; retrying",
			             rec == REC_RESULT ? "result" : "dead letter", job->part->topic,
			             (int)job->part->partition, job->offset, rd_kafka_err2str(m->err));
		retry_later(w, job, rec, NULL, alone);
		return;
	}
	if (rec == REC_RESULT)
		job->result_acked = 1;
	else
		job->dlq_acked = 1;
	if (--job->pending_acks == 0)
		sl_partition_job_done(w, job);
}

int
sl_publish_done(struct sl_worker *w)
{
	struct sl_job *job, *next;
	int produced = 0;

	for (job = sl_executors_take_done(w); job != NULL; job = next) {
		next = job->next;
		job->next = NULL;
		sl_dispatch_done(&w->dispatch, job->key_hash, job->executor);
		if (job->end == SL_JOB_END_SKIPPED) {
			atomic_fetch_add(&w->n_skipped, 1);
			sl_partition_release_job(w, job);
			continue;
		}
		if (job->status == SL_JOB_SUCCEEDED)
			atomic_fetch_add(&w->n_succeeded, 1);
		else if (job->status == SL_JOB_REJECTED)
			atomic_fetch_add(&w->n_rejected, 1);
		else
			atomic_fetch_add(&w->n_failed, 1);
		sl_ops_job_done(w, job);
		job->pending_acks = job->dlq_code ? 2 : 1;
		produced++;
		if (produce_record(w, job, REC_RESULT, NULL, 0) < 0)
			retry_later(w, job, REC_RESULT, NULL, 0);
		if (job->dlq_code != NULL) {
			atomic_fetch_add(&w->n_dead_letters, 1);
			if (produce_record(w, job, REC_DLQ, NULL, 0) < 0)
				retry_later(w, job, REC_DLQ, NULL, 0);
		}
	}
	return produced;
}

void
sl_publish_flush(struct sl_worker *w)
{
	/* rd_kafka_flush() makes the producer treat linger.ms as over while it
	 * runs and wakes the broker threads, which send at once; it then waits
	 * for acknowledgements, which are not needed here: 1 ms bounds that. */
	(void)rd_kafka_flush(w->producer, 1);
}

void
sl_publish_poll(struct sl_worker *w, int timeout_ms)
{
	rd_kafka_poll(w->producer, timeout_ms);
	if (w->alone != NULL)
		rd_kafka_poll(w->alone, 0);
}

int
sl_publish_drain(struct sl_worker *w, int timeout_ms)
{
	rd_kafka_t *rks[2] = { w->producer, w->alone };
	int i, left = 0;

	for (i = 0; i < 2; i++) {
		if (rks[i] == NULL || rd_kafka_flush(rks[i], timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR)
			continue;
		left += rd_kafka_outq_len(rks[i]);
		rd_kafka_purge(rks[i], RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	}
	return left;
}
