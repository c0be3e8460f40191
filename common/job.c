/* job.c -- a batch of jobs on one executor, from message to outcome.
 *
 * An executor hands its batch here (sl_job_run_batch). Each message is
 * decoded and checked first: one that is no CloudEvent, of an unknown type
 * or against its schema never reaches PostgreSQL and fails with a result
 * built from the message itself (outcome.c). The rest run in group
 * transactions (txn.c), as many times as it takes:
 *
 *   - a job's own transient failure counts an attempt, and after a backoff
 *     (retry policy of its type, full jitter) it and the jobs behind it
 *     run again; after the last attempt it fails, its failed outcome
 *     written to the ledger before anything is published (give_up);
 *   - what PostgreSQL cannot judge now (lost connection, a server that
 *     is read-only, shutting down or out of connections, a missing
 *     function) counts nothing: the job and the ones behind it wait,
 *     0.1 s doubling to 2 s, for as long as it takes, and /readyz says so.
 *
 * Jobs of one key stay in order: a job that has to go again holds the
 * jobs after it. A revoke or a stop hands the jobs not yet done back unrun.
 *
 * Not for: the transaction itself (txn.c) or what happens to a job after
 * its outcome (publish.c). Executor threads.
 */
#include "job.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "text.h"
#include "txn.h"

/* Sleeps `d` seconds with full jitter over its upper half; returns early
 * (-1) when the worker starts abandoning jobs or the job's partition is
 * revoked. */
static int
sleep_unless_stopped(struct sl_executor *ex, const struct sl_job *job, double d)
{
	double until;
	uint32_t rnd = 0;

	(void)!getrandom(&rnd, sizeof(rnd), 0);
	d = d / 2 + d / 2 * (rnd / 4294967296.0);
	until = sl_now() + d;
	for (;;) {
		double left = until - sl_now();
		struct timespec ts = { 0, 0 };
		if (atomic_load(&ex->w->abandon) || atomic_load(&job->part->revoked))
			return -1;
		if (left <= 0)
			return 0;
		if (left > 0.05)
			left = 0.05;
		ts.tv_nsec = (long)(left * 1e9);
		nanosleep(&ts, NULL);
	}
}

/* Sleeps the backoff before attempt `attempt` + 1 (see sleep_unless_stopped). */
static int
backoff(struct sl_executor *ex, const struct sl_job *job, const struct sl_retry_policy *p, int attempt)
{
	double d = p->initial_backoff * pow(p->multiplier, attempt - 1);

	return sleep_unless_stopped(ex, job, d > p->max_backoff ? p->max_backoff : d);
}

/* How long a job waits for PostgreSQL before it looks again: from 100 ms,
 * doubling, to WAIT_MAX. Waiting costs nothing but the partition's
 * progress, so it lasts as long as the outage does. */
#define WAIT_FIRST 0.1
#define WAIT_MAX 2.0
#define WAIT_LOG_EVERY 10.0

/* Marks ex as waiting for PostgreSQL with `jobs` jobs (*held: how many it
 * counts as held now), for /readyz, the metric and the watchdog. Logs the
 * reason when the worker starts waiting and then once every
 * WAIT_LOG_EVERY seconds, not once per job. */
static void
wait_start(struct sl_executor *ex, long *held, long jobs, const struct sl_item *it)
{
	struct sl_ops *o = &ex->w->ops;
	double now = sl_now();

	if (!atomic_exchange(&ex->waiting, 1))
		atomic_fetch_add(&o->waiting, 1);
	atomic_fetch_add(&o->jobs_waiting, jobs - *held);
	*held = jobs;
	atomic_store(&o->pg_ok, 0);
	pthread_mutex_lock(&o->wait_mu);
	snprintf(o->wait_reason, sizeof(o->wait_reason), "%.40s: %.200s", it->code, it->message);
	for (char *c = o->wait_reason; *c; c++) /* libpq's messages span lines */
		if (*c == '\n' || *c == '\t')
			*c = ' ';
	if (now - o->wait_logged_at >= WAIT_LOG_EVERY) {
		o->wait_logged_at = now;
		sl_log_warn("postgresql cannot judge jobs now (%s); %d executors hold %ld jobs, counting no attempts, "
		            "until it can (logged every %.0f s)",
		            o->wait_reason, atomic_load(&o->waiting), atomic_load(&o->jobs_waiting), WAIT_LOG_EVERY);
	}
	pthread_mutex_unlock(&o->wait_mu);
}

/* Ends ex's wait, if it waits; the last executor to stop waiting says so. */
static void
wait_end(struct sl_executor *ex, long *held)
{
	struct sl_ops *o = &ex->w->ops;

	if (!atomic_exchange(&ex->waiting, 0))
		return;
	atomic_fetch_sub(&o->jobs_waiting, *held);
	*held = 0;
	if (atomic_fetch_sub(&o->waiting, 1) == 1) {
		pthread_mutex_lock(&o->wait_mu);
		o->wait_logged_at = 0;
		pthread_mutex_unlock(&o->wait_mu);
		sl_log_info("postgresql answers again; waiting jobs resume");
	}
}

/* Sleeps before looking again at a job that waits (the waits-th time). */
static int
wait_sleep(struct sl_executor *ex, const struct sl_job *job, int *waits)
{
	double d = WAIT_FIRST * pow(2, *waits);

	if (d < WAIT_MAX)
		(*waits)++;
	return sleep_unless_stopped(ex, job, d > WAIT_MAX ? WAIT_MAX : d);
}

/* Holds items[first..n) while items[first] waits (for PostgreSQL, for its
 * function, for the ledger to take its outcome): marks the executor
 * waiting and sleeps before the next look. Returns -1, with the jobs
 * handed back unrun, when the worker stops or the partition is revoked. */
static int
hold(struct sl_executor *ex, struct sl_item *items, size_t first, size_t n, long *held, int *waits)
{
	size_t i;

	wait_start(ex, held, (long)(n - first), &items[first]);
	if (wait_sleep(ex, items[first].job, waits) == 0)
		return 0;
	for (i = first; i < n; i++)
		items[i].job->end = SL_JOB_END_SKIPPED;
	return -1;
}

/* Gives up on a job after its last attempt: a failed result, written to
 * the ledger before anything is published (if the job is final meanwhile,
 * its stored result instead). Returns 0 when the outcome is settled, -1
 * when PostgreSQL cannot take it now: the job then waits, as one that
 * cannot be judged does, and this runs again. */
static int
give_up(struct sl_executor *ex, struct sl_item *it)
{
	enum sl_pg_class cls;
	char errbuf[512], msg[sizeof(it->message)];

	if (!it->giving_up) {
		snprintf(msg, sizeof(msg), "gave up after %d attempts: %.60s: %.900s", it->job->attempts, it->code,
		         it->message);
		snprintf(it->code, sizeof(it->code), "%s", SL_ERR_RETRIES_EXHAUSTED);
		memcpy(it->message, msg, sizeof(msg));
		it->giving_up = 1;
	}
	if (sl_txn_connect(ex, errbuf, sizeof(errbuf)) == 0) {
		if (sl_outcome_record_failed(ex, it, &cls, errbuf, sizeof(errbuf)) == 0) {
			sl_outcome_dead_letter(it);
			return 0;
		}
		if (PQstatus(ex->pg.conn) != CONNECTION_OK)
			sl_pgconn_close(&ex->pg);
		/* The write failed; if PostgreSQL still answers, the write is
		 * what breaks. */
		if (sl_txn_connect(ex, errbuf, sizeof(errbuf)) == 0 && ++it->record_tries >= 3 &&
		    sl_outcome_fail_unrecorded(ex, it) == 0)
			return 0;
	}
	atomic_store(&ex->w->ops.pg_ok, 0);
	it->wait = 1;
	sl_log_job_debug(it->ev.id, "could not record the failed job in the ledger yet: %s", errbuf);
	return -1;
}

/* Prepares a job for PostgreSQL, or finishes it here when it cannot get
 * there. Returns 1 when the job needs the database. */
static int
prepare(struct sl_executor *ex, struct sl_job *job, struct sl_item *it)
{
	struct sl_worker *w = ex->w;
	const rd_kafka_message_t *msg = job->msg;
	struct sl_schema_error serrs[3];
	size_t i, n_serrs = 0;
	char code[64], errbuf[1024];
	struct sl_event_header ce[SL_EVENT_MAX_HEADERS];
	rd_kafka_headers_t *hdrs = NULL;
	const char *hname;
	const void *hval;
	size_t hlen, k, n_ce = 0;

	memset(it, 0, sizeof(*it));
	it->job = job;
	job->end = SL_JOB_END_RESULT;
	/* Binary mode keeps the attributes in ce_* headers; borrowed from msg. */
	if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
		hdrs = NULL;
	for (k = 0; hdrs != NULL && n_ce < SL_EVENT_MAX_HEADERS &&
	            rd_kafka_header_get_all(hdrs, k, &hname, &hval, &hlen) == RD_KAFKA_RESP_ERR_NO_ERROR;
	     k++)
		if (sl_event_binary_header(hname))
			ce[n_ce++] = (struct sl_event_header){ hname, hval, hlen };
	if (sl_event_decode_message(msg->payload, msg->len, ce, n_ce, (size_t)w->cfg->max_job_bytes, &it->ev,
	                            code, errbuf, sizeof(errbuf)) < 0) {
		sl_outcome_fail_unrun(ex, job, NULL, code, errbuf);
		return 0;
	}
	for (i = 0; i < w->n_types; i++)
		if (strcmp(w->types[i].conf->type, it->ev.type) == 0)
			it->jt = &w->types[i];
	if (it->jt == NULL) {
		char shown[208];
		size_t len = strlen(it->ev.type);
		/* The type comes from the message: escaped, and cut whole. */
		if (sl_text_escape_untrusted(it->ev.type, len, shown, sizeof(shown) - 3) < len)
			strcat(shown, "...");
		snprintf(errbuf, sizeof(errbuf), "no handler for job type \"%s\"", shown);
		sl_outcome_fail_unrun(ex, job, &it->ev, SL_ERR_UNKNOWN_TYPE, errbuf);
		return 0;
	}
	job->jt = it->jt;
	job->result_topic = it->jt->conf->result_topic;
	if (it->jt->schema != NULL && sl_schema_validate(it->jt->schema, it->ev.data, serrs, 3, &n_serrs) != 0) {
		sl_schema_errors_format(serrs, n_serrs, errbuf, sizeof(errbuf));
		sl_outcome_fail_unrun(ex, job, &it->ev, SL_ERR_SCHEMA_VIOLATION, errbuf);
		return 0;
	}
	job->attempts = 1;
	return 1;
}

void
sl_job_run_batch(struct sl_executor *ex, struct sl_job **jobs, size_t n)
{
	struct sl_worker *w = ex->w;
	struct sl_item *items = calloc(n, sizeof(*items));
	size_t i, n_db = 0;

	if (items == NULL)
		abort();
	for (i = 0; i < n; i++) {
		if (atomic_load(&w->abandon) || atomic_load(&jobs[i]->part->revoked)) {
			jobs[i]->end = SL_JOB_END_SKIPPED;
			continue;
		}
		if (prepare(ex, jobs[i], &items[n_db]))
			n_db++;
		else
			sl_event_clear(&items[n_db].ev);
	}
	sl_job_run_items(ex, items, n_db);
	for (i = 0; i < n_db; i++) {
		sl_event_clear(&items[i].ev);
		free(items[i].job_json);
	}
	free(items);
}

void
sl_job_run_items(struct sl_executor *ex, struct sl_item *items, size_t n_db)
{
	struct sl_worker *w = ex->w;
	struct sl_retry_policy policy;
	size_t i, first = 0, done, size;
	enum sl_txn_care care = sl_txn_first_care(ex);
	int lost, replay, alone = 0, waits = 0;
	long held = 0;
	char errbuf[512];

	while (first < n_db) {
		struct sl_item *it = &items[first];
		if (atomic_load(&w->abandon) || atomic_load(&it->job->part->revoked)) {
			for (i = first; i < n_db; i++)
				items[i].job->end = SL_JOB_END_SKIPPED;
			break;
		}
		if (it->giving_up) {
			/* Its failed outcome waits for the ledger. */
			if (give_up(ex, it) == 0) {
				wait_end(ex, &held);
				sl_outcome_log_failed(it);
				first++;
				continue;
			}
			if (hold(ex, items, first, n_db, &held, &waits) < 0)
				break;
			continue;
		}
		/* After a group was lost, its jobs go one by one: a job that
		 * breaks its connection then pays for it alone, instead of the
		 * group's first job (which is what gets the next attempt). */
		size = alone ? 1 : n_db - first;
		done = sl_txn_run(ex, it, size, &care, &lost, &replay);
		if (lost && size > 1)
			alone = 1;
		atomic_store(&ex->progress_at, (long long)(sl_now() * 1000));
		if (atomic_load(&w->abandon)) {
			/* Rolled back or cancelled by the stop: not a failure of the
			 * job. Whatever did not commit is redelivered. */
			for (i = first + done; i < n_db; i++)
				items[i].job->end = SL_JOB_END_SKIPPED;
			n_db = first + done;
		}
		for (i = first; i < first + done; i++) {
			if (items[i].job->duplicate)
				atomic_fetch_add(&w->n_duplicates, 1);
			sl_outcome_log_failed(&items[i]);
		}
		first += done;
		if (first == n_db)
			break;
		if (done == size)
			continue; /* one by one: the next job has not run yet */
		if (replay)
			continue; /* rolled back: the same jobs go again, more carefully */
		it = &items[first];
		/* A job that lost its connection alone while PostgreSQL answers
		 * right after may be what breaks it: that attempt counts. */
		if (it->wait && lost && size == 1 && sl_txn_connect(ex, errbuf, sizeof(errbuf)) == 0)
			it->wait = 0;
		if (it->wait) {
			/* Cannot judge now: no attempt counted, nothing published;
			 * the job (and its partition's offset) waits for PostgreSQL. */
			if (hold(ex, items, first, n_db, &held, &waits) < 0)
				break;
			continue;
		}
		wait_end(ex, &held);
		waits = 0;
		/* The job's own transient failure: it counts. */
		pthread_mutex_lock(&w->reload_mu);
		policy = it->jt->retry;
		pthread_mutex_unlock(&w->reload_mu);
		if (it->job->attempts >= policy.max_attempts) {
			if (give_up(ex, it) == 0) {
				sl_outcome_log_failed(it);
				first++;
			}
			continue;
		}
		atomic_fetch_add(&w->n_retries, 1);
		sl_metrics_counter_inc(it->jt->m_retries);
		sl_log_job_info(it->ev.id, "retrying job (attempt %d of %d): %s: %s", it->job->attempts + 1,
		                policy.max_attempts, it->code, it->message);
		if (it->retry_after > 0 ? sleep_unless_stopped(ex, it->job, 2 * it->retry_after) < 0
		                        : backoff(ex, it->job, &policy, it->job->attempts) < 0) {
			for (i = first; i < n_db; i++)
				items[i].job->end = SL_JOB_END_SKIPPED;
			break;
		}
		it->job->attempts++;
	}
	wait_end(ex, &held);
}
