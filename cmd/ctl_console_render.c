/* ctl_console_render.c -- writing the console's pages: escaping, the page frame, sources.
 *
 * What every page shares (ctl_console_render.h): formatted numbers and
 * escaped text, the header and footer, the line that says which source is
 * up, error boxes, queries, and the table of dead letters the job and
 * dead-letter pages both show. Not for any one page's content
 * (ctl_console_pages.c, ctl_console_dlq.c).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "ctl_console.h"
#include "ctl_console_render.h"
#include "ctl_sources.h"

/* ---- writing HTML -------------------------------------------------------- */

/* Formatted HTML: for numbers and literals only, never for outside text. */
void
sl_console_putf(struct sl_text *t, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	sl_text_puts(t, buf);
}

/* A JSON value for a table cell: escaped text, a number, or a dash. */
void
sl_console_cell(struct sl_text *t, json_t *v)
{
	if (json_is_string(v))
		esc(t, json_string_value(v));
	else if (json_is_integer(v))
		sl_console_putf(t, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v))
		sl_console_putf(t, "%.3f", json_real_value(v));
	else if (json_is_boolean(v))
		put(t, json_is_true(v) ? "yes" : "no");
	else
		put(t, "&ndash;");
}

/* A link to a job's page; id and source are untrusted. */
void
sl_console_job_link(struct sl_text *t, const char *id, const char *source)
{
	struct sl_text url = { NULL, 0, 0, 0 };

	if (id == NULL) {
		put(t, "&ndash;");
		return;
	}
	sl_text_puts(&url, "/job?id=");
	sl_html_url(&url, id);
	if (source != NULL) {
		sl_text_puts(&url, "&source=");
		sl_html_url(&url, source);
	}
	put(t, "<a class=\"id\" href=\"");
	esc(t, url.p);
	put(t, "\">");
	esc(t, id);
	put(t, "</a>");
	t->oom |= url.oom;
	free(url.p);
}

void
sl_console_hidden(struct sl_text *t, const char *name, const char *value)
{
	if (value == NULL)
		return;
	sl_console_putf(t, "<input type=\"hidden\" name=\"%s\" value=\"", name);
	esc(t, value);
	put(t, "\">");
}

void
sl_console_page_begin(struct sl_console_reply *r, const char *title, const char *active, int autorefresh)
{
	static const char *const nav[][2] = {
		{ "/", "Fleet" }, { "/job", "Jobs" }, { "/dlq", "Dead letters" }, { "/outbox", "Outbox &amp; schedules" },
	};
	struct sl_text *t = &r->body;
	size_t i;

	put(t, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
	       "<link rel=\"stylesheet\" href=\"/static/console.css\"><title>");
	esc(t, title);
	put(t, " &middot; sluice console</title></head><body>\n<header><b>sluice</b><nav>");
	for (i = 0; i < sizeof(nav) / sizeof(nav[0]); i++)
		sl_console_putf(t, "<a href=\"%s\"%s>%s</a> ", nav[i][0], strcmp(nav[i][0], active) == 0 ? " class=\"on\"" : "",
		     nav[i][1]);
	put(t, "</nav>");
	if (autorefresh)
		put(t, "<label hidden><input type=\"checkbox\" id=\"autorefresh\"> refresh every 10 s</label>");
	put(t, "</header>\n<main>\n<h1>");
	esc(t, title);
	put(t, "</h1>\n");
}

void
sl_console_page_end(struct sl_console_reply *r)
{
	put(&r->body, "</main>\n<footer>sluicectl console &middot; pages are drawn on the server; "
	              "the script only refreshes and confirms.</footer>\n"
	              "<script src=\"/static/console.js\"></script>\n</body></html>\n");
}

/* ---- sources ------------------------------------------------------------- */


/* Opens PostgreSQL and probes Kafka (each as asked), then writes the line
 * that says which is up. */
void
sl_console_sources_open(struct sl_console_request *rq, struct sl_console_reply *r, struct sl_console_sources *s, int want_pg,
             int want_kafka)
{
	struct sl_text *t = &r->body;

	memset(s, 0, sizeof(*s));
	if (want_pg)
		s->pg = sl_console_pg(rq->c, s->pg_err, sizeof(s->pg_err));
	if (want_kafka)
		s->kafka_up = sl_console_kafka_probe(rq->c, s->kafka_err, sizeof(s->kafka_err)) == 0;
	put(t, "<div class=\"sources\">");
	if (want_pg) {
		if (s->pg != NULL) {
			put(t, "<span class=\"src up\" id=\"src-pg\">PostgreSQL: up</span>");
		} else {
			put(t, "<span class=\"src down\" id=\"src-pg\">PostgreSQL is down: ");
			esc(t, s->pg_err);
			put(t, "</span>");
		}
	}
	if (want_kafka) {
		if (s->kafka_up) {
			put(t, "<span class=\"src up\" id=\"src-kafka\">Kafka: up</span>");
		} else {
			put(t, "<span class=\"src down\" id=\"src-kafka\">Kafka is down: ");
			esc(t, s->kafka_err);
			put(t, "</span>");
		}
	}
	put(t, "</div>\n");
}

void
sl_console_sources_close(struct sl_console_sources *s)
{
	PQfinish(s->pg);
	s->pg = NULL;
}

void
sl_console_error_box(struct sl_text *t, const char *what, const char *why)
{
	put(t, "<p class=\"error\">");
	esc(t, what);
	put(t, ": ");
	esc(t, why);
	put(t, "</p>\n");
}

/* Runs a query with text parameters; returns the result or NULL after
 * writing why into the page. */
PGresult *
sl_console_query(struct sl_text *t, PGconn *conn, const char *what, const char *sql, int n, const char *const *params)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	char msg[512];

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
		msg[strcspn(msg, "\n")] = '\0';
		sl_console_error_box(t, what, msg);
		PQclear(res);
		return NULL;
	}
	return res;
}

/* A table of dead letters (sl_ctl_dlq_read_json()'s), each with links. */
void
sl_console_letters_table(struct sl_text *t, json_t *letters, const char *table_id, int with_replay, const char *csrf)
{
	json_t *x;
	size_t i;

	sl_console_putf(t, "<table id=\"%s\"><tr><th>partition/offset</th><th>time</th><th>code</th><th>type</th><th>id</th>"
	        "<th>key</th><th>message</th><th class=\"n\">attempts</th><th>replayed</th>%s</tr>\n",
	     table_id, with_replay ? "<th></th>" : "");
	json_array_foreach(letters, i, x) {
		json_int_t p = json_integer_value(json_object_get(x, "partition"));
		json_int_t o = json_integer_value(json_object_get(x, "offset"));

		if (i >= MAX_LETTERS_SHOWN) {
			sl_console_putf(t, "<tr><td colspan=\"10\">&hellip; %zu more (narrow the filter)</td></tr>\n",
			     json_array_size(letters) - i);
			break;
		}
		sl_console_putf(t, "<tr class=\"letter\"><td><a href=\"/dlq/letter?p=%" JSON_INTEGER_FORMAT "&amp;o=%" JSON_INTEGER_FORMAT
		        "\">%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT "</a></td><td>",
		     p, o, p, o);
		sl_console_cell(t, json_object_get(x, "timestamp"));
		put(t, "</td><td>");
		sl_console_cell(t, json_object_get(x, "code"));
		put(t, "</td><td>");
		sl_console_cell(t, json_object_get(x, "type"));
		put(t, "</td><td>");
		sl_console_job_link(t, json_string_value(json_object_get(x, "id")), NULL);
		put(t, "</td><td class=\"id\">");
		sl_console_cell(t, json_object_get(x, "key"));
		put(t, "</td><td>");
		sl_console_cell(t, json_object_get(x, "message"));
		put(t, "</td><td class=\"n\">");
		sl_console_cell(t, json_object_get(x, "attempts"));
		put(t, "</td><td>");
		sl_console_cell(t, json_object_get(x, "replayed"));
		put(t, "</td>");
		if (with_replay) {
			sl_console_putf(t, "<td><form class=\"inline\" method=\"post\" action=\"/dlq/replay\">"
			        "<input type=\"hidden\" name=\"csrf\" value=\"%s\">"
			        "<input type=\"hidden\" name=\"p\" value=\"%" JSON_INTEGER_FORMAT "\">"
			        "<input type=\"hidden\" name=\"o\" value=\"%" JSON_INTEGER_FORMAT "\">"
			        "<button class=\"quiet\">replay&hellip;</button></form></td>",
			     csrf, p, o);
		}
		put(t, "</tr>\n");
	}
	put(t, "</table>\n");
}
