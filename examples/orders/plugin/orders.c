/* orders.c -- the orders.fulfil job as a C plugin for sluice-worker.
 *
 * Fulfils an order: takes the ordered quantity of an item out of stock and
 * records a shipment, or refuses with code "out_of_stock" when there is too
 * little. The SQL function orders.fulfil(job jsonb) (examples/orders/sql)
 * does the work in one round trip; this plugin hands it the job and turns
 * its answer into the job's outcome:
 *
 *   a jsonb object          SUCCEEDED, the object is the result's output
 *   SQLSTATE SL002          REJECTED, code from the error's DETAIL,
 *                           message from its MESSAGE
 *   any other error         RETRY or FAILED by its SQLSTATE
 *
 * It uses nothing but <sluice/handler.h>. Build it against an installed
 * sluice with the Makefile next to it, and name it in worker.conf:
 *
 *   jobs = ( { type = "orders.fulfil"; handler = "plugin:orders.so:orders_fulfil"; } );
 */
#include <stdlib.h>
#include <string.h>

#include <sluice/handler.h>

SLUICE_PLUGIN;

SLUICE_EXPORT sluice_handler_fn orders_fulfil;

/* SQLSTATE of a business refusal raised by the example's SQL functions. */
#define SQLSTATE_REJECT "SL002"

static const char sql_fulfil[] = "select orders.fulfil($1::jsonb)";

/* Returns the job as orders.fulfil() takes it, as JSON text (new, the
 * caller frees it), or NULL when out of memory: the same object that
 * handler = "sql:orders.fulfil" would pass. */
static char *
job_text(sluice_job_t *job)
{
	size_t key_len;
	const char *key = sluice_job_key(job, &key_len);
	json_t *j;
	char *text;

	/* "O" shares the job's data for the length of this function only. */
	j = json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:O, s:o?, s:i}", "id", sluice_job_id(job), "source",
	              sluice_job_source(job), "type", sluice_job_type(job), "subject", sluice_job_subject(job),
	              "time", sluice_job_time(job), "data", sluice_job_data(job), "key",
	              key ? json_stringn(key, key_len) : NULL, "attempt", sluice_job_attempt(job));
	text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return text;
}

/* orders.fulfil: data {"order": string, "item": string, "quantity": integer > 0}
 * (the type's JSON Schema says so; orders.fulfil() checks again). */
enum sluice_outcome
orders_fulfil(sluice_job_t *job)
{
	char *text = job_text(job);
	const char *params[1] = { text };
	const char *state, *code, *message;
	PGresult *res = NULL;
	enum sluice_outcome outcome;

	if (text == NULL) {
		outcome = sluice_job_retry(job, "out_of_memory", 0, "could not build the job of order fulfilment");
		goto out;
	}
	res = sluice_job_exec(job, sql_fulfil, 1, params);
	if (res != NULL && PQresultStatus(res) == PGRES_FATAL_ERROR &&
	    (state = PQresultErrorField(res, PG_DIAG_SQLSTATE)) != NULL && strcmp(state, SQLSTATE_REJECT) == 0) {
		code = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
		message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		outcome = sluice_job_reject(job, code && *code ? code : "rejected", "%s", message ? message : "rejected");
		goto out;
	}
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		outcome = sluice_job_sql_error(job, res, "fulfil the order");
		goto out;
	}
	/* A new reference, stolen by sluice_job_succeed; SQL NULL is no output. */
	outcome = sluice_job_succeed(job, PQgetisnull(res, 0, 0) ? json_object()
	                                                          : json_loads(PQgetvalue(res, 0, 0), 0, NULL));
out:
	PQclear(res);
	free(text);
	return outcome;
}
