/* handler_int.h -- the runtime's side of the handler contract.
 *
 * What the executor (txn.c, group.c) needs to call a handler: struct sl_handler, the
 * job's context struct sl_job_ctx and the helpers that fill it. Handlers
 * themselves are written against the public header <sluice/handler.h>,
 * whose opaque sluice_job_t is a struct sl_job_ctx; handler_api.c adapts
 * them to struct sl_handler (sl_api_run, sl_api_plan). The runtime holds no
 * table of handlers: the program hands its built-ins to the worker
 * (sl_worker_set_builtins) and plugins are loaded by name (plugin.c).
 *
 * The handler only runs SQL, through sl_job_exec() (never COMMIT, ROLLBACK
 * or SAVEPOINT itself), and reports the outcome:
 *
 *   SUCCEEDED  effects done; ctx->output set (a new reference, an object)
 *   REJECTED   business refusal: the executor undoes the job and records
 *              the refusal; error code set
 *   FAILED     permanent error: the job is undone and recorded as failed
 *   RETRY      transient error: the job is undone and retried with backoff
 *
 * Handlers run concurrently on several executor threads; a context belongs
 * to the thread running its job.
 */
#ifndef SL_HANDLER_INT_H
#define SL_HANDLER_INT_H

#include <stddef.h>
#include <jansson.h>
#include <libpq-fe.h>

#include <sluice/handler.h>

enum sl_outcome {
	SL_OUTCOME_SUCCEEDED = SLUICE_SUCCEEDED,
	SL_OUTCOME_REJECTED = SLUICE_REJECTED,
	SL_OUTCOME_FAILED = SLUICE_FAILED,
	SL_OUTCOME_RETRY = SLUICE_RETRY,
};

/* A job as its handler sees it; the public sluice_job_t. Zeroed, then
 * filled by the executor (or a probe) before each call. */
struct sl_job_ctx {
	PGconn *conn;              /* borrowed: the executor's connection, in a transaction */
	const char *job_source;    /* the job's identity, borrowed */
	const char *job_id;
	const char *job_type;
	const char *job_subject;   /* NULL when absent */
	const char *job_time;      /* NULL when absent */
	const char *key;           /* the Kafka key (not NUL-terminated), NULL when none */
	size_t key_len;
	int attempt;               /* 1 for the first try */
	json_t *data;              /* borrowed: the validated `data` object */
	const void *handler_data;  /* borrowed: the handler's sl_handler.data */
	void *job_private;         /* the executor's: the job behind this context */
	json_t *output;            /* OUT: new reference on SUCCEEDED, else NULL */
	char error_code[64];       /* OUT: on REJECTED, FAILED and RETRY */
	char error_message[512];
	char sqlstate[6];          /* OUT: set by sl_job_sql_error(), "" otherwise */
	int wait;                  /* OUT, with RETRY: cannot judge now (a deployment mistake such
	                            * as a missing function): no attempt counted, the job waits */
	double retry_after;        /* OUT, with RETRY: wait at least this many seconds */
	void *executor;            /* borrowed: the executor's statement cache, or NULL */
	/* Owned by handler_api.c for the length of one call of sl_api_run or
	 * sl_api_plan, which release them: */
	char *data_text;           /* sluice_job_data_text(), malloc'ed on demand */
	char violation[256];       /* non-empty: the handler tried to end the transaction;
	                            * the job fails with this message */
};

typedef enum sl_outcome (*sl_handler_fn)(struct sl_job_ctx *ctx);

/* The one statement a handler will send, said before it runs. It is the
 * public sluice_plan_t. */
#define SL_PLAN_MAX_PARAMS SLUICE_PLAN_MAX_PARAMS
struct sl_plan {
	const char *sql;           /* static storage, as for sl_job_exec() */
	int n_params;
	const char *params[SL_PLAN_MAX_PARAMS]; /* text: into ctx->data, the ctx strings or buf */
	char buf[64];              /* room for parameters formatted here */
	size_t buf_used;           /* bytes of buf taken by sluice_plan_keep() */
};

/* Optional. Says which statement run() will send (see sluice_plan_fn in
 * <sluice/handler.h>): returns 1 after filling *plan, 0 when it cannot say.
 * ctx is scratch: what plan writes to it is thrown away. */
typedef int (*sl_plan_fn)(struct sl_job_ctx *ctx, struct sl_plan *plan);

struct sl_handler {
	const char *name;          /* as named in worker.conf, e.g. "ledger.transfer" */
	sl_handler_fn run;
	sl_plan_fn plan;           /* NULL: none */
	const void *data;          /* handed to run() and plan() as ctx->handler_data */
};

/* Sets ctx->error_code and a formatted ctx->error_message. Returns `outcome`
 * so that handlers can `return sl_job_fail(ctx, SL_OUTCOME_REJECTED, ...)`.
 * Defined in handler_api.c. */
enum sl_outcome sl_job_fail(struct sl_job_ctx *ctx, enum sl_outcome outcome, const char *code,
                            const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Runs one of the handler's statements on ctx->conn: `sql` must be a string
 * with static storage (its address names the prepared statement), params are
 * text. On an executor the statement is prepared once per connection and
 * executed by name; without one (ctx->executor NULL) it is sent with
 * PQexecParams. Returns the result (the caller PQclears it), NULL when libpq
 * returned none. Does not look at what the statement is: handlers written
 * against the public header go through sluice_job_exec(), which does.
 * Defined in group.c. */
PGresult *sl_job_exec(struct sl_job_ctx *ctx, const char *sql, int n_params, const char *const *params);

/* Returns the job as one JSON object (text): {"id", "source", "type",
 * "subject", "time", "data", "key", "attempt"}, "key" the Kafka key as text
 * (null when none, not UTF-8, or holding a NUL byte), "attempt" 1 for the first try. Borrowed:
 * valid until the handler returns. NULL outside an executor. Defined in
 * group.c. */
const char *sl_job_json(struct sl_job_ctx *ctx);

/* Turns a failed libpq call into an outcome: classifies `res` (NULL when the
 * call returned no result) with sl_pg_classify(), fills the error with code
 * "db_error" and a message naming `what`, SQLSTATE and the server's words,
 * and returns RETRY or FAILED. Does not PQclear(res). Defined in
 * handler_api.c. */
enum sl_outcome sl_job_sql_error(struct sl_job_ctx *ctx, const PGresult *res, const char *what);

/* ---- handlers written against <sluice/handler.h> (handler_api.c) ------- */

/* A public-API handler, as struct sl_handler.data of a row whose run is
 * sl_api_run and whose plan is sl_api_plan (or NULL when plan is). */
struct sl_api_handler {
	sluice_handler_fn *run;
	sluice_plan_fn *plan;      /* NULL: none */
};

/* A row of a handler table for a public-API handler; `api` is a pointer to
 * a struct sl_api_handler with static storage. */
#define SL_API_HANDLER(name, api, has_plan) { (name), sl_api_run, (has_plan) ? sl_api_plan : NULL, (api) }

/* Call ((const struct sl_api_handler *)ctx->handler_data)->run or ->plan
 * with ctx as the sluice_job_t, then release what the job's accessors
 * allocated; a job whose handler tried to end the transaction comes out
 * FAILED with code "transaction_control" whatever run returned. Executor
 * threads. */
enum sl_outcome sl_api_run(struct sl_job_ctx *ctx);
int sl_api_plan(struct sl_job_ctx *ctx, struct sl_plan *plan);

/* Returns 1 when the first keyword of `sql`, after spaces and SQL comments
 * (-- to the end of the line, nested slash-star), in any case, is one that
 * ends or nests transactions: BEGIN, START, COMMIT, END, ROLLBACK, ABORT,
 * SAVEPOINT, RELEASE, or PREPARE followed by TRANSACTION; 0 otherwise, for a
 * NULL sql too. Any thread. */
int sl_sql_is_transaction_control(const char *sql);

#endif
