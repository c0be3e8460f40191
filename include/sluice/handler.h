/* sluice/handler.h -- the whole contract between sluice and a C job handler.
 *
 * A handler is the business logic of one job type. sluice-worker consumes a
 * job (a CloudEvent) from Kafka, checks its data against the type's JSON
 * Schema, opens a PostgreSQL transaction on one of its executor connections
 * and calls the handler. The handler runs its statements on that connection,
 * through sluice_job_exec(), and returns an outcome; the worker then writes
 * the job's outcome to its ledger (sluice.jobs) in the same transaction and
 * commits, so that the handler's effects happen exactly once even though a
 * job may be delivered more than once. Not here: transaction control, the
 * ledger, retries, Kafka: the worker owns them all.
 *
 * Built-in handlers and plugins use this header alike. A plugin is a shared
 * object named in worker.conf as
 *
 *     handler = "plugin:PATH.so:NAME";
 *
 * (PATH relative to the configuration file's folder). At start, and for
 * `sluice-worker -n`, the worker loads each .so once (dlopen, RTLD_NOW |
 * RTLD_LOCAL), checks that it was built for this ABI (SLUICE_PLUGIN below)
 * before it calls anything, calls sluice_plugin_init() if the plugin defines
 * it, and looks up NAME (a sluice_handler_fn) and NAME_plan (optional, a
 * sluice_plan_fn). A plugin is never unloaded. Its constructors run at
 * dlopen, before the ABI check: put start-up work in sluice_plugin_init().
 * Build one with
 *
 *     cc -shared -fPIC -o orders.so orders.c $(pkg-config --cflags --libs sluice)
 *
 * The API's symbols are exported by the sluice-worker executable; there is no
 * library to link.
 *
 * OUTCOMES. A handler returns one of:
 *
 *   SLUICE_SUCCEEDED  effects done; the output (sluice_job_succeed) goes into
 *                     the result event
 *   SLUICE_REJECTED   a business refusal (insufficient funds): the worker
 *                     undoes the job's writes and records the refusal with
 *                     its code; not retried, not dead-lettered
 *   SLUICE_FAILED     a permanent error (data the schema could not catch,
 *                     SQLSTATE classes 22 and 23): undone, recorded as
 *                     failed, sent to the dead-letter topic
 *   SLUICE_RETRY      a transient error (serialization failure, deadlock, lost
 *                     connection): undone and retried with backoff
 *
 * A job may run more than once (a redelivery, a retry, a group run again):
 * only its transaction's effects count, and they commit at most once. So a
 * handler has no effects outside PostgreSQL (no files, no HTTP calls), or
 * only idempotent ones.
 *
 * THREADS. Handlers run concurrently on several executor threads, each job on
 * one thread from start to end. A handler keeps no mutable global state
 * (or guards it itself), and locks rows in a deterministic order (e.g. by
 * id) so that concurrent jobs do not deadlock. Every function below that
 * takes a job may be called only by the thread running that job, during the
 * call of its handler (or plan function); sluice_plugin_init() runs once,
 * alone, before any job.
 *
 * OWNERSHIP. A job and all it hands out (strings, the data json_t, the key)
 * are borrowed: valid until the handler returns, never to be freed or kept.
 * PGresults returned by sluice_job_exec() are the caller's to PQclear().
 * Functions that take a json_t say whether they steal the reference.
 *
 * COST. Each statement is a network round trip, which is most of what a job
 * costs: do the work in as few statements as possible (one call of a SQL
 * function is best), and say that statement ahead with a plan function so a
 * group of jobs goes to the server together.
 */
#ifndef SLUICE_HANDLER_H
#define SLUICE_HANDLER_H

#include <stddef.h>

#include <jansson.h>
#include <libpq-fe.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this contract. It changes whenever a plugin built against
 * an older header could misbehave with a newer worker (a function's meaning,
 * a type's layout); the worker refuses plugins of any other version. */
#define SLUICE_ABI_VERSION 1u

/* Exported from a plugin even when it is built with -fvisibility=hidden. */
#if defined(__GNUC__)
#define SLUICE_EXPORT __attribute__((visibility("default")))
#else
#define SLUICE_EXPORT
#endif

#if defined(__GNUC__)
#define SLUICE_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SLUICE_PRINTF(f, a)
#endif

/* ---- the plugin's declaration ------------------------------------------ */

#define SLUICE_PLUGIN_MAGIC 0x736c6963u /* "slic" */

/* What a plugin says about itself; the worker reads it before anything else. */
struct sluice_plugin_magic {
	unsigned int magic;            /* SLUICE_PLUGIN_MAGIC */
	unsigned int abi_version;      /* SLUICE_ABI_VERSION of the header it was built with */
	unsigned int size;             /* sizeof(struct sluice_plugin_magic) */
	unsigned int jansson_major;    /* JANSSON_MAJOR_VERSION: json_t crosses the boundary */
};

/* Write `SLUICE_PLUGIN;` once, at file scope, in one source file of every
 * plugin (as PostgreSQL's PG_MODULE_MAGIC): a .so without it is refused. */
#define SLUICE_PLUGIN                                                                       \
	SLUICE_EXPORT extern const struct sluice_plugin_magic sluice_plugin_magic;          \
	SLUICE_EXPORT const struct sluice_plugin_magic sluice_plugin_magic = {              \
		SLUICE_PLUGIN_MAGIC, SLUICE_ABI_VERSION, sizeof(struct sluice_plugin_magic), \
		JANSSON_MAJOR_VERSION }

/* Optional, defined by a plugin that has start-up work (read its settings,
 * check its environment). Called once per .so, after the ABI check and
 * before any job, on the worker's main thread. Returns 0, or -1 after
 * writing a one-line reason into errbuf (errbuf_size bytes, at least 256):
 * the worker then does not start and prints the reason with the
 * configuration line that named the plugin. */
SLUICE_EXPORT int sluice_plugin_init(char *errbuf, size_t errbuf_size);

/* ---- jobs ----------------------------------------------------------- */

/* One job, borrowed by its handler for the length of the call. Opaque. */
typedef struct sluice_job sluice_job_t;

enum sluice_outcome {
	SLUICE_SUCCEEDED = 0,
	SLUICE_REJECTED,
	SLUICE_FAILED,
	SLUICE_RETRY,
};

/* A handler: the function named NAME in "plugin:PATH.so:NAME". Declare yours
 * as `SLUICE_EXPORT sluice_handler_fn NAME;` before defining it, so that the
 * compiler checks its type. It returns the job's outcome after setting its
 * output (sluice_job_succeed) or its error (sluice_job_reject, _fail,
 * _retry, _sql_error); the helpers return the outcome to make that one line. */
typedef enum sluice_outcome sluice_handler_fn(sluice_job_t *job);

/* The CloudEvent's attributes (borrowed, NUL-terminated, valid until the
 * handler returns). id, source and type are never NULL; subject and time are
 * NULL when the event has none. (source, id) is the job's identity: the same
 * on every delivery, unique among jobs. */
const char *sluice_job_id(const sluice_job_t *job);
const char *sluice_job_source(const sluice_job_t *job);
const char *sluice_job_type(const sluice_job_t *job);
const char *sluice_job_subject(const sluice_job_t *job);
const char *sluice_job_time(const sluice_job_t *job);

/* The job's `data` object, already checked against the type's schema:
 * a borrowed reference, valid until the handler returns. Do not change it
 * (a plan function and the handler see the same object). */
json_t *sluice_job_data(const sluice_job_t *job);

/* The same data as compact JSON text, made on the first call and kept with
 * the job: borrowed, valid until the handler returns. NULL when out of
 * memory. Handy as a jsonb parameter: `select f($1::jsonb)`. */
const char *sluice_job_data_text(sluice_job_t *job);

/* The Kafka message's key (borrowed, not NUL-terminated) and its length in
 * *len (OUT, 0 when there is none); NULL when the message has no key. */
const void *sluice_job_key(const sluice_job_t *job, size_t *len);

/* The attempt this run is: 1 for the first, more after retries. */
int sluice_job_attempt(const sluice_job_t *job);

/* Integers as the schema counts them: JSON Schema calls 5.0 and 5e0
 * integers too. Reads v (borrowed, may be NULL) into *out (OUT: 0 on
 * failure). Returns 0, or -1 when v is not a number without a fraction
 * within int64. Any thread. */
int sluice_json_integer(const json_t *v, json_int_t *out);

/* ---- statements ------------------------------------------------------- */

/* Runs one statement on the job's connection, inside its transaction, and
 * returns its result (a new PGresult: PQclear() it), or NULL when libpq
 * returned none or the statement was refused (below); pass either to
 * sluice_job_sql_error() when it is not the success you expected.
 *
 * `sql` must stay valid and unchanged for the life of the process: a string
 * literal or a static const array. Its address names the statement, which
 * is prepared once per connection and executed by name afterwards; a
 * string built at run time would be a new statement every time and could
 * run another statement's plan. Parameters are text ($1, $2, ... with casts
 * in the SQL), NULL for SQL NULL; results come back as text. One statement
 * per call.
 *
 * The transaction belongs to the worker. A statement whose first keyword
 * (after spaces and comments, any case) is BEGIN, START, COMMIT, END,
 * ROLLBACK, ABORT, SAVEPOINT, RELEASE or PREPARE TRANSACTION is not sent:
 * this call and every later one for the job return NULL, and the job fails
 * with code "transaction_control" whatever the handler returns. As a second
 * line, a job whose transaction is found closed after one of its statements
 * fails the same way; what that statement committed cannot be undone, so
 * never try. */
PGresult *sluice_job_exec(sluice_job_t *job, const char *sql, int n_params, const char *const *params);

/* ---- outcomes --------------------------------------------------------- */

/* Sets the job's output, stealing `output` (a new reference to an object,
 * as json_pack returns: do not decref it afterwards), and returns
 * SLUICE_SUCCEEDED. When output is NULL (json_pack failed) or not an object,
 * releases it and returns SLUICE_FAILED with code "handler_error". The
 * output must not point into the job's data (json_pack's "O" would share
 * it; copy with "s" or json_deep_copy). An output that makes the result
 * event larger than limits.max_result_bytes, or than its result topic's
 * max.message.bytes takes, fails the job once the handler returns
 * ("result_too_large"), its effects undone. */
enum sluice_outcome sluice_job_succeed(sluice_job_t *job, json_t *output);

/* Set the job's error: `code` (a short stable word such as
 * "insufficient_funds", at most 63 bytes) and a message from fmt (at most
 * 511 bytes; lowercase, no final period, say what could not be done to
 * what). Each returns its outcome: SLUICE_REJECTED, SLUICE_FAILED or
 * SLUICE_RETRY. sluice_job_retry() also asks the worker to wait at least
 * `after` seconds (0: its own backoff) before the next attempt; retries
 * count towards the type's max_attempts. */
enum sluice_outcome sluice_job_reject(sluice_job_t *job, const char *code, const char *fmt, ...)
	SLUICE_PRINTF(3, 4);
enum sluice_outcome sluice_job_fail(sluice_job_t *job, const char *code, const char *fmt, ...)
	SLUICE_PRINTF(3, 4);
enum sluice_outcome sluice_job_retry(sluice_job_t *job, const char *code, double after, const char *fmt, ...)
	SLUICE_PRINTF(4, 5);

/* Turns a statement that did not do what the handler expected into an
 * outcome: classifies `res` (borrowed, not cleared; NULL when
 * sluice_job_exec returned none) by its SQLSTATE, sets the job's error with
 * code "db_error" and the message "could not WHAT (SQLSTATE xxxxx): the
 * server's words", and returns SLUICE_RETRY for transient errors
 * (serialization failures, deadlocks, a lost connection, a server that
 * cannot answer now) and SLUICE_FAILED for the rest. A handler that wants
 * to turn a particular SQLSTATE into a refusal reads it first with
 * PQresultErrorField(res, PG_DIAG_SQLSTATE). */
enum sluice_outcome sluice_job_sql_error(sluice_job_t *job, const PGresult *res, const char *what);

/* ---- plans (optional) ------------------------------------------------- */

/* Up to this many parameters in a planned statement. */
#define SLUICE_PLAN_MAX_PARAMS 8

/* Where a plan function writes its statement. Opaque. */
typedef struct sluice_plan sluice_plan_t;

/* A plan function: NAME_plan next to the handler NAME. It says ahead which
 * one statement the handler will send for this job, so that the statements
 * of a group of jobs (limits.max_batch) go to the server together: two
 * round trips for the whole group instead of two per job. It reads the
 * job's data only, never the database (the jobs before it have not run
 * yet). Returns 1 after sluice_plan_set(), when the handler will send
 * exactly that statement with those parameters and nothing else; 0 when it
 * sends none or cannot say (the handler then runs as usual). A handler
 * that sends something else costs its group a second run without plans
 * and a warning in the log. Its result is what the handler's
 * sluice_job_exec() returns. */
typedef int sluice_plan_fn(sluice_job_t *job, sluice_plan_t *plan);

/* Says the statement: `sql` as for sluice_job_exec() (static storage), and
 * n_params parameters that must stay valid until the handler returns:
 * point them into the job's data or strings, or copy them into the plan
 * with sluice_plan_keep() (not sluice_job_data_text(), whose text ends with
 * the plan function's call). Returns 1 (a plan function's "yes"), or 0 when
 * n_params is out of range or the statement is one sluice_job_exec()
 * refuses. */
int sluice_plan_set(sluice_plan_t *plan, const char *sql, int n_params, const char *const *params);

/* Copies `text` into the plan's own room (64 bytes shared by all of a plan's
 * copies) and returns the copy, valid until the handler returns; NULL when
 * it does not fit. For parameters formatted by the plan function. */
const char *sluice_plan_keep(sluice_plan_t *plan, const char *text);

#ifdef __cplusplus
}
#endif

#endif
