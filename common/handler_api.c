/* handler_api.c -- <sluice/handler.h>, the public handler API, over the
 * executor's job context.
 *
 * A sluice_job_t is a struct sl_job_ctx and a sluice_plan_t a struct
 * sl_plan (handler_int.h); this file turns the public calls into the
 * runtime's: the accessors, the outcome helpers, and sluice_job_exec(),
 * which keeps a handler from ending the job's transaction. It also adapts a
 * public handler to the runtime's struct sl_handler (sl_api_run and
 * sl_api_plan), which is where the memory the accessors hand out is
 * released. Also here: sl_job_fail() and sl_job_sql_error(), which fill a
 * job's error in one voice for every handler. Not for: running jobs or
 * transactions (job.c), loading plugins (plugin.c) or business logic.
 *
 * Every function here runs on the thread running the job, during its
 * handler's call.
 */
#include "handler_int.h"

#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "event.h"
#include "json.h"
#include "pg.h"

#define CODE_TRANSACTION_CONTROL "transaction_control"

/* The conversions between the public opaque types and the runtime's. */
static struct sl_job_ctx *
ctx_of(sluice_job_t *job)
{
	assert(job != NULL);
	return (struct sl_job_ctx *)(void *)job;
}

static const struct sl_job_ctx *
cctx_of(const sluice_job_t *job)
{
	assert(job != NULL);
	return (const struct sl_job_ctx *)(const void *)job;
}

static sluice_job_t *
job_of(struct sl_job_ctx *ctx)
{
	return (sluice_job_t *)(void *)ctx;
}

_Static_assert(sizeof(((struct sl_job_ctx *)0)->error_code) == 64, "the header promises 63-byte codes");
_Static_assert(sizeof(((struct sl_job_ctx *)0)->error_message) == 512, "the header promises 511-byte messages");

/* ---- the contract's helpers ---------------------------------------------- */

/* Removes trailing newlines and spaces, which libpq leaves on its messages. */
static void
trim_right(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
}

static enum sl_outcome
vfail(struct sl_job_ctx *ctx, enum sl_outcome outcome, const char *code, const char *fmt, va_list ap)
{
	snprintf(ctx->error_code, sizeof(ctx->error_code), "%s", code ? code : SL_ERR_HANDLER_ERROR);
	vsnprintf(ctx->error_message, sizeof(ctx->error_message), fmt, ap);
	return outcome;
}

/* Sets ctx->error_code to `code` (truncated to fit) and ctx->error_message
 * from fmt, and returns `outcome`. Leaves ctx->output alone: handlers set it
 * only once they have succeeded. This function can't fail. */
enum sl_outcome
sl_job_fail(struct sl_job_ctx *ctx, enum sl_outcome outcome, const char *code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(ctx, outcome, code, fmt, ap);
	va_end(ap);
	return outcome;
}

/* Classifies a failed command on ctx->conn and fills the job's error with
 * code "db_error" and `could not WHAT (SQLSTATE xxxxx): server's words`.
 * The server's words are its primary message when the result has one, else
 * libpq's message on the connection (lost connection, out of memory).
 * Returns RETRY for transient failures and when PostgreSQL cannot judge now
 * (the executor tells the two apart by ctx->sqlstate and the connection),
 * and FAILED for everything else, including a result that turns out to be
 * a success (a caller's mistake is not worth retrying). Does not
 * PQclear(res). */
enum sl_outcome
sl_job_sql_error(struct sl_job_ctx *ctx, const PGresult *res, const char *what)
{
	enum sl_pg_class cls = sl_pg_classify(ctx->conn, res);
	const char *state = sl_pg_sqlstate(res);
	const char *words = NULL;
	char msg[384];

	snprintf(ctx->sqlstate, sizeof(ctx->sqlstate), "%s", state);
	if (res != NULL)
		words = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	if (words == NULL || *words == '\0')
		words = ctx->conn ? PQerrorMessage(ctx->conn) : NULL;
	if (words == NULL || *words == '\0')
		words = "no error message";
	snprintf(msg, sizeof(msg), "%s", words);
	trim_right(msg);
	return sl_job_fail(ctx, cls == SL_PG_TRANSIENT || cls == SL_PG_UNAVAILABLE ? SL_OUTCOME_RETRY : SL_OUTCOME_FAILED,
	                   "db_error", "could not %s (SQLSTATE %s): %s", what,
	                   *state ? state : "none", msg);
}

/* ---- transaction control -------------------------------------------------- */

/* Skips spaces and comments: `-- ...` to the end of the line and slash-star
 * comments, which nest in PostgreSQL. An unterminated comment runs to the
 * end of the text. */
static const char *
skip_blank(const char *s)
{
	for (;;) {
		while (isspace((unsigned char)*s))
			s++;
		if (s[0] == '-' && s[1] == '-') {
			s += strcspn(s, "\n");
		} else if (s[0] == '/' && s[1] == '*') {
			int depth = 0;

			do {
				if (s[0] == '/' && s[1] == '*') {
					depth++;
					s += 2;
				} else if (s[0] == '*' && s[1] == '/') {
					depth--;
					s += 2;
				} else {
					s++;
				}
			} while (depth > 0 && *s != '\0');
		} else {
			return s;
		}
	}
}

/* Returns the length of the identifier-like word at s (letters, digits, _
 * and $, as PostgreSQL's unquoted identifiers). */
static size_t
word_len(const char *s)
{
	size_t n = 0;

	while (isalnum((unsigned char)s[n]) || s[n] == '_' || s[n] == '$')
		n++;
	return n;
}

int
sl_sql_is_transaction_control(const char *sql)
{
	static const char *const words[] = { "begin", "start", "commit", "end", "rollback", "abort",
		                             "savepoint", "release" };
	const char *s;
	size_t i, n;

	if (sql == NULL)
		return 0;
	s = skip_blank(sql);
	n = word_len(s);
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (n == strlen(words[i]) && strncasecmp(s, words[i], n) == 0)
			return 1;
	if (n == 7 && strncasecmp(s, "prepare", 7) == 0) {
		s = skip_blank(s + n);
		n = word_len(s);
		return n == 11 && strncasecmp(s, "transaction", 11) == 0;
	}
	return 0;
}

/* Marks the job as one that tried to end its transaction; the first reason
 * stays. */
static void
set_violation(struct sl_job_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
set_violation(struct sl_job_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	if (ctx->violation[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(ctx->violation, sizeof(ctx->violation), fmt, ap);
	va_end(ap);
}

/* ---- the public API -------------------------------------------------------- */

const char *
sluice_job_id(const sluice_job_t *job)
{
	return cctx_of(job)->job_id;
}

const char *
sluice_job_source(const sluice_job_t *job)
{
	return cctx_of(job)->job_source;
}

const char *
sluice_job_type(const sluice_job_t *job)
{
	return cctx_of(job)->job_type;
}

const char *
sluice_job_subject(const sluice_job_t *job)
{
	return cctx_of(job)->job_subject;
}

const char *
sluice_job_time(const sluice_job_t *job)
{
	return cctx_of(job)->job_time;
}

json_t *
sluice_job_data(const sluice_job_t *job)
{
	return cctx_of(job)->data;
}

/* Kept in ctx->data_text until sl_api_run or sl_api_plan returns. */
const char *
sluice_job_data_text(sluice_job_t *job)
{
	struct sl_job_ctx *ctx = ctx_of(job);

	if (ctx->data_text == NULL)
		ctx->data_text = json_dumps(ctx->data, JSON_COMPACT | JSON_ENCODE_ANY);
	return ctx->data_text;
}

const void *
sluice_job_key(const sluice_job_t *job, size_t *len)
{
	const struct sl_job_ctx *ctx = cctx_of(job);

	*len = ctx->key ? ctx->key_len : 0;
	return ctx->key;
}

int
sluice_job_attempt(const sluice_job_t *job)
{
	return cctx_of(job)->attempt;
}

int
sluice_json_integer(const json_t *v, json_int_t *out)
{
	return sl_json_int64(v, out);
}

/* Refuses transaction control before it goes out, and checks afterwards
 * that the transaction is still open. Only a statement that returned a
 * result is checked: one that never went out (a lost connection, a group
 * run again) leaves the BEGIN that goes with it unsent too. */
PGresult *
sluice_job_exec(sluice_job_t *job, const char *sql, int n_params, const char *const *params)
{
	struct sl_job_ctx *ctx = ctx_of(job);
	PGresult *res;

	if (ctx->violation[0] != '\0')
		return NULL;
	if (sql == NULL || sl_sql_is_transaction_control(sql)) {
		set_violation(ctx, "refused to run \"%.60s\" for job type \"%s\": the worker owns the job's "
		              "transaction, a handler must not begin, end or nest one",
		              sql ? sql : "(null)", ctx->job_type ? ctx->job_type : "?");
		return NULL;
	}
	res = sl_job_exec(ctx, sql, n_params, params);
	if (res != NULL && ctx->conn != NULL && PQtransactionStatus(ctx->conn) == PQTRANS_IDLE)
		set_violation(ctx, "the transaction of the job ended during \"%.60s\" of job type \"%s\": "
		              "a handler must not end it; what it committed stays", sql,
		              ctx->job_type ? ctx->job_type : "?");
	return res;
}

enum sluice_outcome
sluice_job_succeed(sluice_job_t *job, json_t *output)
{
	struct sl_job_ctx *ctx = ctx_of(job);

	json_decref(ctx->output);
	ctx->output = NULL;
	if (!json_is_object(output)) {
		json_decref(output);
		return (enum sluice_outcome)sl_job_fail(ctx, SL_OUTCOME_FAILED, SL_ERR_HANDLER_ERROR,
		                                        "could not set the output of job type \"%s\": %s",
		                                        ctx->job_type ? ctx->job_type : "?",
		                                        output ? "it is not a JSON object" : "out of memory");
	}
	ctx->output = output; /* stolen */
	return SLUICE_SUCCEEDED;
}

enum sluice_outcome
sluice_job_reject(sluice_job_t *job, const char *code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(ctx_of(job), SL_OUTCOME_REJECTED, code, fmt, ap);
	va_end(ap);
	return SLUICE_REJECTED;
}

enum sluice_outcome
sluice_job_fail(sluice_job_t *job, const char *code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(ctx_of(job), SL_OUTCOME_FAILED, code, fmt, ap);
	va_end(ap);
	return SLUICE_FAILED;
}

enum sluice_outcome
sluice_job_retry(sluice_job_t *job, const char *code, double after, const char *fmt, ...)
{
	struct sl_job_ctx *ctx = ctx_of(job);
	va_list ap;

	va_start(ap, fmt);
	vfail(ctx, SL_OUTCOME_RETRY, code, fmt, ap);
	va_end(ap);
	ctx->retry_after = after > 0 ? after : 0;
	return SLUICE_RETRY;
}

enum sluice_outcome
sluice_job_sql_error(sluice_job_t *job, const PGresult *res, const char *what)
{
	return (enum sluice_outcome)sl_job_sql_error(ctx_of(job), res, what);
}

int
sluice_plan_set(sluice_plan_t *plan, const char *sql, int n_params, const char *const *params)
{
	struct sl_plan *p = (struct sl_plan *)(void *)plan;
	int i;

	if (sql == NULL || n_params < 0 || n_params > SL_PLAN_MAX_PARAMS || (n_params > 0 && params == NULL) ||
	    sl_sql_is_transaction_control(sql))
		return 0;
	p->sql = sql;
	p->n_params = n_params;
	for (i = 0; i < n_params; i++)
		p->params[i] = params[i];
	return 1;
}

const char *
sluice_plan_keep(sluice_plan_t *plan, const char *text)
{
	struct sl_plan *p = (struct sl_plan *)(void *)plan;
	size_t n = strlen(text) + 1;
	char *copy;

	if (p->buf_used > sizeof(p->buf) || n > sizeof(p->buf) - p->buf_used)
		return NULL;
	copy = p->buf + p->buf_used;
	memcpy(copy, text, n);
	p->buf_used += n;
	return copy;
}

/* ---- the adapter to struct sl_handler --------------------------------------- */

/* What a job's accessors allocated goes here, once per call. */
static void
release(struct sl_job_ctx *ctx)
{
	free(ctx->data_text);
	ctx->data_text = NULL;
}

enum sl_outcome
sl_api_run(struct sl_job_ctx *ctx)
{
	const struct sl_api_handler *api = ctx->handler_data;
	enum sluice_outcome outcome;

	assert(api != NULL && api->run != NULL);
	ctx->violation[0] = '\0';
	outcome = api->run(job_of(ctx));
	release(ctx);
	if (ctx->violation[0] != '\0') {
		/* Neither a database error nor worth a retry: the handler's
		 * own doing, every time. */
		json_decref(ctx->output);
		ctx->output = NULL;
		ctx->sqlstate[0] = '\0';
		ctx->wait = 0;
		ctx->retry_after = 0;
		return sl_job_fail(ctx, SL_OUTCOME_FAILED, CODE_TRANSACTION_CONTROL, "%s", ctx->violation);
	}
	switch (outcome) {
	case SLUICE_SUCCEEDED:
	case SLUICE_REJECTED:
	case SLUICE_FAILED:
	case SLUICE_RETRY:
		return (enum sl_outcome)outcome;
	}
	json_decref(ctx->output);
	ctx->output = NULL;
	return sl_job_fail(ctx, SL_OUTCOME_FAILED, SL_ERR_HANDLER_ERROR,
	                   "the handler of job type \"%s\" returned %d, which is no outcome",
	                   ctx->job_type ? ctx->job_type : "?", (int)outcome);
}

int
sl_api_plan(struct sl_job_ctx *ctx, struct sl_plan *plan)
{
	const struct sl_api_handler *api = ctx->handler_data;
	int rc;

	assert(api != NULL);
	if (api->plan == NULL)
		return 0;
	plan->buf_used = 0;
	rc = api->plan(job_of(ctx), (sluice_plan_t *)(void *)plan);
	release(ctx);
	return rc == 1 && plan->sql != NULL;
}
