/* worker.c -- the consumer thread: fetch, dispatch, publish, store offsets.
 *
 * Everything about a job's life outside PostgreSQL happens here, on one
 * thread, so offsets, partitions and delivery reports need no locks:
 *
 *   fetch    rd_kafka_consumer_poll(); the offset enters its partition's
 *            tracker and the job goes to the executor its key hashes to
 *   publish  the executor hands the job back (done queue); its result, and a
 *            dead letter if it failed, are produced with acks=all
 *   store    when every record of the job is acknowledged, the offset is
 *            marked done and the partition's committable offset (the lowest
 *            unfinished one) is stored; auto-commit sends it to Kafka
 *
 * So an offset is committed only when its job's outcome is durable, and a
 * crash at any point redelivers instead of losing. In-flight jobs are bounded;
 * above the bound every partition is paused while polling goes on.
 * Rebalances and SIGTERM drain before they commit (see on_revoke, drain).
 */
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "event.h"
#include "handler_int.h"
#include "http.h"
#include "log.h"
#include "notify.h"
#include "pg.h"
#include "plugin.h"
#include "relay.h" /* outbox relay hook */
#include "sqlhandler.h"
#include "version.h"
#include "worker_int.h"

/* Seconds a worker at max_in_flight waits for jobs to end before it pauses
 * its partitions (see the consumer loop). */
#define FULL_BEFORE_PAUSE 1.0

static volatile sig_atomic_t stop_signals;
static volatile sig_atomic_t reload_signals;

static void
on_stop_signal(int sig)
{
	(void)sig;
	stop_signals++;
}

static void
on_hup(int sig)
{
	(void)sig;
	reload_signals++;
}

double
sl_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- handing jobs back (any thread) ---------------------------------- */

void
sl_worker_jobs_done(struct sl_worker *w, struct sl_job **jobs, size_t n)
{
	size_t i;
	int was_empty;

	if (n == 0)
		return;
	for (i = 0; i + 1 < n; i++)
		jobs[i]->next = jobs[i + 1];
	jobs[n - 1]->next = NULL;
	pthread_mutex_lock(&w->done_mu);
	was_empty = w->done_head == NULL;
	if (w->done_tail != NULL)
		w->done_tail->next = jobs[0];
	else
		w->done_head = jobs[0];
	w->done_tail = jobs[n - 1];
	pthread_mutex_unlock(&w->done_mu);
	/* Wake the consumer thread out of rd_kafka_consumer_poll(), once. */
	if (was_empty && w->consumer_q != NULL)
		rd_kafka_queue_yield(w->consumer_q);
}

/* ---- partitions (consumer thread) ------------------------------------ */

static struct sl_partition *
partition_find(struct sl_worker *w, const char *topic, int32_t partition)
{
	struct sl_partition *p;

	for (p = w->parts; p != NULL; p = p->next)
		if (p->partition == partition && strcmp(p->topic, topic) == 0)
			return p;
	return NULL;
}

static void
partition_free(struct sl_partition *p)
{
	if (p == NULL)
		return;
	sl_offsets_destroy(p->offsets);
	free(p->topic);
	free(p);
}

/* Stores `off` as the partition's next offset to read. */
static void
store_at(struct sl_worker *w, struct sl_partition *p, int64_t off)
{
	rd_kafka_topic_partition_list_t *list;
	rd_kafka_resp_err_t err;

	list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset = off;
	err = rd_kafka_offsets_store(w->consumer, list);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		err = list->elems[0].err;
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		sl_log_warn("could not store offset %" PRId64 " of %s [%d]: %s", off, p->topic, (int)p->partition,
		            rd_kafka_err2str(err));
	else
		p->stored = off;
	rd_kafka_topic_partition_list_destroy(list);
}

/* Stores the partition's committable offset if it moved. */
static void
store_offset(struct sl_worker *w, struct sl_partition *p)
{
	int64_t off = sl_offsets_committable(p->offsets);

	if (!p->assigned || off < 0 || off <= p->stored)
		return;
	store_at(w, p, off);
}

/* Stores the consumer's position of every idle partition that is ahead of
 * what was stored. A transactional producer's commit marker takes an offset
 * that is never a message: without this the stored offset stays one short
 * of the end forever (lag 1, committed offset behind). Idle means every
 * message handed to the tracker is done (a job handed back unrun at a stop
 * stays in flight there) and none was left out of it (while draining): then
 * every message before the position is done, and the position is
 * committable. Consumer thread. */
static void
store_idle_positions(struct sl_worker *w)
{
	rd_kafka_topic_partition_list_t *list;
	struct sl_partition *p;
	int i;

	list = rd_kafka_topic_partition_list_new(8);
	for (p = w->parts; p != NULL; p = p->next)
		if (p->assigned && !p->dropped && sl_offsets_in_flight(p->offsets) == 0)
			rd_kafka_topic_partition_list_add(list, p->topic, p->partition);
	if (list->cnt > 0 && rd_kafka_position(w->consumer, list) == RD_KAFKA_RESP_ERR_NO_ERROR)
		for (i = 0; i < list->cnt; i++) {
			rd_kafka_topic_partition_t *e = &list->elems[i];
			if (e->err == RD_KAFKA_RESP_ERR_NO_ERROR && e->offset >= 0 &&
			    (p = partition_find(w, e->topic, e->partition)) != NULL && e->offset > p->stored &&
			    e->offset > sl_offsets_committable(p->offsets))
				store_at(w, p, e->offset);
		}
	rd_kafka_topic_partition_list_destroy(list);
}

/* Ends a job's life: frees it and whatever it kept alive. */
static void
job_release(struct sl_worker *w, struct sl_job *job)
{
	struct sl_partition *p = job->part;

	if (job->p_prev != NULL)
		job->p_prev->p_next = job->p_next;
	else
		p->oldest = job->p_next;
	if (job->p_next != NULL)
		job->p_next->p_prev = job->p_prev;
	else
		p->newest = job->p_prev;
	p->jobs--;
	w->in_flight--;
	if (!p->assigned && p->jobs == 0)
		partition_free(p);
	rd_kafka_message_destroy(job->msg);
	free(job->result);
	free(job->dlq_code);
	free(job->dlq_message);
	free(job);
}

/* Every record of the job is acknowledged: its offset is done. */
static void
job_complete(struct sl_worker *w, struct sl_job *job)
{
	struct sl_partition *p = job->part;

	int64_t before = sl_offsets_committable(p->offsets);

	if (sl_offsets_done(p->offsets, job->offset) == 0) {
		if (sl_offsets_committable(p->offsets) != before)
			p->progress_at = sl_now();
		store_offset(w, p);
	}
	job_release(w, job);
}

/* ---- producing (consumer thread) -------------------------------------- */

/* Tags in the delivery opaque: which record of the job it is. */
#define REC_RESULT 0u
#define REC_DLQ    1u

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

/* Produces one record of a job. Values are not copied: the job owns them
 * until its delivery report. Returns 0, or -1 after logging. */
static int
produce_record(struct sl_worker *w, struct sl_job *job, unsigned rec, const char *omitted)
{
	const rd_kafka_message_t *m = job->msg;
	rd_kafka_headers_t *hdrs = NULL;
	rd_kafka_resp_err_t err;
	const char *topic;
	void *opaque = (void *)((uintptr_t)job | rec);
	int waited = 0;

	for (;;) {
		if (rec == REC_RESULT) {
			topic = job->result_topic ? job->result_topic : w->cfg->result_topic;
			err = rd_kafka_producev(w->producer, RD_KAFKA_V_TOPIC(topic),
			                        RD_KAFKA_V_KEY(m->key, m->key_len),
			                        RD_KAFKA_V_VALUE(job->result, strlen(job->result)),
			                        RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
		} else {
			topic = w->cfg->dlq_topic;
			hdrs = dead_letter_headers(job, omitted);
			err = rd_kafka_producev(w->producer, RD_KAFKA_V_TOPIC(topic),
			                        RD_KAFKA_V_KEY(m->key, m->key_len),
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
		rd_kafka_poll(w->producer, 10);
	}
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		sl_ops_kafka_error(w, rd_kafka_err2name(err));
		sl_log_error("could not produce the %s of %s [%d] offset %" PRId64 " to \"%s\": %s",
		             rec == REC_RESULT ? "result" : "dead letter", job->part->topic, (int)job->part->partition,
		             job->offset, topic, rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

/* A record that could not be produced or delivered is produced again after
 * a pause: the job's offset must not move until it is acknowledged. */
struct retry_rec {
	struct retry_rec *next;
	struct sl_job *job;
	unsigned rec;
	const char *omitted;
	double at;
};

static struct retry_rec *retries;

static void
retry_later(struct sl_job *job, unsigned rec, const char *omitted)
{
	struct retry_rec *r = calloc(1, sizeof(*r));

	if (r == NULL)
		abort();
	r->job = job;
	r->rec = rec;
	r->omitted = omitted;
	r->at = sl_now() + 1.0;
	r->next = retries;
	retries = r;
}

static void
retry_due(struct sl_worker *w)
{
	struct retry_rec **pp = &retries, *r;
	double now = sl_now();

	while ((r = *pp) != NULL) {
		if (r->at > now) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		if (produce_record(w, r->job, r->rec, r->omitted) < 0)
			retry_later(r->job, r->rec, r->omitted);
		free(r);
	}
}

static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct sl_worker *w = opaque;
	unsigned rec = (unsigned)((uintptr_t)m->_private & 1u);
	struct sl_job *job = (struct sl_job *)((uintptr_t)m->_private & ~(uintptr_t)1u);

	(void)rk;
	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		/* A dead letter larger than its topic allows keeps its coordinates
		 * (sluice-source-*) and loses the value rather than blocking the
		 * partition forever; the original is still in the source topic. */
		if (rec == REC_DLQ && (m->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
		                       m->err == RD_KAFKA_RESP_ERR_INVALID_RECORD)) {
			sl_log_error("dead letter of %s [%d] offset %" PRId64 " too large for \"%s\"; sending it without its value",
			             job->part->topic, (int)job->part->partition, job->offset, w->cfg->dlq_topic);
			retry_later(job, REC_DLQ, "too large for the dead-letter topic");
			return;
		}
		sl_ops_kafka_error(w, rd_kafka_err2name(m->err));
		sl_log_error("could not deliver the %s of %s [%d] offset %" PRId64 ": %s; retrying",
		             rec == REC_RESULT ? "result" : "dead letter", job->part->topic, (int)job->part->partition,
		             job->offset, rd_kafka_err2str(m->err));
		retry_later(job, rec, NULL);
		return;
	}
	if (rec == REC_RESULT)
		job->result_acked = 1;
	else
		job->dlq_acked = 1;
	if (--job->pending_acks == 0)
		job_complete(w, job);
}

/* Takes the jobs the executors handed back and publishes their outcomes. */
static void
drain_done(struct sl_worker *w)
{
	struct sl_job *job, *next;

	pthread_mutex_lock(&w->done_mu);
	job = w->done_head;
	w->done_head = w->done_tail = NULL;
	pthread_mutex_unlock(&w->done_mu);

	for (; job != NULL; job = next) {
		next = job->next;
		job->next = NULL;
		if (job->end == SL_JOB_END_SKIPPED) {
			atomic_fetch_add(&w->n_skipped, 1);
			job_release(w, job);
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
		if (produce_record(w, job, REC_RESULT, NULL) < 0)
			retry_later(job, REC_RESULT, NULL);
		if (job->dlq_code != NULL) {
			atomic_fetch_add(&w->n_dead_letters, 1);
			if (produce_record(w, job, REC_DLQ, NULL) < 0)
				retry_later(job, REC_DLQ, NULL);
		}
	}
}

/* ---- fetching (consumer thread) --------------------------------------- */

static uint64_t
fnv1a(const void *data, size_t len, uint64_t h)
{
	const unsigned char *p = data;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* The executor of a message: by key, so one key always runs on one
 * executor in order; keyless messages keep their partition's order. */
static unsigned
executor_for(const struct sl_worker *w, const rd_kafka_message_t *m, const struct sl_partition *p)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	if (m->key != NULL)
		h = fnv1a(m->key, m->key_len, h);
	else {
		h = fnv1a(p->topic, strlen(p->topic), h);
		h = fnv1a(&p->partition, sizeof(p->partition), h);
	}
	return (unsigned)(h % w->n_executors);
}

static void
set_paused(struct sl_worker *w, int pause)
{
	rd_kafka_topic_partition_list_t *list = NULL;

	if (w->paused == pause)
		return;
	if (rd_kafka_assignment(w->consumer, &list) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	if (pause)
		rd_kafka_pause_partitions(w->consumer, list);
	else
		rd_kafka_resume_partitions(w->consumer, list);
	rd_kafka_topic_partition_list_destroy(list);
	w->paused = pause;
	sl_log_debug("%s all partitions (%ld jobs in flight)", pause ? "paused" : "resumed", w->in_flight);
}

static void
handle_message(struct sl_worker *w, rd_kafka_message_t *m, int draining)
{
	struct sl_partition *p;
	struct sl_job *job;

	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			sl_ops_kafka_error(w, rd_kafka_err2name(m->err));
			sl_log_warn("consumer error: %s", rd_kafka_message_errstr(m));
		}
		rd_kafka_message_destroy(m);
		return;
	}
	atomic_store(&w->ops.brokers_down, 0);
	/* While draining, a message is left for the next owner: it never enters
	 * the tracker, so no committed offset can pass it. The consumer's
	 * position has passed it, though: from now on that position is no
	 * offset to store (store_idle_positions). */
	p = partition_find(w, rd_kafka_topic_name(m->rkt), m->partition);
	if (draining || p == NULL || sl_offsets_add(p->offsets, m->offset) < 0) {
		if (p != NULL)
			p->dropped = 1;
		rd_kafka_message_destroy(m);
		return;
	}
	if ((job = calloc(1, sizeof(*job))) == NULL)
		abort();
	job->msg = m;
	job->part = p;
	job->offset = m->offset;
	job->fetched_at = sl_now();
	job->result_topic = w->cfg->result_topic;
	job->p_prev = p->newest;
	if (p->newest != NULL)
		p->newest->p_next = job;
	else
		p->oldest = job;
	p->newest = job;
	p->last_fetched_ts = rd_kafka_message_timestamp(m, NULL);
	if (p->jobs == 0)
		p->progress_at = job->fetched_at;
	p->jobs++;
	w->in_flight++;
	atomic_fetch_add(&w->n_fetched, 1);
	sl_executors_submit(w, executor_for(w, m, p), job);
}

/* ---- rebalances (consumer thread, inside consumer_poll) ---------------- */

static void
on_assign(struct sl_worker *w, rd_kafka_topic_partition_list_t *parts)
{
	int i;

	for (i = 0; i < parts->cnt; i++) {
		struct sl_partition *p = calloc(1, sizeof(*p));
		if (p == NULL || (p->offsets = sl_offsets_new()) == NULL || (p->topic = strdup(parts->elems[i].topic)) == NULL)
			abort();
		p->partition = parts->elems[i].partition;
		p->assigned = 1;
		p->stored = -1;
		p->progress_at = sl_now();
		p->next = w->parts;
		w->parts = p;
	}
	if (rd_kafka_assign(w->consumer, parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
		sl_log_error("could not assign %d partitions", parts->cnt);
	/* librdkafka keeps a partition's application pause across
	 * assignments, so a partition paused under an earlier assignment would
	 * stay silent: set the state we want explicitly. */
	if (w->paused)
		rd_kafka_pause_partitions(w->consumer, parts);
	else
		rd_kafka_resume_partitions(w->consumer, parts);
	atomic_store(&w->ops.joined, 1);
	atomic_store(&w->ops.brokers_down, 0);
	sl_log_info("assigned %d partitions", parts->cnt);
}

/* Revoke: stop new work on the partitions, let their in-flight jobs finish
 * (bounded by revoke_timeout), commit synchronously, then let them go. A
 * lost assignment is not committed: another member owns it already. */
static void
on_revoke(struct sl_worker *w, rd_kafka_topic_partition_list_t *parts, int abandon)
{
	rd_kafka_topic_partition_list_t *commit;
	struct sl_partition *p, **pp;
	int lost = rd_kafka_assignment_lost(w->consumer), i, busy;
	double deadline = sl_now() + (abandon ? 0 : w->revoke_timeout);
	rd_kafka_resp_err_t err;

	for (i = 0; i < parts->cnt; i++)
		if ((p = partition_find(w, parts->elems[i].topic, parts->elems[i].partition)) != NULL)
			atomic_store(&p->revoked, 1);
	if (lost) /* out of the group until the next assignment: not ready */
		atomic_store(&w->ops.joined, 0);
	do {
		busy = 0;
		drain_done(w);
		retry_due(w);
		rd_kafka_poll(w->producer, 5);
		for (i = 0; i < parts->cnt; i++)
			if ((p = partition_find(w, parts->elems[i].topic, parts->elems[i].partition)) != NULL)
				busy += p->jobs;
	} while (busy > 0 && !lost && sl_now() < deadline && stop_signals < 2);
	if (busy > 0 && !lost)
		sl_log_warn("revoke: %d jobs still in flight after %.1f s; the next owner gets them again", busy,
		            w->revoke_timeout);

	commit = rd_kafka_topic_partition_list_new(parts->cnt);
	for (i = 0; i < parts->cnt; i++) {
		int64_t off;
		if ((p = partition_find(w, parts->elems[i].topic, parts->elems[i].partition)) == NULL)
			continue;
		off = sl_offsets_committable(p->offsets);
		if (off >= 0)
			rd_kafka_topic_partition_list_add(commit, p->topic, p->partition)->offset = off;
	}
	if (!lost && commit->cnt > 0) {
		err = rd_kafka_commit(w->consumer, commit, 0);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
			sl_log_warn("could not commit offsets of revoked partitions: %s", rd_kafka_err2str(err));
	}
	rd_kafka_topic_partition_list_destroy(commit);

	for (pp = &w->parts; (p = *pp) != NULL;) {
		if (rd_kafka_topic_partition_list_find(parts, p->topic, p->partition) == NULL) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		p->assigned = 0;
		if (p->jobs == 0)
			partition_free(p);
	}
	rd_kafka_resume_partitions(w->consumer, parts); /* see on_assign */
	rd_kafka_assign(w->consumer, NULL);
	sl_log_info("%s %d partitions", lost ? "lost" : "revoked", parts->cnt);
}

static int abandoning;

static void
on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct sl_worker *w = opaque;

	(void)rk;
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
		on_assign(w, parts);
	else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
		on_revoke(w, parts, abandoning);
	else {
		sl_log_error("rebalance error: %s", rd_kafka_err2str(err));
		rd_kafka_assign(w->consumer, NULL);
	}
}

/* ---- clients ----------------------------------------------------------- */

static void
on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct sl_worker *w = opaque;
	char fatal[512];

	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
		sl_log_error("fatal kafka error in %s: %s", rd_kafka_name(rk), fatal);
		atomic_store(&w->fatal, 1);
		return;
	}
	sl_ops_kafka_error(w, rd_kafka_err2name((rd_kafka_resp_err_t)err));
	sl_log_warn("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
	    err == RD_KAFKA_RESP_ERR__RESOLVE) {
		/* Until the next assignment or message: /readyz names it. */
		pthread_mutex_lock(&w->ops.wait_mu);
		snprintf(w->ops.kafka_reason, sizeof(w->ops.kafka_reason), "%.250s", reason);
		pthread_mutex_unlock(&w->ops.wait_mu);
		atomic_store(&w->ops.brokers_down, 1);
	}
}

static void
on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	/* Connection failures come to on_kafka_error() too, which logs them
	 * once, with the error's name; here they would be logged twice. */
	if (strcmp(fac, "FAIL") == 0 || strcmp(fac, "ERROR") == 0)
		sl_log_debug("kafka %s: %s", fac, buf);
	else if (level <= 3)
		sl_log_error("kafka %s: %s", fac, buf);
	else if (level == 4)
		sl_log_warn("kafka %s: %s", fac, buf);
	else
		sl_log_debug("kafka %s: %s", fac, buf);
}

static int
conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errbuf, size_t errbuf_size)
{
	char kerr[256];

	if (rd_kafka_conf_set(conf, key, value, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
		snprintf(errbuf, errbuf_size, "kafka property \"%s\": %s", key, kerr);
		return -1;
	}
	return 0;
}

static int
conf_set_all(rd_kafka_conf_t *conf, const struct sl_kv *kv, size_t n, char *errbuf, size_t errbuf_size)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (conf_set(conf, kv[i].key, kv[i].value, errbuf, errbuf_size) < 0)
			return -1;
	return 0;
}

/* Builds a client: our defaults, then the user's properties, then the
 * properties our guarantees rest on (config.c refuses user values for them). */
static rd_kafka_t *
client_new(struct sl_worker *w, rd_kafka_type_t type, char *errbuf, size_t errbuf_size)
{
	const struct sl_config *cfg = w->cfg;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	char kerr[512];
	int rc = 0;

	rc |= conf_set(conf, "bootstrap.servers", cfg->brokers, errbuf, errbuf_size);
	rc |= conf_set(conf, "client.id", "sluice-worker", errbuf, errbuf_size);
	if (type == RD_KAFKA_CONSUMER) {
		rc |= conf_set(conf, "auto.offset.reset", "earliest", errbuf, errbuf_size);
		rc |= conf_set(conf, "session.timeout.ms", "10000", errbuf, errbuf_size);
		rc |= conf_set(conf, "auto.commit.interval.ms", "1000", errbuf, errbuf_size);
		rc |= conf_set(conf, "partition.assignment.strategy", "range,roundrobin", errbuf, errbuf_size);
		/* The prefetch queue only has to cover a fetch round trip at full
		 * speed (a few thousand jobs); at librdkafka's 64 MiB it would be
		 * most of the worker's memory. */
		rc |= conf_set(conf, "queued.max.messages.kbytes", "4096", errbuf, errbuf_size);
		rc |= conf_set(conf, "queued.min.messages", "10000", errbuf, errbuf_size);
	} else {
		/* Batching results cuts the worker's CPU per job by half or more
		 * (one produce request per result costs more than the job's SQL);
		 * a result waits at most 50 ms for its batch. */
		rc |= conf_set(conf, "linger.ms", "50", errbuf, errbuf_size);
		rc |= conf_set(conf, "message.max.bytes", "16777216", errbuf, errbuf_size);
	}
	if (rc != 0 || conf_set_all(conf, cfg->kafka_props, cfg->n_kafka_props, errbuf, errbuf_size) < 0 ||
	    (type == RD_KAFKA_CONSUMER &&
	     conf_set_all(conf, cfg->consumer_props, cfg->n_consumer_props, errbuf, errbuf_size) < 0) ||
	    (type == RD_KAFKA_PRODUCER &&
	     conf_set_all(conf, cfg->producer_props, cfg->n_producer_props, errbuf, errbuf_size) < 0))
		goto err;
	if (type == RD_KAFKA_CONSUMER) {
		if (conf_set(conf, "group.id", cfg->group, errbuf, errbuf_size) < 0 ||
		    conf_set(conf, "enable.auto.offset.store", "false", errbuf, errbuf_size) < 0 ||
		    conf_set(conf, "enable.auto.commit", "true", errbuf, errbuf_size) < 0 ||
		    conf_set(conf, "enable.partition.eof", "false", errbuf, errbuf_size) < 0 ||
		    conf_set(conf, "isolation.level", "read_committed", errbuf, errbuf_size) < 0)
			goto err;
		rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
	} else {
		if (conf_set(conf, "enable.idempotence", "true", errbuf, errbuf_size) < 0 ||
		    conf_set(conf, "acks", "all", errbuf, errbuf_size) < 0)
			goto err;
		rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	}
	rd_kafka_conf_set_error_cb(conf, on_kafka_error);
	rd_kafka_conf_set_log_cb(conf, on_kafka_log);
	rd_kafka_conf_set_opaque(conf, w);
	rk = rd_kafka_new(type, conf, kerr, sizeof(kerr));
	if (rk == NULL) {
		snprintf(errbuf, errbuf_size, "could not create kafka %s: %s",
		         type == RD_KAFKA_CONSUMER ? "consumer" : "producer", kerr);
		goto err;
	}
	return rk; /* conf is now owned by rk */
err:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

/* ---- start and stop ------------------------------------------------- */

/* Returns `set local role "ROLE"` (malloc'ed), or NULL for no role. */
static char *
enter_role_sql(const char *role)
{
	size_t n = 0;
	char *sql;
	const char *c;

	if (role == NULL)
		return NULL;
	if ((sql = malloc(strlen(role) * 2 + 32)) == NULL)
		abort();
	n = (size_t)sprintf(sql, "set local role \"");
	for (c = role; *c; c++) {
		if (*c == '"')
			sql[n++] = '"';
		sql[n++] = *c;
	}
	strcpy(sql + n, "\"");
	return sql;
}

/* Frees what resolve_types() made for the job types. */
static void
release_types(struct sl_job_type_rt *types, size_t n)
{
	size_t i;

	for (i = 0; types != NULL && i < n; i++) {
		sl_sql_handler_destroy(types[i].handler);
		free(types[i].enter_role);
		free(types[i].enter_timeout);
		sl_schema_destroy(types[i].schema);
	}
	free(types);
}

/* Checks each SQL handler's function on conn: an error for `-n`, a warning
 * at start (a migration may come later; until then its jobs wait). Returns
 * the number of problems; the first is in errbuf as `file:line: ...`. */
static int
check_sql_handlers(const struct sl_config *cfg, const struct sl_job_type_rt *types, PGconn *conn, int warn,
                   char *errbuf, size_t errbuf_size)
{
	char err[768];
	size_t i;
	int bad = 0;

	for (i = 0; i < cfg->n_jobs; i++) {
		if (!sl_sql_handler_is(types[i].handler) ||
		    sl_sql_handler_check(conn, types[i].handler, cfg->jobs[i].role, err, sizeof(err)) == 0)
			continue;
		if (warn)
			sl_log_warn("%s:%d: job type \"%s\": %s; its jobs wait until it is there", cfg->path,
			            cfg->jobs[i].line, cfg->jobs[i].type, err);
		else if (bad == 0)
			snprintf(errbuf, errbuf_size, "%s:%d: job type \"%s\": %s", cfg->path, cfg->jobs[i].line,
			         cfg->jobs[i].type, err);
		bad++;
	}
	return bad;
}

/* The program's built-in handlers (sl_worker_set_builtins): set before any
 * other call, read-only afterwards. */
static const struct sl_handler *builtins;
static size_t n_builtins;

void
sl_worker_set_builtins(const struct sl_handler *table, size_t n)
{
	builtins = table;
	n_builtins = n;
}

/* Returns the built-in handler named `name`, or NULL. */
static const struct sl_handler *
find_builtin(const char *name)
{
	size_t i;

	for (i = 0; i < n_builtins; i++)
		if (strcmp(builtins[i].name, name) == 0)
			return &builtins[i];
	return NULL;
}

static int
resolve_types(const struct sl_config *cfg, struct sl_job_type_rt *out, char *errbuf, size_t errbuf_size)
{
	size_t i;
	char path[4096], err[1024];

	for (i = 0; i < cfg->n_jobs; i++) {
		const struct sl_job_type *jt = &cfg->jobs[i];
		const struct sl_handler *h;

		if (strncmp(jt->handler, "sql:", 4) == 0) {
			h = sl_sql_handler_new(jt->handler + 4, jt->statement_timeout > 0, err, sizeof(err));
			if (h == NULL) {
				snprintf(errbuf, errbuf_size, "%s:%d: job type \"%s\": %s", cfg->path, jt->line, jt->type,
				         err);
				return -1;
			}
		} else if (sl_plugin_is_spec(jt->handler)) {
			/* "plugin:PATH.so:NAME": loaded once, kept for the process. */
			if ((h = sl_plugin_find(cfg, jt->handler, err, sizeof(err))) == NULL) {
				snprintf(errbuf, errbuf_size, "%s:%d: handler of job type \"%s\": %s", cfg->path,
				         jt->line, jt->type, err);
				return -1;
			}
		} else if ((h = find_builtin(jt->handler)) == NULL) {
			snprintf(errbuf, errbuf_size, "%s:%d: unknown handler \"%s\" for job type \"%s\"", cfg->path,
			         jt->line, jt->handler, jt->type);
			return -1;
		}
		if (out != NULL) {
			out[i].conf = jt;
			out[i].handler = h;
			out[i].enter_role = enter_role_sql(jt->role);
			if (jt->statement_timeout > 0 &&
			    asprintf(&out[i].enter_timeout, "set local statement_timeout = %ld",
			             (long)(jt->statement_timeout * 1000 + 0.5)) < 0)
				abort();
		} else {
			sl_sql_handler_destroy(h);
		}
		if (jt->schema_path == NULL)
			continue;
		sl_config_path(cfg, jt->schema_path, path, sizeof(path));
		sl_schema_t *s = sl_schema_load_file(path, NULL, 0, err, sizeof(err));
		if (s == NULL) {
			snprintf(errbuf, errbuf_size, "%s:%d: schema of job type \"%s\": %s", cfg->path, jt->line, jt->type,
			         err);
			return -1;
		}
		if (out != NULL)
			out[i].schema = s;
		else
			sl_schema_destroy(s);
	}
	return 0;
}

int
sl_worker_check(const struct sl_config *cfg, char *errbuf, size_t errbuf_size)
{
	char err[512];

	if (*cfg->http_listen != '\0' && sl_http_listen_check(cfg->http_listen, err, sizeof(err)) < 0) {
		snprintf(errbuf, errbuf_size, "%s: http.listen: %s", cfg->path, err);
		return -1;
	}
	return resolve_types(cfg, NULL, errbuf, errbuf_size);
}

int
sl_worker_check_deep(const struct sl_config *cfg, char *errbuf, size_t errbuf_size)
{
	struct sl_job_type_rt *types;
	char err[512];
	PGconn *conn = NULL;
	size_t i;
	int rc = -1, any = 0;

	if (sl_worker_check(cfg, errbuf, errbuf_size) < 0)
		return -1;
	if ((types = calloc(cfg->n_jobs ? cfg->n_jobs : 1, sizeof(*types))) == NULL)
		abort();
	if (resolve_types(cfg, types, errbuf, errbuf_size) < 0)
		goto out;
	for (i = 0; i < cfg->n_jobs; i++)
		any |= sl_sql_handler_is(types[i].handler);
	if (!any) {
		rc = 0;
		goto out;
	}
	/* SQL handlers are checked where they run. */
	if ((conn = sl_pg_connect(cfg->pg_conninfo, "sluice-worker-check", err, sizeof(err))) == NULL) {
		snprintf(errbuf, errbuf_size, "%s: could not connect to postgresql to check the sql handlers: %s",
		         cfg->path, err);
		goto out;
	}
	rc = check_sql_handlers(cfg, types, conn, 0, errbuf, errbuf_size) == 0 ? 0 : -1;
out:
	PQfinish(conn);
	release_types(types, cfg->n_jobs);
	return rc;
}

/* Waits until PostgreSQL answers and the ledger exists. Returns 0, or -1 if
 * the ledger table is missing or a stop signal came first. */
static int
wait_for_postgres(struct sl_worker *w)
{
	char errbuf[512], redacted[512];
	double delay = 0.5;
	PGconn *conn;
	PGresult *res;
	int ok;

	for (;;) {
		conn = sl_pg_connect(w->cfg->pg_conninfo, "sluice-worker", errbuf, sizeof(errbuf));
		atomic_store(&w->ops.pg_ok, conn != NULL);
		if (conn != NULL) {
			res = PQexec(conn, "select to_regclass('sluice.jobs') is not null");
			ok = PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
			PQclear(res);
			if (!ok) {
				PQfinish(conn);
				sl_log_error("the job ledger table sluice.jobs does not exist; run 'sluicectl migrate'");
				return -1;
			}
			/* A ledger of another shape would fail every job's write. */
			ok = sl_job_check_ledger(conn, errbuf, sizeof(errbuf)) == 0;
			if (ok)
				check_sql_handlers(w->cfg, w->types, conn, 1, errbuf, sizeof(errbuf));
			PQfinish(conn);
			if (!ok) {
				sl_log_error("%s", errbuf);
				return -1;
			}
			return 0;
		}
		/* /readyz says why: a wrong password (retried, a fleet should
		 * survive a rotated secret) reads "password authentication
		 * failed", not just "unreachable". */
		pthread_mutex_lock(&w->ops.wait_mu);
		snprintf(w->ops.wait_reason, sizeof(w->ops.wait_reason), "%.250s", errbuf);
		for (char *c = w->ops.wait_reason; *c; c++)
			if (*c == '\n' || *c == '\t')
				*c = ' ';
		pthread_mutex_unlock(&w->ops.wait_mu);
		sl_log_redact(w->cfg->pg_conninfo, redacted, sizeof(redacted));
		sl_log_warn("could not connect to postgresql \"%s\": %s; retrying in %.1f s", redacted, errbuf, delay);
		/* Not ready yet, but alive: keep systemd's start timeout away. */
		sl_notify("EXTEND_TIMEOUT_USEC=%d\nSTATUS=waiting for postgresql", (int)((delay + 30) * 1e6));
		for (double until = sl_now() + delay; sl_now() < until;) {
			struct timespec ts = { 0, 50 * 1000 * 1000 };
			if (stop_signals)
				return -1;
			nanosleep(&ts, NULL);
		}
		if ((delay *= 2) > 10)
			delay = 10;
	}
}

static void
log_progress(struct sl_worker *w)
{
	sl_log_info("progress: fetched=%lld succeeded=%lld rejected=%lld failed=%lld dead_letters=%lld "
	            "duplicates=%lld retries=%lld in_flight=%ld",
	            (long long)atomic_load(&w->n_fetched), (long long)atomic_load(&w->n_succeeded),
	            (long long)atomic_load(&w->n_rejected), (long long)atomic_load(&w->n_failed),
	            (long long)atomic_load(&w->n_dead_letters), (long long)atomic_load(&w->n_duplicates),
	            (long long)atomic_load(&w->n_retries), w->in_flight);
}

/* SIGHUP: applies what can change without a restart (log level and format,
 * limits other than executors, batch and message size, retry policies) and
 * names what it could not apply. Consumer thread. */
static void
reload(struct sl_worker *w)
{
	const struct sl_config *old = w->cfg;
	struct sl_config *cfg;
	char errbuf[1024], skipped[512] = "";
	size_t i;
	int same;

	sl_notify("RELOADING=1");
	if ((cfg = sl_config_load(old->path, errbuf, sizeof(errbuf))) == NULL ||
	    sl_worker_check(cfg, errbuf, sizeof(errbuf)) < 0) {
		sl_log_error("could not reload the configuration, keeping the running one: %s", errbuf);
		sl_config_destroy(cfg);
		sl_notify("READY=1");
		return;
	}
	sl_log_set_level((enum sl_log_level)cfg->log_level);
	sl_log_set_format((enum sl_log_format)cfg->log_format);
	w->max_in_flight = cfg->max_in_flight;
	w->shutdown_timeout = cfg->shutdown_timeout;
	w->revoke_timeout = cfg->revoke_timeout;
	w->stall_timeout = cfg->stall_timeout;
	pthread_mutex_lock(&w->reload_mu);
	for (i = 0; i < w->n_types; i++) {
		const struct sl_job_type *jt = sl_config_job_type(cfg, w->types[i].conf->type);
		if (jt != NULL)
			w->types[i].retry = jt->retry;
	}
	pthread_mutex_unlock(&w->reload_mu);

#define CHANGED(cond, name) \
	if (cond)           \
		snprintf(skipped + strlen(skipped), sizeof(skipped) - strlen(skipped), "%s%s", *skipped ? ", " : "", name)
	CHANGED(strcmp(cfg->brokers, old->brokers) != 0, "kafka.brokers");
	CHANGED(strcmp(cfg->group, old->group) != 0, "kafka.group");
	same = cfg->n_topics == old->n_topics;
	for (i = 0; same && i < cfg->n_topics; i++)
		same = strcmp(cfg->topics[i], old->topics[i]) == 0;
	CHANGED(!same, "kafka.topics");
	CHANGED(strcmp(cfg->dlq_topic, old->dlq_topic) != 0, "kafka.dlq_topic");
	same = cfg->n_kafka_props == old->n_kafka_props && cfg->n_consumer_props == old->n_consumer_props &&
	       cfg->n_producer_props == old->n_producer_props;
	for (i = 0; same && i < cfg->n_kafka_props; i++)
		same = strcmp(cfg->kafka_props[i].key, old->kafka_props[i].key) == 0 &&
		       strcmp(cfg->kafka_props[i].value, old->kafka_props[i].value) == 0;
	for (i = 0; same && i < cfg->n_consumer_props; i++)
		same = strcmp(cfg->consumer_props[i].key, old->consumer_props[i].key) == 0 &&
		       strcmp(cfg->consumer_props[i].value, old->consumer_props[i].value) == 0;
	for (i = 0; same && i < cfg->n_producer_props; i++)
		same = strcmp(cfg->producer_props[i].key, old->producer_props[i].key) == 0 &&
		       strcmp(cfg->producer_props[i].value, old->producer_props[i].value) == 0;
	CHANGED(!same, "kafka properties");
	CHANGED(strcmp(cfg->pg_conninfo, old->pg_conninfo) != 0, "postgres.conninfo");
	CHANGED(cfg->executors != old->executors, "executors");
	CHANGED(cfg->max_job_bytes != old->max_job_bytes, "limits.max_job_bytes");
	CHANGED(cfg->max_batch != old->max_batch, "limits.max_batch");
	same = cfg->n_jobs == old->n_jobs;
	for (i = 0; same && i < cfg->n_jobs; i++) {
		const struct sl_job_type *a = &cfg->jobs[i], *b = sl_config_job_type(old, a->type);
		same = b != NULL && strcmp(a->handler, b->handler) == 0 && strcmp(a->result_topic, b->result_topic) == 0 &&
		       (a->schema_path == NULL) == (b->schema_path == NULL) &&
		       (a->schema_path == NULL || strcmp(a->schema_path, b->schema_path) == 0);
	}
	CHANGED(!same, "jobs (types, handlers, schemas, result topics)");
	CHANGED(strcmp(cfg->result_source, old->result_source) != 0, "results.source");
	CHANGED(strcmp(cfg->http_listen, old->http_listen) != 0, "http.listen");
#undef CHANGED
	if (*skipped)
		sl_log_warn("reloaded %s; not applied until a restart: %s", old->path, skipped);
	else
		sl_log_info("reloaded %s", old->path);
	sl_config_destroy(cfg);
	sl_notify("READY=1");
}

static void
install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_hup;
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

int
sl_worker_run(struct sl_config *cfg)
{
	struct sl_worker wk, *w = &wk;
	rd_kafka_topic_partition_list_t *topics = NULL;
	rd_kafka_resp_err_t err;
	char errbuf[1024];
	double drain_deadline = 0, last_progress_log, full_since = 0, last_idle_store = 0;
	int draining = 0, status = 1, stuck = 0;
	size_t i;
	rd_kafka_message_t *m;

	memset(w, 0, sizeof(*w));
	w->cfg = cfg;
	w->max_in_flight = cfg->max_in_flight;
	w->shutdown_timeout = cfg->shutdown_timeout;
	w->revoke_timeout = cfg->revoke_timeout;
	w->stall_timeout = cfg->stall_timeout;
	pthread_mutex_init(&w->done_mu, NULL);
	pthread_mutex_init(&w->reload_mu, NULL);
	sl_log_set_level((enum sl_log_level)cfg->log_level);
	sl_log_set_format((enum sl_log_format)cfg->log_format);
	install_signals();

	w->n_types = cfg->n_jobs;
	if ((w->types = calloc(cfg->n_jobs, sizeof(*w->types))) == NULL)
		abort();
	if (resolve_types(cfg, w->types, errbuf, sizeof(errbuf)) < 0) {
		sl_log_error("%s", errbuf);
		goto out;
	}
	for (i = 0; i < w->n_types; i++)
		w->types[i].retry = w->types[i].conf->retry;
	if (sl_ops_start(w, errbuf, sizeof(errbuf)) < 0) {
		sl_log_error("%s", errbuf);
		goto out;
	}
	if (wait_for_postgres(w) < 0) {
		status = stop_signals ? 0 : 1;
		goto out;
	}
	if ((w->producer = client_new(w, RD_KAFKA_PRODUCER, errbuf, sizeof(errbuf))) == NULL ||
	    (w->consumer = client_new(w, RD_KAFKA_CONSUMER, errbuf, sizeof(errbuf))) == NULL) {
		sl_log_error("%s", errbuf);
		goto out;
	}
	rd_kafka_poll_set_consumer(w->consumer);
	w->consumer_q = rd_kafka_queue_get_consumer(w->consumer);
	if (sl_executors_start(w, errbuf, sizeof(errbuf)) < 0) {
		sl_log_error("%s", errbuf);
		goto out;
	}
	topics = rd_kafka_topic_partition_list_new((int)cfg->n_topics);
	for (i = 0; i < cfg->n_topics; i++)
		rd_kafka_topic_partition_list_add(topics, cfg->topics[i], RD_KAFKA_PARTITION_UA);
	if ((err = rd_kafka_subscribe(w->consumer, topics)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		sl_log_error("could not subscribe to the job topics: %s", rd_kafka_err2str(err));
		goto out;
	}
	/* outbox relay (relay.c): started before the loop, stopped after it. */
	if ((w->relay = sl_relay_start(w, errbuf, sizeof(errbuf))) == NULL && *errbuf != '\0') {
		sl_log_error("%s", errbuf);
		goto out;
	}
	sl_log_info("started: sluice %s, group \"%s\", %d executors, max %d jobs in flight", SL_VERSION, cfg->group,
	            cfg->executors, cfg->max_in_flight);

	last_progress_log = sl_now();
	for (;;) {
		if (stop_signals && !draining) {
			draining = 1;
			drain_deadline = sl_now() + w->shutdown_timeout;
			set_paused(w, 1);
			sl_notify("STOPPING=1\nSTATUS=stopping: draining %ld jobs", w->in_flight);
			sl_log_info("stopping: draining %ld jobs in flight (deadline %.1f s)", w->in_flight,
			            w->shutdown_timeout);
		}
		if (atomic_load(&w->fatal)) {
			sl_log_error("stopping after a fatal kafka error; unfinished jobs are redelivered");
			abandoning = 1;
			break;
		}
		if (draining && w->in_flight == 0)
			break;
		if (draining && (stop_signals >= 2 || sl_now() >= drain_deadline)) {
			sl_log_warn("abandoning %ld jobs in flight (%s); they are rolled back and redelivered",
			            w->in_flight, stop_signals >= 2 ? "second signal" : "deadline");
			abandoning = 1;
			break;
		}
		/* At max_in_flight the worker stops taking messages: the fetched
		 * ones wait in librdkafka's queue (bounded by
		 * queued.max.messages.kbytes) and flow again as soon as jobs end.
		 * Only a worker that stays full pauses its partitions, which
		 * drops that queue and costs a refetch on resume (about
		 * fetch.wait.max.ms), but lets consumer_poll() serve rebalances
		 * and errors while the jobs take their time. */
		if (!draining && !w->paused && w->in_flight >= w->max_in_flight) {
			if (full_since == 0)
				full_since = sl_now();
			if (sl_now() - full_since >= FULL_BEFORE_PAUSE)
				set_paused(w, 1);
			rd_kafka_poll(w->producer, 1);
		} else {
			full_since = 0;
			m = rd_kafka_consumer_poll(w->consumer, w->in_flight > 0 ? 5 : 100);
			if (m != NULL)
				handle_message(w, m, draining);
			rd_kafka_poll(w->producer, 0);
		}
		drain_done(w);
		retry_due(w);
		if (!draining && w->paused && w->in_flight <= w->max_in_flight / 2)
			set_paused(w, 0);
		if (sl_now() - last_idle_store >= 1) {
			store_idle_positions(w);
			last_idle_store = sl_now();
		}
		if (sl_now() - last_progress_log >= 10) {
			log_progress(w);
			last_progress_log = sl_now();
		}
		if (reload_signals) {
			reload_signals = 0;
			reload(w);
		}
		sl_ops_tick(w, draining);
	}

	sl_relay_stop(w->relay); /* outbox relay: stopped after the loop */
	w->relay = NULL;

	/* Stop: abandoned jobs roll back (their executors are cancelled);
	 * finished ones are still published so their offsets can move. */
	if (abandoning) {
		atomic_store(&w->abandon, 1);
		sl_executors_cancel_all(w);
	}
	stuck = sl_executors_stop(w, abandoning ? 5.0 : w->shutdown_timeout);
	drain_done(w);
	retry_due(w);
	if (rd_kafka_flush(w->producer, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		sl_log_warn("%d records not acknowledged at stop; their jobs are redelivered",
		            rd_kafka_outq_len(w->producer));
		rd_kafka_purge(w->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	}
	err = rd_kafka_commit(w->consumer, NULL, 0);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
		sl_log_warn("could not commit offsets at stop: %s", rd_kafka_err2str(err));
	log_progress(w);
	status = atomic_load(&w->fatal) ? 1 : 0;
	if (stuck > 0 || w->in_flight > 0) {
		/* Executors still running, or jobs whose records were never
		 * acknowledged, still hold memory and librdkafka messages that the
		 * handles' destruction would wait for. Everything durable is done
		 * (offsets committed up to the last acknowledged job), so leave
		 * the group and let the process exit reclaim the rest. */
		rd_kafka_consumer_close(w->consumer);
		sl_log_info("stopped (%d executors busy, %ld jobs unacknowledged: they are redelivered)", stuck,
		            w->in_flight);
		_exit(status);
	}
	sl_log_info("stopped");
out:
	if (topics != NULL)
		rd_kafka_topic_partition_list_destroy(topics);
	if (w->consumer != NULL) {
		abandoning = 1; /* the revoke during close must not wait again */
		rd_kafka_consumer_close(w->consumer);
	}
	if (w->producer != NULL)
		rd_kafka_destroy(w->producer);
	if (w->consumer != NULL) {
		if (w->consumer_q != NULL)
			rd_kafka_queue_destroy(w->consumer_q);
		rd_kafka_destroy(w->consumer);
	}
	sl_ops_stop(w);
	release_types(w->types, w->n_types);
	return status;
}
