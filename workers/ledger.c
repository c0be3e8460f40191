/* ledger.c -- the ledger job family: ledger.open and ledger.transfer.
 *
 * Opens accounts and moves money between them in ledger.accounts and
 * ledger.transfers (schemas/sql/0002_ledger.sql), inside the transaction that
 * the executor owns. Refusals a customer can cause (an account id that is
 * taken, an unknown account, too little money) are REJECTED with a stable
 * code; data that the job's JSON Schema should have refused is FAILED with
 * "invalid_data". An integer is what the schema calls one (json.h): 5.0
 * passes the schema, so it is 5 here too. Not for: transaction control, the job ledger or retries
 * (the executor's), nor validation beyond what keeps the handlers safe.
 *
 * Every statement takes text parameters; the SQL lives in the constants
 * below, and the executor prepares each once per connection (sl_job_exec).
 */
#include "handlers.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "json.h"

/* Opens an account unless the id is taken: a taken id inserts nothing and
 * returns no row, without raising 23505 (which would abort the job's
 * transaction and make the refusal look like a failure). */
static const char sql_open[] =
	"INSERT INTO ledger.accounts (id, balance) VALUES ($1::text, $2::bigint) "
	"ON CONFLICT (id) DO NOTHING "
	"RETURNING balance";

/* A whole transfer in one round trip: ledger.transfer() (schemas/sql/
 * 0003_ledger_transfer.sql) locks both accounts in id order, refuses or moves
 * the amount, and records the transfer under the job's identity. One row:
 * code (NULL when applied), from_balance, to_balance (NULL: no account). */
static const char sql_transfer[] =
	"SELECT code, from_balance, to_balance FROM ledger.transfer($1::text, $2::text, $3::text, $4::text, $5::bigint)";

/* Room for any json_int_t in decimal, with its sign and the NUL. */
#define INT_TEXT_SIZE 24

/* Fails the job with "invalid_data" and jansson's words for what is wrong. */
static enum sl_outcome
fail_invalid(struct sl_job_ctx *ctx, const char *what)
{
	return sl_job_fail(ctx, SL_OUTCOME_FAILED, SL_ERR_INVALID_DATA, "invalid data for %s: %s",
	                   ctx->job_type ? ctx->job_type : "ledger job", what);
}

/* Returns 1 when an account id is usable as a text parameter: not empty and
 * without an embedded NUL (jansson allows one; libpq would cut the id there). */
static int
account_ok(const char *id, size_t len)
{
	return len > 0 && strlen(id) == len;
}

/* Parses the server's text for a bigint into *out (OUT: set on every path,
 * 0 on failure). Returns 0, or -1 when the text is not one. */
static int
parse_bigint(const char *text, long long *out)
{
	char *end;
	long long v;

	*out = 0;
	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

/* ledger.open: data {"account": string, "balance": integer >= 0}. Inserts the
 * account; an existing id is REJECTED "account_exists". On SUCCEEDED the
 * output is {"account": id, "balance": n}, a new reference. */
enum sl_outcome
sl_ledger_open(struct sl_job_ctx *ctx)
{
	const char *account = NULL;
	size_t account_len = 0;
	json_int_t balance = 0;
	json_t *balance_json = NULL;
	json_error_t jerr;
	char balance_text[INT_TEXT_SIZE];
	const char *params[2];
	PGresult *res = NULL;
	enum sl_outcome outcome;

	assert(ctx != NULL && ctx->conn != NULL);
	ctx->output = NULL;

	if (json_unpack_ex(ctx->data, &jerr, 0, "{s:s%, s:o}", "account", &account, &account_len,
	                   "balance", &balance_json) != 0) {
		outcome = fail_invalid(ctx, jerr.text);
		goto out;
	}
	if (sl_json_int64(balance_json, &balance) != 0) {
		outcome = fail_invalid(ctx, "\"balance\" must be an integer");
		goto out;
	}
	if (!account_ok(account, account_len)) {
		outcome = fail_invalid(ctx, "\"account\" must be a non-empty string without NUL characters");
		goto out;
	}
	if (balance < 0) {
		outcome = fail_invalid(ctx, "\"balance\" must not be negative");
		goto out;
	}

	snprintf(balance_text, sizeof(balance_text), "%" JSON_INTEGER_FORMAT, balance);
	params[0] = account;
	params[1] = balance_text;
	res = sl_job_exec(ctx, sql_open, 2, params);
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		outcome = sl_job_sql_error(ctx, res, "insert account");
		goto out;
	}
	if (PQntuples(res) == 0) {
		outcome = sl_job_fail(ctx, SL_OUTCOME_REJECTED, "account_exists",
		                      "account \"%s\" already exists", account);
		goto out;
	}

	/* New reference; json_pack copies the strings, so none of it points
	 * into res or ctx->data. */
	ctx->output = json_pack("{s:s, s:I}", "account", account, "balance", balance);
	if (ctx->output == NULL) {
		outcome = sl_job_fail(ctx, SL_OUTCOME_FAILED, SL_ERR_HANDLER_ERROR,
		                      "could not build the output of ledger.open: out of memory");
		goto out;
	}
	outcome = SL_OUTCOME_SUCCEEDED;
out:
	PQclear(res);
	return outcome;
}

/* A transfer's arguments, read from its data and checked. */
struct transfer_args {
	const char *from, *to;
	json_int_t amount;
	char amount_text[INT_TEXT_SIZE];
};

/* Reads ctx->data into *a. Returns 0, or -1 with the job's outcome in
 * *outcome (FAILED for bad data, REJECTED for a transfer to the same
 * account) and ctx's error filled. */
static int
transfer_args(struct sl_job_ctx *ctx, struct transfer_args *a, enum sl_outcome *outcome)
{
	json_t *from = json_object_get(ctx->data, "from"), *to = json_object_get(ctx->data, "to");
	json_t *amount = json_object_get(ctx->data, "amount");
	size_t from_len = 0, to_len = 0;
	json_error_t jerr;

	a->from = a->to = NULL;
	a->amount = 0;
	if (json_is_string(from) && json_is_string(to) && json_is_integer(amount)) {
		/* The common case, without json_unpack's format parsing. */
		a->from = json_string_value(from);
		from_len = json_string_length(from);
		a->to = json_string_value(to);
		to_len = json_string_length(to);
		a->amount = json_integer_value(amount);
	} else if (json_unpack_ex(ctx->data, &jerr, 0, "{s:s%, s:s%, s:o}", "from", &a->from, &from_len, "to",
	                          &a->to, &to_len, "amount", &amount) != 0) {
		/* jansson's words for what is wrong. */
		*outcome = fail_invalid(ctx, jerr.text);
		return -1;
	} else if (sl_json_int64(amount, &a->amount) != 0) {
		*outcome = fail_invalid(ctx, "\"amount\" must be an integer");
		return -1;
	}
	if (!account_ok(a->from, from_len) || !account_ok(a->to, to_len)) {
		*outcome = fail_invalid(ctx, "\"from\" and \"to\" must be non-empty strings without NUL characters");
		return -1;
	}
	if (a->amount <= 0) {
		*outcome = fail_invalid(ctx, "\"amount\" must be positive");
		return -1;
	}
	if (strcmp(a->from, a->to) == 0) {
		*outcome = sl_job_fail(ctx, SL_OUTCOME_REJECTED, "same_account",
		                       "cannot transfer from account \"%s\" to itself", a->from);
		return -1;
	}
	snprintf(a->amount_text, sizeof(a->amount_text), "%" JSON_INTEGER_FORMAT, a->amount);
	return 0;
}

/* Fills the parameters of sql_transfer; amount_text must outlive them. */
static void
transfer_params(const struct sl_job_ctx *ctx, const struct transfer_args *a, const char *amount_text,
                const char *params[5])
{
	params[0] = ctx->job_source;
	params[1] = ctx->job_id;
	params[2] = a->from;
	params[3] = a->to;
	params[4] = amount_text;
}

/* The plan of ledger.transfer: sql_transfer, unless the data refuses it
 * before any SQL (sl_handler.plan). */
int
sl_ledger_transfer_plan(struct sl_job_ctx *ctx, struct sl_plan *plan)
{
	struct transfer_args a;
	enum sl_outcome outcome;

	if (transfer_args(ctx, &a, &outcome) < 0)
		return 0;
	snprintf(plan->buf, sizeof(plan->buf), "%s", a.amount_text);
	plan->sql = sql_transfer;
	plan->n_params = 5;
	transfer_params(ctx, &a, plan->buf, plan->params);
	return 1;
}

/* ledger.transfer: data {"from": string, "to": string, "amount": integer > 0}.
 * Locks both accounts in id order, refuses (REJECTED) a transfer to the same
 * account ("same_account"), from or to a missing account ("unknown_account")
 * or beyond the source's balance ("insufficient_funds"), else moves the
 * amount and records the transfer under the job's identity. On SUCCEEDED
 * the output is {"from": {"account", "balance"}, "to": {...}, "amount"} with
 * the new balances, a new reference. Sends one statement, sql_transfer
 * (sl_ledger_transfer_plan says which). */
enum sl_outcome
sl_ledger_transfer(struct sl_job_ctx *ctx)
{
	struct transfer_args a;
	const char *params[5];
	PGresult *res = NULL;
	long long from_balance = -1, to_balance = -1;
	int have_from, have_to;
	enum sl_outcome outcome;

	assert(ctx != NULL && ctx->conn != NULL && ctx->job_source != NULL && ctx->job_id != NULL);
	ctx->output = NULL;

	if (transfer_args(ctx, &a, &outcome) < 0)
		goto out;
	transfer_params(ctx, &a, a.amount_text, params);
	res = sl_job_exec(ctx, sql_transfer, 5, params);
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		outcome = sl_job_sql_error(ctx, res, "transfer");
		goto out;
	}
	if (PQntuples(res) != 1 || PQnfields(res) != 3 ||
	    (!PQgetisnull(res, 0, 1) && parse_bigint(PQgetvalue(res, 0, 1), &from_balance) != 0) ||
	    (!PQgetisnull(res, 0, 2) && parse_bigint(PQgetvalue(res, 0, 2), &to_balance) != 0)) {
		outcome = sl_job_fail(ctx, SL_OUTCOME_FAILED, SL_ERR_HANDLER_ERROR,
		                      "could not read the outcome of the transfer from \"%s\" to \"%s\"", a.from, a.to);
		goto out;
	}
	have_from = !PQgetisnull(res, 0, 1);
	have_to = !PQgetisnull(res, 0, 2);
	if (!have_from && !have_to) {
		outcome = sl_job_fail(ctx, SL_OUTCOME_REJECTED, "unknown_account",
		                      "accounts \"%s\" and \"%s\" do not exist", a.from, a.to);
		goto out;
	}
	if (!have_from || !have_to) {
		outcome = sl_job_fail(ctx, SL_OUTCOME_REJECTED, "unknown_account",
		                      "account \"%s\" does not exist", have_from ? a.to : a.from);
		goto out;
	}
	if (!PQgetisnull(res, 0, 0)) {
		if (strcmp(PQgetvalue(res, 0, 0), "insufficient_funds") == 0)
			outcome = sl_job_fail(ctx, SL_OUTCOME_REJECTED, "insufficient_funds",
			                      "account \"%s\" has balance %lld, less than the amount %" JSON_INTEGER_FORMAT,
			                      a.from, from_balance, a.amount);
		else
			outcome = sl_job_fail(ctx, SL_OUTCOME_FAILED, SL_ERR_HANDLER_ERROR,
			                      "ledger.transfer() refused with an unknown code \"%.60s\"",
			                      PQgetvalue(res, 0, 0));
		goto out;
	}

	/* New reference; json_pack copies the strings. */
	ctx->output = json_pack("{s:{s:s, s:I}, s:{s:s, s:I}, s:I}",
	                        "from", "account", a.from, "balance", (json_int_t)from_balance,
	                        "to", "account", a.to, "balance", (json_int_t)to_balance,
	                        "amount", a.amount);
	if (ctx->output == NULL) {
		outcome = sl_job_fail(ctx, SL_OUTCOME_FAILED, SL_ERR_HANDLER_ERROR,
		                      "could not build the output of ledger.transfer: out of memory");
		goto out;
	}
	outcome = SL_OUTCOME_SUCCEEDED;
out:
	PQclear(res);
	return outcome;
}
