/* pg.c -- PostgreSQL connection set-up and failure classification. */
#include "pg.h"

#include <ctype.h>
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

/* Appends n bytes of s to out at *off, keeping out NUL-terminated and
 * dropping what does not fit. */
static void
put(char *out, size_t out_size, size_t *off, const char *s, size_t n)
{
	if (*off + 1 >= out_size)
		return;
	if (n > out_size - *off - 1)
		n = out_size - *off - 1;
	memcpy(out + *off, s, n);
	*off += n;
	out[*off] = '\0';
}

/* Appends a conninfo value, quoted as libpq reads it when it is empty or holds
 * a space, a quote or a backslash; control characters are shown as '?' (the
 * result is for display, and a newline would split the line). */
static void
put_value(char *out, size_t out_size, size_t *off, const char *v)
{
	int quote = *v == '\0' || strpbrk(v, " \t\n\r\f\v'\\") != NULL;
	const char *p;

	if (quote)
		put(out, out_size, off, "'", 1);
	for (p = v; *p != '\0'; p++) {
		if (quote && (*p == '\'' || *p == '\\'))
			put(out, out_size, off, "\\", 1);
		put(out, out_size, off, (unsigned char)*p < 0x20 || *p == 0x7f ? "?" : p, 1);
	}
	if (quote)
		put(out, out_size, off, "'", 1);
}

/* Appends libpq's parse error without the tokens it quotes: they may be
 * pieces of a password ("missing "=" after "s3cret""). A quoted single
 * punctuation character such as "=" says what is wrong and stays. */
static void
put_safe_parse_error(char *out, size_t out_size, size_t *off, const char *msg)
{
	const char *p = msg, *close;

	while (*p != '\0' && *p != '\n') {
		if (*p == '"' && (close = strchr(p + 1, '"')) != NULL) {
			if (close - p == 2 && !isalnum((unsigned char)p[1]) && p[1] != '%')
				put(out, out_size, off, p, 3);
			else
				put(out, out_size, off, "\"...\"", 5);
			p = close + 1;
			continue;
		}
		if (*p == '"')
			break;              /* an unmatched quote: the rest may be a token */
		put(out, out_size, off, p, 1);
		p++;
	}
	while (*off > 0 && out[*off - 1] == ' ')
		out[--*off] = '\0';
}

int
sl_pg_conninfo_redact(const char *conninfo, char *out, size_t out_size)
{
	PQconninfoOption *opts, *o;
	char *perr = NULL;
	size_t off = 0;

	if (out_size == 0)
		return -1;
	out[0] = '\0';
	if (conninfo == NULL || *conninfo == '\0')
		return 0;
	opts = PQconninfoParse(conninfo, &perr);
	if (opts == NULL) {
		put(out, out_size, &off, "invalid connection string", 25);
		if (perr != NULL && *perr != '\0') {
			put(out, out_size, &off, ": ", 2);
			put_safe_parse_error(out, out_size, &off, perr);
		} else if (perr == NULL) {
			put(out, out_size, &off, ": out of memory", 15);
		}
		PQfreemem(perr);
		return -1;
	}
	/* libpq's own table says which options are secrets (dispchar "*"):
	 * password and sslpassword today, and whatever a later libpq adds. */
	for (o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL)
			continue;
		if (off > 0)
			put(out, out_size, &off, " ", 1);
		put(out, out_size, &off, o->keyword, strlen(o->keyword));
		put(out, out_size, &off, "=", 1);
		if (o->dispchar != NULL && strchr(o->dispchar, '*') != NULL)
			put(out, out_size, &off, "***", 3);
		else
			put_value(out, out_size, &off, o->val);
	}
	PQconninfoFree(opts);
	return 0;
}

int
sl_pg_conninfo_has_secret(const char *conninfo)
{
	PQconninfoOption *opts, *o;
	int found = 0;

	if (conninfo == NULL || *conninfo == '\0' || (opts = PQconninfoParse(conninfo, NULL)) == NULL)
		return 0;
	for (o = opts; o->keyword != NULL; o++)
		if (o->val != NULL && *o->val != '\0' && o->dispchar != NULL && strchr(o->dispchar, '*') != NULL)
			found = 1;
	PQconninfoFree(opts);
	return found;
}

PGconn *
sl_pg_connect(const char *conninfo, const char *application_name, char *errbuf, size_t errbuf_size)
{
	const char *keys[] = { "application_name", "connect_timeout", "dbname", NULL };
	const char *values[] = { application_name, "10", conninfo ? conninfo : "", NULL };
	PGconn *conn;

	/* libpq's parse errors quote the offending token, which may be part of
	 * a password; its connection errors name the host, port and user but
	 * never the password. So a string libpq cannot parse is refused here,
	 * with the redacted parse error, before PQconnectdbParams() sees it. */
	if (sl_pg_conninfo_redact(conninfo, errbuf, errbuf_size) < 0)
		return NULL;
	if (errbuf_size > 0)
		errbuf[0] = '\0';
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
