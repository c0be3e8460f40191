/* group.h -- the statements of one group transaction, queued and sent
 * (group.c); the state txn.c keeps while it runs the group.
 *
 * Executor threads: a group belongs to the executor running it.
 */
#ifndef SL_GROUP_H
#define SL_GROUP_H

#include "outcome.h"
#include "pgpipe.h"
#include "txn.h"

#define SL_NO_ITEM ((size_t)-1)

/* What a queued statement is for: decides what its result does. */
enum sl_step_kind {
	SL_STEP_PLAIN,     /* its result only matters when it fails */
	SL_STEP_ENTER,     /* a job type's role or statement_timeout, before its handler's statement */
	SL_STEP_SAVEPOINT, /* opens the item's savepoint */
	SL_STEP_RECORD,    /* went through: the item's pending result is its job's */
	SL_STEP_COMMIT,    /* fails unless the server says COMMIT (not ROLLBACK) */
	SL_STEP_HANDLER,   /* a handler's statement: its result goes back to it */
	SL_STEP_AHEAD,     /* a handler's statement sent ahead: the result waits in the item */
};

/* One group of jobs in one transaction (a chain: one transaction each). */
struct sl_group {
	struct sl_pipe pipe;          /* the statements not sent yet */
	struct sl_item *items;
	size_t n_items;
	int grouped;                  /* one transaction (else one each) */
	int savepoints;               /* grouped, and a savepoint per job */
	size_t cur;                   /* the item whose handler runs */
	int timeout_set;              /* sl_sql_lock_timeout ran in this transaction... */
	size_t timeout_item;          /* ...inside the savepoint of the item before this one */
	int windowed;                 /* statements of several items went out ahead together */
	enum sl_txn_care replay;      /* not 0: roll back, run the group again this carefully */
	int undone_inside;            /* a job not first in its transaction was undone */
	size_t committed;             /* items[0..committed) committed (a chain, a split) */
	size_t start;                 /* the first item of the transaction being queued */
	PGresult *handler_res;        /* the handler's statement's result, for sl_job_exec() */
	const char *const *bounds;    /* postgres.pooling: sl_sql_bounds's params, sent after
	                               * every BEGIN; NULL: the session has them */
	/* The first failed step other than a handler's own statement, until
	 * the group settles it. */
	int failed;                   /* -1: none */
	size_t fail_item;
	enum sl_step_kind fail_kind;
	enum sl_pg_class fail_cls;
	int fail_final;               /* SL_SQLSTATE_FINAL: the job is final already */
	char fail_error[1024];
};

/* Queues a statement at the end (sql: static storage, or NULL and the
 * caller fills the returned step's text). */
struct sl_pipe_step *sl_group_add(struct sl_group *g, const char *sql, size_t item, enum sl_step_kind kind,
                                  int n, const char *const *params);

/* Queues what item `index`'s job type sets around its handler's statement
 * (role, statement_timeout), before it (enter) and after it (leave). */
void sl_group_queue_enter(struct sl_group *g, size_t index);
void sl_group_queue_leave(struct sl_group *g, size_t index);

/* Queues a BEGIN for item `index` (or SL_NO_ITEM) and, when the session
 * is not ours (g->bounds), the transaction's bounds in the same pipeline. */
void sl_group_queue_begin(struct sl_group *g, size_t index);

/* Queues the savepoint that item `index` runs in, if the group has them. */
void sl_group_queue_savepoint(struct sl_group *g, size_t index);

/* Queues the undo of item `index`: back to its savepoint inside a group
 * that has them, else (the first item of its transaction) the whole
 * transaction and a new one. */
void sl_group_queue_undo(struct sl_group *g, size_t index);

/* Queues the ledger write of item `index`'s pending outcome. */
void sl_group_queue_record(struct sl_group *g, size_t index);

/* Queues the statements of items[i..) that their handlers say ahead (each
 * in its savepoint; items[i]'s is queued already), until one cannot say.
 * Returns how many items it queued. */
size_t sl_group_queue_ahead(struct sl_group *g, size_t i);

/* Sends what is queued in one round trip and applies every result: a
 * record that went through gives its item's job its result, a COMMIT moves
 * g->committed; the first failure (not a handler's own statement) stays in
 * g->failed for txn.c to settle, a lost connection as one of no item. */
void sl_group_flush(struct sl_executor *ex, struct sl_group *g);

/* Queues the undo of item `index` and sends it with what is queued.
 * Returns 0, or -1 with the failure in errbuf (g->failed cleared). */
int sl_group_undo(struct sl_executor *ex, struct sl_group *g, size_t index, char *errbuf, size_t errbuf_size);

/* Drops what items from `from` on sent ahead: it is void. */
void sl_group_clear_ahead(struct sl_group *g, size_t from);

/* Notes that item it's handler sent what its plan did not say: the group
 * runs again without plans (g->replay = SL_TXN_STEPWISE). Returns NULL, the handler's result. */
PGresult *sl_group_plan_broken(struct sl_group *g, const struct sl_item *it);

/* Fills the handler's view of item it (ctx zeroed by the caller). */
void sl_group_item_ctx(const struct sl_item *it, struct sl_job_ctx *ctx);

#endif
