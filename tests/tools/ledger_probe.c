/* ledger_probe.c -- runs job handlers against a real database, for the
 * ledger system tests (tests/system/test_ledger_handlers.py).
 *
 *   ledger_probe CONNINFO HANDLER JOB_SOURCE JOB_ID DATA_JSON
 *   ledger_probe CONNINFO HANDLER JOB_SOURCE JOB_ID -
 *
 * Wraps each job the way the executor does: BEGIN, SAVEPOINT, the handler,
 * then COMMIT on SUCCEEDED, ROLLBACK TO SAVEPOINT + COMMIT on REJECTED and
 * ROLLBACK otherwise. Prints one JSON line per job:
 * {"outcome", "output", "error_code", "error_message"}, nulls where absent.
 * With DATA_JSON "-" it reads one data document per line of stdin and runs
 * them one after another on the same connection as jobs JOB_ID-1, JOB_ID-2,
 * ..., which lets a test run many concurrent transactions cheaply. Not for:
 * retries (a RETRY is printed, not repeated), the job ledger or Kafka.
 *
 * Exit status: 0 when every job ran (whatever its outcome), 2 for usage,
 * connection or input errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "pg.h"
#include "registry.h"

static const char *const outcome_names[] = { "succeeded", "rejected", "failed", "retry" };

/* Runs `sql` as part of the job's transaction control; on failure fills the
 * job's error from the result and returns the outcome sl_job_sql_error()
 * chose, else returns `outcome` unchanged. */
static enum sl_outcome
control(struct sl_job_ctx *ctx, const char *sql, const char *what, enum sl_outcome outcome)
{
	PGresult *res = PQexec(ctx->conn, sql);

	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
		outcome = sl_job_sql_error(ctx, res, what);
	PQclear(res);
	return outcome;
}

/* Runs one job and prints its line. `data_text` is the job's data as JSON.
 * Returns 0, or -1 when the data is not JSON or the line cannot be built. */
static int
run_job(PGconn *conn, const struct sl_handler *h, const char *source, const char *id,
        const char *data_text)
{
	struct sl_job_ctx ctx;
	json_error_t jerr;
	json_t *line = NULL;
	char *text = NULL;
	enum sl_outcome outcome;
	int rc = -1;

	memset(&ctx, 0, sizeof(ctx));
	ctx.conn = conn;
	ctx.job_source = source;
	ctx.job_id = id;
	ctx.job_type = h->name;
	ctx.handler_data = h->data; /* as the executor's item_ctx() */
	/* New reference. The flags let through what a handler must survive even
	 * if the decoder and the schema never pass it: any JSON, embedded NULs. */
	ctx.data = json_loads(data_text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	if (ctx.data == NULL) {
		fprintf(stderr, "ledger_probe: could not parse data of job \"%s\": %s\n", id, jerr.text);
		goto out;
	}

	outcome = control(&ctx, "BEGIN", "begin", SL_OUTCOME_SUCCEEDED);
	if (outcome == SL_OUTCOME_SUCCEEDED)
		outcome = control(&ctx, "SAVEPOINT h", "set savepoint", SL_OUTCOME_SUCCEEDED);
	if (outcome == SL_OUTCOME_SUCCEEDED)
		outcome = h->run(&ctx);
	switch (outcome) {
	case SL_OUTCOME_SUCCEEDED:
		outcome = control(&ctx, "COMMIT", "commit", outcome);
		break;
	case SL_OUTCOME_REJECTED:
		/* The refusal stands even if these fail; a failure shows as FAILED/RETRY. */
		outcome = control(&ctx, "ROLLBACK TO SAVEPOINT h", "roll back to savepoint", outcome);
		if (outcome == SL_OUTCOME_REJECTED)
			outcome = control(&ctx, "COMMIT", "commit", outcome);
		break;
	default:
		break;
	}
	if (outcome != SL_OUTCOME_SUCCEEDED && outcome != SL_OUTCOME_REJECTED) {
		/* Also ends a transaction that COMMIT could not; harmless outside one. */
		PQclear(PQexec(conn, "ROLLBACK"));
	}
	if (outcome != SL_OUTCOME_SUCCEEDED) {
		json_decref(ctx.output);
		ctx.output = NULL;
	}

	/* "O?" takes a new reference to the output; ctx.output keeps its own. */
	line = json_pack("{s:s, s:O?, s:s?, s:s?}", "outcome", outcome_names[outcome], "output",
	                 ctx.output, "error_code", outcome == SL_OUTCOME_SUCCEEDED ? NULL : ctx.error_code,
	                 "error_message", outcome == SL_OUTCOME_SUCCEEDED ? NULL : ctx.error_message);
	text = line ? json_dumps(line, JSON_COMPACT) : NULL;
	if (text == NULL) {
		fprintf(stderr, "ledger_probe: could not build the result of job \"%s\"\n", id);
		goto out;
	}
	printf("%s\n", text);
	fflush(stdout);
	rc = 0;
out:
	free(text);
	json_decref(line);
	json_decref(ctx.output);
	json_decref(ctx.data);
	return rc;
}

int
main(int argc, char **argv)
{
	const struct sl_handler *h;
	PGconn *conn = NULL;
	char errbuf[512];
	char *buf = NULL;
	size_t cap = 0;
	ssize_t len;
	char id[256];
	long n = 0;
	int status = 2;

	if (argc != 6) {
		fprintf(stderr, "usage: ledger_probe CONNINFO HANDLER JOB_SOURCE JOB_ID DATA_JSON|-\n");
		return 2;
	}
	h = sl_registry_find(argv[2]);
	if (h == NULL) {
		fprintf(stderr, "ledger_probe: no handler named \"%s\"\n", argv[2]);
		return 2;
	}
	conn = sl_pg_connect(argv[1], "ledger_probe", errbuf, sizeof(errbuf));
	if (conn == NULL) {
		fprintf(stderr, "ledger_probe: could not connect to postgresql: %s\n", errbuf);
		return 2;
	}

	if (strcmp(argv[5], "-") != 0) {
		if (run_job(conn, h, argv[3], argv[4], argv[5]) == 0)
			status = 0;
		goto out;
	}
	while ((len = getline(&buf, &cap, stdin)) != -1) {
		while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
			buf[--len] = '\0';
		if (len == 0)
			continue;
		snprintf(id, sizeof(id), "%s-%ld", argv[4], ++n);
		if (run_job(conn, h, argv[3], id, buf) != 0)
			goto out;
	}
	status = 0;
out:
	free(buf);
	PQfinish(conn);
	return status;
}
