/* ctl_console_dlq.c -- the dead-letter pages of `sluicectl console`: browse, one letter, replay.
 *
 * Letters are read with sl_ctl_dlq_read_json() and replayed with
 * sl_ctl_dlq_replay_json(), the functions `sluicectl dlq` prints from, so
 * the console and the CLI select, mark and replay alike. A replay is a
 * POST that ctl_console.c has checked (CSRF token, origin) before it gets
 * here, and it asks once more on a confirmation page. Dead letters hold
 * hostile input: every field goes through esc() or sl_console_cell().
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ctl_common.h"
#include "ctl_console.h"
#include "ctl_console_render.h"
#include "ctl_sources.h"
#include "html.h"

/* ---- dead letters -------------------------------------------------------- */

/* Returns 1 when letter x passes the page's filters. */
static int
letter_shown(json_t *x, const char *type, const char *code, int pending)
{
	const char *v;

	if (type != NULL && ((v = json_string_value(json_object_get(x, "type"))) == NULL || strcmp(v, type) != 0))
		return 0;
	if (code != NULL && ((v = json_string_value(json_object_get(x, "code"))) == NULL || strcmp(v, code) != 0))
		return 0;
	return !pending || !json_is_true(json_object_get(x, "replayed"));
}

/* The letters by (type, code): counts, each a link to that filter. */
static void
dlq_groups(struct sl_text *t, json_t *letters)
{
	json_t *groups = json_object(), *x, *g;
	struct sl_text key = { NULL, 0, 0, 0 }, url = { NULL, 0, 0, 0 };
	const char *k, *type, *code;
	size_t i;

	json_array_foreach(letters, i, x) {
		type = json_string_value(json_object_get(x, "type"));
		code = json_string_value(json_object_get(x, "code"));
		key.len = 0;
		sl_text_puts(&key, type ? type : "");
		sl_text_put(&key, "\n", 1);
		sl_text_puts(&key, code ? code : "");
		if (key.oom)
			break;
		g = json_object_get(groups, key.p);
		if (g == NULL) {
			g = json_pack("{s:s, s:s, s:i, s:i}", "type", type ? type : "", "code", code ? code : "", "n", 0,
			              "pending", 0);
			json_object_set_new(groups, key.p, g);
		}
		json_object_set_new(g, "n", json_integer(json_integer_value(json_object_get(g, "n")) + 1));
		if (!json_is_true(json_object_get(x, "replayed")))
			json_object_set_new(g, "pending",
			                    json_integer(json_integer_value(json_object_get(g, "pending")) + 1));
	}
	put(t, "<table id=\"dlq-groups\"><tr><th>job type</th><th>error code</th><th class=\"n\">letters</th>"
	       "<th class=\"n\">not replayed</th></tr>\n");
	json_object_foreach(groups, k, g) {
		url.len = 0;
		sl_text_puts(&url, "/dlq?type=");
		sl_html_url(&url, json_string_value(json_object_get(g, "type")));
		sl_text_puts(&url, "&code=");
		sl_html_url(&url, json_string_value(json_object_get(g, "code")));
		put(t, "<tr><td>");
		sl_console_cell(t, json_object_get(g, "type"));
		put(t, "</td><td><a href=\"");
		esc(t, url.p);
		put(t, "\">");
		sl_console_cell(t, json_object_get(g, "code"));
		sl_console_putf(t, "</a></td><td class=\"n\">%" JSON_INTEGER_FORMAT "</td><td class=\"n\">%" JSON_INTEGER_FORMAT
		        "</td></tr>\n",
		     json_integer_value(json_object_get(g, "n")), json_integer_value(json_object_get(g, "pending")));
	}
	put(t, "</table>\n");
	t->oom |= key.oom | url.oom;
	free(key.p);
	free(url.p);
	json_decref(groups);
}

void
sl_console_page_dlq(struct sl_console_request *rq, struct sl_console_reply *r)
{
	struct sl_ctl_dlq_query q = SL_CTL_DLQ_QUERY_ALL;
	const char *type = sl_console_arg(rq, "type"), *code = sl_console_arg(rq, "code");
	int pending = sl_console_arg(rq, "pending") != NULL;
	struct sl_text *t = &r->body;
	json_t *all, *shown, *x;
	struct sl_console_sources s;
	char err[1024];
	size_t i;

	sl_console_page_begin(r, "Dead letters", "/dlq", 0);
	sl_console_sources_open(rq, r, &s, 0, 1);
	put(t, "<p>Topic <code>");
	esc(t, rq->c->dlq_topic);
	put(t, "</code>. Values and messages are shown escaped: dead letters hold hostile input.</p>\n");
	if (!s.kafka_up) {
		put(t, "<p class=\"down\">not available: Kafka is down</p>\n");
		sl_console_page_end(r);
		return;
	}
	all = sl_ctl_dlq_read_json(rq->c->brokers, rq->c->dlq_topic, &q, 0, READ_IDLE_MS,
	                           sl_ctl_now_ms() + READ_BUDGET_MS, err, sizeof(err));
	if (all == NULL) {
		sl_console_error_box(t, "could not read the dead letters", err);
		sl_console_page_end(r);
		return;
	}
	sl_console_putf(t, "<p id=\"dlq-total\">%zu dead letters.</p>\n", json_array_size(json_object_get(all, "letters")));
	dlq_groups(t, json_object_get(all, "letters"));

	put(t, "<h2>Browse</h2>\n<form method=\"get\" action=\"/dlq\" class=\"card\"><label>job type <input name=\"type\" value=\"");
	esc(t, type);
	put(t, "\"></label> <label>error code <input name=\"code\" value=\"");
	esc(t, code);
	sl_console_putf(t, "\"></label> <label><input type=\"checkbox\" name=\"pending\" value=\"1\"%s> not replayed only</label> "
	        "<button>filter</button></form>\n",
	     pending ? " checked" : "");
	shown = json_array();
	json_array_foreach(json_object_get(all, "letters"), i, x)
		if (letter_shown(x, type, code, pending))
			json_array_append(shown, x);
	sl_console_putf(t, "<p id=\"dlq-shown\">%zu selected.</p>\n", json_array_size(shown));
	if (json_array_size(shown) > 0) {
		put(t, "<form method=\"post\" action=\"/dlq/replay\" class=\"card\" id=\"replay-selected\">");
		sl_console_hidden(t, "csrf", rq->c->csrf);
		sl_console_hidden(t, "type", type);
		sl_console_hidden(t, "code", code);
		if (pending)
			sl_console_hidden(t, "pending", "1");
		sl_console_putf(t, "<button>replay these %zu&hellip;</button> (you confirm on the next page)</form>\n",
		     json_array_size(shown));
	}
	sl_console_letters_table(t, shown, "letters", 1, rq->c->csrf);
	json_decref(shown);
	json_decref(all);
	sl_console_page_end(r);
}

/* Reads a letter's coordinates from text; returns 0 or -1. */
static int
coordinates(const char *p, const char *o, struct sl_ctl_dlq_query *q)
{
	long pv, ov;

	if (p == NULL || o == NULL || sl_ctl_parse_long(p, 0, INT32_MAX, &pv) != 0 ||
	    sl_ctl_parse_long(o, 0, INT64_MAX, &ov) != 0)
		return -1;
	q->partition = (int32_t)pv;
	q->offset = ov;
	return 0;
}

void
sl_console_page_letter(struct sl_console_request *rq, struct sl_console_reply *r)
{
	static const char *const fields[] = { "partition", "offset", "timestamp", "code", "message", "type", "id",
	                                      "key", "source_topic", "source_partition", "source_offset", "attempts",
	                                      "value_omitted", "replayed" };
	struct sl_ctl_dlq_query q = SL_CTL_DLQ_QUERY_ALL;
	struct sl_text *t = &r->body;
	json_t *got, *x, *v;
	struct sl_console_sources s;
	char err[1024];
	size_t k;

	sl_console_page_begin(r, "A dead letter", "/dlq", 0);
	if (coordinates(sl_console_arg(rq, "p"), sl_console_arg(rq, "o"), &q) != 0) {
		r->status = 400;
		put(t, "<p class=\"error\">Give p (partition) and o (offset) as numbers.</p>\n");
		sl_console_page_end(r);
		return;
	}
	sl_console_sources_open(rq, r, &s, 0, 1);
	if (!s.kafka_up) {
		put(t, "<p class=\"down\">not available: Kafka is down</p>\n");
		sl_console_page_end(r);
		return;
	}
	got = sl_ctl_dlq_read_json(rq->c->brokers, rq->c->dlq_topic, &q, 1, READ_IDLE_MS,
	                           sl_ctl_now_ms() + READ_BUDGET_MS, err, sizeof(err));
	x = got != NULL ? json_array_get(json_object_get(got, "letters"), 0) : NULL;
	if (got == NULL) {
		sl_console_error_box(t, "could not read the dead letters", err);
	} else if (x == NULL) {
		r->status = 404;
		put(t, "<p class=\"error\">No dead letter at that partition and offset.</p>\n");
	} else {
		put(t, "<table class=\"ledger\" id=\"letter\">");
		for (k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
			sl_console_putf(t, "<tr><th>%s</th><td class=\"id\">", fields[k]);
			if (strcmp(fields[k], "id") == 0 && json_is_string(json_object_get(x, "id")))
				sl_console_job_link(t, json_string_value(json_object_get(x, "id")), NULL);
			else
				sl_console_cell(t, json_object_get(x, fields[k]));
			put(t, "</td></tr>\n");
		}
		put(t, "</table>\n<h2>Original message</h2>\n");
		if ((v = json_object_get(x, "value")) != NULL) {
			put(t, "<pre id=\"letter-value\">");
			sl_console_cell(t, v);
			put(t, "</pre>\n");
		} else if ((v = json_object_get(x, "value_base64")) != NULL) {
			put(t, "<p>Not UTF-8; base64:</p><pre id=\"letter-value\">");
			sl_console_cell(t, v);
			put(t, "</pre>\n");
		}
		sl_console_putf(t, "<form method=\"post\" action=\"/dlq/replay\" class=\"card\">"
		        "<input type=\"hidden\" name=\"csrf\" value=\"%s\">"
		        "<input type=\"hidden\" name=\"p\" value=\"%d\"><input type=\"hidden\" name=\"o\" value=\"%" PRId64 "\">"
		        "<button>replay this letter&hellip;</button></form>\n",
		     rq->c->csrf, (int)q.partition, q.offset);
	}
	json_decref(got);
	sl_console_page_end(r);
}

/* POST /dlq/replay: without confirm=yes, what would be replayed and a
 * button; with it, the replay and its outcome. */
void
sl_console_page_replay(struct sl_console_request *rq, struct sl_console_reply *r)
{
	struct sl_ctl_dlq_query q = SL_CTL_DLQ_QUERY_ALL;
	char type[256], code[256], pb[32], ob[32], yes[8], one[8], err[1024];
	const char *confirm = sl_console_field(rq, "confirm", yes, sizeof(yes));
	const char *p = sl_console_field(rq, "p", pb, sizeof(pb)), *o = sl_console_field(rq, "o", ob, sizeof(ob));
	struct sl_text *t = &r->body;
	json_t *sel, *out, *x;
	struct sl_console_sources s;
	size_t i;

	q.type = sl_console_field(rq, "type", type, sizeof(type));
	q.code = sl_console_field(rq, "code", code, sizeof(code));
	q.pending = sl_console_field(rq, "pending", one, sizeof(one)) != NULL;
	sl_console_page_begin(r, "Replay dead letters", "/dlq", 0);
	if ((p != NULL || o != NULL) && coordinates(p, o, &q) != 0) {
		r->status = 400;
		put(t, "<p class=\"error\">p and o must be numbers.</p>\n");
		sl_console_page_end(r);
		return;
	}
	sl_console_sources_open(rq, r, &s, 0, 1);
	if (!s.kafka_up) {
		put(t, "<p class=\"down\">Nothing replayed: Kafka is down.</p>\n");
		sl_console_page_end(r);
		return;
	}
	if (confirm == NULL || strcmp(confirm, "yes") != 0) {
		sel = sl_ctl_dlq_read_json(rq->c->brokers, rq->c->dlq_topic, &q, 0, READ_IDLE_MS,
		                           sl_ctl_now_ms() + READ_BUDGET_MS, err, sizeof(err));
		if (sel == NULL) {
			sl_console_error_box(t, "could not read the dead letters", err);
			sl_console_page_end(r);
			return;
		}
		sl_console_putf(t, "<p class=\"notice\" id=\"replay-question\">Replay %zu dead letter%s to %s source topic%s? "
		        "Each is sent back with its original key, value and headers; the worker's ledger runs each "
		        "job id at most once, so replaying twice is harmless.</p>\n",
		     json_array_size(json_object_get(sel, "letters")),
		     json_array_size(json_object_get(sel, "letters")) == 1 ? "" : "s",
		     json_array_size(json_object_get(sel, "letters")) == 1 ? "its" : "their",
		     json_array_size(json_object_get(sel, "letters")) == 1 ? "" : "s");
		put(t, "<form method=\"post\" action=\"/dlq/replay\" id=\"replay-confirm\" "
		       "data-confirm=\"Replay these dead letters now?\">");
		sl_console_hidden(t, "csrf", rq->c->csrf);
		sl_console_hidden(t, "type", q.type);
		sl_console_hidden(t, "code", q.code);
		sl_console_hidden(t, "p", p);
		sl_console_hidden(t, "o", o);
		if (q.pending)
			sl_console_hidden(t, "pending", "1");
		sl_console_hidden(t, "confirm", "yes");
		put(t, "<button>yes, replay</button> <a href=\"/dlq\">cancel</a></form>\n");
		sl_console_letters_table(t, json_object_get(sel, "letters"), "letters", 0, rq->c->csrf);
		json_decref(sel);
		sl_console_page_end(r);
		return;
	}
	out = sl_ctl_dlq_replay_json(rq->c->brokers, rq->c->dlq_topic, &q, SL_CONSOLE_TIMEOUT_MS * 5, err, sizeof(err));
	if (out == NULL) {
		sl_console_error_box(t, "could not replay", err);
		sl_console_page_end(r);
		return;
	}
	sl_console_putf(t, "<p class=\"notice\" id=\"replay-outcome\">%" JSON_INTEGER_FORMAT " replayed, %" JSON_INTEGER_FORMAT
	        " failed, %" JSON_INTEGER_FORMAT " skipped (%" JSON_INTEGER_FORMAT " selected).</p>\n",
	     json_integer_value(json_object_get(out, "replayed")), json_integer_value(json_object_get(out, "failed")),
	     json_integer_value(json_object_get(out, "skipped")), json_integer_value(json_object_get(out, "selected")));
	if (json_is_string(json_object_get(out, "error")))
		sl_console_error_box(t, "a replay failed", json_string_value(json_object_get(out, "error")));
	put(t, "<p>Each job's result appears on its page once a worker has run it:</p>\n<ul id=\"replayed-ids\">");
	json_array_foreach(json_object_get(out, "ids"), i, x) {
		put(t, "<li>");
		sl_console_job_link(t, json_string_value(x), NULL);
		put(t, "</li>");
	}
	put(t, "</ul>\n");
	json_decref(out);
	sl_console_page_end(r);
}
