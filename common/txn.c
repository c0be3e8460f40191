/* txn.c -- one group of jobs, one transaction: this is where exactly-once
 * effects come from.
 *
 * A job runs in a PostgreSQL transaction: the handler does its work, then
 * the job's ledger row (sluice.jobs, keyed by source and id) is written
 * with the finished result event, and the transaction commits. That write
 * is the job's only one to the ledger, and it refuses a row that is final
 * already (succeeded, rejected): a redelivered job, or one that another
 * worker finished meanwhile, fails there (SQLSTATE SL001), its effects roll
 * back, and its stored result is published again, byte for byte. Two
 * transactions racing on one job are serialised by the row's unique key:
 * the second write waits for the first transaction and then finds the row
 * final. So a duplicate runs its handler in vain, and a fresh job (the
 * common case) costs one ledger write instead of a claim and an update.
 *
 * Several jobs may share one transaction (limits.max_batch). A group's
 * first try (SL_TXN_OPTIMISTIC) has no savepoints: subtransactions are what
 * a group costs the server most, and most groups succeed whole. A job
 * there that does not succeed, unless it is the first of its transaction,
 * rolls the group back and it runs again (*replay) with a savepoint per
 * job, so a job that fails rolls back alone and its neighbours still
 * commit. A job that hits a transient error ends the group there: the jobs
 * before it commit, it and the ones after it are tried again after a
 * backoff (job.c), so jobs of one key still take effect in offset order.
 * A rejected or failed job is undone whole and its outcome written after
 * that, so the handler runs without a savepoint of its own.
 *
 * The branches of a group, each with a test in tests/pg/test_txn.c:
 *   commit     every job done: their ledger writes go with the COMMIT
 *   split      a job would wait for a lock: the jobs before it commit, it
 *              starts the next transaction (queued with that COMMIT)
 *   rollback   a job rejected or failed: back to its savepoint, its
 *              outcome written after
 *   final      the ledger refuses the write (SL001): the job takes the
 *              stored result
 *   lost       the connection fails before or after COMMIT: the group is
 *              lost as a whole and the ledger says on the next attempt
 *              what committed
 *   replay     a job other than the first failed in the optimistic try:
 *              roll back, run again with savepoints; a handler broke its
 *              plan, or a ledger write failed after later jobs' statements
 *              went ahead: roll back, run again without plans
 *
 * Not for: sending statements (group.c, pgpipe.c), retries and waits
 * (job.c). Executor threads.
 */
#include "txn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "group.h"
#include "jobsql.h"

/* How an item's turn in its group ended. */
enum item_end {
	ITEM_DONE,        /* outcome queued or recorded (committed with the group) */
	ITEM_RETRY,       /* transient: this and later items go again */
	ITEM_SPLIT,       /* a later item would wait for a lock: commit the group
	                   * so far and start the next one with it */
	ITEM_BROKEN,      /* the transaction is lost: the whole group goes again */
};

int
sl_txn_connect(struct sl_executor *ex, char *errbuf, size_t errbuf_size)
{
	const struct sl_config *cfg = ex->w->cfg;
	long lock_ms = (long)(cfg->lock_timeout * 1000 + 0.5);
	long idle_ms = (long)(cfg->idle_in_transaction_timeout * 1000 + 0.5);
	char bounds[128];

	/* The bounds (config.h): no lock wait and no open transaction of ours
	 * lasts longer, so a frozen or cut-off worker holds the others' jobs
	 * up for that long at most. Set for the session, or, behind a
	 * transaction pooler whose sessions are not ours, for each
	 * transaction: sl_sql_bounds after every BEGIN (group.c), with these
	 * params, and no named statement is prepared. */
	snprintf(bounds, sizeof(bounds), "set lock_timeout = %ld; set idle_in_transaction_session_timeout = %ld",
	         lock_ms, idle_ms);
	snprintf(ex->bounds_ms[0], sizeof(ex->bounds_ms[0]), "%ld", lock_ms);
	snprintf(ex->bounds_ms[1], sizeof(ex->bounds_ms[1]), "%ld", idle_ms);
	ex->bounds[0] = ex->bounds_ms[0];
	ex->bounds[1] = ex->bounds_ms[1];
	ex->pg.unnamed = cfg->pg_pooled;
	return sl_pgconn_open(&ex->pg, cfg->pg_conninfo, cfg->pg_pooled ? NULL : bounds, sl_sql_framework,
	                      SL_SQL_N_FRAMEWORK, errbuf, errbuf_size);
}

/* Settles items[index], whose ledger write failed with `error` (classified
 * cls), waiting for every statement. A job that is final already (`final`)
 * rolls back and takes its stored result; transient errors go again;
 * anything else fails the job; a lost transaction takes the group with it. */
static enum item_end
settle(struct sl_executor *ex, struct sl_group *g, size_t index, enum sl_pg_class cls, int final,
       const char *error)
{
	struct sl_item *it = &g->items[index];
	char errbuf[1024];

	free(it->pending);
	it->pending = NULL;
	if (final) {
		/* Finished by an earlier delivery or another worker: this run's
		 * effects roll back and the stored result goes out unchanged. */
		if (sl_group_undo(ex, g, index, errbuf, sizeof(errbuf)) < 0 ||
		    sl_outcome_take_stored(ex, it, &cls, errbuf, sizeof(errbuf)) < 0) {
			snprintf(it->message, sizeof(it->message), "%s", errbuf);
			return ITEM_BROKEN;
		}
		return ITEM_DONE;
	}
	sl_metrics_counter_inc(ex->w->ops.m_pg[cls == SL_PG_TRANSIENT ? 0 : cls == SL_PG_UNAVAILABLE ? 2 : 1]);
	snprintf(it->code, sizeof(it->code), "%s",
	         cls == SL_PG_TRANSIENT ? "db_transient" : cls == SL_PG_UNAVAILABLE ? "db_unavailable" : "db_error");
	snprintf(it->message, sizeof(it->message), "%.1000s", error);
	if (sl_group_undo(ex, g, index, errbuf, sizeof(errbuf)) < 0) {
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
		return g->grouped && index > g->start && strncmp(it->message, "55P03", 5) == 0 ? ITEM_SPLIT
		                                                                                : ITEM_RETRY;
	if (sl_outcome_record_failed(ex, it, &cls, errbuf, sizeof(errbuf)) < 0) {
		snprintf(it->message, sizeof(it->message), "%s", errbuf);
		return ITEM_BROKEN;
	}
	sl_outcome_dead_letter(it);
	return ITEM_DONE;
}

/* Settles items[index] whose job type's role or statement_timeout could
 * not be set (a role that does not exist, or that sluice's user may not
 * take): a deployment mistake, not the job's. It is undone and waits, no
 * attempt counted; the jobs before it commit. */
static enum item_end
enter_failed(struct sl_executor *ex, struct sl_group *g, size_t index)
{
	struct sl_item *it = &g->items[index];
	char errbuf[1024];

	free(it->pending);
	it->pending = NULL;
	snprintf(it->code, sizeof(it->code), "%s", SL_ERR_HANDLER_UNAVAILABLE);
	snprintf(it->message, sizeof(it->message), "could not take job type \"%.200s\"'s role or "
	         "statement_timeout: %.700s", it->jt->conf->type, g->fail_error);
	it->wait = 1;
	if (sl_group_undo(ex, g, index, errbuf, sizeof(errbuf)) < 0) {
		snprintf(it->message, sizeof(it->message), "%s", errbuf);
		return ITEM_BROKEN;
	}
	return ITEM_RETRY;
}

/* Returns 1 when items[index] can be undone alone: the group has a
 * savepoint per job, or it is the first of its transaction. */
static int
alone_so_far(const struct sl_group *g, size_t index)
{
	return !g->grouped || g->savepoints || index == g->start;
}

/* The length of the item's Kafka key, which its result carries too. */
static size_t
key_len(const struct sl_item *it)
{
	return it->job != NULL && it->job->msg != NULL ? it->job->msg->key_len : 0;
}

/* Runs the handler of items[index] and queues its ledger write (ITEM_DONE),
 * or undoes it and says why not. A rejected or failed job is undone whole
 * and its outcome written after that, so that its partial writes vanish
 * without a savepoint of its own. When a queued statement failed meanwhile
 * (g->failed), or the handler broke its plan (g->replay), the outcome is
 * void and nothing is queued. */
static enum item_end
run_handler(struct sl_executor *ex, struct sl_group *g, size_t index)
{
	struct sl_item *it = &g->items[index];
	const struct sl_handler *h = it->jt->handler;
	struct sl_job_ctx ctx = { 0 };
	enum sl_outcome outcome;
	char *result = NULL;
	size_t len;
	int sent_ahead;

	sl_group_item_ctx(it, &ctx);
	ctx.conn = ex->pg.conn;
	ctx.executor = ex;
	g->cur = index;
	sent_ahead = it->ahead != SL_AHEAD_NONE;
	if (!sent_ahead)
		sl_group_queue_enter(g, index); /* goes with the handler's first statement */
	outcome = h->run(&ctx);
	if (it->ahead == SL_AHEAD_SENT && g->failed < 0 && !g->pipe.lost)
		sl_group_plan_broken(g, it); /* it did not send what it said */
	if (outcome == SL_OUTCOME_SUCCEEDED) {
		/* A result the result topic would refuse could never be
		 * published once the ledger held it: its partition would stop
		 * there for good. Such a job fails instead, its effects undone. */
		result = sl_outcome_result(ex, &it->ev, "succeeded", ctx.output, NULL, NULL);
		if ((len = strlen(result)) > (size_t)ex->w->cfg->max_result_bytes) {
			outcome = sl_job_fail(&ctx, SL_OUTCOME_FAILED, SL_ERR_RESULT_TOO_LARGE,
			                      "its result event is %zu bytes, more than limits.max_result_bytes (%d)",
			                      len, ex->w->cfg->max_result_bytes);
		} else if (it->jt->result_topic_max > 0 &&
		           len + key_len(it) + SL_RECORD_OVERHEAD > (size_t)it->jt->result_topic_max) {
			outcome = sl_job_fail(&ctx, SL_OUTCOME_FAILED, SL_ERR_RESULT_TOO_LARGE,
			                      "its result event is %zu bytes, more than its result topic \"%s\" takes "
			                      "(max.message.bytes %d)",
			                      len, it->jt->conf->result_topic, it->jt->result_topic_max);
		}
		if (outcome != SL_OUTCOME_SUCCEEDED) {
			free(result);
			result = NULL;
		}
	}
	if (outcome != SL_OUTCOME_SUCCEEDED && g->failed < 0 && !g->pipe.lost && !g->replay &&
	    !alone_so_far(g, index))
		g->replay = SL_TXN_SAVEPOINTS; /* it cannot be undone alone */
	if (g->failed >= 0 || g->replay) {
		json_decref(ctx.output);
		free(result);
		return ITEM_DONE;
	}

	switch (outcome) {
	case SL_OUTCOME_SUCCEEDED:
		it->pending_status = SL_JOB_SUCCEEDED;
		it->pending = result;
		json_decref(ctx.output);
		if (!sent_ahead)
			sl_group_queue_leave(g, index);
		sl_group_queue_record(g, index);
		break;
	case SL_OUTCOME_REJECTED:
	case SL_OUTCOME_FAILED:
		json_decref(ctx.output);
		if (outcome == SL_OUTCOME_REJECTED) {
			it->pending_status = SL_JOB_REJECTED;
			it->pending = sl_outcome_result(ex, &it->ev, "rejected", NULL, ctx.error_code,
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
			it->pending = sl_outcome_result(ex, &it->ev, "failed", NULL, it->code, it->message);
		}
		sl_group_queue_undo(g, index);
		sl_group_queue_record(g, index);
		break;
	case SL_OUTCOME_RETRY:
	default:
		json_decref(ctx.output);
		sl_group_queue_undo(g, index);
		/* A split's undo goes with the COMMIT of the jobs before it. */
		if (g->grouped && index > g->start && strcmp(ctx.sqlstate, "55P03") == 0)
			return ITEM_SPLIT;
		/* The undo goes with what the handler did not send. */
		sl_group_flush(ex, g);
		if (g->failed >= 0)
			return ITEM_DONE;
		snprintf(it->code, sizeof(it->code), "%s", *ctx.error_code ? ctx.error_code : "transient");
		snprintf(it->message, sizeof(it->message), "%s", ctx.error_message);
		/* A handler's statement that PostgreSQL could not judge is no
		 * attempt of the job's; a handler's own wish to retry is. */
		it->wait = ctx.wait || PQstatus(ex->pg.conn) != CONNECTION_OK ||
		           (*ctx.sqlstate && sl_pg_classify_sqlstate(ctx.sqlstate) == SL_PG_UNAVAILABLE);
		it->retry_after = ctx.retry_after;
		sl_metrics_counter_inc(ex->w->ops.m_pg[it->wait ? 2 : 0]);
		return ITEM_RETRY;
	}
	return ITEM_DONE;
}

/* Forgets every outcome of the group's jobs: its transaction did not commit. */
static void
forget_outcomes(struct sl_item *items, size_t n)
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

/* After items[k] ended with `end`, queues what the next item starts with
 * and returns that item's index, or SL_NO_ITEM when the group stops at
 * items[k]. A split (ITEM_SPLIT) commits the items before items[k] and
 * begins the next transaction with items[k]. In a chain (limits.max_batch
 * 1, several jobs taken at once) each job commits alone, and its COMMIT
 * goes to the server with the next job's BEGIN and handler statement: one
 * round trip per job instead of two. */
static size_t
advance(struct sl_executor *ex, struct sl_group *g, size_t k, enum item_end end, int chain)
{
	if (end == ITEM_SPLIT && !atomic_load(&ex->w->abandon)) {
		sl_group_add(g, sl_sql_commit, k - 1, SL_STEP_COMMIT, 0, NULL);
		sl_group_queue_begin(g, k);
		g->start = k;
		g->timeout_set = 0;
		return k;
	}
	if (end != ITEM_DONE)
		return SL_NO_ITEM;
	if (chain) {
		sl_group_add(g, sl_sql_commit, k, SL_STEP_COMMIT, 0, NULL);
		if (k + 1 < g->n_items)
			sl_group_queue_begin(g, k + 1);
	}
	return k + 1;
}

/* Ends a group that is lost as a whole (connection, COMMIT) and returns
 * how many items from the start committed before it (a chain's, a
 * split's); the first of the rest waits, with `why`. */
static size_t
lose(struct sl_executor *ex, struct sl_group *g, const char *why, int *lost)
{
	size_t i = g->committed;

	*lost = 1;
	forget_outcomes(g->items + i, g->n_items - i);
	if (i < g->n_items) {
		/* Lost with its transaction: whether it committed (a COMMIT whose
		 * answer is lost) is the ledger's to say on the next attempt. */
		g->items[i].wait = 1;
		snprintf(g->items[i].code, sizeof(g->items[i].code), "db_unavailable");
		snprintf(g->items[i].message, sizeof(g->items[i].message), "%s", why);
	}
	sl_metrics_counter_inc(ex->w->ops.m_pg[2]);
	sl_pgconn_close(&ex->pg);
	return i;
}

/* Commits (or, when the worker abandons its jobs, rolls back) the items
 * before the one the group stopped at. Returns 0, or -1 with errbuf when
 * the transaction is lost: a COMMIT that fails with the connection lost may
 * have committed, and the next attempt's ledger write finds out, so
 * retrying is safe. */
static int
finish_early(struct sl_executor *ex, int abandoned, char *errbuf, size_t errbuf_size)
{
	enum sl_pg_class cls;
	PGresult *res;
	int rolled_back;

	if (abandoned) {
		sl_pgconn_command(&ex->pg, sl_sql_rollback, errbuf, errbuf_size);
		return 0;
	}
	res = sl_pgconn_run(&ex->pg, sl_sql_commit, 0, NULL, &cls, errbuf, errbuf_size);
	rolled_back = res != NULL && strcmp(PQcmdStatus(res), "COMMIT") != 0;
	if (rolled_back)
		snprintf(errbuf, errbuf_size, "the transaction was rolled back at COMMIT");
	PQclear(res);
	return res == NULL || rolled_back ? -1 : 0;
}

/* The weight of a group in ex->undo_share, and the share from which a
 * batch's first try has savepoints: a group that rolls back and runs again
 * costs about what savepoints cost a few groups. */
#define UNDO_SHARE_WEIGHT (1.0 / 16)
#define UNDO_SHARE_LIMIT  0.25

enum sl_txn_care
sl_txn_first_care(const struct sl_executor *ex)
{
	return ex->undo_share < UNDO_SHARE_LIMIT ? SL_TXN_OPTIMISTIC : SL_TXN_SAVEPOINTS;
}

size_t
sl_txn_run(struct sl_executor *ex, struct sl_item *items, size_t n, enum sl_txn_care *care, int *lost,
           int *replay)
{
	struct sl_worker *w = ex->w;
	struct sl_group group, *g = &group;
	char errbuf[1024];
	size_t i = 0, j, sent, next;
	enum item_end end = ITEM_DONE;
	int chain, ended = 0, abandoned = 0;

	*lost = *replay = 0;
	for (j = 0; j < n; j++) {
		items[j].wait = items[j].pg_error = 0;
		items[j].retry_after = 0;
	}
	if (sl_txn_connect(ex, errbuf, sizeof(errbuf)) < 0) {
		atomic_store(&w->ops.pg_ok, 0);
		sl_metrics_counter_inc(w->ops.m_pg[2]);
		items[0].wait = 1;
		snprintf(items[0].code, sizeof(items[0].code), "db_unavailable");
		snprintf(items[0].message, sizeof(items[0].message), "%s", errbuf);
		return 0;
	}
	memset(g, 0, sizeof(*g));
	g->pipe.cap = 12 * (int)n + 16;
	if ((g->pipe.steps = malloc((size_t)g->pipe.cap * sizeof(*g->pipe.steps))) == NULL)
		abort();
	g->items = items;
	g->n_items = n;
	g->grouped = n > 1 && sl_batch_grouped(w->cfg);
	g->savepoints = g->grouped && *care >= SL_TXN_SAVEPOINTS;
	chain = n > 1 && !g->grouped;
	g->failed = -1;
	ex->group = g;
	for (j = 0; j < n; j++)
		snprintf(items[j].attempts, sizeof(items[j].attempts), "%d", items[j].job->attempts);
	if (w->cfg->pg_pooled)
		g->bounds = ex->bounds;
	sl_group_queue_begin(g, SL_NO_ITEM);
	for (;;) {
		if (chain && i > 0 && atomic_load(&w->abandon)) {
			/* What is queued does not go: the job before commits no
			 * more. */
			for (j = g->committed; j < n; j++) {
				free(items[j].pending);
				items[j].pending = NULL;
			}
			sl_pipe_clear(&g->pipe);
			i = n;
		}
		if (i == n) {
			/* Abandoned: nothing of it is published, so nothing commits;
			 * the redelivery runs it again. */
			abandoned = atomic_load(&w->abandon);
			if (!chain || abandoned)
				sl_group_add(g, abandoned ? sl_sql_rollback : sl_sql_commit, SL_NO_ITEM,
				             abandoned ? SL_STEP_PLAIN : SL_STEP_COMMIT, 0, NULL);
			sl_group_flush(ex, g);
			if (g->failed < 0) {
				ended = 1;
				break;
			}
		} else {
			if (g->grouped && items[i].ahead == SL_AHEAD_NONE) {
				if (i > g->start && !g->timeout_set)
					sl_group_add(g, sl_sql_lock_timeout, i, SL_STEP_PLAIN, 0, NULL);
				sl_group_queue_savepoint(g, i);
				sent = *care < SL_TXN_STEPWISE ? sl_group_queue_ahead(g, i) : 0;
				if (sent > 1)
					g->windowed = 1;
				if (sent > 0)
					sl_group_flush(ex, g);
			}
			if (g->failed < 0) {
				end = run_handler(ex, g, i);
				if (g->replay)
					goto replay;
			}
			if (g->failed < 0) {
				if ((next = advance(ex, g, i, end, chain)) == SL_NO_ITEM)
					break;
				i = next;
				continue;
			}
		}
		/* A queued step failed; what came after it is void and goes again. */
		for (j = g->fail_item == SL_NO_ITEM ? 0 : g->fail_item; j < n; j++) {
			free(items[j].pending);
			items[j].pending = NULL;
		}
		sl_pipe_clear(&g->pipe);
		g->failed = -1;
		g->start = g->committed; /* a split's COMMIT may not have run */
		if (g->pipe.lost || g->fail_item == SL_NO_ITEM ||
		    (g->fail_kind != SL_STEP_RECORD && g->fail_kind != SL_STEP_ENTER)) {
			snprintf(errbuf, sizeof(errbuf), "%.1000s", g->fail_error);
			goto broken;
		}
		/* A ledger write that went after later jobs' statements cannot be
		 * undone alone: the group runs again, without plans; nor one
		 * without a savepoint: the group runs again, with them. */
		j = g->fail_item;
		if (g->windowed || !alone_so_far(g, j)) {
			g->replay = g->windowed ? SL_TXN_STEPWISE : SL_TXN_SAVEPOINTS;
			goto replay;
		}
		if (g->fail_kind == SL_STEP_ENTER)
			end = enter_failed(ex, g, j);
		else
			end = settle(ex, g, j, g->fail_cls, g->fail_final, g->fail_error);
		if ((next = advance(ex, g, j, end, chain)) == SL_NO_ITEM) {
			i = j;
			break;
		}
		i = next;
	}
	if (end == ITEM_BROKEN && !ended) {
		snprintf(errbuf, sizeof(errbuf), "%s", items[i].message);
		goto broken;
	}
	if (!ended) {
		/* Stopped early at items[i]: the ones before it commit now. */
		abandoned = atomic_load(&w->abandon);
		if (finish_early(ex, abandoned, errbuf, sizeof(errbuf)) < 0)
			goto broken;
	}
	if (PQtransactionStatus(ex->pg.conn) != PQTRANS_IDLE) {
		/* Never reached; if it were, publishing would break exactly-once. */
		snprintf(errbuf, sizeof(errbuf), "the transaction did not end");
		goto broken;
	}
	if (!abandoned)
		atomic_store(&w->ops.pg_ok, 1);
	i = abandoned ? g->committed : i;
	goto out;

replay:
	forget_outcomes(items + g->committed, n - g->committed);
	if (g->pipe.lost || sl_pgconn_command(&ex->pg, sl_sql_rollback, errbuf, sizeof(errbuf)) < 0)
		goto broken;
	sl_metrics_counter_inc(w->ops.m_replays);
	*replay = 1;
	if (*care < g->replay)
		*care = g->replay;
	i = g->committed;
	goto out;

broken:
	i = lose(ex, g, errbuf, lost);
out:
	/* The one teardown, whatever the way out. */
	if (g->grouped && !*lost && !*replay) /* a replay counts when it ends */
		ex->undo_share += (g->undone_inside - ex->undo_share) * UNDO_SHARE_WEIGHT;
	ex->group = NULL;
	sl_group_clear_ahead(g, 0);
	sl_pipe_clear(&g->pipe);
	free(g->pipe.steps);
	return i;
}
