/* job.c -- one job on one executor: decode, validate, claim, run, record.
 *
 * This is where exactly-once effects come from. A job runs in one PostgreSQL
 * transaction that claims its ledger row (source, id), runs the handler after
 * a savepoint, and stores the finished result event in the row before COMMIT.
 * A redelivered job whose row is final (succeeded, rejected) does not run: its
 * stored result is published again, byte for byte. Two executors or two
 * workers racing on one job are serialised by the row's unique key: the
 * second claim waits for the first transaction and then sees it final.
 *
 * Messages that never reach PostgreSQL (not a CloudEvent, unknown type,
 * schema violation) get a `failed` result whose id and time are derived from
 * the message itself, so a redelivery produces the same bytes too.
 *
 * Runs on executor threads only; touches nothing shared but the job.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "event.h"
#include "log.h"
#include "pg.h"
#include "registry.h"
#include "worker_int.h"

static const char sql_claim[] =
	"insert into sluice.jobs (source, id, type, status) values ($1, $2, $3, 'running') "
	"on conflict (source, id) do update set attempts = sluice.jobs.attempts + 1, status = 'running' "
	"where sluice.jobs.status in ('running', 'failed') returning status";
static const char sql_stored[] = "select status, result from sluice.jobs where source = $1 and id = $2";
static const char sql_finish[] =
	"update sluice.jobs set status = $3, result = $4, finished_at = now() where source = $1 and id = $2";
static const char sql_record_failed[] =
	"insert into sluice.jobs (source, id, type, status, result, finished_at) "
	"values ($1, $2, $3, 'failed', $4, now()) "
	"on conflict (source, id) do update set status = 'failed', result = excluded.result, "
	"finished_at = now(), attempts = sluice.jobs.attempts + 1 "
	"where sluice.jobs.status in ('running', 'failed') returning status";

/* How one attempt ended. */
enum attempt {
	ATTEMPT_DONE,          /* committed: job->result set (maybe the stored one) */
	ATTEMPT_FAILED,        /* permanent failure: code/message set, nothing committed */
	ATTEMPT_RETRY,         /* transient failure: nothing committed */
	ATTEMPT_ABANDONED,     /* the worker is abandoning: rolled back */
};

static char *
xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");

	if (d == NULL)
		abort();
	return d;
}

/* Formats the message's timestamp (or now) as RFC 3339, for results that
 * must be the same on every delivery. */
static void
message_time(const rd_kafka_message_t *msg, char out[48])
{
	rd_kafka_timestamp_type_t tstype;
	int64_t ms = rd_kafka_message_timestamp(msg, &tstype);
	time_t secs;
	struct tm tm;

	if (ms < 0) {
		sl_event_now(out);
		return;
	}
	secs = (time_t)(ms / 1000);
	gmtime_r(&secs, &tm);
	snprintf(out, 48, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* A `failed` result for a message that never reached the ledger, plus its
 * dead letter. The result id is the message's coordinates. */
static void
fail_without_ledger(struct sl_executor *ex, struct sl_job *job, const struct sl_event *ev,
                    const char *code, const char *message)
{
	struct sl_worker *w = ex->w;
	struct sl_result r = { 0 };
	char id[512], when[48];

	snprintf(id, sizeof(id), "%s/%" PRId32 "/%" PRId64, job->part->topic, job->part->partition, job->offset);
	message_time(job->msg, when);
	r.status = "failed";
	r.job_id = ev ? ev->id : NULL;
	r.job_source = ev ? ev->source : NULL;
	r.job_type = ev ? ev->type : NULL;
	r.error_code = code;
	r.error_message = message;
	job->status = "failed";
	job->result = sl_event_result(&r, id, w->cfg->result_source, when);
	if (job->result == NULL)
		abort();
	job->dlq_code = xstrdup(code);
	job->dlq_message = xstrdup(message);
	sl_log_job_warn(ev && ev->id ? ev->id : NULL, "job failed: %s: %s (%s/%d@%" PRId64 ")", code, message,
	                job->part->topic, (int)job->part->partition, job->offset);
}

static int
ensure_connection(struct sl_executor *ex, char *errbuf, size_t errbuf_size)
{
	struct sl_worker *w = ex->w;
	PGconn *conn;
	PGcancel *cancel;

	if (ex->conn != NULL && PQstatus(ex->conn) == CONNECTION_OK &&
	    PQtransactionStatus(ex->conn) == PQTRANS_IDLE)
		return 0;
	pthread_mutex_lock(&ex->mu);
	if (ex->cancel != NULL)
		PQfreeCancel(ex->cancel);
	ex->cancel = NULL;
	pthread_mutex_unlock(&ex->mu);
	PQfinish(ex->conn);
	ex->conn = NULL;
	conn = sl_pg_connect(w->cfg->pg_conninfo, "sluice-worker", errbuf, errbuf_size);
	if (conn == NULL)
		return -1;
	cancel = PQgetCancel(conn);
	pthread_mutex_lock(&ex->mu);
	ex->cancel = cancel;
	pthread_mutex_unlock(&ex->mu);
	ex->conn = conn;
	return 0;
}

/* Runs a parameterised statement; returns its result (caller clears) or NULL
 * after filling the error, classified, into *cls. */
static PGresult *
run(PGconn *conn, const char *sql, int n, const char *const *params, enum sl_pg_class *cls, char *errbuf,
    size_t errbuf_size)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);

	*cls = sl_pg_classify(conn, res);
	if (*cls == SL_PG_OK)
		return res;
	snprintf(errbuf, errbuf_size, "%s%s%s", sl_pg_sqlstate(res),
	         *sl_pg_sqlstate(res) ? ": " : "", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
	if (*errbuf == '\0' || strcmp(errbuf, sl_pg_sqlstate(res)) == 0)
		snprintf(errbuf, errbuf_size, "%s", PQerrorMessage(conn));
	errbuf[strcspn(errbuf, "\n")] = '\0';
	PQclear(res);
	return NULL;
}

static int
simple(PGconn *conn, const char *sql, enum sl_pg_class *cls, char *errbuf, size_t errbuf_size)
{
	PGresult *res = run(conn, sql, 0, NULL, cls, errbuf, errbuf_size);

	PQclear(res);
	return res ? 0 : -1;
}

/* One attempt at the job's transaction. */
static enum attempt
attempt_once(struct sl_executor *ex, struct sl_job *job, const struct sl_event *ev,
             const struct sl_job_type_rt *jt, char *code, size_t code_size, char *errbuf, size_t errbuf_size)
{
	struct sl_worker *w = ex->w;
	const struct sl_handler *h = jt->handler;
	const char *claim[3] = { ev->source, ev->id, ev->type };
	const char *finish[4];
	struct sl_job_ctx ctx = { 0 };
	struct sl_result r = { 0 };
	enum sl_outcome outcome;
	enum sl_pg_class cls;
	enum attempt rc = ATTEMPT_RETRY;
	PGresult *res = NULL;
	char result_id[37], when[32];
	char *result = NULL;

	if (ensure_connection(ex, errbuf, errbuf_size) < 0) {
		atomic_store(&w->ops.pg_ok, 0);
		sl_metrics_counter_inc(w->ops.m_pg[0]);
		snprintf(code, code_size, "db_unavailable");
		return ATTEMPT_RETRY;
	}
	if (simple(ex->conn, "begin", &cls, errbuf, errbuf_size) < 0)
		goto sql_error;
	if ((res = run(ex->conn, sql_claim, 3, claim, &cls, errbuf, errbuf_size)) == NULL)
		goto sql_error;
	if (PQntuples(res) == 0) {
		/* Final already: publish what is stored, unchanged. */
		PQclear(res);
		if ((res = run(ex->conn, sql_stored, 2, claim, &cls, errbuf, errbuf_size)) == NULL)
			goto sql_error;
		if (PQntuples(res) != 1 || PQgetisnull(res, 0, 1)) {
			snprintf(errbuf, errbuf_size, "ledger row of a finished job has no result");
			cls = SL_PG_PERMANENT;
			goto sql_error;
		}
		job->result = xstrdup(PQgetvalue(res, 0, 1));
		job->status = strcmp(PQgetvalue(res, 0, 0), "succeeded") == 0 ? "succeeded" : "rejected";
		job->duplicate = 1;
		PQclear(res);
		res = NULL;
		if (simple(ex->conn, "commit", &cls, errbuf, errbuf_size) < 0)
			goto sql_error;
		return ATTEMPT_DONE;
	}
	PQclear(res);
	res = NULL;
	if (simple(ex->conn, "savepoint handler", &cls, errbuf, errbuf_size) < 0)
		goto sql_error;

	ctx.conn = ex->conn;
	ctx.job_source = ev->source;
	ctx.job_id = ev->id;
	ctx.job_type = ev->type;
	ctx.data = ev->data;
	outcome = h->run(&ctx);

	switch (outcome) {
	case SL_OUTCOME_SUCCEEDED:
		r.status = "succeeded";
		r.output = ctx.output;
		break;
	case SL_OUTCOME_REJECTED:
		if (simple(ex->conn, "rollback to savepoint handler", &cls, errbuf, errbuf_size) < 0)
			goto sql_error;
		r.status = "rejected";
		r.error_code = ctx.error_code;
		r.error_message = ctx.error_message;
		break;
	case SL_OUTCOME_FAILED:
		snprintf(code, code_size, "%s", *ctx.error_code ? ctx.error_code : SL_ERR_HANDLER_ERROR);
		snprintf(errbuf, errbuf_size, "%s", ctx.error_message);
		rc = ATTEMPT_FAILED;
		goto rollback;
	case SL_OUTCOME_RETRY:
	default:
		snprintf(code, code_size, "%s", *ctx.error_code ? ctx.error_code : "transient");
		snprintf(errbuf, errbuf_size, "%s", ctx.error_message);
		rc = ATTEMPT_RETRY;
		goto rollback;
	}

	sl_event_uuid(result_id);
	sl_event_now(when);
	r.job_id = ev->id;
	r.job_source = ev->source;
	r.job_type = ev->type;
	result = sl_event_result(&r, result_id, w->cfg->result_source, when);
	if (result == NULL)
		abort();
	finish[0] = ev->source;
	finish[1] = ev->id;
	finish[2] = r.status;
	finish[3] = result;
	if ((res = run(ex->conn, sql_finish, 4, finish, &cls, errbuf, errbuf_size)) == NULL)
		goto sql_error;
	PQclear(res);
	res = NULL;
	if (atomic_load(&w->abandon)) {
		rc = ATTEMPT_ABANDONED;
		goto rollback;
	}
	/* A COMMIT that fails with the connection lost may have committed: the
	 * retry's claim finds out from the ledger, so retrying is safe. */
	if (simple(ex->conn, "commit", &cls, errbuf, errbuf_size) < 0)
		goto sql_error;
	job->result = result;
	job->status = r.status;
	result = NULL;
	json_decref(ctx.output);
	atomic_store(&w->ops.pg_ok, 1);
	return ATTEMPT_DONE;

sql_error:
	sl_metrics_counter_inc(w->ops.m_pg[cls == SL_PG_TRANSIENT ? 0 : 1]);
	snprintf(code, code_size, "%s", cls == SL_PG_TRANSIENT ? "db_transient" : SL_ERR_HANDLER_ERROR);
	rc = cls == SL_PG_TRANSIENT ? ATTEMPT_RETRY : ATTEMPT_FAILED;
rollback:
	PQclear(res);
	free(result);
	json_decref(ctx.output);
	if (ex->conn != NULL && PQstatus(ex->conn) == CONNECTION_OK &&
	    PQtransactionStatus(ex->conn) != PQTRANS_IDLE) {
		char ignore[256];
		enum sl_pg_class c2;
		if (simple(ex->conn, "rollback", &c2, ignore, sizeof(ignore)) < 0) {
			PQfinish(ex->conn);
			ex->conn = NULL;
		}
	}
	return rc;
}

/* Records a failed outcome in the ledger (best effort: PostgreSQL may be the
 * reason it failed) and fills the job's result. If another worker finished
 * the job meanwhile, its stored result wins. */
static void
fail_with_ledger(struct sl_executor *ex, struct sl_job *job, const struct sl_event *ev, const char *code,
                 const char *message)
{
	struct sl_worker *w = ex->w;
	struct sl_result r = { 0 };
	char result_id[37], when[32], errbuf[512];
	const char *params[4];
	enum sl_pg_class cls;
	PGresult *res;
	char *result;

	sl_event_uuid(result_id);
	sl_event_now(when);
	r.status = "failed";
	r.job_id = ev->id;
	r.job_source = ev->source;
	r.job_type = ev->type;
	r.error_code = code;
	r.error_message = message;
	if ((result = sl_event_result(&r, result_id, w->cfg->result_source, when)) == NULL)
		abort();
	params[0] = ev->source;
	params[1] = ev->id;
	params[2] = ev->type;
	params[3] = result;
	if (ensure_connection(ex, errbuf, sizeof(errbuf)) == 0 &&
	    (res = run(ex->conn, sql_record_failed, 4, params, &cls, errbuf, sizeof(errbuf))) != NULL) {
		int final = PQntuples(res) == 0;
		PQclear(res);
		if (final && (res = run(ex->conn, sql_stored, 2, params, &cls, errbuf, sizeof(errbuf))) != NULL) {
			if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 1)) {
				free(result);
				job->result = xstrdup(PQgetvalue(res, 0, 1));
				job->status = strcmp(PQgetvalue(res, 0, 0), "succeeded") == 0 ? "succeeded" : "rejected";
				job->duplicate = 1;
				PQclear(res);
				return;
			}
			PQclear(res);
		}
	} else {
		sl_log_job_warn(ev->id, "could not record the failed job in the ledger: %s", errbuf);
	}
	job->result = result;
	job->status = "failed";
	job->dlq_code = xstrdup(code);
	job->dlq_message = xstrdup(message);
	sl_log_job_warn(ev->id, "job failed: %s: %s (%s/%d@%" PRId64 ", %d attempts)", code, message,
	                job->part->topic, (int)job->part->partition, job->offset, job->attempts);
}

/* Sleeps the backoff before attempt `attempt` + 1; returns early (-1) when the
 * worker starts abandoning jobs. Full jitter over the upper half. */
static int
backoff(struct sl_executor *ex, const struct sl_job *job, const struct sl_retry_policy *p, int attempt)
{
	double d = p->initial_backoff * pow(p->multiplier, attempt - 1), until;
	uint32_t rnd = 0;

	if (d > p->max_backoff)
		d = p->max_backoff;
	(void)!getrandom(&rnd, sizeof(rnd), 0);
	d = d / 2 + d / 2 * (rnd / 4294967296.0);
	until = sl_now() + d;
	while (sl_now() < until) {
		double left = until - sl_now();
		struct timespec ts = { 0, 0 };
		if (atomic_load(&ex->w->abandon) || atomic_load(&job->part->revoked))
			return -1;
		if (left > 0.05)
			left = 0.05;
		ts.tv_nsec = (long)(left * 1e9);
		nanosleep(&ts, NULL);
	}
	return 0;
}

void
sl_job_run(struct sl_executor *ex, struct sl_job *job)
{
	struct sl_worker *w = ex->w;
	const rd_kafka_message_t *msg = job->msg;
	const struct sl_job_type_rt *jt = NULL;
	struct sl_event ev = { 0 };
	char code[64], errbuf[1024];
	struct sl_schema_error serrs[3];
	size_t i, n_serrs = 0;
	enum attempt a = ATTEMPT_RETRY;
	struct sl_retry_policy policy;

	job->end = SL_JOB_END_RESULT;
	if (sl_event_decode(msg->payload, msg->len, (size_t)w->cfg->max_job_bytes, &ev, code, errbuf,
	                    sizeof(errbuf)) < 0) {
		fail_without_ledger(ex, job, NULL, code, errbuf);
		return;
	}
	for (i = 0; i < w->n_types; i++)
		if (strcmp(w->types[i].conf->type, ev.type) == 0)
			jt = &w->types[i];
	if (jt == NULL) {
		snprintf(errbuf, sizeof(errbuf), "no handler for job type \"%.200s\"", ev.type);
		fail_without_ledger(ex, job, &ev, SL_ERR_UNKNOWN_TYPE, errbuf);
		goto out;
	}
	job->type = jt->conf->type;
	job->result_topic = jt->conf->result_topic;
	if (jt->schema != NULL && sl_schema_validate(jt->schema, ev.data, serrs, 3, &n_serrs) != 0) {
		sl_schema_errors_format(serrs, n_serrs, errbuf, sizeof(errbuf));
		fail_without_ledger(ex, job, &ev, SL_ERR_SCHEMA_VIOLATION, errbuf);
		goto out;
	}

	for (job->attempts = 1;; job->attempts++) {
		if (atomic_load(&w->abandon) || atomic_load(&job->part->revoked)) {
			job->end = SL_JOB_END_SKIPPED;
			goto out;
		}
		code[0] = errbuf[0] = '\0';
		a = attempt_once(ex, job, &ev, jt, code, sizeof(code), errbuf, sizeof(errbuf));
		atomic_store(&ex->progress_at, (long long)(sl_now() * 1000));
		if (a == ATTEMPT_DONE) {
			if (job->duplicate)
				atomic_fetch_add(&w->n_duplicates, 1);
			goto out;
		}
		if (a == ATTEMPT_ABANDONED) {
			job->end = SL_JOB_END_SKIPPED;
			goto out;
		}
		if (a == ATTEMPT_FAILED) {
			fail_with_ledger(ex, job, &ev, code, errbuf);
			goto out;
		}
		pthread_mutex_lock(&w->reload_mu);
		policy = jt->retry;
		pthread_mutex_unlock(&w->reload_mu);
		if (job->attempts >= policy.max_attempts) {
			char msg2[1200];
			snprintf(msg2, sizeof(msg2), "gave up after %d attempts: %s: %s", job->attempts, code, errbuf);
			fail_with_ledger(ex, job, &ev, SL_ERR_RETRIES_EXHAUSTED, msg2);
			goto out;
		}
		atomic_fetch_add(&w->n_retries, 1);
		sl_metrics_counter_inc(jt->m_retries);
		sl_log_job_info(ev.id, "retrying job (attempt %d of %d): %s: %s", job->attempts + 1,
		                policy.max_attempts, code, errbuf);
		if (backoff(ex, job, &policy, job->attempts) < 0) {
			job->end = SL_JOB_END_SKIPPED;
			goto out;
		}
	}
out:
	sl_event_clear(&ev);
}
