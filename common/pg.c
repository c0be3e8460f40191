/* pg.c -- PostgreSQL connection set-up and failure classification. */
#include "pg.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

const char *
sl_pg_sqlstate(const PGresult *res)
{
	const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	return s ? s : "";
}

enum sl_pg_class
sl_pg_classify_sqlstate(const char *state)
{
	/* No SQLSTATE at all means libpq itself failed (lost connection). */
	if (state == NULL || *state == '\0')
		return SL_PG_UNAVAILABLE;
	if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0)
		return SL_PG_TRANSIENT;
	if (strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0 || strncmp(state, "57P0", 4) == 0 ||
	    strcmp(state, "57014") == 0 || strcmp(state, "25006") == 0 || strcmp(state, "25P03") == 0)
		return SL_PG_UNAVAILABLE;
	return SL_PG_PERMANENT;
}

enum sl_pg_class
sl_pg_classify(const PGconn *conn, const PGresult *res)
{
	if (res == NULL || conn == NULL || PQstatus(conn) != CONNECTION_OK)
		return SL_PG_UNAVAILABLE;
	switch (PQresultStatus(res)) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
	case PGRES_SINGLE_TUPLE:
	case PGRES_COPY_IN:
	case PGRES_COPY_OUT:
	case PGRES_COPY_BOTH:
	case PGRES_EMPTY_QUERY:
	case PGRES_PIPELINE_SYNC:
		return SL_PG_OK;
	default:
		break;
	}
	return sl_pg_classify_sqlstate(sl_pg_sqlstate(res));
}

/* Copies libpq's message without its trailing newline. */
static void
copy_message(const char *msg, char *errbuf, size_t errbuf_size)
{
	size_t n;

	snprintf(errbuf, errbuf_size, "%s", msg ? msg : "unknown error");
	n = strlen(errbuf);
	while (n > 0 && (errbuf[n - 1] == '\n' || errbuf[n - 1] == ' '))
		errbuf[--n] = '\0';
}

PGconn *
sl_pg_connect(const char *conninfo, const char *application_name, char *errbuf, size_t errbuf_size)
{
	const char *keys[] = { "application_name", "connect_timeout", "dbname", NULL };
	const char *values[] = { application_name, "10", conninfo ? conninfo : "", NULL };
	PGconn *conn;

	/* expand_dbname=1 lets `dbname` carry a whole conninfo string or URI. It
	 * comes last so that what the conninfo sets wins over our defaults. An
	 * empty conninfo leaves everything to libpq's PG* environment. */
	conn = PQconnectdbParams(keys, values, 1);
	if (conn == NULL) {
		snprintf(errbuf, errbuf_size, "out of memory");
		return NULL;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		copy_message(PQerrorMessage(conn), errbuf, errbuf_size);
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

int
sl_pg_exec(PGconn *conn, const char *sql, char *errbuf, size_t errbuf_size)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	int rc = 0;

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		copy_message(res ? PQresultErrorMessage(res) : PQerrorMessage(conn), errbuf, errbuf_size);
		if (*errbuf == '\0')
			copy_message(PQerrorMessage(conn), errbuf, errbuf_size);
		rc = -1;
	}
	PQclear(res);
	return rc;
}
