/* ctl_console_render.h -- private to the console's page files: what they share.
 *
 * See ctl_console_render.c. put() and esc() are the two ways text reaches a
 * page: put() for the console's own HTML, esc() for anything from outside.
 */
#ifndef SL_CTL_CONSOLE_RENDER_H
#define SL_CTL_CONSOLE_RENDER_H

#include <jansson.h>
#include <libpq-fe.h>

#include "ctl_console.h"
#include "html.h"
#include "text.h"

/* The most letters one table shows. */
#define MAX_LETTERS_SHOWN 500

/* Reading a topic: how long a partition with more to give may send nothing
 * (a busy broker's first fetch can take a second or two), and how long the
 * whole read may take. Whether Kafka answers at all is the probe's
 * question (SL_CONSOLE_TIMEOUT_MS). */
#define READ_IDLE_MS      4000
#define READ_BUDGET_MS    6000

/* The console's own HTML. */
static inline void
put(struct sl_text *t, const char *html)
{
	sl_text_puts(t, html);
}

/* Untrusted text, escaped; NULL writes nothing. */
static inline void
esc(struct sl_text *t, const char *s)
{
	sl_html_texts(t, s);
}

/* Formatted HTML: for numbers and literals only, never for outside text. */
void sl_console_putf(struct sl_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A JSON value for a table cell: escaped text, a number, yes/no, or a dash. */
void sl_console_cell(struct sl_text *t, json_t *v);

/* A link to a job's page; id (NULL: a dash) and source (NULL: none) are untrusted. */
void sl_console_job_link(struct sl_text *t, const char *id, const char *source);

/* A hidden form field; value NULL writes nothing. */
void sl_console_hidden(struct sl_text *t, const char *name, const char *value);

/* The page's head, navigation (active: the path of the current tab) and
 * title; autorefresh offers the script's refresh. */
void sl_console_page_begin(struct sl_console_reply *r, const char *title, const char *active, int autorefresh);

/* The footer and the script. */
void sl_console_page_end(struct sl_console_reply *r);

/* What a page opened: PostgreSQL (NULL: down, pg_err says why) and
 * whether Kafka answered. */
struct sl_console_sources {
	PGconn *pg;
	char pg_err[512];
	int kafka_up;
	char kafka_err[512];
};

/* Opens PostgreSQL and probes Kafka (each as asked), then writes the line
 * that says which is up. Close with sl_console_sources_close(). */
void sl_console_sources_open(struct sl_console_request *rq, struct sl_console_reply *r,
                             struct sl_console_sources *s, int want_pg, int want_kafka);
void sl_console_sources_close(struct sl_console_sources *s);

/* "what: why" in an error box; both escaped. */
void sl_console_error_box(struct sl_text *t, const char *what, const char *why);

/* Runs a query with n text parameters; returns the result (the caller
 * PQclear()s it) or NULL after writing why into the page. */
PGresult *sl_console_query(struct sl_text *t, PGconn *conn, const char *what, const char *sql, int n,
                           const char *const *params);

/* A table of dead letters, each linked to its page and its job; with_replay
 * adds a replay button (a POST carrying csrf) to each row. */
void sl_console_letters_table(struct sl_text *t, json_t *letters, const char *table_id, int with_replay,
                              const char *csrf);

#endif
