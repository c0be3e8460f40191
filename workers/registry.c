/* registry.c -- the table of job handlers and the helpers handlers report with.
 *
 * The table maps the handler names that worker.conf uses to the functions in
 * workers/<family>.c; adding a job family means adding its rows here. Also
 * here: sl_job_fail() and sl_job_sql_error(), which fill a job's error in one
 * voice for every handler. Not for: running jobs or transactions (the
 * executor) or any business logic (the family files).
 */
#include "registry.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "handlers.h"
#include "pg.h"

/* Read-only after compilation, so every thread may read it without locks. */
static const struct sl_handler handlers[] = {
	{ "ledger.open", sl_ledger_open, NULL, NULL },
	{ "ledger.transfer", sl_ledger_transfer, sl_ledger_transfer_plan, NULL },
};

#define N_HANDLERS (sizeof(handlers) / sizeof(handlers[0]))

/* Returns the handler named `name`, or NULL (also for a NULL name). A linear
 * search: the table is small and is consulted once per job type at start. */
const struct sl_handler *
sl_registry_find(const char *name)
{
	size_t i;

	if (name == NULL)
		return NULL;
	for (i = 0; i < N_HANDLERS; i++)
		if (strcmp(handlers[i].name, name) == 0)
			return &handlers[i];
	return NULL;
}

/* Returns the whole table (borrowed, static) and its size in *n. */
const struct sl_handler *
sl_registry_all(size_t *n)
{
	*n = N_HANDLERS;
	return handlers;
}

/* Removes trailing newlines and spaces, which libpq leaves on its messages. */
static void
trim_right(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
}

/* Sets ctx->error_code to `code` (truncated to fit) and ctx->error_message
 * from fmt, and returns `outcome`. Leaves ctx->output alone: handlers set it
 * only once they have succeeded. This function can't fail. */
enum sl_outcome
sl_job_fail(struct sl_job_ctx *ctx, enum sl_outcome outcome, const char *code, const char *fmt, ...)
{
	va_list ap;

	snprintf(ctx->error_code, sizeof(ctx->error_code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(ctx->error_message, sizeof(ctx->error_message), fmt, ap);
	va_end(ap);
	return outcome;
}

/* Classifies a failed command on ctx->conn and fills the job's error with
 * code "db_error" and `could not WHAT (SQLSTATE xxxxx): server's words`.
 * The server's words are its primary message when the result has one, else
 * libpq's message on the connection (lost connection, out of memory).
 * Returns RETRY for transient failures and when PostgreSQL cannot judge now
 * (the executor tells the two apart by ctx->sqlstate and the connection),
 * and FAILED for everything else,
 * including a result that turns out to be a success (a caller's mistake is
 * not worth retrying). Does not PQclear(res). */
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
