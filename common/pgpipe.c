/* pgpipe.c -- an executor's PostgreSQL connection: its prepared statements
 * and its pipelines (see pgpipe.h).
 *
 * Every statement sluice sends on a job's connection is prepared once per
 * session and then sent by name ("s0".."s31"), so that the server parses
 * and plans it once. Behind a transaction-pooling PgBouncer (c->unnamed)
 * a session is not ours from one transaction to the next, so nothing is
 * prepared: every statement goes unnamed (parse, bind, execute each time). A pipeline sends a queue of them without waiting for
 * each answer: the executor's own statements travel with the handler's, and
 * a job costs one or two round trips instead of one per statement. After a
 * failed statement the server skips the rest up to the sync point; every
 * step still gets a result, and the caller decides what the first failure
 * means.
 *
 * Not for: which statements a job needs or what a result does to a job
 * (group.c, txn.c).
 */
#include "pgpipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
 * the statements prepared on c, or -1. */
static int
prepared_find(const struct sl_pgconn *c, const char *sql)
{
	int i;

	for (i = 0; i < c->n_prepared; i++)
		if (c->prepared[i] == sql)
			return i;
	return -1;
}

/* Like prepared_find(), preparing the statement if needed (its parameter
 * types are left to the server); -1 when the cache is full (the statement
 * then goes unnamed) and -2 with the server's result in *err when it cannot
 * be prepared. */
static int
prepared_index(struct sl_pgconn *c, const char *sql, PGresult **err)
{
	char name[16];
	int i = prepared_find(c, sql);
	PGresult *res;

	*err = NULL;
	if (i >= 0)
		return i;
	if (c->unnamed || (i = c->n_prepared) == SL_MAX_PREPARED)
		return -1;
	statement_name(i, name);
	res = PQprepare(c->conn, name, sql, 0, NULL);
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
		*err = res;
		return -2;
	}
	PQclear(res);
	c->prepared[c->n_prepared++] = sql;
	return i;
}

void
sl_pgconn_close(struct sl_pgconn *c)
{
	if (c->cancel_mu != NULL)
		pthread_mutex_lock(c->cancel_mu);
	if (c->cancel != NULL)
		PQfreeCancel(c->cancel);
	c->cancel = NULL;
	if (c->cancel_mu != NULL)
		pthread_mutex_unlock(c->cancel_mu);
	PQfinish(c->conn);
	c->conn = NULL;
	c->n_prepared = 0;
}

int
sl_pgconn_open(struct sl_pgconn *c, const char *conninfo, const char *session_sql,
               const char *const *prepare, size_t n, char *errbuf, size_t errbuf_size)
{
	PGconn *conn;
	PGcancel *cancel;
	PGresult *err;
	size_t i;

	if (c->conn != NULL && PQstatus(c->conn) == CONNECTION_OK && PQtransactionStatus(c->conn) == PQTRANS_IDLE)
		return 0;
	sl_pgconn_close(c);
	conn = sl_pg_connect(conninfo, "sluice-worker", errbuf, errbuf_size);
	if (conn == NULL)
		return -1;
	if (session_sql != NULL && sl_pg_exec(conn, session_sql, errbuf, errbuf_size) < 0) {
		PQfinish(conn);
		return -1;
	}
	cancel = PQgetCancel(conn);
	if (c->cancel_mu != NULL)
		pthread_mutex_lock(c->cancel_mu);
	c->cancel = cancel;
	if (c->cancel_mu != NULL)
		pthread_mutex_unlock(c->cancel_mu);
	c->conn = conn;
	for (i = 0; i < n && !c->unnamed; i++)
		if (prepared_index(c, prepare[i], &err) < 0) {
			snprintf(errbuf, errbuf_size, "could not prepare the job statements: %s",
			         err ? PQresultErrorMessage(err) : PQerrorMessage(conn));
			errbuf[strcspn(errbuf, "\n")] = '\0';
			PQclear(err);
			sl_pgconn_close(c);
			return -1;
		}
	return 0;
}

PGresult *
sl_pgconn_exec(struct sl_pgconn *c, const char *sql, int n, const char *const *params)
{
	char name[16];
	PGresult *err;
	int i = prepared_index(c, sql, &err);

	if (i == -2)
		return err; /* the caller sees the error */
	sl_metrics_counter_inc(c->round_trips);
	if (i == -1)
		return PQexecParams(c->conn, sql, n, NULL, params, NULL, NULL, 0);
	statement_name(i, name);
	return PQexecPrepared(c->conn, name, n, params, NULL, NULL, 0);
}

void
sl_pgconn_describe(PGconn *conn, const PGresult *res, char *errbuf, size_t errbuf_size)
{
	const char *state = sl_pg_sqlstate(res);

	snprintf(errbuf, errbuf_size, "%s%s%s", state, *state ? ": " : "",
	         res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res) : PQerrorMessage(conn));
	errbuf[strcspn(errbuf, "\n")] = '\0';
}

PGresult *
sl_pgconn_run(struct sl_pgconn *c, const char *sql, int n, const char *const *params, enum sl_pg_class *cls,
              char *errbuf, size_t errbuf_size)
{
	PGresult *res = sl_pgconn_exec(c, sql, n, params);

	*cls = sl_pg_classify(c->conn, res);
	if (*cls == SL_PG_OK)
		return res;
	sl_pgconn_describe(c->conn, res, errbuf, errbuf_size);
	PQclear(res);
	return NULL;
}

int
sl_pgconn_command(struct sl_pgconn *c, const char *sql, char *errbuf, size_t errbuf_size)
{
	enum sl_pg_class cls;
	PGresult *res = sl_pgconn_run(c, sql, 0, NULL, &cls, errbuf, errbuf_size);

	PQclear(res);
	return res ? 0 : -1;
}

/* ---- pipelines ---------------------------------------------------------- */

void (*sl_pipe_test_hook)(struct sl_pgconn *c, struct sl_pipe *p);

struct sl_pipe_step *
sl_pipe_insert(struct sl_pipe *p, int at, const char *sql, size_t item, int kind, int n,
               const char *const *params)
{
	struct sl_pipe_step *s;

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
	s->item = s->item_last = item;
	s->kind = kind;
	return s;
}

void
sl_pipe_remove(struct sl_pipe *p, int k)
{
	PQclear(p->steps[k].res);
	memmove(&p->steps[k], &p->steps[k + 1], (size_t)(p->n - k - 1) * sizeof(p->steps[0]));
	p->n--;
}

void
sl_pipe_clear(struct sl_pipe *p)
{
	int k;

	for (k = 0; k < p->n; k++) {
		PQclear(p->steps[k].res);
		p->steps[k].res = NULL;
	}
	p->n = 0;
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
send_step(struct sl_pgconn *c, struct sl_pipe_step *s)
{
	PGconn *conn = c->conn;
	const char *const *params = s->ext ? s->ext : s->own;
	char name[16];
	int i;

	if (s->sql == NULL)
		return PQsendQueryParams(conn, s->text, 0, NULL, NULL, NULL, NULL, 0);
	if (c->unnamed)
		return PQsendQueryParams(conn, s->sql, s->n, NULL, params, NULL, NULL, 0);
	if ((i = prepared_find(c, s->sql)) < 0)
		i = c->n_prepared;
	statement_name(i, name);
	if (i == c->n_prepared && i < SL_MAX_PREPARED) {
		if (PQsendPrepare(conn, name, s->sql, 0, NULL) != 1)
			return 0;
		/* Known from here on, so that later steps of this pipeline use
		 * it; forgotten again if the server does not prepare it. */
		c->prepared[c->n_prepared++] = s->sql;
		s->prepare = 1;
		s->prepared_as = i;
	}
	if (i < SL_MAX_PREPARED)
		return PQsendQueryPrepared(conn, name, s->n, params, NULL, NULL, 0);
	return PQsendQueryParams(conn, s->sql, s->n, NULL, params, NULL, NULL, 0);
}

int
sl_pipe_run(struct sl_pgconn *c, struct sl_pipe *p)
{
	PGconn *conn = c->conn;
	PGresult *res;
	int k, n = p->n;

	if (p->lost || PQenterPipelineMode(conn) != 1)
		goto lost;
	sl_metrics_counter_inc(c->round_trips);
	for (k = 0; k < n; k++)
		if (send_step(c, &p->steps[k]) != 1)
			goto lost;
	if (PQpipelineSync(conn) != 1)
		goto lost;
	if (sl_pipe_test_hook != NULL)
		sl_pipe_test_hook(c, p);
	for (k = 0; k < n; k++) {
		struct sl_pipe_step *s = &p->steps[k];

		if (s->prepare) {
			if ((res = next_result(conn)) == NULL)
				goto lost;
			if (PQresultStatus(res) != PGRES_COMMAND_OK && c->n_prepared > s->prepared_as)
				c->n_prepared = s->prepared_as; /* and any after it: aborted too */
			if (PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_PIPELINE_ABORTED)
				PQclear(res);
			else
				s->res = res; /* its error is the step's */
		}
		if ((res = next_result(conn)) == NULL)
			goto lost;
		if (s->res != NULL)
			PQclear(res);
		else
			s->res = res;
	}
	res = PQgetResult(conn);
	if (res == NULL || PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
		PQclear(res);
		goto lost;
	}
	PQclear(res);
	if (PQexitPipelineMode(conn) != 1)
		goto lost;
	return n;

lost:
	p->lost = 1;
	snprintf(p->lost_error, sizeof(p->lost_error), "lost the connection: %s",
	         conn ? PQerrorMessage(conn) : "none");
	p->lost_error[strcspn(p->lost_error, "\n")] = '\0';
	for (k = 0; k < n && p->steps[k].res != NULL; k++)
		;
	return k;
}
