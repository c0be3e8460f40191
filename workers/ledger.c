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
 * Written against <sluice/handler.h> only, as a plugin would be. Every
 * statement takes text parameters; the SQL lives in the constants below,
 * and the executor prepares each once per connection (sluice_job_exec).
 */
#include "handlers.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERR_INVALID_DATA "invalid_data"
#define ERR_HANDLER_ERROR "handler_error"

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
static enum sluice_outcome
fail_invalid(sluice_job_t *job, const char *what)
{
	return sluice_job_fail(job, ERR_INVALID_DATA, "invalid data for %s: %s", sluice_job_type(job), what);
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
enum sluice_outcome
sl_ledger_open(sluice_job_t *job)
{
	const char *account = NULL;
	size_t account_len = 0;
	json_int_t balance = 0;
	json_t *balance_json = NULL;
	json_error_t jerr;
	char balance_text[INT_TEXT_SIZE];
	const char *params[2];
	PGresult *res = NULL;
	enum sluice_outcome outcome;

	assert(job != NULL);

	if (json_unpack_ex(sluice_job_data(job), &jerr, 0, "{s:s%, s:o}", "account", &account, &account_len,
	                   "balance", &balance_json) != 0) {
		outcome = fail_invalid(job, jerr.text);
		goto out;
	}
	if (sluice_json_integer(balance_json, &balance) != 0) {
		outcome = fail_invalid(job, "\"balance\" must be an integer");
		goto out;
	}
	if (!account_ok(account, account_len)) {
		outcome = fail_invalid(job, "\"account\" must be a non-empty string without NUL characters");
		goto out;
	}
	if (balance < 0) {
		outcome = fail_invalid(job, "\"balance\" must not be negative");
		goto out;
	}

	snprintf(balance_text, sizeof(balance_text), "%" JSON_INTEGER_FORMAT, balance);
	params[0] = account;
	params[1] = balance_text;
	res = sluice_job_exec(job, sql_open, 2, params);
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		outcome = sluice_job_sql_error(job, res, "insert account");
		goto out;
	}
	if (PQntuples(res) == 0) {
		outcome = sluice_job_reject(job, "account_exists",
		                            "account \"%s\" already exists", account);
		goto out;
	}

	/* A new reference, stolen; json_pack copies the strings, so none of
	 * it points into res or the job's data. */
	outcome = sluice_job_succeed(job, json_pack("{s:s, s:I}", "account", account, "balance", balance));
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

/* Reads sluice_job_data(job) into *a. Returns 0, or -1 with the job's outcome in
 * *outcome (FAILED for bad data, REJECTED for a transfer to the same
 * account) and the job's error filled. */
static int
transfer_args(sluice_job_t *job, struct transfer_args *a, enum sluice_outcome *outcome)
{
	json_t *from = json_object_get(sluice_job_data(job), "from"), *to = json_object_get(sluice_job_data(job), "to");
	json_t *amount = json_object_get(sluice_job_data(job), "amount");
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
	} else if (json_unpack_ex(sluice_job_data(job), &jerr, 0, "{s:s%, s:s%, s:o}", "from", &a->from, &from_len, "to",
	                          &a->to, &to_len, "amount", &amount) != 0) {
		/* jansson's words for what is wrong. */
		*outcome = fail_invalid(job, jerr.text);
		return -1;
	} else if (sluice_json_integer(amount, &a->amount) != 0) {
		*outcome = fail_invalid(job, "\"amount\" must be an integer");
		return -1;
	}
	if (!account_ok(a->from, from_len) || !account_ok(a->to, to_len)) {
		*outcome = fail_invalid(job, "\"from\" and \"to\" must be non-empty strings without NUL characters");
		return -1;
	}
	if (a->amount <= 0) {
		*outcome = fail_invalid(job, "\"amount\" must be positive");
		return -1;
	}
	if (strcmp(a->from, a->to) == 0) {
		*outcome = sluice_job_reject(job, "same_account",
		                             "cannot transfer from account \"%s\" to itself", a->from);
		return -1;
	}
	snprintf(a->amount_text, sizeof(a->amount_text), "%" JSON_INTEGER_FORMAT, a->amount);
	return 0;
}

/* Fills the parameters of sql_transfer; amount_text must outlive them. */
static void
transfer_params(const sluice_job_t *job, const struct transfer_args *a, const char *amount_text,
                const char *params[5])
{
	params[0] = sluice_job_source(job);
	params[1] = sluice_job_id(job);
	params[2] = a->from;
	params[3] = a->to;
	params[4] = amount_text;
}

/* The plan of ledger.transfer: sql_transfer, unless the data refuses it
 * before any SQL (sluice_plan_fn). The amount's text is formatted here, so
 * the plan keeps a copy; the other parameters point into the job. */
int
sl_ledger_transfer_plan(sluice_job_t *job, sluice_plan_t *plan)
{
	struct transfer_args a;
	enum sluice_outcome outcome;
	const char *params[5], *amount_text;

	if (transfer_args(job, &a, &outcome) < 0)
		return 0;
	if ((amount_text = sluice_plan_keep(plan, a.amount_text)) == NULL)
		return 0;
	transfer_params(job, &a, amount_text, params);
	return sluice_plan_set(plan, sql_transfer, 5, params);
}

/* ledger.transfer: data {"from": string, "to": string, "amount": integer > 0}.
 * Locks both accounts in id order, refuses (REJECTED) a transfer to the same
 * account ("same_account"), from or to a missing account ("unknown_account")
 * or beyond the source's balance ("insufficient_funds"), else moves the
 * amount and records the transfer under the job's identity. On SUCCEEDED
 * the output is {"from": {"account", "balance"}, "to": {...}, "amount"} with
 * the new balances, a new reference. Sends one statement, sql_transfer
 * (sl_ledger_transfer_plan says which). */
enum sluice_outcome
sl_ledger_transfer(sluice_job_t *job)
{
	struct transfer_args a;
	const char *params[5];
	PGresult *res = NULL;
	long long from_balance = -1, to_balance = -1;
	int have_from, have_to;
	enum sluice_outcome outcome;

	assert(job != NULL);

	if (transfer_args(job, &a, &outcome) < 0)
		goto out;
	transfer_params(job, &a, a.amount_text, params);
	res = sluice_job_exec(job, sql_transfer, 5, params);
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		outcome = sluice_job_sql_error(job, res, "transfer");
		goto out;
	}
	if (PQntuples(res) != 1 || PQnfields(res) != 3 ||
	    (!PQgetisnull(res, 0, 1) && parse_bigint(PQgetvalue(res, 0, 1), &from_balance) != 0) ||
	    (!PQgetisnull(res, 0, 2) && parse_bigint(PQgetvalue(res, 0, 2), &to_balance) != 0)) {
		outcome = sluice_job_fail(job, ERR_HANDLER_ERROR,
		                          "could not read the outcome of the transfer from \"%s\" to \"%s\"", a.from, a.to);
		goto out;
	}
	have_from = !PQgetisnull(res, 0, 1);
	have_to = !PQgetisnull(res, 0, 2);
	if (!have_from && !have_to) {
		outcome = sluice_job_reject(job, "unknown_account",
		                            "accounts \"%s\" and \"%s\" do not exist", a.from, a.to);
		goto out;
	}
	if (!have_from || !have_to) {
		outcome = sluice_job_reject(job, "unknown_account",
		                            "account \"%s\" does not exist", have_from ? a.to : a.from);
		goto out;
	}
	if (!PQgetisnull(res, 0, 0)) {
		if (strcmp(PQgetvalue(res, 0, 0), "insufficient_funds") == 0)
			outcome = sluice_job_reject(job, "insufficient_funds",
			                            "account \"%s\" has balance %lld, less than the amount %" JSON_INTEGER_FORMAT,
			                            a.from, from_balance, a.amount);
		else
			outcome = sluice_job_fail(job, ERR_HANDLER_ERROR,
			                          "ledger.transfer() refused with an unknown code \"%.60s\"",
			                          PQgetvalue(res, 0, 0));
		goto out;
	}

	/* A new reference, stolen; json_pack copies the strings. */
	outcome = sluice_job_succeed(job, json_pack("{s:{s:s, s:I}, s:{s:s, s:I}, s:I}",
	                                            "from", "account", a.from, "balance", (json_int_t)from_balance,
	                                            "to", "account", a.to, "balance", (json_int_t)to_balance,
	                                            "amount", a.amount));
out:
	PQclear(res);
	return outcome;
}
