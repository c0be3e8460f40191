/* test_txn.c -- the group transaction (txn.c, group.c, pgpipe.c) against a
 * real PostgreSQL, without Kafka.
 *
 * Each test builds jobs by hand (a CloudEvent decoded from text, a fake
 * Kafka message that carries only a key), runs them through sl_txn_run()
 * on one executor's connection with a scripted handler, and checks what
 * the jobs hold and what the ledger and the handler's table say. The
 * handler's script is in each job's data: {"n": "<number>", "do": what}.
 *
 * One test per branch of a group (txn.c's header lists them): commit,
 * split, savepoint rollback (failed, rejected), ledger refusal (final
 * already), connection lost before COMMIT and after it, plan replay, a
 * chain; the attempts around the groups (job.c: retry, give up, wait for
 * PostgreSQL, revoke while waiting, a job that breaks its connection); and
 * the pipeline's one result per step.
 *
 * Needs SLUICE_PG_CONNINFO and sluice's migrations applied (tests/run-pg).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "group.h"
#include "job.h"
#include "jobsql.h"
#include "pg.h"
#include "pgpipe.h"
#include "txn.h"

#define MAX_JOBS 8

static PGconn *admin;          /* the test's own session: setup and checks */
static PGconn *admin_postgres; /* the same in database postgres: to refuse connections to sluice */
static char *conninfo;
static char result_source[] = "pgtest";
static struct sl_config cfg;
static struct sl_worker w;
static struct sl_executor ex;
static char jt_name[] = "t.job", jt_handler[] = "test", part_topic[] = "t";
static struct sl_job_type jt_conf = { .type = jt_name, .handler = jt_handler };
static struct sl_job_type_rt jt;
static struct sl_partition part = { .topic = part_topic, .partition = 0 };

static struct sl_job jobs[MAX_JOBS];
static rd_kafka_message_t msgs[MAX_JOBS];
static struct sl_item items[MAX_JOBS];
static size_t n_items;

static const char sql_effect[] = "insert into pgtest_effects (job, n) values ($1, $2::integer)";
static const char sql_other[] = "insert into pgtest_effects (job, n) values ($1, -$2::integer)";
static const char sql_lock[] = "update pgtest_accounts set v = v + 1 where id = 1";

/* Cuts the connection under libpq: its socket becomes one whose peer is
 * gone (reads see the end, writes fail), and the server sees its client
 * leave. Unlike shutdown(), answers already on their way are lost too. */
static void
cut(PGconn *conn)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	close(sv[1]);
	dup2(sv[0], PQsocket(conn));
	close(sv[0]);
}

/* ---- the scripted handler -------------------------------------------------- */

static const char *
script(struct sl_job_ctx *ctx, const char *field)
{
	const char *s = json_string_value(json_object_get(ctx->data, field));

	return s ? s : "";
}

static enum sl_outcome
test_run(struct sl_job_ctx *ctx)
{
	const char *what = script(ctx, "do");
	const char *params[2] = { ctx->job_id, script(ctx, "n") };
	const char *sql = strcmp(what, "lock") == 0 ? sql_lock : strcmp(what, "mismatch") == 0 ? sql_other : sql_effect;
	PGresult *res = sl_job_exec(ctx, sql, sql == sql_lock ? 0 : 2, params);
	enum sl_outcome out;

	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
		out = sl_job_sql_error(ctx, res, "test statement");
		PQclear(res);
		return out;
	}
	PQclear(res);
	if (strcmp(what, "reject") == 0)
		return sl_job_fail(ctx, SL_OUTCOME_REJECTED, "test_refusal", "refused by the script");
	if (strcmp(what, "fail") == 0)
		return sl_job_fail(ctx, SL_OUTCOME_FAILED, "test_failure", "failed by the script");
	if (strcmp(what, "retry") == 0 || (strcmp(what, "flaky") == 0 && ctx->attempt == 1))
		return sl_job_fail(ctx, SL_OUTCOME_RETRY, "test_retry", "retry asked by the script");
	if (strcmp(what, "cut") == 0)
		cut(ctx->conn); /* the connection dies under the group */
	ctx->output = json_pack("{s:s}", "n", script(ctx, "n"));
	return SL_OUTCOME_SUCCEEDED;
}

/* Says the statement ahead: always the effect, so "mismatch" breaks it. */
static int
test_plan(struct sl_job_ctx *ctx, struct sl_plan *plan)
{
	if (strcmp(script(ctx, "do"), "lock") == 0)
		return 0;
	plan->sql = sql_effect;
	plan->n_params = 2;
	plan->params[0] = ctx->job_id;
	plan->params[1] = json_string_value(json_object_get(ctx->data, "n"));
	return 1;
}

static struct sl_handler handler = { "test", test_run, NULL, NULL };

/* ---- fixtures ------------------------------------------------------------- */

static void
exec_on(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(conn));
	PQclear(res);
}

static void
exec_ok(const char *sql)
{
	exec_on(admin, sql);
}

/* Makes database sluice refuse new connections (allow 0) or take them. */
static void
allow_connections(int allow)
{
	exec_on(admin_postgres, allow ? "alter database sluice with allow_connections true"
	                              : "alter database sluice with allow_connections false");
}

/* Returns the first value of the query's first row as a number (-1: no row). */
static long
query_long(const char *sql)
{
	PGresult *res = PQexec(admin, sql);
	long v = -1;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(admin));
	if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
		v = atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

static int
setup_db(void **state)
{
	(void)state;
	conninfo = getenv("SLUICE_PG_CONNINFO") ? getenv("SLUICE_PG_CONNINFO") : (char *)"";
	admin = PQconnectdb(conninfo);
	if (PQstatus(admin) != CONNECTION_OK) {
		fprintf(stderr, "test_txn: could not connect (set SLUICE_PG_CONNINFO; tests/run-pg does): %s",
		        PQerrorMessage(admin));
		return -1;
	}
	{
		char other[1024];

		snprintf(other, sizeof(other), "%s dbname=postgres", conninfo);
		admin_postgres = PQconnectdb(other);
		if (PQstatus(admin_postgres) != CONNECTION_OK) {
			fprintf(stderr, "test_txn: could not connect to database postgres: %s",
			        PQerrorMessage(admin_postgres));
			return -1;
		}
	}
	exec_ok("set client_min_messages = warning");
	exec_ok("create table if not exists pgtest_effects (job text not null, n integer not null)");
	exec_ok("create table if not exists pgtest_accounts (id integer primary key, v integer not null)");
	exec_ok("insert into pgtest_accounts values (1, 0) on conflict do nothing");
	return 0;
}

static int
teardown_db(void **state)
{
	(void)state;
	PQfinish(admin);
	PQfinish(admin_postgres);
	return 0;
}

/* A fresh worker, executor and tables for each test. */
static int
setup(void **state)
{
	(void)state;
	exec_ok("truncate sluice.jobs, pgtest_effects");
	memset(&cfg, 0, sizeof(cfg));
	cfg.pg_conninfo = conninfo;
	cfg.max_batch = 32;
	cfg.max_result_bytes = 1000000;
	cfg.result_source = result_source;
	cfg.lock_timeout = 5;
	cfg.idle_in_transaction_timeout = 5;
	memset(&w, 0, sizeof(w));
	w.cfg = &cfg;
	memset(&ex, 0, sizeof(ex));
	ex.w = &w;
	pthread_mutex_init(&ex.mu, NULL);
	ex.pg.cancel_mu = &ex.mu;
	handler.plan = NULL;
	pthread_mutex_init(&w.reload_mu, NULL);
	pthread_mutex_init(&w.ops.wait_mu, NULL);
	memset(&jt, 0, sizeof(jt));
	jt.conf = &jt_conf;
	jt.handler = &handler;
	jt.retry = (struct sl_retry_policy){ .max_attempts = 3, .initial_backoff = 0.01, .max_backoff = 0.01,
		                             .multiplier = 1 };
	atomic_store(&part.revoked, 0);
	n_items = 0;
	sl_pipe_test_hook = NULL;
	return 0;
}

static void
clear_items(void)
{
	size_t i;

	for (i = 0; i < n_items; i++) {
		sl_event_clear(&items[i].ev);
		free(items[i].job_json);
		free(items[i].pending);
		free(jobs[i].result);
		free(jobs[i].dlq_code);
		free(jobs[i].dlq_message);
	}
	n_items = 0;
}

static int
teardown(void **state)
{
	(void)state;
	clear_items();
	sl_pgconn_close(&ex.pg);
	pthread_mutex_destroy(&ex.mu);
	if (PQtransactionStatus(admin) != PQTRANS_IDLE)
		exec_ok("rollback"); /* a test left the lock held */
	allow_connections(1);
	pthread_mutex_destroy(&w.reload_mu);
	pthread_mutex_destroy(&w.ops.wait_mu);
	return 0;
}

/* Makes jobs j0..j<n-1> whose scripts are the arguments, in order. */
static void
make_jobs(size_t n, ...)
{
	va_list ap;
	size_t i;
	char text[512], code[64], errbuf[256];

	clear_items();
	va_start(ap, n);
	for (i = 0; i < n; i++) {
		const char *what = va_arg(ap, const char *);

		memset(&jobs[i], 0, sizeof(jobs[i]));
		memset(&msgs[i], 0, sizeof(msgs[i]));
		memset(&items[i], 0, sizeof(items[i]));
		jobs[i].msg = &msgs[i];
		jobs[i].part = &part;
		jobs[i].offset = (int64_t)i;
		jobs[i].attempts = 1;
		snprintf(text, sizeof(text),
		         "{\"specversion\":\"1.0\",\"id\":\"j%zu\",\"source\":\"pgtest\",\"type\":\"t.job\","
		         "\"data\":{\"n\":\"%zu\",\"do\":\"%s\"}}", i, i, what);
		if (sl_event_decode(text, strlen(text), 0, &items[i].ev, code, errbuf, sizeof(errbuf)) < 0)
			fail_msg("decode: %s", errbuf);
		items[i].job = &jobs[i];
		items[i].jt = &jt;
	}
	va_end(ap);
	n_items = n;
}

/* Runs the jobs as job.c does: as sl_txn_first_care() says, then as carefully
 * as each replay asks, from the first job not committed, until a run is
 * not replayed. Returns how many jobs are finished; *replays counts the
 * replays. */
static size_t
run(int *lost, int *replays)
{
	enum sl_txn_care care = sl_txn_first_care(&ex);
	size_t first = 0;
	int replay;

	*replays = 0;
	for (;;) {
		first += sl_txn_run(&ex, items + first, n_items - first, &care, lost, &replay);
		if (!replay || first == n_items)
			return first;
		(*replays)++;
	}
}

/* Counts the savepoints the pipelines send, through sl_pipe_test_hook. */
static int savepoints_sent;

static void
count_savepoints(struct sl_pgconn *c, struct sl_pipe *p)
{
	(void)c;
	for (int k = 0; k < p->n; k++)
		savepoints_sent += p->steps[k].sql == NULL && strncmp(p->steps[k].text, "savepoint ", 10) == 0;
}

static void
assert_status(size_t i, const char *status)
{
	char needle[64];

	assert_non_null(jobs[i].result);
	snprintf(needle, sizeof(needle), "\"status\":\"%s\"", status);
	if (strstr(jobs[i].result, needle) == NULL)
		fail_msg("job %zu: result %s has no %s", i, jobs[i].result, needle);
}

static long
effects(const char *job)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "select count(*) from pgtest_effects where job = '%s'", job);
	return query_long(sql);
}

static long
ledger_rows(const char *status)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "select count(*) from sluice.jobs where status = '%s'", status);
	return query_long(sql);
}

/* ---- the group's branches -------------------------------------------------- */

/* commit: every job's effects and ledger row go with one COMMIT, in a
 * first try without a savepoint. */
static void
test_group_commits(void **state)
{
	int lost, replay;

	(void)state;
	make_jobs(3, "ok", "ok", "ok");
	savepoints_sent = 0;
	sl_pipe_test_hook = count_savepoints;
	assert_int_equal(run(&lost, &replay), 3);
	assert_false(lost);
	assert_false(replay);
	assert_int_equal(savepoints_sent, 0);
	for (size_t i = 0; i < 3; i++) {
		assert_status(i, "succeeded");
		assert_int_equal(jobs[i].status, SL_JOB_SUCCEEDED);
		assert_null(jobs[i].dlq_code);
	}
	assert_int_equal(ledger_rows("succeeded"), 3);
	assert_int_equal(query_long("select count(*) from pgtest_effects"), 3);
}

/* The same with plans: the statements go ahead, and the group still
 * commits each job once. */
static void
test_group_commits_with_plans(void **state)
{
	int lost, replay;

	(void)state;
	handler.plan = test_plan;
	make_jobs(4, "ok", "ok", "ok", "ok");
	savepoints_sent = 0;
	sl_pipe_test_hook = count_savepoints;
	assert_int_equal(run(&lost, &replay), 4);
	assert_false(lost);
	assert_false(replay);
	assert_int_equal(savepoints_sent, 0);
	assert_int_equal(ledger_rows("succeeded"), 4);
	assert_int_equal(query_long("select count(*) from pgtest_effects"), 4);
}

/* savepoint rollback: a failed job that is not the first of its
 * transaction rolls the optimistic try back; in the replay, with a
 * savepoint per job, it is undone back to its savepoint, its failed outcome
 * written after; its neighbours commit. */
static void
test_group_rolls_back_a_failed_job(void **state)
{
	int lost, replay;

	(void)state;
	make_jobs(3, "ok", "fail", "ok");
	savepoints_sent = 0;
	sl_pipe_test_hook = count_savepoints;
	assert_int_equal(run(&lost, &replay), 3);
	assert_false(lost);
	assert_int_equal(replay, 1);
	assert_int_equal(savepoints_sent, 3);
	assert_status(0, "succeeded");
	assert_status(1, "failed");
	assert_status(2, "succeeded");
	assert_int_equal(jobs[1].status, SL_JOB_FAILED);
	assert_string_equal(jobs[1].dlq_code, "test_failure");
	assert_int_equal(effects("j0"), 1);
	assert_int_equal(effects("j1"), 0);
	assert_int_equal(effects("j2"), 1);
	assert_int_equal(ledger_rows("failed"), 1);
	assert_int_equal(ledger_rows("succeeded"), 2);
}

/* The same for a refusal: undone, recorded, no dead letter. */
static void
test_group_rolls_back_a_rejected_job(void **state)
{
	int lost, replay;

	(void)state;
	handler.plan = test_plan; /* undone although its statement went ahead */
	make_jobs(3, "ok", "reject", "ok");
	assert_int_equal(run(&lost, &replay), 3);
	assert_int_equal(replay, 1);
	assert_status(1, "rejected");
	assert_int_equal(jobs[1].status, SL_JOB_REJECTED);
	assert_null(jobs[1].dlq_code);
	assert_int_equal(effects("j1"), 0);
	assert_int_equal(effects("j0") + effects("j2"), 2);
	assert_int_equal(ledger_rows("rejected"), 1);
}

/* Contended rows: once a quarter or more of an executor's recent groups
 * had a job undone that was not first in its transaction, its groups start
 * with savepoints (no replay), and go back to optimistic first tries once
 * such groups become rare. */
static void
test_group_contention_starts_with_savepoints(void **state)
{
	int lost, replay, k;

	(void)state;
	for (k = 0; k < 5; k++) {
		make_jobs(3, "ok", "fail", "ok");
		exec_ok("truncate sluice.jobs, pgtest_effects");
		assert_int_equal(run(&lost, &replay), 3);
		assert_int_equal(replay, 1);
	}
	assert_int_equal(sl_txn_first_care(&ex), SL_TXN_SAVEPOINTS);
	make_jobs(3, "ok", "fail", "ok");
	exec_ok("truncate sluice.jobs, pgtest_effects");
	assert_int_equal(run(&lost, &replay), 3);
	assert_false(replay);
	assert_int_equal(effects("j0") + effects("j2"), 2);
	for (k = 0; k < 40 && sl_txn_first_care(&ex) == SL_TXN_SAVEPOINTS; k++) {
		make_jobs(3, "ok", "ok", "ok");
		exec_ok("truncate sluice.jobs, pgtest_effects");
		assert_int_equal(run(&lost, &replay), 3);
	}
	assert_int_equal(sl_txn_first_care(&ex), SL_TXN_OPTIMISTIC);
}

/* The first job of a transaction needs no savepoint to be undone alone:
 * the whole transaction rolls back and a new one begins, with its outcome
 * and the rest of the group, in the first try. */
static void
test_group_undoes_its_first_job_without_a_replay(void **state)
{
	int lost, replay;

	(void)state;
	handler.plan = test_plan;
	make_jobs(3, "fail", "ok", "ok");
	savepoints_sent = 0;
	sl_pipe_test_hook = count_savepoints;
	assert_int_equal(run(&lost, &replay), 3);
	assert_false(lost);
	assert_false(replay);
	assert_int_equal(savepoints_sent, 0);
	assert_status(0, "failed");
	assert_status(1, "succeeded");
	assert_status(2, "succeeded");
	assert_int_equal(effects("j0"), 0);
	assert_int_equal(effects("j1") + effects("j2"), 2);
	assert_int_equal(ledger_rows("failed"), 1);
	assert_int_equal(ledger_rows("succeeded"), 2);
}

/* A job's own transient failure ends the group: the jobs before it
 * commit, it and the ones after it go again (nothing of theirs stays). */
static void
test_group_stops_at_a_retry(void **state)
{
	int lost, replay;

	(void)state;
	make_jobs(3, "ok", "retry", "ok");
	assert_int_equal(run(&lost, &replay), 1);
	assert_false(lost);
	assert_string_equal(items[1].code, "test_retry");
	assert_false(items[1].wait);
	assert_null(jobs[1].result);
	assert_null(jobs[2].result);
	assert_int_equal(effects("j0"), 1);
	assert_int_equal(effects("j1") + effects("j2"), 0);
	assert_int_equal(ledger_rows("succeeded"), 1);
}

/* Holds the row lock of the split test, and lets it go after looking
 * (from the lock holder's session) whether job j0 committed meanwhile. */
static long seen_j0_before_release = -1;

static void *
release_lock_later(void *arg)
{
	(void)arg;
	nanosleep(&(struct timespec){ 0, 300 * 1000 * 1000 }, NULL);
	seen_j0_before_release = effects("j0");
	exec_ok("rollback");
	return NULL;
}

/* split: a job that would wait for a lock inside a group (1 ms) commits the
 * jobs before it -- seen from the lock holder's session while it still
 * holds the lock -- and starts the next transaction, where it waits as a
 * lone job; once the lock goes, it and the job after it commit. Without
 * the split, the group would stop at the job and return 1. */
static void
test_group_splits_at_a_lock(void **state)
{
	int lost, replay;
	pthread_t releaser;

	(void)state;
	exec_ok("begin");
	exec_ok("select v from pgtest_accounts where id = 1 for update");
	make_jobs(3, "ok", "lock", "ok");
	pthread_create(&releaser, NULL, release_lock_later, NULL);
	assert_int_equal(run(&lost, &replay), 3);
	pthread_join(releaser, NULL);
	assert_false(lost);
	assert_int_equal(seen_j0_before_release, 1);
	assert_int_equal(ledger_rows("succeeded"), 3);
	assert_int_equal(query_long("select v from pgtest_accounts where id = 1") > 0, 1);
}

/* A job that still cannot get its lock as a lone job (the session's
 * lock_timeout) goes again later; the jobs before it stay committed. */
static void
test_group_lock_timeout_alone(void **state)
{
	int lost, replay;

	(void)state;
	cfg.lock_timeout = 0.3;
	exec_ok("begin");
	exec_ok("select v from pgtest_accounts where id = 1 for update");
	make_jobs(3, "ok", "lock", "ok");
	assert_int_equal(run(&lost, &replay), 1);
	assert_false(lost);
	assert_non_null(strstr(items[1].message, "55P03"));
	assert_int_equal(effects("j0"), 1); /* committed while the lock is held */
	exec_ok("rollback");
	assert_int_equal(ledger_rows("succeeded"), 1);
	assert_int_equal(effects("j2"), 0);
}

/* postgres.pooling = "transaction": the same group through unnamed
 * statements only, with the session left as it was found (no prepared
 * statement, no bound set for the session), and the bounds still there in
 * each transaction: a lone job that cannot get its lock gives up after
 * lock_timeout, grouped (max_batch 32) and per job (max_batch 1). */
static void
pooled_lock_timeout(int max_batch)
{
	enum sl_txn_care care = SL_TXN_OPTIMISTIC;
	int lost, replay;
	PGresult *res;

	cfg.pg_pooled = 1;
	cfg.max_batch = max_batch;
	cfg.lock_timeout = 0.3;
	handler.plan = test_plan;
	exec_ok("begin");
	exec_ok("select v from pgtest_accounts where id = 1 for update");
	make_jobs(3, "ok", "lock", "ok");
	assert_int_equal(run(&lost, &replay), 1);
	assert_false(lost);
	assert_non_null(strstr(items[1].message, "55P03"));
	exec_ok("rollback");
	assert_int_equal(effects("j0"), 1);
	res = PQexec(ex.pg.conn, "select (select count(*) from pg_prepared_statements), "
	                         "current_setting('lock_timeout'), "
	                         "current_setting('idle_in_transaction_session_timeout')");
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	assert_string_equal(PQgetvalue(res, 0, 0), "0");
	assert_string_equal(PQgetvalue(res, 0, 1), "0");
	assert_string_equal(PQgetvalue(res, 0, 2), "0");
	PQclear(res);
	/* The lock is gone: the rest commits. */
	make_jobs(3, "ok", "ok", "ok");
	assert_int_equal(sl_txn_run(&ex, items + 1, 2, &care, &lost, &replay), 2);
	assert_false(lost);
	assert_int_equal(ledger_rows("succeeded"), 3);
	assert_int_equal(effects("j1"), 1);
}

static void
test_pooled_grouped(void **state)
{
	(void)state;
	pooled_lock_timeout(32);
}

static void
test_pooled_per_job(void **state)
{
	(void)state;
	pooled_lock_timeout(1);
}

/* Counts the ledger writes the pipelines send, one job's and several's. */
static int records_one, records_many;

static void
count_records(struct sl_pgconn *c, struct sl_pipe *p)
{
	(void)c;
	for (int k = 0; k < p->n; k++) {
		records_one += p->steps[k].sql == sl_sql_record_or_raise;
		records_many += p->steps[k].sql == sl_sql_record_many_or_raise;
	}
}

/* Gives job i another id (a JSON string's inside, escapes and all). */
static void
set_id(size_t i, const char *json_id)
{
	char text[512], code[64], errbuf[256];

	sl_event_clear(&items[i].ev);
	snprintf(text, sizeof(text),
	         "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"pgtest\",\"type\":\"t.job\","
	         "\"data\":{\"n\":\"%zu\",\"do\":\"ok\"}}", json_id, i);
	if (sl_event_decode(text, strlen(text), 0, &items[i].ev, code, errbuf, sizeof(errbuf)) < 0)
		fail_msg("decode: %s", errbuf);
}

/* After a window, the group's ledger rows go in one statement, each job's
 * row holding what it publishes, quotes and backslashes included. */
static void
test_group_writes_its_ledger_rows_at_once(void **state)
{
	int lost, replay;
	PGresult *res;

	(void)state;
	handler.plan = test_plan;
	make_jobs(5, "ok", "ok", "ok", "ok", "ok");
	set_id(3, "j\\\\3\\\"q{x,y}");
	records_one = records_many = 0;
	sl_pipe_test_hook = count_records;
	assert_int_equal(run(&lost, &replay), 5);
	assert_false(lost);
	assert_false(replay);
	assert_int_equal(records_many, 1);
	assert_int_equal(records_one, 0);
	assert_int_equal(ledger_rows("succeeded"), 5);
	for (size_t i = 0; i < 5; i++) {
		assert_status(i, "succeeded");
		res = PQexecParams(admin, "select result, attempts from sluice.jobs where id = $1", 1, NULL,
		                   (const char *const[]){ items[i].ev.id }, NULL, NULL, 0);
		assert_int_equal(PQntuples(res), 1);
		assert_string_equal(PQgetvalue(res, 0, 0), jobs[i].result);
		assert_string_equal(PQgetvalue(res, 0, 1), "1");
		PQclear(res);
	}
	assert_string_equal(items[3].ev.id, "j\\3\"q{x,y}");
}

/* A job final already inside a window fails the group's one ledger
 * statement: the group runs again without plans, that job takes its
 * stored result and the others apply once. */
static void
test_group_final_inside_a_window(void **state)
{
	int lost, replay;

	(void)state;
	exec_ok("insert into sluice.jobs (source, id, type, status, result, attempts, finished_at) "
	        "values ('pgtest', 'j2', 't.job', 'rejected', '{\"stored\":2}', 1, now())");
	handler.plan = test_plan;
	make_jobs(4, "ok", "ok", "ok", "ok");
	assert_int_equal(run(&lost, &replay), 4);
	assert_false(lost);
	assert_int_equal(replay, 1);
	assert_true(jobs[2].duplicate);
	assert_string_equal(jobs[2].result, "{\"stored\":2}");
	assert_int_equal(effects("j2"), 0);
	assert_int_equal(effects("j0") + effects("j1") + effects("j3"), 3);
	assert_int_equal(ledger_rows("succeeded"), 3);
}

/* The same job twice in one window (a duplicate message): the one ledger
 * statement cannot write a row twice, the group runs again without plans,
 * and the second copy takes the first's result. */
static void
test_group_same_job_twice_in_a_window(void **state)
{
	int lost, replay;

	(void)state;
	handler.plan = test_plan;
	make_jobs(4, "ok", "ok", "ok", "ok");
	set_id(2, "j1");
	assert_int_equal(run(&lost, &replay), 4);
	assert_false(lost);
	assert_int_equal(replay, 1);
	assert_false(jobs[1].duplicate);
	assert_true(jobs[2].duplicate);
	assert_string_equal(jobs[2].result, jobs[1].result);
	assert_int_equal(effects("j1"), 1);
	assert_int_equal(query_long("select count(*) from sluice.jobs"), 3);
}

/* ledger refusal: a job final already (another delivery finished it) rolls
 * back its effects and takes the stored result, byte for byte. */
static void
test_group_takes_the_stored_result(void **state)
{
	int lost, replay;
	const char *stored = "{\"stored\":\"by an earlier delivery\"}";
	char sql[512];

	(void)state;
	snprintf(sql, sizeof(sql), "insert into sluice.jobs (source, id, type, status, result, attempts, finished_at) "
	         "values ('pgtest', 'j1', 't.job', 'succeeded', '%s', 1, now())", stored);
	exec_ok(sql);
	make_jobs(3, "ok", "ok", "ok");
	assert_int_equal(run(&lost, &replay), 3);
	assert_false(lost);
	assert_int_equal(replay, 1); /* j1 is not first: the group replays */
	assert_string_equal(jobs[1].result, stored);
	assert_true(jobs[1].duplicate);
	assert_int_equal(effects("j1"), 0);
	assert_int_equal(effects("j0") + effects("j2"), 2);
}

/* lost before COMMIT: the group's transaction is lost whole; nothing of it
 * committed, nothing is published, and the first job waits (no attempt). */
static void
test_group_lost_before_commit(void **state)
{
	int lost, replay;

	(void)state;
	make_jobs(3, "ok", "cut", "ok");
	assert_int_equal(run(&lost, &replay), 0);
	assert_true(lost);
	assert_true(items[0].wait);
	assert_string_equal(items[0].code, "db_unavailable");
	for (size_t i = 0; i < 3; i++)
		assert_null(jobs[i].result);
	assert_int_equal(query_long("select count(*) from sluice.jobs"), 0);
	assert_int_equal(query_long("select count(*) from pgtest_effects"), 0);
	/* The next attempt, on a new connection, does them once. */
	make_jobs(3, "ok", "ok", "ok");
	assert_int_equal(run(&lost, &replay), 3);
	assert_int_equal(query_long("select count(*) from pgtest_effects"), 3);
}

/* The hook for "lost after COMMIT": once a pipeline holding the COMMIT is
 * sent, waits until the server has run all of it (its session idle), then
 * cuts the connection before the answers are read. */
static void
cut_after_commit(struct sl_pgconn *c, struct sl_pipe *p)
{
	char sql[128];
	int k, has_commit = 0;

	for (k = 0; k < p->n; k++)
		has_commit |= p->steps[k].sql == sl_sql_commit;
	if (!has_commit)
		return;
	snprintf(sql, sizeof(sql), "select count(*) from pg_stat_activity where pid = %d and state = 'idle'",
	         PQbackendPID(c->conn));
	for (k = 0; k < 500 && query_long(sql) != 1; k++)
		nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
	assert_int_equal(query_long(sql), 1);
	cut(c->conn);
}

/* lost after COMMIT: the answer is lost, so the group cannot know that it
 * committed; it publishes nothing and waits. The next attempt finds every
 * job final in the ledger and takes the stored results: the effects are
 * applied once, and what is published is what the ledger holds. */
static void
test_group_lost_after_commit(void **state)
{
	int lost, replay;
	char *first[3];
	PGresult *res;

	(void)state;
	make_jobs(3, "ok", "ok", "ok");
	sl_pipe_test_hook = cut_after_commit;
	assert_int_equal(run(&lost, &replay), 0);
	sl_pipe_test_hook = NULL;
	assert_true(lost);
	assert_true(items[0].wait);
	for (size_t i = 0; i < 3; i++)
		assert_null(jobs[i].result);
	assert_int_equal(ledger_rows("succeeded"), 3); /* it did commit */
	res = PQexec(admin, "select result from sluice.jobs order by id");
	assert_int_equal(PQntuples(res), 3);
	for (int i = 0; i < 3; i++)
		first[i] = strdup(PQgetvalue(res, i, 0));
	PQclear(res);

	make_jobs(3, "ok", "ok", "ok");
	assert_int_equal(run(&lost, &replay), 3);
	assert_false(lost);
	for (size_t i = 0; i < 3; i++) {
		assert_true(jobs[i].duplicate);
		assert_string_equal(jobs[i].result, first[i]);
		free(first[i]);
	}
	assert_int_equal(query_long("select count(*) from pgtest_effects"), 3);
}

/* replay: a handler that sends what its plan did not say, after later
 * jobs' statements went ahead, voids the group: it rolls back, and runs
 * again without plans (no attempt counted). */
static void
test_group_replays_a_broken_plan(void **state)
{
	enum sl_txn_care care = SL_TXN_OPTIMISTIC;
	int lost, replay;

	(void)state;
	handler.plan = test_plan;
	make_jobs(3, "ok", "mismatch", "ok");
	assert_int_equal(sl_txn_run(&ex, items, n_items, &care, &lost, &replay), 0);
	assert_true(replay);
	assert_int_equal(care, SL_TXN_STEPWISE);
	assert_false(lost);
	assert_int_equal(query_long("select count(*) from pgtest_effects"), 0);
	assert_int_equal(query_long("select count(*) from sluice.jobs"), 0);
	assert_int_equal(sl_txn_run(&ex, items, n_items, &care, &lost, &replay), 3);
	assert_false(replay);
	assert_int_equal(effects("j1"), 1);
	assert_int_equal(ledger_rows("succeeded"), 3);
}

/* A chain (limits.max_batch 1): each job commits alone, so a job that
 * fails transiently leaves the one before it committed. */
static void
test_chain_commits_each_job(void **state)
{
	int lost, replay;

	(void)state;
	cfg.max_batch = 1;
	make_jobs(3, "ok", "retry", "ok");
	assert_int_equal(run(&lost, &replay), 1);
	assert_int_equal(effects("j0"), 1);
	assert_int_equal(query_long("select count(*) from pgtest_effects"), 1);
	make_jobs(3, "ok", "fail", "ok");
	exec_ok("truncate sluice.jobs, pgtest_effects");
	assert_int_equal(run(&lost, &replay), 3);
	assert_int_equal(ledger_rows("failed"), 1);
	assert_int_equal(effects("j1"), 0);
}

/* A chain whose connection is lost at its second job: the first job's
 * COMMIT went with the second one's statement, so it stays committed and
 * keeps its outcome; the rest wait. */
static void
test_chain_lost_keeps_what_committed(void **state)
{
	int lost, replay;

	(void)state;
	cfg.max_batch = 1;
	make_jobs(3, "ok", "cut", "ok");
	assert_int_equal(run(&lost, &replay), 1);
	assert_true(lost);
	assert_status(0, "succeeded");
	assert_null(jobs[1].result);
	assert_true(items[1].wait);
	assert_int_equal(ledger_rows("succeeded"), 1);
	assert_int_equal(effects("j0"), 1);
	assert_int_equal(effects("j1"), 0);
}

/* ---- the attempts (job.c) ---------------------------------------------------- */

/* A job's own transient failure counts an attempt; after the backoff it
 * runs again, alone in nothing: the jobs behind it wait for it. */
static void
test_attempts_retry_then_succeed(void **state)
{
	(void)state;
	make_jobs(3, "ok", "flaky", "ok");
	sl_job_run_items(&ex, items, n_items);
	for (size_t i = 0; i < 3; i++)
		assert_status(i, "succeeded");
	assert_int_equal(jobs[0].attempts, 1);
	assert_int_equal(jobs[1].attempts, 2);
	assert_int_equal(atomic_load(&w.n_retries), 1);
	assert_int_equal(query_long("select attempts from sluice.jobs where id = 'j1'"), 2);
	assert_int_equal(query_long("select count(*) from pgtest_effects"), 3);
}

/* After its last attempt a job fails for good: its failed row is written
 * (with every attempt counted) before it has a result to publish, and it
 * gets a dead letter; the jobs behind it go on. */
static void
test_attempts_give_up(void **state)
{
	(void)state;
	make_jobs(2, "retry", "ok");
	sl_job_run_items(&ex, items, n_items);
	assert_status(0, "failed");
	assert_int_equal(jobs[0].status, SL_JOB_FAILED);
	assert_string_equal(jobs[0].dlq_code, SL_ERR_RETRIES_EXHAUSTED);
	assert_int_equal(jobs[0].attempts, 3);
	assert_int_equal(query_long("select attempts from sluice.jobs where id = 'j0' and status = 'failed'"), 3);
	assert_status(1, "succeeded");
	assert_int_equal(effects("j0"), 0);
}

/* While the test refuses connections: what the executor shows, then what
 * becomes of the jobs (`revoke`: their partition is revoked meanwhile). */
static long waiting_seen, jobs_waiting_seen;
static int revoke_while_waiting;

static void *
allow_connections_later(void *arg)
{
	(void)arg;
	nanosleep(&(struct timespec){ 0, 600 * 1000 * 1000 }, NULL);
	waiting_seen = atomic_load(&w.ops.waiting);
	jobs_waiting_seen = atomic_load(&w.ops.jobs_waiting);
	if (revoke_while_waiting)
		atomic_store(&part.revoked, 1);
	else
		allow_connections(1);
	return NULL;
}

/* PostgreSQL that cannot be reached is no failure of the jobs: they wait,
 * counting no attempt and publishing nothing, the executor says so for
 * /readyz, and they run once it answers. */
static void
test_waits_for_postgres_without_counting(void **state)
{
	pthread_t t;

	(void)state;
	make_jobs(3, "ok", "ok", "ok");
	allow_connections(0);
	revoke_while_waiting = 0;
	pthread_create(&t, NULL, allow_connections_later, NULL);
	sl_job_run_items(&ex, items, n_items);
	pthread_join(t, NULL);
	assert_int_equal(waiting_seen, 1);
	assert_int_equal(jobs_waiting_seen, 3);
	assert_int_equal(atomic_load(&w.ops.waiting), 0); /* and no more */
	for (size_t i = 0; i < 3; i++) {
		assert_status(i, "succeeded");
		assert_int_equal(jobs[i].attempts, 1);
	}
}

/* A revoke while the jobs wait hands them back unrun: no outcome, no
 * attempt, nothing written. */
static void
test_revoke_while_waiting_hands_back(void **state)
{
	pthread_t t;

	(void)state;
	make_jobs(2, "ok", "ok");
	allow_connections(0);
	revoke_while_waiting = 1;
	pthread_create(&t, NULL, allow_connections_later, NULL);
	sl_job_run_items(&ex, items, n_items);
	pthread_join(t, NULL);
	allow_connections(1);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(jobs[i].end, SL_JOB_END_SKIPPED);
		assert_null(jobs[i].result);
		assert_int_equal(jobs[i].attempts, 1);
	}
	assert_int_equal(query_long("select count(*) from sluice.jobs"), 0);
}

/* A job that breaks its connection: after the group is lost its jobs go
 * one by one, so the job pays alone -- its attempts count while the server
 * still answers, until it gives up -- and its neighbours succeed. */
static void
test_connection_breaker_pays_alone(void **state)
{
	(void)state;
	make_jobs(3, "ok", "cut", "ok");
	sl_job_run_items(&ex, items, n_items);
	assert_status(0, "succeeded");
	assert_status(1, "failed");
	assert_string_equal(jobs[1].dlq_code, SL_ERR_RETRIES_EXHAUSTED);
	assert_status(2, "succeeded");
	assert_int_equal(effects("j1"), 0);
	assert_int_equal(effects("j0") + effects("j2"), 2);
}

/* After a lost group its jobs go one by one; each runs before anything is
 * counted against it. With max_attempts 1, a job counted without running
 * would fail (retries_exhausted) without ever having run. */
static void
test_after_a_lost_group_each_job_runs(void **state)
{
	(void)state;
	jt.retry.max_attempts = 1;
	make_jobs(4, "ok", "cut", "ok", "ok");
	sl_job_run_items(&ex, items, n_items);
	assert_status(0, "succeeded");
	assert_status(1, "failed");
	assert_status(2, "succeeded");
	assert_status(3, "succeeded");
	assert_int_equal(jobs[2].attempts, 1);
	assert_int_equal(jobs[3].attempts, 1);
	assert_int_equal(atomic_load(&w.n_retries), 0);
}

/* ---- the pipeline alone ------------------------------------------------------ */

static const char sql_one[] = "select 1";
static const char sql_zero_div[] = "select 1 / 0";

/* One result per step: the failure, and the server's skip after it. */
static void
test_pipe_results_per_step(void **state)
{
	struct sl_pipe_step steps[4];
	struct sl_pipe p = { .steps = steps, .cap = 4 };
	char errbuf[256];

	(void)state;
	assert_int_equal(sl_pgconn_open(&ex.pg, cfg.pg_conninfo, NULL, NULL, 0, errbuf, sizeof(errbuf)), 0);
	sl_pipe_insert(&p, p.n, sql_one, 0, 0, 0, NULL);
	sl_pipe_insert(&p, p.n, sql_zero_div, 1, 0, 0, NULL);
	sl_pipe_insert(&p, p.n, sql_one, 2, 0, 0, NULL);
	assert_int_equal(sl_pipe_run(&ex.pg, &p), 3);
	assert_false(p.lost);
	assert_int_equal(PQresultStatus(steps[0].res), PGRES_TUPLES_OK);
	assert_int_equal(PQresultStatus(steps[1].res), PGRES_FATAL_ERROR);
	assert_string_equal(sl_pg_sqlstate(steps[1].res), "22012");
	assert_int_equal(PQresultStatus(steps[2].res), PGRES_PIPELINE_ABORTED);
	sl_pipe_clear(&p);
	assert_int_equal(p.n, 0);
	/* Both statements are prepared once: the cache knows them. */
	assert_int_equal(ex.pg.n_prepared, 2);
}

static void
cut_now(struct sl_pgconn *c, struct sl_pipe *p)
{
	(void)p;
	cut(c->conn);
}

/* A lost connection: no result, the pipeline says lost and why. */
static void
test_pipe_lost(void **state)
{
	struct sl_pipe_step steps[2];
	struct sl_pipe p = { .steps = steps, .cap = 2 };
	char errbuf[256];

	(void)state;
	assert_int_equal(sl_pgconn_open(&ex.pg, cfg.pg_conninfo, NULL, NULL, 0, errbuf, sizeof(errbuf)), 0);
	sl_pipe_insert(&p, p.n, sql_one, 0, 0, 0, NULL);
	sl_pipe_test_hook = cut_now;
	/* libpq may hand the cut over as the step's (error) result. */
	if (sl_pipe_run(&ex.pg, &p) == 1)
		assert_int_not_equal(PQresultStatus(steps[0].res), PGRES_TUPLES_OK);
	sl_pipe_test_hook = NULL;
	assert_true(p.lost);
	assert_non_null(strstr(p.lost_error, "lost the connection"));
	sl_pipe_clear(&p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_group_commits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pooled_grouped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pooled_per_job, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commits_with_plans, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_rolls_back_a_failed_job, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_rolls_back_a_rejected_job, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_undoes_its_first_job_without_a_replay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_contention_starts_with_savepoints, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_stops_at_a_retry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_splits_at_a_lock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_lock_timeout_alone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_takes_the_stored_result, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_writes_its_ledger_rows_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_final_inside_a_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_same_job_twice_in_a_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_lost_before_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_lost_after_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_replays_a_broken_plan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain_commits_each_job, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain_lost_keeps_what_committed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_attempts_retry_then_succeed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_attempts_give_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_waits_for_postgres_without_counting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_revoke_while_waiting_hands_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_breaker_pays_alone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_after_a_lost_group_each_job_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipe_results_per_step, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipe_lost, setup, teardown),
	};

	return cmocka_run_group_tests(tests, setup_db, teardown_db);
}
