/* registry.h -- job handlers and the table that names them.
 *
 * A handler is the business logic of one job type. The executor calls it on
 * its own PostgreSQL connection, inside the job's transaction, once the job's
 * data has passed the type's JSON Schema. A job that turns out to be final
 * already (a redelivery) runs in vain: its effects roll back when its ledger
 * write finds the stored result. The handler only runs SQL, through
 * sl_job_exec() (never COMMIT, ROLLBACK or SAVEPOINT itself), and reports
 * the outcome:
 *
 *   SUCCEEDED  effects done; ctx->output set (a new reference, an object)
 *   REJECTED   business refusal (insufficient funds): the executor undoes
 *              the job (its partial writes vanish) and records the refusal;
 *              error code set
 *   FAILED     permanent error (bad data the schema could not catch, SQLSTATE
 *              classes 22/23): the job is undone and recorded as failed
 *   RETRY      transient error (serialization failure, deadlock, lost
 *              connection): the job is undone and retried with backoff
 *
 * Handlers run concurrently on several executor threads; they keep no mutable
 * global state. Rows must be locked in a deterministic order. Each statement
 * is a round trip, which is most of what a job costs: a handler does its
 * work in as few statements as it can (ledger.transfer calls one function),
 * and one that sends a single statement says so ahead (sl_handler.plan).
 */
#ifndef SL_REGISTRY_H
#define SL_REGISTRY_H

#include <stddef.h>
#include <jansson.h>
#include <libpq-fe.h>

enum sl_outcome {
	SL_OUTCOME_SUCCEEDED = 0,
	SL_OUTCOME_REJECTED,
	SL_OUTCOME_FAILED,
	SL_OUTCOME_RETRY,
};

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
};

typedef enum sl_outcome (*sl_handler_fn)(struct sl_job_ctx *ctx);

/* The one statement a handler will send, said before it runs. */
#define SL_PLAN_MAX_PARAMS 8
struct sl_plan {
	const char *sql;           /* static storage, as for sl_job_exec() */
	int n_params;
	const char *params[SL_PLAN_MAX_PARAMS]; /* text: into ctx->data, the ctx strings or buf */
	char buf[64];              /* room for parameters formatted here */
};

/* Optional. Says which statement run() will send, so that a group's
 * statements go to the server together, one round trip for the whole
 * group instead of one per job. Returns 1 after filling *plan when run()
 * sends exactly that one statement with those parameters and no other, 0
 * when it sends none or cannot say (run() then runs as usual). A plan is
 * made before the jobs ahead of it in the group have run: it reads the
 * job's data only, never the database. ctx is scratch: what plan writes to
 * it is thrown away. A run() that breaks its plan costs its group a second
 * run without plans (and a warning in the log). */
typedef int (*sl_plan_fn)(struct sl_job_ctx *ctx, struct sl_plan *plan);

struct sl_handler {
	const char *name;          /* as named in worker.conf, e.g. "ledger.transfer" */
	sl_handler_fn run;
	sl_plan_fn plan;           /* NULL: none */
	const void *data;          /* handed to run() and plan() as ctx->handler_data */
};

/* Returns the handler named `name`, or NULL. The table is static. */
const struct sl_handler *sl_registry_find(const char *name);

/* Returns the whole table and its size in *n. */
const struct sl_handler *sl_registry_all(size_t *n);

/* Sets ctx->error_code and a formatted ctx->error_message. Returns `outcome`
 * so that handlers can `return sl_job_fail(ctx, SL_OUTCOME_REJECTED, ...)`. */
enum sl_outcome sl_job_fail(struct sl_job_ctx *ctx, enum sl_outcome outcome, const char *code,
                            const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Runs one of the handler's statements on ctx->conn: `sql` must be a string
 * with static storage (its address names the prepared statement), params are
 * text. On an executor the statement is prepared once per connection and
 * executed by name; without one (ctx->executor NULL) it is sent with
 * PQexecParams. Returns the result (the caller PQclears it), NULL when libpq
 * returned none. Defined in common/job.c. */
PGresult *sl_job_exec(struct sl_job_ctx *ctx, const char *sql, int n_params, const char *const *params);

/* Returns the job as one JSON object (text): {"id", "source", "type",
 * "subject", "time", "data", "key", "attempt"}, "key" the Kafka key as text
 * (null when none, or not UTF-8), "attempt" 1 for the first try. Borrowed:
 * valid until the handler returns. NULL outside an executor. Defined in
 * common/job.c. */
const char *sl_job_json(struct sl_job_ctx *ctx);

/* Turns a failed libpq call into an outcome: classifies `res` (NULL when the
 * call returned no result) with sl_pg_classify(), fills the error with code
 * "db_error" and a message naming `what`, SQLSTATE and the server's words,
 * and returns RETRY or FAILED. Does not PQclear(res). */
enum sl_outcome sl_job_sql_error(struct sl_job_ctx *ctx, const PGresult *res, const char *what);

#endif
