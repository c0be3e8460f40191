/* job.c -- jobs on one executor: decode, validate, run, record.
 *
 * This is where exactly-once effects come from. A job runs in a PostgreSQL
 * transaction: the handler does its work, then the job's ledger row
 * (sluice.jobs, keyed by source and id) is written with the finished result
 * event, and the transaction commits. That write is the job's only one to
 * the ledger, and it refuses a row that is final already (succeeded,
 * rejected): a redelivered job, or one that another worker finished
 * meanwhile, fails there (SQLSTATE SL001), its effects roll back, and its
 * stored result is published again, byte for byte. Two transactions racing
 * on one job are serialised by the row's unique key: the second write waits
 * for the first transaction and then finds the row final. So a duplicate
 * runs its handler in vain, and a fresh job (the common case) costs one
 * ledger write instead of a claim and an update.
 *
 * Several jobs may share one transaction (limits.max_batch), each inside its
 * own savepoint, so a job that fails rolls back alone and its neighbours
 * still commit. A job that hits a transient error ends the group there: the
 * jobs before it commit, it and the ones after it are tried again after a
 * backoff, so jobs of one key still take effect in offset order. With one
 * job per transaction the savepoint is left out. A rejected or failed job is
 * undone whole and its outcome written after that, so the handler runs
 * without a savepoint of its own: subtransactions are what a group costs
 * the server most.
 *
 * The executor's statements go with the handler's in libpq pipelines (see
 * "pipelines" below): a job alone whose handler runs one statement costs two
 * round trips, one when the executor has more jobs to chain to it (its
 * COMMIT goes with the next one's statement), a job in a group one, and a
 * whole group of jobs whose handlers say their statement ahead
 * (sl_handler.plan) two.
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
#include "handler_int.h"
#include "log.h"
#include "pg.h"
#include "text.h"
#include "worker_int.h"

static const char sql_begin[] = "begin";
static const char sql_commit[] = "commit";
static const char sql_rollback[] = "rollback";
/* Inside a group, every job after the first waits at most this long for a
 * lock. Jobs of one transaction lock rows in job order, not in one global
 * order, so two groups can deadlock, and a group that waits holds all its
 * own locks meanwhile, which makes others wait in turn. So a job that would
 * wait ends the group instead: the jobs before it commit (their locks go)
 * and it goes first in the next group, where it waits like a lone job. With
 * 1,000 accounts and 4 executors, `make bench` measured max_batch 32 at 770
 * jobs/s with 100 ms here and 2,300 with 1 ms. (Brief waits, such as for a
 * table's extension lock, end a group too; that costs a COMMIT.) */
static const char sql_lock_timeout[] = "set local lock_timeout = '1ms'";
/* After a handler's statement that ran under its job type's role and
 * statement_timeout: back to the session's, before sluice's own writes. */
static const char sql_leave_role[] = "set local role none";
static const char sql_leave_timeout[] = "set local statement_timeout to default";
static const char sql_stored[] = "select status, result from sluice.jobs where source = $1 and id = $2";
/* Writes a job's outcome: its one write to the ledger. $6 is the attempts
 * of this delivery; a row left `failed` by an earlier delivery adds them.
 * A final row (succeeded, rejected) is left alone: the statement below
 * returns no row then, the pipelined one raises SL001 (0004_job_final.sql). */
#define SQL_RECORD(final_row)                                                                           \
	"insert into sluice.jobs (source, id, type, status, result, attempts, finished_at) "            \
	"values ($1, $2, $3, $4, $5, $6::integer, now()) "                                               \
	"on conflict (source, id) do update set status = excluded.status, result = excluded.result, "  \
	"finished_at = now(), attempts = sluice.jobs.attempts + excluded.attempts where " final_row
static const char sql_record[] = SQL_RECORD("sluice.jobs.status in ('running', 'failed') returning status");
static const char sql_record_or_raise[] = SQL_RECORD(
	"case when sluice.jobs.status in ('running', 'failed') then true "
	"else sluice.job_final(sluice.jobs.source, sluice.jobs.id, sluice.jobs.status) end");
#define SQLSTATE_FINAL "SL001"

/* Prepared on every new connection, before any transaction: a statement
 * cannot be prepared inside a transaction that an error has aborted, and
 * that is where undo and record run. */
static const char *const framework_sql[] = {
	sql_begin, sql_commit, sql_rollback, sql_lock_timeout, sql_stored, sql_record, sql_record_or_raise,
};

int
sl_job_check_ledger(PGconn *conn, char *errbuf, size_t errbuf_size)
{
	size_t i;

	for (i = 0; i < sizeof(framework_sql) / sizeof(framework_sql[0]); i++) {
		PGresult *res = PQprepare(conn, "", framework_sql[i], 0, NULL);
		int ok = res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK;

		if (!ok) {
			const char *words = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
			char why[512];

			snprintf(why, sizeof(why), "%s", words ? words : PQerrorMessage(conn));
			why[strcspn(why, "\n")] = '\0';
			snprintf(errbuf, errbuf_size,
			         "the job ledger sluice.jobs does not have the shape this worker needs (%s%s%s); "
			         "run 'sluicectl migrate'",
			         sl_pg_sqlstate(res), *sl_pg_sqlstate(res) ? ": " : "", why);
		}
		PQclear(res);
		if (!ok)
			return -1;
	}
	return 0;
}

/* One job of a group on its way through PostgreSQL. */
struct item {
	struct sl_job *job;
	struct sl_event ev;
	const struct sl_job_type_rt *jt;
	char *pending;               /* result on its way into the ledger, malloc'ed */
	enum sl_job_status pending_status; /* its status */
	char attempts[16];           /* job->attempts as text, for the ledger */
	int wait;                    /* the last attempt ended because PostgreSQL cannot judge now */
	int pg_error;                /* its pending failed outcome comes from a database error */
	double retry_after;          /* the handler asked to wait at least this long before the retry */
	char *job_json;              /* sl_job_json()'s text, malloc'ed... */
	int job_json_attempt;        /* ...for this attempt */
	int giving_up;               /* out of attempts: its failed outcome is on its way to the ledger */
	int record_tries;            /* ...and that write failed this often while PostgreSQL answered */
	char code[64];               /* why the last attempt did not finish it */
	char message[1024];
	/* Its handler's statement, sent ahead of the handler (sl_handler.plan). */
	struct sl_plan plan;
	enum { AHEAD_NONE, AHEAD_SENT, AHEAD_USED } ahead;
	PGresult *ahead_res;         /* the statement's result until the handler takes it */
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

/* Names prepared statement i "s<i>", without printf: every statement of a
 * pipeline is named. */
_Static_assert(SL_MAX_PREPARED <= 100, "statement names have two digits");
static void
statement_name(int i, char name[16])
{
	name[0] = 's';
	if (i >= 10) {
		name[1] = (char)('0' + i / 10);
		name[2] = (char)('0' + i % 10);
		name[3] = '\0';
	} else {
		name[1] = (char)('0' + i);
		name[2] = '\0';
	}
}

/* Returns the index of `sql` (static storage: its address names it) among
 * the statements prepared on ex's connection, or -1. */
static int
prepared_find(const struct sl_executor *ex, const char *sql)
{
	int i;

	for (i = 0; i < ex->n_prepared; i++)
		if (ex->prepared[i] == sql)
			return i;
	return -1;
}

/* Like prepared_find(), preparing the statement if needed (its parameter
 * types are left to the server); -1 when the cache is full (the statement
 * then goes unnamed) and -2 with the server's result in *err when it cannot
 * be prepared. */
static int
prepared_index(struct sl_executor *ex, const char *sql, PGresult **err)
{
	char name[16];
	int i = prepared_find(ex, sql);
	PGresult *res;

	*err = NULL;
	if (i >= 0)
		return i;
	if ((i = ex->n_prepared) == SL_MAX_PREPARED)
		return -1;
	statement_name(i, name);
	res = PQprepare(ex->conn, name, sql, 0, NULL);
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
		*err = res;
		return -2;
	}
	PQclear(res);
	ex->prepared[ex->n_prepared++] = sql;
	return i;
}

static int
ensure_connection(struct sl_executor *ex, char *errbuf, size_t errbuf_size)
{
	struct sl_worker *w = ex->w;
	PGconn *conn;
	PGcancel *cancel;
	PGresult *err;
	size_t i;
	char bounds[128];

	if (ex->conn != NULL && PQstatus(ex->conn) == CONNECTION_OK &&
	    PQtransactionStatus(ex->conn) == PQTRANS_IDLE)
		return 0;
	sl_job_disconnect(ex);
	conn = sl_pg_connect(w->cfg->pg_conninfo, "sluice-worker", errbuf, errbuf_size);
	if (conn == NULL)
		return -1;
	/* The session's bounds (config.h): no lock wait and no open
	 * transaction of ours lasts longer, so a frozen or cut-off worker
	 * holds the others' jobs up for that long at most. */
	snprintf(bounds, sizeof(bounds), "set lock_timeout = %ld; set idle_in_transaction_session_timeout = %ld",
	         (long)(w->cfg->lock_timeout * 1000 + 0.5), (long)(w->cfg->idle_in_transaction_timeout * 1000 + 0.5));
	if (sl_pg_exec(conn, bounds, errbuf, errbuf_size) < 0) {
		PQfinish(conn);
		return -1;
	}
	cancel = PQgetCancel(conn);
	pthread_mutex_lock(&ex->mu);
	ex->cancel = cancel;
	pthread_mutex_unlock(&ex->mu);
	ex->conn = conn;
	for (i = 0; i < sizeof(framework_sql) / sizeof(framework_sql[0]); i++)
		if (prepared_index(ex, framework_sql[i], &err) < 0) {
			snprintf(errbuf, errbuf_size, "could not prepare the job statements: %s",
			         err ? PQresultErrorMessage(err) : PQerrorMessage(conn));
			errbuf[strcspn(errbuf, "\n")] = '\0';
			PQclear(err);
			sl_job_disconnect(ex);
			return -1;
		}
	return 0;
}

/* Runs `sql` (static storage) as a prepared statement, preparing it on first
 * use on this connection. */
static PGresult *
exec_prepared(struct sl_executor *ex, const char *sql, int n, const char *const *params)
{
	char name[16];
	PGresult *err;
	int i = prepared_index(ex, sql, &err);

	if (i == -2)
		return err; /* the caller sees the error */
	sl_metrics_counter_inc(ex->w->ops.m_round_trips);
	if (i == -1)
		return PQexecParams(ex->conn, sql, n, NULL, params, NULL, NULL, 0);
	statement_name(i, name);
	return PQexecPrepared(ex->conn, name, n, params, NULL, NULL, 0);
}

/* Fills errbuf with a failed statement's SQLSTATE and words. */
static void
describe_error(PGconn *conn, const PGresult *res, char *errbuf, size_t errbuf_size)
{
	const char *state = sl_pg_sqlstate(res);

	snprintf(errbuf, errbuf_size, "%s%s%s", state, *state ? ": " : "",
	         res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res) : PQerrorMessage(conn));
	errbuf[strcspn(errbuf, "\n")] = '\0';
}

/* Runs one statement and waits for it; returns its result (caller clears)
 * or NULL after filling the error, classified, into *cls. */
static PGresult *
run(struct sl_executor *ex, const char *sql, int n, const char *const *params, enum sl_pg_class *cls,
    char *errbuf, size_t errbuf_size)
{
	PGresult *res = exec_prepared(ex, sql, n, params);

	*cls = sl_pg_classify(ex->conn, res);
	if (*cls == SL_PG_OK)
		return res;
	describe_error(ex->conn, res, errbuf, errbuf_size);
	PQclear(res);
	return NULL;
}

static int
command(struct sl_executor *ex, const char *sql, char *errbuf, size_t errbuf_size)
{
	enum sl_pg_class cls;
	PGresult *res = run(ex, sql, 0, NULL, &cls, errbuf, errbuf_size);

	PQclear(res);
	return res ? 0 : -1;
}

/* ---- results ------------------------------------------------------------ */

/* Latest Kafka timestamp (ms) that RFC 3339's four-digit years can show:
 * 9999-12-31T23:59:59.999Z. */
#define MAX_RFC3339_MS INT64_C(253402300799999)

/* Formats the message's timestamp as RFC 3339, for results that must be the
 * same on every delivery. The producer sets it: one that is missing, or
 * beyond year 9999 (which our own result schema would refuse), gives way to
 * the time it is read. */
static void
message_time(const rd_kafka_message_t *msg, char out[48])
{
	rd_kafka_timestamp_type_t tstype;
	int64_t ms = rd_kafka_message_timestamp(msg, &tstype);
	time_t secs;
	struct tm tm;

	if (ms < 0 || ms > MAX_RFC3339_MS) {
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
	job->status = SL_JOB_FAILED;
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
	PGresult *res = run(ex, sql_stored, 2, params, cls, errbuf, errbuf_size);

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
	it->job->status = strcmp(PQgetvalue(res, 0, 0), "succeeded") == 0 ? SL_JOB_SUCCEEDED : SL_JOB_REJECTED;
	it->job->duplicate = 1;
	PQclear(res);
	return 0;
}

/* Records a failed outcome for it inside the current transaction and fills
 * its result; if the job is final meanwhile, takes the stored result instead. */
static int
record_failed(struct sl_executor *ex, struct item *it, enum sl_pg_class *cls, char *errbuf, size_t errbuf_size)
{
	char *result = build_result(ex, &it->ev, "failed", NULL, it->code, it->message);
	const char *params[6] = { it->ev.source, it->ev.id, it->ev.type, "failed", result, it->attempts };
	PGresult *res;
	int final;

	snprintf(it->attempts, sizeof(it->attempts), "%d", it->job->attempts);
	res = run(ex, sql_record, 6, params, cls, errbuf, errbuf_size);

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
	it->job->status = SL_JOB_FAILED;
	return 0;
}

/* A failed job also goes to the dead-letter topic; one that another worker
 * finished meanwhile (record_failed took its stored result) does not. */
static void
dead_letter(struct item *it)
{
	if (it->job->status != SL_JOB_FAILED)
		return;
	it->job->dlq_code = xstrdup(it->code);
	it->job->dlq_message = xstrdup(it->message);
}

/* ---- pipelines ---------------------------------------------------------- */

/* The executor's own statements do not wait for their results: they are
 * queued, and go to the server in one libpq pipeline together with the
 * handler's next statement (sl_job_exec) or with the COMMIT. A lone job
 * whose handler runs one statement so costs two round trips, [begin,
 * handler] and [record, commit]; in a group each job costs one, [record of
 * the job before, savepoint, handler]. A handler that says its statement
 * ahead (sl_handler.plan) costs less still: the group's statements go out
 * together, each in its own savepoint, and a group costs two round trips,
 * [begin, savepoint, statement, savepoint, statement, ...] and [records,
 * commit]. After a failed step the server skips the rest up to the sync
 * point: the first failure names the item to settle, and what came after it
 * runs again.
 *
 * In a group, job i runs inside savepoint "j<i>", which stays until the
 * COMMIT: undoing job i is `rollback to savepoint j<i>`, which also undoes
 * every job after it, so their statements sent ahead go again. */

#define NO_ITEM ((size_t)-1)

enum step_kind {
	STEP_PLAIN,      /* its result only matters when it fails */
	STEP_ENTER,      /* a job type's role or statement_timeout, before its handler's statement */
	STEP_SAVEPOINT,  /* opens the item's savepoint */
	STEP_RECORD,     /* went through: the item's pending result is its job's */
	STEP_COMMIT,     /* fails unless the server says COMMIT (not ROLLBACK) */
	STEP_HANDLER,    /* a handler's statement: its result goes back to it */
	STEP_AHEAD,      /* a handler's statement sent ahead: the result waits in the item */
};

struct step {
	const char *sql;              /* static storage: names its prepared statement; NULL: text */
	char text[48];                /* an unprepared statement (savepoints) */
	int n;
	const char *const *ext;       /* the handler's params (live during the run), or NULL */
	const char *own[6];
	size_t item;                  /* index in the group, NO_ITEM for the group's own */
	enum step_kind kind;
	int prepare;                  /* the run prepares it first... */
	int prepared_as;              /* ...as statement s<prepared_as> */
	PGresult *res;                /* STEP_HANDLER: the result for the handler */
};

struct sl_pipe {
	struct step *steps;
	int n, cap;
	struct item *items;
	size_t n_items;
	size_t cur;                   /* the item whose handler runs */
	int timeout_set;              /* sql_lock_timeout ran in this transaction... */
	size_t timeout_item;          /* ...inside the savepoint of the item before this one */
	int windowed;                 /* statements of several items went out ahead together */
	int lost;                     /* the connection failed: no statement goes out */
	int replay;                   /* a handler broke its plan: run the group again */
	size_t committed;             /* items[0..committed) committed (a chain, a split) */
	size_t start;                 /* the first item of the transaction being queued */
	/* The first failed step other than a handler's own statement, until
	 * the group settles it. */
	int failed;
	size_t fail_item;
	enum step_kind fail_kind;
	enum sl_pg_class fail_cls;
	int fail_final;               /* SQLSTATE_FINAL: the job is final already */
	char fail_error[1024];
};

/* Queues a step at position `at` (p->n: the end). */
static struct step *
pipe_insert(struct sl_pipe *p, int at, const char *sql, size_t item, enum step_kind kind, int n,
            const char *const *params)
{
	struct step *s;

	if (p->n == p->cap || n > (int)(sizeof(s->own) / sizeof(s->own[0])))
		abort(); /* a bug: no path queues that much */
	memmove(&p->steps[at + 1], &p->steps[at], (size_t)(p->n - at) * sizeof(*s));
	p->n++;
	s = &p->steps[at];
	memset(s, 0, sizeof(*s));
	s->sql = sql;
	s->n = n;
	if (n > 0)
		memcpy(s->own, params, (size_t)n * sizeof(*params));
	s->item = item;
	s->kind = kind;
	return s;
}

static void
pipe_add(struct sl_pipe *p, const char *sql, size_t item, enum step_kind kind, int n, const char *const *params)
{
	pipe_insert(p, p->n, sql, item, kind, n, params);
}

/* Queues what its job type sets around the handler's statement (role,
 * statement_timeout), before it and after it. SET LOCAL inside the item's
 * savepoint: an undo of the item undoes them too. */
static void
queue_enter(struct sl_pipe *p, const struct item *it, size_t index)
{
	if (it->jt->enter_role != NULL)
		pipe_add(p, it->jt->enter_role, index, STEP_ENTER, 0, NULL);
	if (it->jt->enter_timeout != NULL)
		pipe_add(p, it->jt->enter_timeout, index, STEP_ENTER, 0, NULL);
}

static void
queue_leave(struct sl_pipe *p, const struct item *it, size_t index)
{
	if (it->jt->enter_role != NULL)
		pipe_add(p, sql_leave_role, index, STEP_PLAIN, 0, NULL);
	if (it->jt->enter_timeout != NULL)
		pipe_add(p, sql_leave_timeout, index, STEP_PLAIN, 0, NULL);
}

/* Queues the savepoint that item `index` runs in. */
static void
queue_savepoint(struct sl_pipe *p, size_t index)
{
	struct step *s = pipe_insert(p, p->n, NULL, index, STEP_SAVEPOINT, 0, NULL);

	snprintf(s->text, sizeof(s->text), "savepoint j%zu", index);
}

/* Drops what the items from `from` on sent ahead: it is void. */
static void
clear_ahead(struct sl_pipe *p, size_t from)
{
	size_t j;

	for (j = from; j < p->n_items; j++) {
		PQclear(p->items[j].ahead_res);
		p->items[j].ahead_res = NULL;
		p->items[j].ahead = AHEAD_NONE;
	}
}

/* Notes the first failure of the group's current stretch. */
static void
pipe_fail(struct sl_pipe *p, int k, size_t item, enum step_kind kind, enum sl_pg_class cls, int final,
          const char *error)
{
	if (p->failed >= 0)
		return;
	p->failed = k;
	p->fail_item = item;
	p->fail_kind = kind;
	p->fail_cls = cls;
	p->fail_final = final;
	snprintf(p->fail_error, sizeof(p->fail_error), "%s", error);
}

/* Hands an item's pending result to its job: its ledger write went through. */
static void
take_pending(struct item *it)
{
	free(it->job->result);
	it->job->result = it->pending;
	it->job->status = it->pending_status;
	it->pending = NULL;
	dead_letter(it);
}

/* Takes step k's result (and ownership of res); *bad once a step failed. */
static void
step_result(struct sl_executor *ex, struct sl_pipe *p, int k, PGresult *res, int *bad)
{
	struct step *s = &p->steps[k];
	ExecStatusType st = PQresultStatus(res);
	enum sl_pg_class cls = st == PGRES_PIPELINE_ABORTED ? SL_PG_TRANSIENT : sl_pg_classify(ex->conn, res);
	int handlers = s->kind == STEP_HANDLER || s->kind == STEP_AHEAD;
	char error[1024];

	if (cls == SL_PG_OK && s->kind == STEP_COMMIT && strcmp(PQcmdStatus(res), "COMMIT") != 0) {
		snprintf(error, sizeof(error), "the transaction was rolled back at COMMIT");
		pipe_fail(p, k, s->item, s->kind, SL_PG_TRANSIENT, 0, error);
		*bad = 1;
	} else if (cls == SL_PG_OK && s->kind == STEP_COMMIT && s->item != NO_ITEM) {
		p->committed = s->item + 1;
	} else if (cls != SL_PG_OK && !*bad) {
		*bad = 1;
		if (!handlers) {
			describe_error(ex->conn, res, error, sizeof(error));
			pipe_fail(p, k, s->item, s->kind, cls, strcmp(sl_pg_sqlstate(res), SQLSTATE_FINAL) == 0, error);
		}
	} else if (cls == SL_PG_OK) {
		if (s->kind == STEP_RECORD) {
			if (p->items[s->item].pg_error)
				sl_metrics_counter_inc(ex->w->ops.m_pg[1]);
			take_pending(&p->items[s->item]);
		}
		else if (s->sql == sql_lock_timeout) {
			p->timeout_set = 1;
			p->timeout_item = s->item;
		}
	}
	if (s->kind == STEP_HANDLER)
		s->res = res;
	else if (s->kind == STEP_AHEAD)
		p->items[s->item].ahead_res = res;
	else
		PQclear(res);
}

/* Reads the next statement's result and the NULL that ends it; NULL when
 * the connection failed. */
static PGresult *
next_result(PGconn *conn)
{
	PGresult *res = PQgetResult(conn), *extra;

	if (res == NULL)
		return NULL;
	while ((extra = PQgetResult(conn)) != NULL) {
		PQclear(extra);
		if (PQstatus(conn) != CONNECTION_OK) {
			PQclear(res);
			return NULL;
		}
	}
	return res;
}

/* Sends step s: prepared by name, prepared first (a handler's statement,
 * the first time on this connection), or as text. */
static int
send_step(struct sl_executor *ex, struct step *s)
{
	PGconn *conn = ex->conn;
	const char *const *params = s->ext ? s->ext : s->own;
	char name[16];
	int i;

	if (s->sql == NULL)
		return PQsendQueryParams(conn, s->text, 0, NULL, NULL, NULL, NULL, 0);
	if ((i = prepared_find(ex, s->sql)) < 0)
		i = ex->n_prepared;
	statement_name(i, name);
	if (i == ex->n_prepared && i < SL_MAX_PREPARED) {
		if (PQsendPrepare(conn, name, s->sql, 0, NULL) != 1)
			return 0;
		/* Known from here on, so that later steps of this pipeline use
		 * it; forgotten again if the server does not prepare it. */
		ex->prepared[ex->n_prepared++] = s->sql;
		s->prepare = 1;
		s->prepared_as = i;
	}
	if (i < SL_MAX_PREPARED)
		return PQsendQueryPrepared(conn, name, s->n, params, NULL, NULL, 0);
	return PQsendQueryParams(conn, s->sql, s->n, NULL, params, NULL, NULL, 0);
}

/* Sends the queued steps in one pipeline, reads every result, and empties
 * the queue. The steps that went through take effect; the first one that
 * failed, unless it is a handler's own statement, stays in p->failed for
 * the group to settle. A lost connection is such a failure, of no item; the
 * connection stays open (a handler may hold it) until the group drops it. */
static void
pipe_run(struct sl_executor *ex, struct sl_pipe *p)
{
	PGconn *conn = ex->conn;
	PGresult *res;
	int k, n = p->n, bad = 0;
	char error[1024];

	p->n = 0;
	if (p->lost || PQenterPipelineMode(conn) != 1)
		goto lost;
	sl_metrics_counter_inc(ex->w->ops.m_round_trips);
	for (k = 0; k < n; k++)
		if (send_step(ex, &p->steps[k]) != 1)
			goto lost;
	if (PQpipelineSync(conn) != 1)
		goto lost;
	for (k = 0; k < n; k++) {
		struct step *s = &p->steps[k];
		int prepare_failed = 0;

		if (s->prepare) {
			if ((res = next_result(conn)) == NULL)
				goto lost;
			if (PQresultStatus(res) != PGRES_COMMAND_OK && ex->n_prepared > s->prepared_as)
				ex->n_prepared = s->prepared_as; /* and any after it: aborted too */
			if (PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_PIPELINE_ABORTED) {
				PQclear(res);
			} else {
				step_result(ex, p, k, res, &bad); /* its error is the step's */
				prepare_failed = 1;
			}
		}
		if ((res = next_result(conn)) == NULL)
			goto lost;
		if (prepare_failed)
			PQclear(res);
		else
			step_result(ex, p, k, res, &bad);
	}
	res = PQgetResult(conn);
	if (res == NULL || PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
		PQclear(res);
		goto lost;
	}
	PQclear(res);
	if (PQexitPipelineMode(conn) != 1)
		goto lost;
	return;

lost:
	p->lost = 1;
	snprintf(error, sizeof(error), "lost the connection: %s", conn ? PQerrorMessage(conn) : "none");
	error[strcspn(error, "\n")] = '\0';
	pipe_fail(p, n, NO_ITEM, STEP_PLAIN, SL_PG_TRANSIENT, 0, error);
}

/* Returns 1 when a handler sends the statement its plan said. */
static int
plan_matches(const struct sl_plan *plan, const char *sql, int n, const char *const *params)
{
	int i;

	if (plan->sql != sql || plan->n_params != n)
		return 0;
	for (i = 0; i < n; i++)
		if (params[i] == NULL || plan->params[i] == NULL ? params[i] != plan->params[i]
		                                                 : strcmp(params[i], plan->params[i]) != 0)
			return 0;
	return 1;
}

/* A handler sent what its plan did not say, after statements of later jobs
 * went out: the group's transaction is void and it runs again, without
 * plans. The handler gets no result. */
static PGresult *
plan_broken(struct sl_pipe *p, const struct item *it)
{
	static atomic_int warned;

	if (atomic_exchange(&warned, 1) == 0)
		sl_log_warn("handler of job type \"%s\" sent a statement its plan did not say; its groups run "
		            "again without plans (logged once)", it->ev.type);
	p->replay = 1;
	return NULL;
}

PGresult *
sl_job_exec(struct sl_job_ctx *ctx, const char *sql, int n_params, const char *const *params)
{
	struct sl_executor *ex = ctx->executor;
	struct sl_pipe *p;
	struct item *it;
	struct step *s;
	PGresult *res;

	if (ex == NULL)
		return PQexecParams(ctx->conn, sql, n_params, NULL, params, NULL, NULL, 0);
	p = ex->pipe;
	if (p != NULL && (p->lost || p->replay))
		return NULL;
	if (p != NULL && p->cur < p->n_items) {
		it = &p->items[p->cur];
		if (it->ahead == AHEAD_SENT) {
			if (!plan_matches(&it->plan, sql, n_params, params))
				return plan_broken(p, it);
			it->ahead = AHEAD_USED;
			res = it->ahead_res;
			it->ahead_res = NULL;
			return res;
		}
		if (p->cur + 1 < p->n_items && p->items[p->cur + 1].ahead != AHEAD_NONE)
			return plan_broken(p, it);
	}
	if (p == NULL || p->n == 0)
		return exec_prepared(ex, sql, n_params, params);
	/* The executor's queued statements go first, in the same round trip. */
	s = pipe_insert(p, p->n, sql, p->cur, STEP_HANDLER, 0, NULL);
	s->n = n_params;
	s->ext = params;
	pipe_run(ex, p);
	res = s->res;
	s->res = NULL;
	return res;
}

/* ---- one group, one transaction ----------------------------------------- */

enum item_end {
	ITEM_DONE,        /* outcome queued or recorded (committed with the group) */
	ITEM_RETRY,       /* transient: this and later items go again */
	ITEM_SPLIT,       /* a later item would wait for a lock: commit the group
	                   * so far and start the next one with it */
	ITEM_BROKEN,      /* the transaction is lost: the whole group goes again */
};

/* Queues the undo of items[index]: back to its savepoint inside a group,
 * else the whole transaction and a new one. In a group the rollback goes
 * right after the savepoint while that is still queued, else first: what
 * is queued then (ledger writes of the jobs before it) must outlive it.
 * Statements sent ahead for this job and later ones are void. */
static void
queue_undo(struct sl_pipe *p, size_t index, int grouped)
{
	struct step *s;
	int at = 0, k;

	/* Its role and timeout, if not sent yet, are not set at all. */
	for (k = 0; k < p->n;)
		if (p->steps[k].kind == STEP_ENTER && p->steps[k].item == index) {
			memmove(&p->steps[k], &p->steps[k + 1], (size_t)(p->n - k - 1) * sizeof(*s));
			p->n--;
		} else {
			k++;
		}
	if (!grouped) {
		pipe_add(p, sql_rollback, index, STEP_PLAIN, 0, NULL);
		pipe_add(p, sql_begin, index, STEP_PLAIN, 0, NULL);
		return;
	}
	for (k = 0; k < p->n; k++)
		if (p->steps[k].kind == STEP_SAVEPOINT && p->steps[k].item == index)
			at = k + 1;
	s = pipe_insert(p, at, NULL, index, STEP_PLAIN, 0, NULL);
	snprintf(s->text, sizeof(s->text), "rollback to savepoint j%zu", index);
	clear_ahead(p, index);
	if (index < p->timeout_item)
		p->timeout_set = 0; /* the SET ran inside what rolls back */
}

/* The same undo, waiting for it (the queue must be empty or hold only what
 * may go with it). */
static int
undo_item(struct sl_executor *ex, struct sl_pipe *p, size_t index, int grouped, char *errbuf,
          size_t errbuf_size)
{
	queue_undo(p, index, grouped);
	pipe_run(ex, p);
	if (p->failed < 0)
		return 0;
	snprintf(errbuf, errbuf_size, "%s", p->fail_error);
	p->failed = -1;
	return -1;
}

/* Queues the ledger write of the item's pending outcome. */
static void
queue_record(struct sl_pipe *p, struct item *it, size_t index)
{
	const char *params[6] = { it->ev.source, it->ev.id,  it->ev.type, sl_job_status_name(it->pending_status),
		                  it->pending,   it->attempts };

	pipe_add(p, sql_record_or_raise, index, STEP_RECORD, 6, params);
}

/* Settles items[index], whose ledger write failed with `error` (classified
 * cls), waiting for every statement. A job that is final already (`final`)
 * rolls back and takes its stored result; transient errors go again;
 * anything else fails the job; a lost transaction takes the group with it. */
static enum item_end
settle(struct sl_executor *ex, struct sl_pipe *p, size_t index, int grouped, enum sl_pg_class cls, int final,
       const char *error)
{
	struct item *it = &p->items[index];
	char errbuf[1024];

	free(it->pending);
	it->pending = NULL;
	if (final) {
		/* Finished by an earlier delivery or another worker: this run's
		 * effects roll back and the stored result goes out unchanged. */
		if (undo_item(ex, p, index, grouped, errbuf, sizeof(errbuf)) < 0 ||
		    take_stored(ex, it, &cls, errbuf, sizeof(errbuf)) < 0) {
			snprintf(it->message, sizeof(it->message), "%s", errbuf);
			return ITEM_BROKEN;
		}
		return ITEM_DONE;
	}
	sl_metrics_counter_inc(ex->w->ops.m_pg[cls == SL_PG_TRANSIENT ? 0 : cls == SL_PG_UNAVAILABLE ? 2 : 1]);
	snprintf(it->code, sizeof(it->code), "%s",
	         cls == SL_PG_TRANSIENT ? "db_transient" : cls == SL_PG_UNAVAILABLE ? "db_unavailable" : "db_error");
	snprintf(it->message, sizeof(it->message), "%.1000s", error);
	if (undo_item(ex, p, index, grouped, errbuf, sizeof(errbuf)) < 0) {
		snprintf(it->message, sizeof(it->message), "%s", errbuf);
		return ITEM_BROKEN;
	}
	if (cls == SL_PG_UNAVAILABLE) {
		/* Not the job's doing (a cancel, a read-only or overloaded
		 * server): it waits and goes again, no attempt counted. */
		it->wait = 1;
		return ITEM_RETRY;
	}
	if (cls == SL_PG_TRANSIENT)
		return grouped && index > p->start && strncmp(it->message, "55P03", 5) == 0 ? ITEM_SPLIT : ITEM_RETRY;
	if (record_failed(ex, it, &cls, errbuf, sizeof(errbuf)) < 0) {
		snprintf(it->message, sizeof(it->message), "%s", errbuf);
		return ITEM_BROKEN;
	}
	dead_letter(it);
	return ITEM_DONE;
}

/* Fills the handler's view of item it (ctx is zeroed by the caller). */
static void
item_ctx(const struct item *it, struct sl_job_ctx *ctx)
{
	const rd_kafka_message_t *msg = it->job->msg;

	ctx->job_source = it->ev.source;
	ctx->job_id = it->ev.id;
	ctx->job_type = it->ev.type;
	ctx->job_subject = it->ev.subject;
	ctx->job_time = it->ev.time;
	ctx->key = msg->key;
	ctx->key_len = msg->key_len;
	ctx->attempt = it->job->attempts;
	ctx->data = it->ev.data;
	ctx->handler_data = ((const struct sl_handler *)it->jt->handler)->data;
	ctx->job_private = (void *)it;
}

const char *
sl_job_json(struct sl_job_ctx *ctx)
{
	struct item *it = ctx->job_private;
	const rd_kafka_message_t *msg;
	json_t *o;

	if (it == NULL)
		return NULL;
	if (it->job_json != NULL && it->job_json_attempt == it->job->attempts)
		return it->job_json;
	free(it->job_json);
	msg = it->job->msg;
	o = json_object();
	if (o == NULL)
		abort();
	json_object_set_new(o, "id", json_string(it->ev.id));
	json_object_set_new(o, "source", json_string(it->ev.source));
	json_object_set_new(o, "type", json_string(it->ev.type));
	json_object_set_new(o, "subject", it->ev.subject ? json_string(it->ev.subject) : json_null());
	json_object_set_new(o, "time", it->ev.time ? json_string(it->ev.time) : json_null());
	json_object_set(o, "data", it->ev.data);
	/* A key that is not UTF-8, or holds a NUL (which jsonb refuses), has
	 * no text to show: null, like none. */
	json_object_set_new(o, "key", msg->key && !memchr(msg->key, 0, msg->key_len)
	                                  ? json_stringn(msg->key, msg->key_len)
	                                  : json_null());
	if (json_object_get(o, "key") == NULL)
		json_object_set_new(o, "key", json_null());
	json_object_set_new(o, "attempt", json_integer(it->job->attempts));
	it->job_json = json_dumps(o, JSON_COMPACT);
	it->job_json_attempt = it->job->attempts;
	json_decref(o);
	if (it->job_json == NULL)
		abort();
	return it->job_json;
}

/* Settles items[index] whose job type's role or statement_timeout could
 * not be set (a role that does not exist, or that sluice's user may not
 * take): a deployment mistake, not the job's. It is undone and waits, no
 * attempt counted; the jobs before it commit. */
static enum item_end
enter_failed(struct sl_executor *ex, struct sl_pipe *p, size_t index, int grouped)
{
	struct item *it = &p->items[index];
	char errbuf[1024];

	free(it->pending);
	it->pending = NULL;
	snprintf(it->code, sizeof(it->code), "%s", SL_ERR_HANDLER_UNAVAILABLE);
	snprintf(it->message, sizeof(it->message), "could not take job type \"%.200s\"'s role or "
	         "statement_timeout: %.700s", it->jt->conf->type, p->fail_error);
	it->wait = 1;
	if (undo_item(ex, p, index, grouped, errbuf, sizeof(errbuf)) < 0) {
		snprintf(it->message, sizeof(it->message), "%s", errbuf);
		return ITEM_BROKEN;
	}
	return ITEM_RETRY;
}

/* Asks items[i]'s handler for its plan. Returns 1 when it has one. */
static int
plan_item(struct item *it)
{
	const struct sl_handler *h = it->jt->handler;
	struct sl_job_ctx ctx = { 0 };

	if (h->plan == NULL)
		return 0;
	item_ctx(it, &ctx);
	memset(&it->plan, 0, sizeof(it->plan));
	return h->plan(&ctx, &it->plan) == 1 && it->plan.sql != NULL && it->plan.n_params >= 0 &&
	       it->plan.n_params <= SL_PLAN_MAX_PARAMS;
}

/* Queues the statements of items[i..) that their handlers say ahead, each
 * in its savepoint, until one cannot say: items[i]'s savepoint is queued
 * already. Returns how many items it queued. */
static size_t
queue_ahead(struct sl_pipe *p, size_t i)
{
	size_t k;
	struct step *s;
	int timeout_queued = p->timeout_set || i > p->start; /* i > start: queued before i */

	for (k = i; k < p->n_items; k++) {
		struct item *it = &p->items[k];

		if (!plan_item(it))
			break;
		if (k > i) {
			if (!timeout_queued)
				pipe_add(p, sql_lock_timeout, k, STEP_PLAIN, 0, NULL);
			timeout_queued = 1;
			queue_savepoint(p, k);
		}
		queue_enter(p, it, k);
		s = pipe_insert(p, p->n, it->plan.sql, k, STEP_AHEAD, 0, NULL);
		s->n = it->plan.n_params;
		s->ext = it->plan.params;
		it->ahead = AHEAD_SENT;
		queue_leave(p, it, k);
	}
	return k - i;
}

/* Runs the handler of items[index] and queues its ledger write (ITEM_DONE),
 * or undoes it and says why not. A rejected or failed job is undone whole
 * and its outcome written after that, so that its partial writes vanish
 * without a savepoint of its own. When a queued statement failed meanwhile
 * (p->failed), or the handler broke its plan (p->replay), the outcome is
 * void and nothing is queued. */
static enum item_end
run_handler(struct sl_executor *ex, struct item *it, size_t index, int grouped, struct sl_pipe *p)
{
	const struct sl_handler *h = it->jt->handler;
	struct sl_job_ctx ctx = { 0 };
	enum sl_outcome outcome;
	int sent_ahead;

	item_ctx(it, &ctx);
	ctx.conn = ex->conn;
	ctx.executor = ex;
	p->cur = index;
	sent_ahead = it->ahead != AHEAD_NONE;
	if (!sent_ahead)
		queue_enter(p, it, index); /* goes with the handler's first statement */
	outcome = h->run(&ctx);
	if (it->ahead == AHEAD_SENT && p->failed < 0 && !p->lost)
		plan_broken(p, it); /* it did not send what it said */
	if (p->failed >= 0 || p->replay) {
		json_decref(ctx.output);
		return ITEM_DONE;
	}

	switch (outcome) {
	case SL_OUTCOME_SUCCEEDED:
		it->pending_status = SL_JOB_SUCCEEDED;
		it->pending = build_result(ex, &it->ev, "succeeded", ctx.output, NULL, NULL);
		json_decref(ctx.output);
		if (!sent_ahead)
			queue_leave(p, it, index);
		queue_record(p, it, index);
		break;
	case SL_OUTCOME_REJECTED:
	case SL_OUTCOME_FAILED:
		json_decref(ctx.output);
		if (outcome == SL_OUTCOME_REJECTED) {
			it->pending_status = SL_JOB_REJECTED;
			it->pending = build_result(ex, &it->ev, "rejected", NULL, ctx.error_code,
			                           ctx.error_message);
		} else {
			snprintf(it->code, sizeof(it->code), "%s", *ctx.error_code ? ctx.error_code : SL_ERR_HANDLER_ERROR);
			snprintf(it->message, sizeof(it->message), "%s", ctx.error_message);
			/* A handler's own refusal of bad data is no database error;
			 * and a duplicate's (its effects collide with the first
			 * run's) counts nowhere but sluice_duplicates_total: the
			 * error counts once its failed outcome is written. */
			it->pg_error = *ctx.sqlstate != '\0';
			it->pending_status = SL_JOB_FAILED;
			it->pending = build_result(ex, &it->ev, "failed", NULL, it->code, it->message);
		}
		queue_undo(p, index, grouped);
		queue_record(p, it, index);
		break;
	case SL_OUTCOME_RETRY:
	default:
		json_decref(ctx.output);
		queue_undo(p, index, grouped);
		/* A split's undo goes with the COMMIT of the jobs before it. */
		if (grouped && index > p->start && strcmp(ctx.sqlstate, "55P03") == 0)
			return ITEM_SPLIT;
		/* The undo goes with what the handler did not send. */
		pipe_run(ex, p);
		if (p->failed >= 0)
			return ITEM_DONE;
		snprintf(it->code, sizeof(it->code), "%s", *ctx.error_code ? ctx.error_code : "transient");
		snprintf(it->message, sizeof(it->message), "%s", ctx.error_message);
		/* A handler's statement that PostgreSQL could not judge is no
		 * attempt of the job's; a handler's own wish to retry is. */
		it->wait = ctx.wait || PQstatus(ex->conn) != CONNECTION_OK ||
		           (*ctx.sqlstate && sl_pg_classify_sqlstate(ctx.sqlstate) == SL_PG_UNAVAILABLE);
		it->retry_after = ctx.retry_after;
		sl_metrics_counter_inc(ex->w->ops.m_pg[it->wait ? 2 : 0]);
		return ITEM_RETRY;
	}
	return ITEM_DONE;
}

/* Forgets every outcome of the group's jobs: its transaction did not commit. */
static void
forget_outcomes(struct item *items, size_t n)
{
	size_t j;

	for (j = 0; j < n; j++) {
		free(items[j].pending);
		items[j].pending = NULL;
		free(items[j].job->result);
		items[j].job->result = NULL;
		free(items[j].job->dlq_code);
		free(items[j].job->dlq_message);
		items[j].job->dlq_code = items[j].job->dlq_message = NULL;
		items[j].job->duplicate = 0;
	}
}

/* Queues the COMMIT of the group's items before items[i] (ITEM_SPLIT) and
 * the BEGIN of the next transaction, which items[i] starts. */
static void
split_at(struct sl_pipe *p, size_t i)
{
	pipe_add(p, sql_commit, i - 1, STEP_COMMIT, 0, NULL);
	pipe_add(p, sql_begin, i, STEP_PLAIN, 0, NULL);
	p->start = i;
	p->timeout_set = 0;
}

/* In a chain (limits.max_batch 1, several jobs taken at once) each job
 * commits alone, and its COMMIT goes to the server with the next job's
 * BEGIN and handler statement: one round trip per job instead of two. */
static void
chain_next(struct sl_pipe *p, size_t i)
{
	pipe_add(p, sql_commit, i, STEP_COMMIT, 0, NULL);
	if (i + 1 < p->n_items)
		pipe_add(p, sql_begin, i + 1, STEP_PLAIN, 0, NULL);
}

/* After items[k] ended with `end`, queues what the next item starts with
 * (a split's COMMIT, a chain's COMMIT) and returns that item's index, or
 * NO_ITEM when the group stops at items[k]. */
static size_t
advance(struct sl_worker *w, struct sl_pipe *p, size_t k, enum item_end end, int chain)
{
	if (end == ITEM_SPLIT && !atomic_load(&w->abandon)) {
		split_at(p, k);
		return k;
	}
	if (end != ITEM_DONE)
		return NO_ITEM;
	if (chain)
		chain_next(p, k);
	return k + 1;
}

/* Runs items[0..n) in one transaction (a chain: one each), sending
 * handlers' statements ahead when `ahead`. A job that would wait for a lock
 * inside a group splits it: the jobs before it commit, and it goes first in
 * the next transaction, queued with that COMMIT. Returns how many items from
 * the start are finished and committed; the item at that index (if any)
 * needs another attempt, with the reason in its code/message. *lost says
 * its transaction was lost as a whole (connection, COMMIT), which no single
 * item is known for; *replay that the transaction rolled back and its jobs
 * must run again without `ahead`, which costs no attempt. */
static size_t
run_group(struct sl_executor *ex, struct item *items, size_t n, int ahead, int *lost, int *replay)
{
	struct sl_worker *w = ex->w;
	struct sl_pipe pipe, *p = &pipe;
	enum sl_pg_class cls;
	char errbuf[1024];
	size_t i = 0, j, sent, next;
	enum item_end end = ITEM_DONE;
	int grouped = n > 1 && sl_batch_grouped(w->cfg), chain = n > 1 && !grouped, ended = 0, abandoned = 0;

	*lost = *replay = 0;
	for (j = 0; j < n; j++) {
		items[j].wait = items[j].pg_error = 0;
		items[j].retry_after = 0;
	}
	if (ensure_connection(ex, errbuf, sizeof(errbuf)) < 0) {
		atomic_store(&w->ops.pg_ok, 0);
		sl_metrics_counter_inc(w->ops.m_pg[2]);
		items[0].wait = 1;
		snprintf(items[0].code, sizeof(items[0].code), "db_unavailable");
		snprintf(items[0].message, sizeof(items[0].message), "%s", errbuf);
		return 0;
	}
	memset(p, 0, sizeof(*p));
	p->cap = 12 * (int)n + 16;
	if ((p->steps = malloc((size_t)p->cap * sizeof(*p->steps))) == NULL)
		abort();
	p->items = items;
	p->n_items = n;
	p->failed = -1;
	ex->pipe = p;
	for (j = 0; j < n; j++)
		snprintf(items[j].attempts, sizeof(items[j].attempts), "%d", items[j].job->attempts);
	pipe_add(p, sql_begin, NO_ITEM, STEP_PLAIN, 0, NULL);
	for (;;) {
		if (chain && i > 0 && atomic_load(&w->abandon)) {
			/* What is queued does not go: the job before commits no
			 * more. */
			for (j = p->committed; j < n; j++) {
				free(items[j].pending);
				items[j].pending = NULL;
			}
			p->n = 0;
			i = n;
		}
		if (i == n) {
			/* Abandoned: nothing of it is published, so nothing commits;
			 * the redelivery runs it again. */
			abandoned = atomic_load(&w->abandon);
			if (!chain || abandoned)
				pipe_add(p, abandoned ? sql_rollback : sql_commit, NO_ITEM,
				         abandoned ? STEP_PLAIN : STEP_COMMIT, 0, NULL);
			pipe_run(ex, p);
			if (p->failed < 0) {
				ended = 1;
				break;
			}
		} else {
			if (grouped && items[i].ahead == AHEAD_NONE) {
				if (i > p->start && !p->timeout_set)
					pipe_add(p, sql_lock_timeout, i, STEP_PLAIN, 0, NULL);
				queue_savepoint(p, i);
				sent = ahead ? queue_ahead(p, i) : 0;
				if (sent > 1)
					p->windowed = 1;
				if (sent > 0)
					pipe_run(ex, p);
			}
			if (p->failed < 0) {
				end = run_handler(ex, &items[i], i, grouped, p);
				if (p->replay)
					goto replay;
			}
			if (p->failed < 0) {
				if ((next = advance(w, p, i, end, chain)) == NO_ITEM)
					break;
				i = next;
				continue;
			}
		}
		/* A queued step failed; what came after it is void and goes again. */
		for (j = p->fail_item == NO_ITEM ? 0 : p->fail_item; j < n; j++) {
			free(items[j].pending);
			items[j].pending = NULL;
		}
		p->n = 0;
		p->failed = -1;
		p->start = p->committed; /* a split's COMMIT may not have run */
		if (p->lost || p->fail_item == NO_ITEM ||
		    (p->fail_kind != STEP_RECORD && p->fail_kind != STEP_ENTER)) {
			snprintf(errbuf, sizeof(errbuf), "%.1000s", p->fail_error);
			goto broken;
		}
		/* A ledger write that went after later jobs' savepoints cannot be
		 * undone alone: the group runs again, without plans. */
		if (p->windowed)
			goto replay;
		j = p->fail_item;
		if (p->fail_kind == STEP_ENTER)
			end = enter_failed(ex, p, j, grouped);
		else
			end = settle(ex, p, j, grouped, p->fail_cls, p->fail_final, p->fail_error);
		if ((next = advance(w, p, j, end, chain)) == NO_ITEM) {
			i = j;
			break;
		}
		i = next;
	}
	ex->pipe = NULL;
	clear_ahead(p, 0);
	if (end == ITEM_BROKEN && !ended) {
		snprintf(errbuf, sizeof(errbuf), "%s", items[i].message);
		goto broken;
	}
	if (!ended) {
		/* Stopped early at items[i]: the ones before it commit now. */
		abandoned = atomic_load(&w->abandon);
		/* A COMMIT that fails with the connection lost may have committed:
		 * the next attempt's ledger write finds out, so retrying is safe. */
		if (abandoned) {
			command(ex, sql_rollback, errbuf, sizeof(errbuf));
		} else {
			PGresult *res = run(ex, sql_commit, 0, NULL, &cls, errbuf, sizeof(errbuf));
			int rolled_back = res != NULL && strcmp(PQcmdStatus(res), "COMMIT") != 0;

			if (rolled_back)
				snprintf(errbuf, sizeof(errbuf), "the transaction was rolled back at COMMIT");
			if (res == NULL || rolled_back) {
				PQclear(res);
				goto broken;
			}
			PQclear(res);
		}
	}
	free(p->steps);
	p->steps = NULL;
	if (PQtransactionStatus(ex->conn) != PQTRANS_IDLE) {
		/* Never reached; if it were, publishing would break exactly-once. */
		snprintf(errbuf, sizeof(errbuf), "the transaction did not end");
		goto broken;
	}
	if (abandoned)
		return p->committed;
	atomic_store(&w->ops.pg_ok, 1);
	return i;

replay:
	ex->pipe = NULL;
	clear_ahead(p, 0);
	free(p->steps);
	p->steps = NULL;
	forget_outcomes(items + p->committed, n - p->committed);
	if (p->lost || command(ex, sql_rollback, errbuf, sizeof(errbuf)) < 0)
		goto broken;
	*replay = 1;
	return p->committed;

broken:
	ex->pipe = NULL;
	clear_ahead(p, 0);
	free(p->steps);
	p->steps = NULL;
	*lost = 1;
	/* The jobs before the lost transaction (a chain's, a split's) committed. */
	i = p->committed;
	forget_outcomes(items + i, n - i);
	if (i < n) {
		/* Lost with its transaction: whether it committed (a COMMIT whose
		 * answer is lost) is the ledger's to say on the next attempt. */
		items[i].wait = 1;
		snprintf(items[i].code, sizeof(items[i].code), "db_unavailable");
		snprintf(items[i].message, sizeof(items[i].message), "%s", errbuf);
	}
	sl_metrics_counter_inc(w->ops.m_pg[2]);
	sl_job_disconnect(ex);
	return i;
}

/* ---- retries ------------------------------------------------------------ */

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
wait_start(struct sl_executor *ex, long *held, long jobs, const struct item *it)
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
hold(struct sl_executor *ex, struct item *items, size_t first, size_t n, long *held, int *waits)
{
	size_t i;

	wait_start(ex, held, (long)(n - first), &items[first]);
	if (wait_sleep(ex, items[first].job, waits) == 0)
		return 0;
	for (i = first; i < n; i++)
		items[i].job->end = SL_JOB_END_SKIPPED;
	return -1;
}


/* Settles a job whose failed outcome cannot be written while PostgreSQL
 * answers (the write itself breaks, e.g. a trigger): the outcome the
 * ledger holds, if it holds one (final, or `failed` from an earlier
 * delivery), else a `failed` result without a ledger row, like a message
 * that never reached PostgreSQL gets, with an id and words that are the
 * same on every delivery. Returns -1 when the ledger cannot be read. */
static int
fail_unrecorded(struct sl_executor *ex, struct item *it)
{
	const char *params[2] = { it->ev.source, it->ev.id };
	enum sl_pg_class cls;
	char errbuf[512];
	PGresult *res = run(ex, sql_stored, 2, params, &cls, errbuf, sizeof(errbuf));
	const char *st;

	if (res == NULL)
		return -1;
	free(it->job->result);
	it->job->result = NULL;
	st = PQntuples(res) == 1 && !PQgetisnull(res, 0, 1) ? PQgetvalue(res, 0, 0) : "";
	if (strcmp(st, "succeeded") == 0 || strcmp(st, "rejected") == 0 || strcmp(st, "failed") == 0) {
		it->job->result = xstrdup(PQgetvalue(res, 0, 1));
		it->job->status = strcmp(st, "succeeded") == 0 ? SL_JOB_SUCCEEDED
		                  : strcmp(st, "rejected") == 0 ? SL_JOB_REJECTED
		                                                : SL_JOB_FAILED;
		it->job->duplicate = strcmp(st, "failed") != 0;
		dead_letter(it);
	} else {
		fail_without_ledger(ex, it->job, &it->ev, SL_ERR_RETRIES_EXHAUSTED,
		                    "gave up: the job's own ledger write fails while postgresql answers");
	}
	PQclear(res);
	return 0;
}

/* Gives up on a job after its last attempt: a failed result, written to
 * the ledger before anything is published (if the job is final meanwhile,
 * its stored result instead). Returns 0 when the outcome is settled, -1
 * when PostgreSQL cannot take it now: the job then waits, as one that
 * cannot be judged does, and this runs again. */
static int
give_up(struct sl_executor *ex, struct item *it)
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
	if (ensure_connection(ex, errbuf, sizeof(errbuf)) == 0) {
		if (record_failed(ex, it, &cls, errbuf, sizeof(errbuf)) == 0) {
			dead_letter(it);
			return 0;
		}
		if (PQstatus(ex->conn) != CONNECTION_OK)
			sl_job_disconnect(ex);
		/* The write failed; if PostgreSQL still answers, the write is
		 * what breaks. */
		if (ensure_connection(ex, errbuf, sizeof(errbuf)) == 0 && ++it->record_tries >= 3 &&
		    fail_unrecorded(ex, it) == 0)
			return 0;
	}
	atomic_store(&ex->w->ops.pg_ok, 0);
	it->wait = 1;
	sl_log_job_debug(it->ev.id, "could not record the failed job in the ledger yet: %s", errbuf);
	return -1;
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
		fail_without_ledger(ex, job, NULL, code, errbuf);
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
		fail_without_ledger(ex, job, &it->ev, SL_ERR_UNKNOWN_TYPE, errbuf);
		return 0;
	}
	job->jt = it->jt;
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
	size_t i, n_db = 0, n_decoded, first = 0, done, size;
	int lost, replay, alone = 0, ahead = 1, waits = 0;
	long held = 0;
	char errbuf[512];

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
		if (it->giving_up) {
			/* Its failed outcome waits for the ledger. */
			if (give_up(ex, it) == 0) {
				wait_end(ex, &held);
				log_failed(it);
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
		done = run_group(ex, it, size, ahead, &lost, &replay);
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
			log_failed(&items[i]);
		}
		first += done;
		if (first == n_db)
			break;
		if (replay) {
			/* Rolled back: the same jobs go again, without plans. */
			ahead = 0;
			continue;
		}
		it = &items[first];
		/* A job that lost its connection alone while PostgreSQL answers
		 * right after may be what breaks it: that attempt counts. */
		if (it->wait && lost && size == 1 && ensure_connection(ex, errbuf, sizeof(errbuf)) == 0)
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
				log_failed(it);
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
	for (i = 0; i < n_decoded; i++) {
		sl_event_clear(&items[i].ev);
		free(items[i].job_json);
	}
	free(items);
}
