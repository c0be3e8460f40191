/* sqlhandler.c -- handlers that are a SQL function: handler = "sql:SCHEMA.FUNCTION".
 *
 * A job of such a type runs `SCHEMA.FUNCTION(job jsonb)` inside its
 * transaction, as one statement said ahead (sl_handler.plan), so a group of
 * them costs the same two round trips as a built-in handler's. The function
 * gets the job as an object (sl_job_json(): id, source, type, subject, time,
 * data, key, attempt) and its outcome is read back from what it returns or
 * raises:
 *
 *   a JSON object, or NULL      succeeded, the object is the result's output
 *   (SQL or JSON null)
 *   anything else               failed (invalid_output) + dead letter
 *   sluice.reject(code, msg)    SQLSTATE SL002: rejected, no dead letter
 *   sluice.retry(msg, after)    SQLSTATE SL003: retried, counting an attempt,
 *                               no sooner than `after`
 *   42883, 42501, 42P01, ...    raised by the call itself (not inside the
 *                               function): a deployment mistake (missing, or
 *                               not permitted): cannot judge now, the job
 *                               waits uncounted until it is there
 *   57014 with a timeout set    the job's own statement_timeout: retried
 *   anything else               as pg.c classes it (transient: retried;
 *                               P0001, 22xxx, 23xxx, ...: failed + dead letter)
 *
 * The job type's role and statement_timeout are set around the call by the
 * executor (job.c), as statements queued with it.
 *
 * Not for: running the transaction (job.c) or resolving other handlers.
 */
#include "sqlhandler.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "pg.h"

#define SQLSTATE_REJECT "SL002"
#define SQLSTATE_RETRY "SL003"

struct sql_handler {
	struct sl_handler h;          /* h.data points back here */
	char *function;               /* "orders.fulfil", as configured */
	char *label;                  /* "sql:orders.fulfil", for messages */
	char *sql;                    /* the call; its address names the prepared statement */
	int has_timeout;              /* the job type sets a statement_timeout */
};

/* Returns 1 when s is a plain SQL identifier we pass through unquoted:
 * PostgreSQL folds it to lower case, as it would in the user's own SQL. */
static int
plain_identifier(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 63 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return 0;
	for (i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '$'))
			return 0;
	return 1;
}

/* Runs the function on the job. */
static enum sl_outcome
sql_run(struct sl_job_ctx *ctx)
{
	const struct sql_handler *sh = ctx->handler_data;
	const char *params[1];
	const char *state, *detail, *words;
	enum sl_outcome outcome;
	PGresult *res;
	json_t *out;
	json_error_t jerr;

	params[0] = sl_job_json(ctx);
	res = sl_job_exec(ctx, sh->sql, 1, params);
	if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK) {
		if (PQntuples(res) != 1 || PQnfields(res) != 1)
			outcome = sl_job_fail(ctx, SL_OUTCOME_FAILED, SL_ERR_INVALID_OUTPUT,
			                      "%s returned %d rows of %d columns, not one value", sh->label,
			                      PQntuples(res), PQnfields(res));
		else if (PQgetisnull(res, 0, 0))
			outcome = SL_OUTCOME_SUCCEEDED;
		else if ((out = json_loads(PQgetvalue(res, 0, 0), JSON_DECODE_ANY, &jerr)) != NULL &&
		         (json_is_object(out) || json_is_null(out))) {
			/* JSON null says "nothing" as SQL NULL does. */
			if (json_is_object(out))
				ctx->output = out;
			else
				json_decref(out);
			outcome = SL_OUTCOME_SUCCEEDED;
		} else {
			outcome = sl_job_fail(ctx, SL_OUTCOME_FAILED, SL_ERR_INVALID_OUTPUT,
			                      "%s returned %s, not a JSON object or NULL", sh->label,
			                      out == NULL        ? "something that is not JSON"
			                      : json_is_array(out) ? "an array"
			                      : json_is_string(out) ? "a string"
			                      : json_is_boolean(out) ? "a boolean"
			                                             : "a number");
			json_decref(out);
		}
		PQclear(res);
		return outcome;
	}

	state = sl_pg_sqlstate(res);
	detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
	words = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (strcmp(state, SQLSTATE_REJECT) == 0) {
		outcome = sl_job_fail(ctx, SL_OUTCOME_REJECTED, detail && *detail ? detail : "rejected", "%s",
		                      words ? words : "");
	} else if (strcmp(state, SQLSTATE_RETRY) == 0) {
		ctx->retry_after = detail && *detail ? strtod(detail, NULL) : 0;
		if (!(ctx->retry_after >= 0 && ctx->retry_after <= 86400))
			ctx->retry_after = 0;
		outcome = sl_job_fail(ctx, SL_OUTCOME_RETRY, SL_ERR_RETRY_REQUESTED, "%s", words ? words : "");
	} else if ((strcmp(state, "42883") == 0 || strcmp(state, "42501") == 0 || strcmp(state, "42P01") == 0 ||
	            strcmp(state, "3F000") == 0 || strcmp(state, "42809") == 0) &&
	           (res == NULL || PQresultErrorField(res, PG_DIAG_CONTEXT) == NULL)) {
		/* The call itself failed (no context: not raised inside the
		 * function): the function is missing, or not permitted, or not
		 * a function. The deployment's mistake, not the job's: it waits
		 * for the function. The same errors inside the function's body
		 * are the function's, and fail the job like any other. */
		snprintf(ctx->sqlstate, sizeof(ctx->sqlstate), "%s", state);
		ctx->wait = 1;
		outcome = sl_job_fail(ctx, SL_OUTCOME_RETRY, SL_ERR_HANDLER_UNAVAILABLE, "%s: %s (SQLSTATE %s)",
		                      sh->label, words ? words : "no error message", state);
	} else if (strcmp(state, "57014") == 0 && sh->has_timeout) {
		/* The job's own: ctx->sqlstate stays empty, or the executor would
		 * take the cancel for one it cannot judge. */
		outcome = sl_job_fail(ctx, SL_OUTCOME_RETRY, "statement_timeout", "%s ran past its statement_timeout",
		                      sh->label);
	} else {
		char what[192];
		snprintf(what, sizeof(what), "run %s", sh->label);
		outcome = sl_job_sql_error(ctx, res, what);
	}
	PQclear(res);
	return outcome;
}

/* Its one statement, said ahead: the same call with the same argument. */
static int
sql_plan(struct sl_job_ctx *ctx, struct sl_plan *plan)
{
	const struct sql_handler *sh = ctx->handler_data;

	plan->sql = sh->sql;
	plan->n_params = 1;
	plan->params[0] = sl_job_json(ctx);
	return plan->params[0] != NULL;
}

const struct sl_handler *
sl_sql_handler_new(const char *function, int has_timeout, char *errbuf, size_t errbuf_size)
{
	const char *dot = strchr(function, '.');
	struct sql_handler *sh;
	size_t n;

	if (dot == NULL || !plain_identifier(function, (size_t)(dot - function)) ||
	    !plain_identifier(dot + 1, strlen(dot + 1))) {
		snprintf(errbuf, errbuf_size,
		         "\"sql:%s\" must name a function as SCHEMA.FUNCTION (letters, digits, _ and $, "
		         "63 characters each at most)",
		         function);
		return NULL;
	}
	if ((sh = calloc(1, sizeof(*sh))) == NULL)
		abort();
	n = strlen(function);
	sh->function = strdup(function);
	sh->label = malloc(n + 5);
	sh->sql = malloc(n + 32);
	if (sh->function == NULL || sh->label == NULL || sh->sql == NULL)
		abort();
	snprintf(sh->label, n + 5, "sql:%s", function);
	snprintf(sh->sql, n + 32, "select %s($1::jsonb)", function);
	sh->has_timeout = has_timeout;
	sh->h.name = sh->label;
	sh->h.run = sql_run;
	sh->h.plan = sql_plan;
	sh->h.data = sh;
	return &sh->h;
}

int
sl_sql_handler_is(const struct sl_handler *h)
{
	return h != NULL && h->run == sql_run;
}

void
sl_sql_handler_destroy(const struct sl_handler *h)
{
	struct sql_handler *sh;

	if (!sl_sql_handler_is(h))
		return;
	sh = (struct sql_handler *)h->data;
	free(sh->function);
	free(sh->label);
	free(sh->sql);
	free(sh);
}

int
sl_sql_handler_check(PGconn *conn, const struct sl_handler *h, const char *role, char *errbuf,
                     size_t errbuf_size)
{
	const struct sql_handler *sh = h->data;
	const char *params[2];
	char sig[160];
	PGresult *res;
	int rc = -1;

	snprintf(sig, sizeof(sig), "%s(jsonb)", sh->function);
	params[0] = sig;
	params[1] = role;
	/* The function sluice calls, what it returns, whether the role may run
	 * it, and the overloads there are when it is missing (a common
	 * mistake: json instead of jsonb). */
	res = PQexecParams(conn,
	                   "select to_regprocedure($1) is not null, "
	                   "  (select prorettype::regtype::text from pg_proc where oid = to_regprocedure($1)), "
	                   "  case when $2::text is null or to_regprocedure($1) is null then true "
	                   "       when to_regrole($2) is null then null "
	                   "       else has_function_privilege($2, to_regprocedure($1), 'execute') end, "
	                   "  (select string_agg(p.oid::regprocedure::text, ', ') from pg_proc p "
	                   "     join pg_namespace n on n.oid = p.pronamespace "
	                   "    where n.nspname || '.' || p.proname = lower($1::text) "
	                   "       or n.nspname || '.' || p.proname = split_part(lower($1::text), '(', 1))",
	                   2, NULL, params, NULL, NULL, 0);
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errbuf, errbuf_size, "%s: could not check the function: %s", sh->label,
		         res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
		errbuf[strcspn(errbuf, "\n")] = '\0';
	} else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		snprintf(errbuf, errbuf_size, "%s: function %s does not exist%s%s", sh->label, sig,
		         PQgetisnull(res, 0, 3) ? "" : "; there is ", PQgetvalue(res, 0, 3));
	} else if (strcmp(PQgetvalue(res, 0, 1), "jsonb") != 0 && strcmp(PQgetvalue(res, 0, 1), "json") != 0) {
		snprintf(errbuf, errbuf_size, "%s: function %s returns %s, not jsonb", sh->label, sig,
		         PQgetvalue(res, 0, 1));
	} else if (PQgetisnull(res, 0, 2)) {
		snprintf(errbuf, errbuf_size, "%s: role \"%s\" does not exist", sh->label, role);
	} else if (strcmp(PQgetvalue(res, 0, 2), "t") != 0) {
		snprintf(errbuf, errbuf_size, "%s: role \"%s\" may not execute %s", sh->label, role, sig);
	} else {
		rc = 0;
	}
	PQclear(res);
	return rc;
}
