/* job.c -- jobs on one executor: decode, validate, claim, run, record.
 *
 * This is where exactly-once effects come from. A job runs in a PostgreSQL
 * transaction that claims its ledger row (source, id), runs the handler, and
 * stores the finished result event in the row before COMMIT. A redelivered
 * job whose row is final (succeeded, rejected) does not run: its stored
 * result is published again, byte for byte. Two executors or two workers
 * racing on one job are serialised by the row's unique key: the second claim
 * waits for the first transaction and then sees it final.
 *
 * Several jobs may share one transaction (limits.max_batch), each inside its
 * own savepoint, so a job that fails rolls back alone and its neighbours
 * still commit. A job that hits a transient error ends the group there: the
 * jobs before it commit, it and the ones after it are tried again after a
 * backoff, so jobs of one key still take effect in offset order. With one
 * job per transaction the savepoint is left out.
 *
 * Messages that never reach PostgreSQL (not a CloudEvent, unknown type,
 * schema violation) get a `failed` result whose id and time are derived from
 * the message itself, so a redelivery produces the same bytes too.
 *
 * Runs on executor threads only; touches nothing shared but its jobs.
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
/* Records a failed outcome unless the job is final already (another worker
 * finished it meanwhile): then no row comes back and its result wins. */
static const char sql_record_failed[] =
	"insert into sluice.jobs (source, id, type, status, result, finished_at) "
	"values ($1, $2, $3, 'failed', $4, now()) "
	"on conflict (source, id) do update set status = 'failed', result = excluded.result, "
	"finished_at = now(), attempts = sluice.jobs.attempts + 1 "
	"where sluice.jobs.status in ('running', 'failed') returning status";

/* One job of a group on its way through PostgreSQL. */
struct item {
	struct sl_job *job;
	struct sl_event ev;
	const struct sl_job_type_rt *jt;
	char code[64];               /* why the last attempt did not finish it */
	char message[1024];
};

static char *
xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");

	if (d == NULL)
		abort();
	return d;
}

/* ---- statements --------------------------------------------------------- */

void
sl_job_disconnect(struct sl_executor *ex)
{
	pthread_mutex_lock(&ex->mu);
	if (ex->cancel != NULL)
		PQfreeCancel(ex->cancel);
	ex->cancel = NULL;
	pthread_mutex_unlock(&ex->mu);
	PQfinish(ex->conn);
	ex->conn = NULL;
	ex->n_prepared = 0;
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
	sl_job_disconnect(ex);
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

/* Runs `sql` (static storage: its address names it) as a prepared statement,
 * preparing it on first use on this connection. */
static PGresult *
exec_prepared(struct sl_executor *ex, const char *sql, int n, const char *const *params)
{
	char name[16];
	int i;
	PGresult *res;

	for (i = 0; i < ex->n_prepared; i++)
		if (ex->prepared[i] == sql)
			break;
	snprintf(name, sizeof(name), "s%d", i);
	if (i == ex->n_prepared) {
		if (i == (int)(sizeof(ex->prepared) / sizeof(ex->prepared[0])))
			return PQexecParams(ex->conn, sql, n, NULL, params, NULL, NULL, 0);
		res = PQprepare(ex->conn, name, sql, n, NULL);
		if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
			return res; /* the caller sees the error */
		PQclear(res);
		ex->prepared[ex->n_prepared++] = sql;
	}
	return PQexecPrepared(ex->conn, name, n, params, NULL, NULL, 0);
}

PGresult *
sl_job_exec(struct sl_job_ctx *ctx, const char *sql, int n_params, const char *const *params)
{
	if (ctx->executor == NULL)
		return PQexecParams(ctx->conn, sql, n_params, NULL, params, NULL, NULL, 0);
	return exec_prepared(ctx->executor, sql, n_params, params);
}

/* Runs a statement; returns its result (caller clears) or NULL after filling
 * the error, classified, into *cls. sql NULL with `text` runs a simple
 * command instead. */
static PGresult *
run(struct sl_executor *ex, const char *sql, const char *text, int n, const char *const *params,
    enum sl_pg_class *cls, char *errbuf, size_t errbuf_size)
{
	PGresult *res = sql ? exec_prepared(ex, sql, n, params) : PQexec(ex->conn, text);
	const char *state;

	*cls = sl_pg_classify(ex->conn, res);
	if (*cls == SL_PG_OK)
		return res;
	state = sl_pg_sqlstate(res);
	snprintf(errbuf, errbuf_size, "%s%s%s", state, *state ? ": " : "",
	         res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res) : PQerrorMessage(ex->conn));
	errbuf[strcspn(errbuf, "\n")] = '\0';
	PQclear(res);
	return NULL;
}

static int
command(struct sl_executor *ex, const char *text, enum sl_pg_class *cls, char *errbuf, size_t errbuf_size)
{
	PGresult *res = run(ex, NULL, text, 0, NULL, cls, errbuf, errbuf_size);

	PQclear(res);
	return res ? 0 : -1;
}

/* ---- results ------------------------------------------------------------ */

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
	if ((job->result = sl_event_result(&r, id, ex->w->cfg->result_source, when)) == NULL)
		abort();
	job->dlq_code = xstrdup(code);
	job->dlq_message = xstrdup(message);
	sl_log_job_warn(ev && ev->id ? ev->id : NULL, "job failed: %s: %s (%s/%d@%" PRId64 ")", code, message,
	                job->part->topic, (int)job->part->partition, job->offset);
}

/* Builds the result event of a job that ran (new malloc'ed string). */
static char *
build_result(struct sl_executor *ex, const struct sl_event *ev, const char *status, json_t *output,
             const char *code, const char *message)
{
	struct sl_result r = { 0 };
	char result_id[37], when[32];
	char *result;

	sl_event_uuid(result_id);
	sl_event_now(when);
	r.status = status;
	r.job_id = ev->id;
	r.job_source = ev->source;
	r.job_type = ev->type;
	r.output = output;
	r.error_code = code;
	r.error_message = message;
	if ((result = sl_event_result(&r, result_id, ex->w->cfg->result_source, when)) == NULL)
		abort();
	return result;
}

/* Reads the stored result of a final job into it (a duplicate delivery). */
static int
take_stored(struct sl_executor *ex, struct item *it, enum sl_pg_class *cls, char *errbuf, size_t errbuf_size)
{
	const char *params[2] = { it->ev.source, it->ev.id };
	PGresult *res = run(ex, sql_stored, NULL, 2, params, cls, errbuf, errbuf_size);

	if (res == NULL)
		return -1;
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 1)) {
		snprintf(errbuf, errbuf_size, "ledger row of a finished job has no result");
		*cls = SL_PG_PERMANENT;
		PQclear(res);
		return -1;
	}
	free(it->job->result);
	it->job->result = xstrdup(PQgetvalue(res, 0, 1));
	it->job->status = strcmp(PQgetvalue(res, 0, 0), "succeeded") == 0 ? "succeeded" : "rejected";
	it->job->duplicate = 1;
	PQclear(res);
	return 0;
}

/* Records a failed outcome for it inside the current transaction and fills
 * its result and dead letter; if the job is final meanwhile, takes the stored
 * result instead. */
static int
record_failed(struct sl_executor *ex, struct item *it, enum sl_pg_class *cls, char *errbuf, size_t errbuf_size)
{
	char *result = build_result(ex, &it->ev, "failed", NULL, it->code, it->message);
	const char *params[4] = { it->ev.source, it->ev.id, it->ev.type, result };
	PGresult *res = run(ex, sql_record_failed, NULL, 4, params, cls, errbuf, errbuf_size);
	int final;

	if (res == NULL) {
		free(result);
		return -1;
	}
	final = PQntuples(res) == 0;
	PQclear(res);
	if (final) {
		free(result);
		return take_stored(ex, it, cls, errbuf, errbuf_size);
	}
	free(it->job->result);
	it->job->result = result;
	it->job->status = "failed";
	return 0;
}

/* A failed job also goes to the dead-letter topic; one that another worker
 * finished meanwhile (record_failed took its stored result) does not. */
static void
dead_letter(struct item *it)
{
	if (strcmp(it->job->status, "failed") != 0)
		return;
	it->job->dlq_code = xstrdup(it->code);
	it->job->dlq_message = xstrdup(it->message);
}

/* ---- one group, one transaction ----------------------------------------- */

enum item_end {
	ITEM_DONE,        /* result set (committed with the group) */
	ITEM_RETRY,       /* transient: this and later items go again */
	ITEM_SPLIT,       /* a later item waited too long for a lock: commit the
	                   * group so far and start the next one with it */
	ITEM_BROKEN,      /* the transaction is lost: the whole group goes again */
};

/* Inside a group, every job after the first waits at most this long for a
 * row lock. Jobs of one transaction lock rows in job order, not in one
 * global order, so two groups can deadlock; the timeout breaks such a wait
 * after a moment instead of the server's deadlock_timeout (1 s), and the
 * job goes first in the next group, where it waits like a lone job. */
#define GROUP_LOCK_TIMEOUT "set local lock_timeout = '100ms'"

/* Rolls back what the item did: to its savepoint inside a group, or the
 * whole transaction (and begins a new one) when it is alone. */
static int
undo_item(struct sl_executor *ex, int grouped, char *errbuf, size_t errbuf_size)
{
	enum sl_pg_class cls;

	if (grouped)
		return command(ex, "rollback to savepoint job", &cls, errbuf, errbuf_size);
	if (command(ex, "rollback", &cls, errbuf, errbuf_size) < 0)
		return -1;
	return command(ex, "begin", &cls, errbuf, errbuf_size);
}

/* Runs one item inside the group's transaction. */
static enum item_end
run_item(struct sl_executor *ex, struct item *it, int grouped, int first)
{
	const struct sl_handler *h = it->jt->handler;
	const char *params[3] = { it->ev.source, it->ev.id, it->ev.type };
	const char *status = NULL;
	struct sl_job_ctx ctx = { 0 };
	enum sl_outcome outcome;
	enum sl_pg_class cls = SL_PG_OK;
	PGresult *res = NULL;
	char errbuf[1024], *result = NULL;

	if (grouped && command(ex, "savepoint job", &cls, errbuf, sizeof(errbuf)) < 0)
		goto sql_error;
	if ((res = run(ex, sql_claim, NULL, 3, params, &cls, errbuf, sizeof(errbuf))) == NULL)
		goto sql_error;
	if (PQntuples(res) == 0) {
		/* Final already: publish what is stored, unchanged. */
		PQclear(res);
		if (take_stored(ex, it, &cls, errbuf, sizeof(errbuf)) < 0)
			goto sql_error;
		goto release;
	}
	PQclear(res);
	if (command(ex, "savepoint handler", &cls, errbuf, sizeof(errbuf)) < 0)
		goto sql_error;

	ctx.conn = ex->conn;
	ctx.job_source = it->ev.source;
	ctx.job_id = it->ev.id;
	ctx.job_type = it->ev.type;
	ctx.data = it->ev.data;
	ctx.executor = ex;
	outcome = h->run(&ctx);

	switch (outcome) {
	case SL_OUTCOME_SUCCEEDED:
		status = "succeeded";
		result = build_result(ex, &it->ev, status, ctx.output, NULL, NULL);
		break;
	case SL_OUTCOME_REJECTED:
		if (command(ex, "rollback to savepoint handler", &cls, errbuf, sizeof(errbuf)) < 0)
			goto sql_error;
		status = "rejected";
		result = build_result(ex, &it->ev, status, NULL, ctx.error_code, ctx.error_message);
		break;
	case SL_OUTCOME_FAILED:
		snprintf(it->code, sizeof(it->code), "%s", *ctx.error_code ? ctx.error_code : SL_ERR_HANDLER_ERROR);
		snprintf(it->message, sizeof(it->message), "%s", ctx.error_message);
		json_decref(ctx.output);
		if (*ctx.sqlstate) /* a handler's own refusal of bad data is no database error */
			sl_metrics_counter_inc(ex->w->ops.m_pg[1]);
		if (undo_item(ex, grouped, errbuf, sizeof(errbuf)) < 0 ||
		    record_failed(ex, it, &cls, errbuf, sizeof(errbuf)) < 0)
			return ITEM_BROKEN;
		dead_letter(it);
		goto release;
	case SL_OUTCOME_RETRY:
	default:
		if (grouped && !first && strcmp(ctx.sqlstate, "55P03") == 0) {
			json_decref(ctx.output);
			return undo_item(ex, grouped, errbuf, sizeof(errbuf)) < 0 ? ITEM_BROKEN : ITEM_SPLIT;
		}
		snprintf(it->code, sizeof(it->code), "%s", *ctx.error_code ? ctx.error_code : "transient");
		snprintf(it->message, sizeof(it->message), "%s", ctx.error_message);
		json_decref(ctx.output);
		sl_metrics_counter_inc(ex->w->ops.m_pg[0]);
		if (PQstatus(ex->conn) != CONNECTION_OK || undo_item(ex, grouped, errbuf, sizeof(errbuf)) < 0)
			return ITEM_BROKEN;
		return ITEM_RETRY;
	}
	json_decref(ctx.output);
	{
		const char *fin[4] = { it->ev.source, it->ev.id, status, result };
		if ((res = run(ex, sql_finish, NULL, 4, fin, &cls, errbuf, sizeof(errbuf))) == NULL)
			goto sql_error;
		PQclear(res);
	}
	free(it->job->result);
	it->job->result = result;
	it->job->status = status;
	result = NULL;
release:
	if (grouped && command(ex, "release savepoint job", &cls, errbuf, sizeof(errbuf)) < 0)
		return ITEM_BROKEN;
	return ITEM_DONE;

sql_error:
	/* Our own statements failed: transient errors go again, anything else
	 * fails the job; a lost transaction takes the group with it. */
	free(result);
	sl_metrics_counter_inc(ex->w->ops.m_pg[cls == SL_PG_TRANSIENT ? 0 : 1]);
	snprintf(it->code, sizeof(it->code), "%s", cls == SL_PG_TRANSIENT ? "db_transient" : "db_error");
	snprintf(it->message, sizeof(it->message), "%s", errbuf);
	if (ex->conn == NULL || PQstatus(ex->conn) != CONNECTION_OK ||
	    undo_item(ex, grouped, errbuf, sizeof(errbuf)) < 0)
		return ITEM_BROKEN;
	if (cls == SL_PG_TRANSIENT && grouped && !first && strstr(it->message, "55P03") == it->message)
		return ITEM_SPLIT;
	if (cls == SL_PG_TRANSIENT)
		return ITEM_RETRY;
	if (record_failed(ex, it, &cls, errbuf, sizeof(errbuf)) < 0)
		return ITEM_BROKEN;
	dead_letter(it);
	goto release;
}

/* Runs items[0..n) in one transaction. Returns how many items from the
 * start are finished and committed; the item at that index (if any) needs
 * another attempt, with the reason in its code/message, unless *split says
 * it only has to go first in the next group. */
static size_t
run_group(struct sl_executor *ex, struct item *items, size_t n, int *split)
{
	struct sl_worker *w = ex->w;
	enum sl_pg_class cls;
	char errbuf[1024];
	size_t i, done = 0;
	enum item_end end = ITEM_DONE;
	int grouped = n > 1;

	*split = 0;
	if (ensure_connection(ex, errbuf, sizeof(errbuf)) < 0) {
		atomic_store(&w->ops.pg_ok, 0);
		sl_metrics_counter_inc(w->ops.m_pg[0]);
		snprintf(items[0].code, sizeof(items[0].code), "db_unavailable");
		snprintf(items[0].message, sizeof(items[0].message), "%s", errbuf);
		return 0;
	}
	if (command(ex, "begin", &cls, errbuf, sizeof(errbuf)) < 0)
		goto broken;
	for (i = 0; i < n; i++) {
		end = run_item(ex, &items[i], grouped, i == 0);
		if (end != ITEM_DONE)
			break;
		if (i == 0 && grouped && command(ex, GROUP_LOCK_TIMEOUT, &cls, errbuf, sizeof(errbuf)) < 0) {
			snprintf(items[0].message, sizeof(items[0].message), "%s", errbuf);
			end = ITEM_BROKEN;
			break;
		}
	}
	if (end == ITEM_BROKEN) {
		snprintf(errbuf, sizeof(errbuf), "%s", items[i].message);
		goto broken;
	}
	done = i;
	*split = end == ITEM_SPLIT;
	if (atomic_load(&w->abandon)) {
		command(ex, "rollback", &cls, errbuf, sizeof(errbuf));
		return 0;
	}
	/* A COMMIT that fails with the connection lost may have committed: the
	 * next attempt's claim finds out from the ledger, so retrying is safe. */
	if (command(ex, "commit", &cls, errbuf, sizeof(errbuf)) < 0)
		goto broken;
	atomic_store(&w->ops.pg_ok, 1);
	return done;

broken:
	for (i = 0; i < n; i++) {
		free(items[i].job->result);
		items[i].job->result = NULL;
		free(items[i].job->dlq_code);
		free(items[i].job->dlq_message);
		items[i].job->dlq_code = items[i].job->dlq_message = NULL;
		items[i].job->duplicate = 0;
	}
	snprintf(items[0].code, sizeof(items[0].code), "db_transient");
	snprintf(items[0].message, sizeof(items[0].message), "%s", errbuf);
	sl_job_disconnect(ex);
	return 0;
}

/* ---- retries ------------------------------------------------------------ */

/* Sleeps the backoff before attempt `attempt` + 1; returns early (-1) when the
 * worker starts abandoning jobs or the job's partition is revoked. Full
 * jitter over the upper half. */
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

/* Gives up on a job after its last attempt: a failed result, recorded in
 * the ledger when PostgreSQL lets us (it may be why we give up). */
static void
give_up(struct sl_executor *ex, struct item *it)
{
	enum sl_pg_class cls;
	char errbuf[512], msg[sizeof(it->message)];

	snprintf(msg, sizeof(msg), "gave up after %d attempts: %.60s: %.900s", it->job->attempts, it->code,
	         it->message);
	snprintf(it->code, sizeof(it->code), "%s", SL_ERR_RETRIES_EXHAUSTED);
	memcpy(it->message, msg, sizeof(msg));
	if (ensure_connection(ex, errbuf, sizeof(errbuf)) < 0 ||
	    record_failed(ex, it, &cls, errbuf, sizeof(errbuf)) < 0) {
		sl_log_job_warn(it->ev.id, "could not record the failed job in the ledger: %s", errbuf);
		free(it->job->result);
		it->job->result = build_result(ex, &it->ev, "failed", NULL, it->code, it->message);
		it->job->status = "failed";
	}
	dead_letter(it);
}

static void
log_failed(const struct item *it)
{
	if (it->job->dlq_code != NULL)
		sl_log_job_warn(it->ev.id, "job failed: %s: %s (%s/%d@%" PRId64 ", %d attempts)", it->job->dlq_code,
		                it->job->dlq_message, it->job->part->topic, (int)it->job->part->partition,
		                it->job->offset, it->job->attempts);
}

/* ---- entry -------------------------------------------------------------- */

/* Prepares a job for PostgreSQL, or finishes it here when it cannot get
 * there. Returns 1 when the job needs the database. */
static int
prepare(struct sl_executor *ex, struct sl_job *job, struct item *it)
{
	struct sl_worker *w = ex->w;
	const rd_kafka_message_t *msg = job->msg;
	struct sl_schema_error serrs[3];
	size_t i, n_serrs = 0;
	char code[64], errbuf[1024];

	memset(it, 0, sizeof(*it));
	it->job = job;
	job->end = SL_JOB_END_RESULT;
	if (sl_event_decode(msg->payload, msg->len, (size_t)w->cfg->max_job_bytes, &it->ev, code, errbuf,
	                    sizeof(errbuf)) < 0) {
		fail_without_ledger(ex, job, NULL, code, errbuf);
		return 0;
	}
	for (i = 0; i < w->n_types; i++)
		if (strcmp(w->types[i].conf->type, it->ev.type) == 0)
			it->jt = &w->types[i];
	if (it->jt == NULL) {
		snprintf(errbuf, sizeof(errbuf), "no handler for job type \"%.200s\"", it->ev.type);
		fail_without_ledger(ex, job, &it->ev, SL_ERR_UNKNOWN_TYPE, errbuf);
		return 0;
	}
	job->type = it->jt->conf->type;
	job->result_topic = it->jt->conf->result_topic;
	if (it->jt->schema != NULL && sl_schema_validate(it->jt->schema, it->ev.data, serrs, 3, &n_serrs) != 0) {
		sl_schema_errors_format(serrs, n_serrs, errbuf, sizeof(errbuf));
		fail_without_ledger(ex, job, &it->ev, SL_ERR_SCHEMA_VIOLATION, errbuf);
		return 0;
	}
	job->attempts = 1;
	return 1;
}

void
sl_job_run_batch(struct sl_executor *ex, struct sl_job **jobs, size_t n)
{
	struct sl_worker *w = ex->w;
	struct item *items = calloc(n, sizeof(*items));
	struct sl_retry_policy policy;
	size_t i, n_db = 0, n_decoded, first = 0, done;
	int split;

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

	n_decoded = n_db;
	while (first < n_db) {
		struct item *it = &items[first];
		if (atomic_load(&w->abandon) || atomic_load(&it->job->part->revoked)) {
			for (i = first; i < n_db; i++)
				items[i].job->end = SL_JOB_END_SKIPPED;
			break;
		}
		done = run_group(ex, it, n_db - first, &split);
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
			log_failed(&items[i]);
		}
		first += done;
		if (first == n_db)
			break;
		if (split)
			continue;
		/* The item at `first` failed transiently (or the group was lost). */
		it = &items[first];
		pthread_mutex_lock(&w->reload_mu);
		policy = it->jt->retry;
		pthread_mutex_unlock(&w->reload_mu);
		if (it->job->attempts >= policy.max_attempts) {
			give_up(ex, it);
			log_failed(it);
			first++;
			continue;
		}
		atomic_fetch_add(&w->n_retries, 1);
		sl_metrics_counter_inc(it->jt->m_retries);
		sl_log_job_info(it->ev.id, "retrying job (attempt %d of %d): %s: %s", it->job->attempts + 1,
		                policy.max_attempts, it->code, it->message);
		if (backoff(ex, it->job, &policy, it->job->attempts) < 0) {
			for (i = first; i < n_db; i++)
				items[i].job->end = SL_JOB_END_SKIPPED;
			break;
		}
		it->job->attempts++;
	}
	for (i = 0; i < n_decoded; i++)
		sl_event_clear(&items[i].ev);
	free(items);
}
