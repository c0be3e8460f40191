/* group.c -- the statements of one group transaction, queued and sent.
 *
 * The executor's own statements do not wait for their results: they are
 * queued, and go to the server in one pipeline (pgpipe.c) together with the
 * handler's next statement (sl_job_exec) or with the COMMIT. A lone job
 * whose handler runs one statement so costs two round trips, [begin,
 * handler] and [record, commit]; in a group each job costs one, [record of
 * the job before, savepoint, handler]. A handler that says its statement
 * ahead (sl_handler.plan) costs less still: the group's statements go out
 * together, each in its own savepoint, and a group costs two round trips,
 * [begin, savepoint, statement, savepoint, statement, ...] and [records,
 * commit], the records one statement for all the jobs. After a failed step
 * the server skips the rest up to the sync
 * point: the first failure names the item to settle (txn.c), and what came
 * after it runs again.
 *
 * A group's first try has no savepoints (txn.c): a job that fails there
 * rolls the group back unless it is the first of its transaction, whose
 * undo is the whole transaction. When the group runs again with them, job
 * i runs inside savepoint "j<i>", which stays until the COMMIT: undoing job
 * i is `rollback to savepoint j<i>`, which also undoes every job after it,
 * so their statements sent ahead go again.
 *
 * Here too: what a handler sees of its job while it runs (sl_job_exec,
 * sl_job_json), since its statements travel in the group's pipeline.
 *
 * Not for: deciding what a failure does to the group (txn.c). Executor
 * threads.
 */
#include "group.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobsql.h"
#include "log.h"

struct sl_pipe_step *
sl_group_add(struct sl_group *g, const char *sql, size_t item, enum sl_step_kind kind, int n,
             const char *const *params)
{
	return sl_pipe_insert(&g->pipe, g->pipe.n, sql, item, (int)kind, n, params);
}

void
sl_group_queue_begin(struct sl_group *g, size_t index)
{
	sl_group_add(g, sl_sql_begin, index, SL_STEP_PLAIN, 0, NULL);
	if (g->bounds != NULL)
		sl_group_add(g, sl_sql_bounds, index, SL_STEP_PLAIN, 2, g->bounds);
}

/* SET LOCAL inside the item's savepoint: an undo of the item undoes them
 * too. */
void
sl_group_queue_enter(struct sl_group *g, size_t index)
{
	const struct sl_item *it = &g->items[index];

	if (it->jt->enter_role != NULL)
		sl_group_add(g, it->jt->enter_role, index, SL_STEP_ENTER, 0, NULL);
	if (it->jt->enter_timeout != NULL)
		sl_group_add(g, it->jt->enter_timeout, index, SL_STEP_ENTER, 0, NULL);
}

void
sl_group_queue_leave(struct sl_group *g, size_t index)
{
	const struct sl_item *it = &g->items[index];

	if (it->jt->enter_role != NULL)
		sl_group_add(g, sl_sql_leave_role, index, SL_STEP_PLAIN, 0, NULL);
	if (it->jt->enter_timeout != NULL)
		sl_group_add(g, sl_sql_leave_timeout, index, SL_STEP_PLAIN, 0, NULL);
}

void
sl_group_queue_savepoint(struct sl_group *g, size_t index)
{
	struct sl_pipe_step *s;

	if (!g->savepoints)
		return;
	s = sl_group_add(g, NULL, index, SL_STEP_SAVEPOINT, 0, NULL);
	snprintf(s->text, sizeof(s->text), "savepoint j%zu", index);
}

void
sl_group_clear_ahead(struct sl_group *g, size_t from)
{
	size_t j;

	for (j = from; j < g->n_items; j++) {
		PQclear(g->items[j].ahead_res);
		g->items[j].ahead_res = NULL;
		g->items[j].ahead = SL_AHEAD_NONE;
	}
}

/* In a group the rollback goes right after the savepoint while that is
 * still queued, else first: what is queued then (ledger writes of the jobs
 * before it) must outlive it. Statements sent ahead for this job and later
 * ones are void. */
void
sl_group_queue_undo(struct sl_group *g, size_t index)
{
	struct sl_pipe *p = &g->pipe;
	struct sl_pipe_step *s;
	int at = 0, k;

	/* Its role and timeout, if not sent yet, are not set at all. */
	for (k = 0; k < p->n;)
		if (p->steps[k].kind == SL_STEP_ENTER && p->steps[k].item == index)
			sl_pipe_remove(p, k);
		else
			k++;
	if (!g->savepoints) {
		/* Alone in its transaction so far: what went ahead for later
		 * items goes too, and with it a SET LOCAL. */
		sl_group_add(g, sl_sql_rollback, index, SL_STEP_PLAIN, 0, NULL);
		sl_group_queue_begin(g, index);
		sl_group_clear_ahead(g, index);
		g->timeout_set = 0;
		return;
	}
	if (index > g->start)
		g->undone_inside = 1;
	for (k = 0; k < p->n; k++)
		if (p->steps[k].kind == SL_STEP_SAVEPOINT && p->steps[k].item == index)
			at = k + 1;
	s = sl_pipe_insert(p, at, NULL, index, SL_STEP_PLAIN, 0, NULL);
	snprintf(s->text, sizeof(s->text), "rollback to savepoint j%zu", index);
	sl_group_clear_ahead(g, index);
	if (index < g->timeout_item)
		g->timeout_set = 0; /* the SET ran inside what rolls back */
}

void
sl_group_queue_record(struct sl_group *g, size_t index)
{
	struct sl_item *it = &g->items[index];
	struct sl_pipe_step *last = g->pipe.n > 0 ? &g->pipe.steps[g->pipe.n - 1] : NULL;
	const char *params[6] = { it->ev.source, it->ev.id,  it->ev.type, sl_job_status_name(it->pending_status),
		                  it->pending,   it->attempts };

	/* After a window the ledger writes follow each other: one statement
	 * writes them all (its arrays are built when it is sent). If it fails,
	 * they all did, and the group runs again without plans (txn.c), as
	 * after any failed ledger write in a window. */
	if (g->windowed && last != NULL && last->kind == SL_STEP_RECORD && last->item_last + 1 == index) {
		last->item_last = index;
		last->sql = sl_sql_record_many_or_raise;
		return;
	}
	sl_group_add(g, sl_sql_record_or_raise, index, SL_STEP_RECORD, 6, params);
}

/* Appends `s` to a PostgreSQL array literal as a quoted element. */
static char *
array_element(char *out, const char *s, int first)
{
	if (!first)
		*out++ = ',';
	*out++ = '"';
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			*out++ = '\\';
		*out++ = *s;
	}
	*out++ = '"';
	return out;
}

/* Gives a step for several items' ledger writes its parameters: an array
 * literal per column, in one allocation that s->ext points to. */
static void
build_records(const struct sl_group *g, struct sl_pipe_step *s)
{
	size_t i, need = 6 * sizeof(char *) + 6 * 3;
	const char **params;
	char *out;
	int col;

	for (i = s->item; i <= s->item_last; i++) {
		const struct sl_item *it = &g->items[i];
		need += 2 * (strlen(it->ev.source) + strlen(it->ev.id) + strlen(it->ev.type) + strlen(it->pending)) +
		        strlen(sl_job_status_name(it->pending_status)) + strlen(it->attempts) + 6 * 3;
	}
	if ((params = malloc(need)) == NULL)
		abort();
	out = (char *)(params + 6);
	for (col = 0; col < 6; col++) {
		params[col] = out;
		*out++ = '{';
		for (i = s->item; i <= s->item_last; i++) {
			const struct sl_item *it = &g->items[i];
			const char *v[6] = { it->ev.source, it->ev.id, it->ev.type,
				             sl_job_status_name(it->pending_status), it->pending, it->attempts };
			out = array_element(out, v[col], i == s->item);
		}
		*out++ = '}';
		*out++ = '\0';
	}
	s->ext = params;
	s->n = 6;
}

/* Notes the first failure of the group's current stretch. */
static void
fail(struct sl_group *g, int k, size_t item, enum sl_step_kind kind, enum sl_pg_class cls, int final,
     const char *error)
{
	if (g->failed >= 0)
		return;
	g->failed = k;
	g->fail_item = item;
	g->fail_kind = kind;
	g->fail_cls = cls;
	g->fail_final = final;
	snprintf(g->fail_error, sizeof(g->fail_error), "%s", error);
}

/* Applies step k's result, which it takes from the step; *bad once a step
 * failed (the server skipped the ones after it). */
static void
apply(struct sl_executor *ex, struct sl_group *g, int k, int *bad)
{
	struct sl_pipe_step *s = &g->pipe.steps[k];
	PGresult *res = s->res;
	enum sl_step_kind kind = (enum sl_step_kind)s->kind;
	ExecStatusType st = PQresultStatus(res);
	enum sl_pg_class cls = st == PGRES_PIPELINE_ABORTED ? SL_PG_TRANSIENT : sl_pg_classify(ex->pg.conn, res);
	int handlers = kind == SL_STEP_HANDLER || kind == SL_STEP_AHEAD;
	char error[1024];

	s->res = NULL;
	if (cls == SL_PG_OK && kind == SL_STEP_COMMIT && strcmp(PQcmdStatus(res), "COMMIT") != 0) {
		fail(g, k, s->item, kind, SL_PG_TRANSIENT, 0, "the transaction was rolled back at COMMIT");
		*bad = 1;
	} else if (cls == SL_PG_OK && kind == SL_STEP_COMMIT && s->item != SL_NO_ITEM) {
		g->committed = s->item + 1;
	} else if (cls != SL_PG_OK && !*bad) {
		*bad = 1;
		if (!handlers) {
			sl_pgconn_describe(ex->pg.conn, res, error, sizeof(error));
			fail(g, k, s->item, kind, cls, strcmp(sl_pg_sqlstate(res), SL_SQLSTATE_FINAL) == 0, error);
		}
	} else if (cls == SL_PG_OK && kind == SL_STEP_RECORD) {
		for (size_t i = s->item; i <= s->item_last; i++) {
			if (g->items[i].pg_error)
				sl_metrics_counter_inc(ex->w->ops.m_pg[1]);
			sl_outcome_take_pending(&g->items[i]);
		}
	} else if (cls == SL_PG_OK && s->sql == sl_sql_lock_timeout) {
		g->timeout_set = 1;
		g->timeout_item = s->item;
	}
	if (kind == SL_STEP_HANDLER)
		g->handler_res = res;
	else if (kind == SL_STEP_AHEAD)
		g->items[s->item].ahead_res = res;
	else
		PQclear(res);
}

void
sl_group_flush(struct sl_executor *ex, struct sl_group *g)
{
	int k, n_read, bad = 0;

	for (k = 0; k < g->pipe.n; k++)
		if (g->pipe.steps[k].kind == SL_STEP_RECORD && g->pipe.steps[k].item_last > g->pipe.steps[k].item)
			build_records(g, &g->pipe.steps[k]);
	n_read = sl_pipe_run(&ex->pg, &g->pipe);
	for (k = 0; k < n_read; k++)
		apply(ex, g, k, &bad);
	if (g->pipe.lost)
		fail(g, g->pipe.n, SL_NO_ITEM, SL_STEP_PLAIN, SL_PG_TRANSIENT, 0, g->pipe.lost_error);
	for (k = 0; k < g->pipe.n; k++)
		if (g->pipe.steps[k].kind == SL_STEP_RECORD && g->pipe.steps[k].item_last > g->pipe.steps[k].item)
			free((void *)g->pipe.steps[k].ext);
	sl_pipe_clear(&g->pipe);
}

int
sl_group_undo(struct sl_executor *ex, struct sl_group *g, size_t index, char *errbuf, size_t errbuf_size)
{
	sl_group_queue_undo(g, index);
	sl_group_flush(ex, g);
	if (g->failed < 0)
		return 0;
	snprintf(errbuf, errbuf_size, "%s", g->fail_error);
	g->failed = -1;
	return -1;
}

/* ---- plans: a handler's statement said ahead ----------------------------- */

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
 * plans. */
PGresult *
sl_group_plan_broken(struct sl_group *g, const struct sl_item *it)
{
	static atomic_int warned;

	if (atomic_exchange(&warned, 1) == 0)
		sl_log_warn("handler of job type \"%s\" sent a statement its plan did not say; its groups run "
		            "again without plans (logged once)", it->ev.type);
	g->replay = SL_TXN_STEPWISE;
	return NULL;
}

/* Asks the item's handler for its plan. Returns 1 when it has one. */
static int
plan_item(struct sl_item *it)
{
	const struct sl_handler *h = it->jt->handler;
	struct sl_job_ctx ctx = { 0 };

	if (h->plan == NULL)
		return 0;
	sl_group_item_ctx(it, &ctx);
	memset(&it->plan, 0, sizeof(it->plan));
	return h->plan(&ctx, &it->plan) == 1 && it->plan.sql != NULL && it->plan.n_params >= 0 &&
	       it->plan.n_params <= SL_PLAN_MAX_PARAMS;
}

size_t
sl_group_queue_ahead(struct sl_group *g, size_t i)
{
	size_t k;
	struct sl_pipe_step *s;
	int timeout_queued = g->timeout_set || i > g->start; /* i > start: queued before i */

	for (k = i; k < g->n_items; k++) {
		struct sl_item *it = &g->items[k];

		if (!plan_item(it))
			break;
		if (k > i) {
			if (!timeout_queued)
				sl_group_add(g, sl_sql_lock_timeout, k, SL_STEP_PLAIN, 0, NULL);
			timeout_queued = 1;
			sl_group_queue_savepoint(g, k);
		}
		sl_group_queue_enter(g, k);
		s = sl_group_add(g, it->plan.sql, k, SL_STEP_AHEAD, 0, NULL);
		s->n = it->plan.n_params;
		s->ext = it->plan.params;
		it->ahead = SL_AHEAD_SENT;
		sl_group_queue_leave(g, k);
	}
	return k - i;
}

/* ---- the handler's side ---------------------------------------------------- */

PGresult *
sl_job_exec(struct sl_job_ctx *ctx, const char *sql, int n_params, const char *const *params)
{
	struct sl_executor *ex = ctx->executor;
	struct sl_group *g;
	struct sl_item *it;
	struct sl_pipe_step *s;
	PGresult *res;

	if (ex == NULL)
		return PQexecParams(ctx->conn, sql, n_params, NULL, params, NULL, NULL, 0);
	g = ex->group;
	if (g != NULL && (g->pipe.lost || g->replay))
		return NULL;
	if (g != NULL && g->cur < g->n_items) {
		it = &g->items[g->cur];
		if (it->ahead == SL_AHEAD_SENT) {
			if (!plan_matches(&it->plan, sql, n_params, params))
				return sl_group_plan_broken(g, it);
			it->ahead = SL_AHEAD_USED;
			res = it->ahead_res;
			it->ahead_res = NULL;
			return res;
		}
		if (g->cur + 1 < g->n_items && g->items[g->cur + 1].ahead != SL_AHEAD_NONE)
			return sl_group_plan_broken(g, it);
	}
	if (g == NULL || g->pipe.n == 0)
		return sl_pgconn_exec(&ex->pg, sql, n_params, params);
	/* The executor's queued statements go first, in the same round trip. */
	s = sl_group_add(g, sql, g->cur, SL_STEP_HANDLER, 0, NULL);
	s->n = n_params;
	s->ext = params;
	g->handler_res = NULL;
	sl_group_flush(ex, g);
	res = g->handler_res;
	g->handler_res = NULL;
	return res;
}

void
sl_group_item_ctx(const struct sl_item *it, struct sl_job_ctx *ctx)
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
	struct sl_item *it = ctx->job_private;
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
