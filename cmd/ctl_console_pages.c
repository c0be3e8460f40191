/* ctl_console_pages.c -- the fleet, job and outbox pages of `sluicectl console`.
 *
 * Every page opens its sources itself (sl_console_sources_open(): PostgreSQL
 * with short timeouts, a Kafka metadata probe) and starts with a line that
 * says which of them is up; a source that is down leaves its sections empty
 * with the reason, and the rest of the page is still drawn. Every string
 * that comes from Kafka, PostgreSQL or a worker goes through esc()
 * (sl_html_text()) on its way into the page; sl_console_putf() is for
 * numbers and literals only. Charts are inline SVG drawn here, so a page
 * needs neither script nor download to be read. The dead-letter pages are
 * in ctl_console_dlq.c.
 *
 * Not for: routing, authentication or CSRF checks (ctl_console.c does them
 * before any function here runs).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "config.h"
#include "ctl_common.h"
#include "ctl_console.h"
#include "ctl_console_render.h"
#include "ctl_sources.h"
#include "html.h"

/* ---- charts -------------------------------------------------------------- */

#define CHART_W 520
#define CHART_H 140
#define CHART_PAD 28

/* Draws n bars (values v, oldest first) as an SVG with its own scale. */
static void
svg_bars(struct sl_text *t, const char *id, const char *caption, const double *v, size_t n, const char *unit,
         const char *cls)
{
	double max = 0, bw = n ? (double)(CHART_W - CHART_PAD) / (double)n : 0, h;
	size_t i;

	for (i = 0; i < n; i++)
		if (v[i] > max)
			max = v[i];
	sl_console_putf(t, "<figure id=\"%s\"><svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"",
	     id, CHART_W, CHART_H, CHART_W, CHART_H);
	esc(t, caption);
	put(t, "\">");
	sl_console_putf(t, "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>", CHART_PAD, CHART_H - 16, CHART_W,
	     CHART_H - 16);
	for (i = 0; i < n && max > 0; i++) {
		h = v[i] / max * (CHART_H - 30);
		if (v[i] > 0 && h < 1)
			h = 1;
		sl_console_putf(t, "<rect class=\"%s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"><title>%.3g %s</title></rect>",
		     cls, CHART_PAD + i * bw, CHART_H - 16 - h, bw > 2 ? bw - 1 : bw, h, v[i], unit);
	}
	sl_console_putf(t, "<text x=\"0\" y=\"12\">%.3g</text><text x=\"0\" y=\"%d\">0</text>", max, CHART_H - 16);
	sl_console_putf(t, "<text x=\"%d\" y=\"%d\">-60 min</text><text x=\"%d\" y=\"%d\">now</text></svg>", CHART_PAD,
	     CHART_H - 3, CHART_W - 24, CHART_H - 3);
	put(t, "<figcaption>");
	esc(t, caption);
	put(t, "</figcaption></figure>\n");
}

/* Draws the sampler's points as a line over the last hour. */
static void
svg_line(struct sl_text *t, const struct sl_console_point *p, size_t n, int64_t now_ms)
{
	double max = 0, x, y;
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i].jobs_per_s > max)
			max = p[i].jobs_per_s;
	sl_console_putf(t, "<figure id=\"chart-sampled\"><svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
	        "aria-label=\"jobs per second sampled from the workers\">",
	     CHART_W, CHART_H, CHART_W, CHART_H);
	sl_console_putf(t, "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>", CHART_PAD, CHART_H - 16, CHART_W,
	     CHART_H - 16);
	if (n > 0) {
		put(t, "<polyline class=\"line\" points=\"");
		for (i = 0; i < n; i++) {
			x = CHART_PAD + (double)(CHART_W - CHART_PAD) * (1.0 - (double)(now_ms - p[i].t_ms) / 3600000.0);
			y = CHART_H - 16 - (max > 0 ? p[i].jobs_per_s / max * (CHART_H - 30) : 0);
			sl_console_putf(t, "%.1f,%.1f ", x < CHART_PAD ? CHART_PAD : x, y);
		}
		put(t, "\"/>");
	}
	sl_console_putf(t, "<text x=\"0\" y=\"12\">%.3g</text><text x=\"0\" y=\"%d\">0</text>", max, CHART_H - 16);
	sl_console_putf(t, "<text x=\"%d\" y=\"%d\">-60 min</text><text x=\"%d\" y=\"%d\">now</text></svg>", CHART_PAD,
	     CHART_H - 3, CHART_W - 24, CHART_H - 3);
	sl_console_putf(t, "<figcaption>Jobs/s across the workers, sampled every %d s since the console started "
	        "(%zu points)</figcaption></figure>\n", SL_CONSOLE_SAMPLE_S, n);
}

/* ---- fleet --------------------------------------------------------------- */

static const char LEDGER_COUNTS_SQL[] = "select status, count(*) from sluice.jobs group by status";

/* Per minute of the last hour: minutes ago (0-59), jobs finished with a
 * final outcome. Failed jobs are counted from their dead letters instead:
 * every failed job has one, while only those that reached their
 * transaction have a ledger row. */
static const char LEDGER_HOUR_SQL[] =
	"select floor(extract(epoch from clock_timestamp() - finished_at) / 60)::int, count(*)"
	" from sluice.jobs where finished_at > clock_timestamp() - interval '60 minutes'"
	" and status in ('succeeded', 'rejected') group by 1";

/* Writes the ledger's counts and adds to done (OUT, 60 minutes, oldest
 * first) the jobs that finished with a final outcome in each minute. */
static void
fleet_ledger(struct sl_text *t, PGconn *pg, double *done)
{
	static const char *const statuses[] = { "succeeded", "rejected", "failed", "running" };
	PGresult *res;
	long counts[4] = { 0 };
	int i, k, ago;

	put(t, "<h2>Ledger (sluice.jobs)</h2>\n");
	if (pg == NULL) {
		put(t, "<p class=\"down\">not available: PostgreSQL is down</p>\n");
		return;
	}
	res = sl_console_query(t, pg, "could not count the ledger", LEDGER_COUNTS_SQL, 0, NULL);
	if (res == NULL)
		return;
	for (i = 0; i < PQntuples(res); i++)
		for (k = 0; k < 4; k++)
			if (strcmp(PQgetvalue(res, i, 0), statuses[k]) == 0)
				counts[k] = strtol(PQgetvalue(res, i, 1), NULL, 10);
	PQclear(res);
	put(t, "<div class=\"figures\">");
	for (k = 0; k < 4; k++)
		sl_console_putf(t, "<div class=\"figure\" id=\"ledger-%s\"><b>%ld</b> %s</div>", statuses[k], counts[k], statuses[k]);
	put(t, "</div>\n");

	res = sl_console_query(t, pg, "could not read the last hour of the ledger", LEDGER_HOUR_SQL, 0, NULL);
	if (res == NULL)
		return;
	for (i = 0; i < PQntuples(res); i++) {
		ago = (int)strtol(PQgetvalue(res, i, 0), NULL, 10);
		if (ago < 0 || ago > 59)
			continue;
		done[59 - ago] += strtod(PQgetvalue(res, i, 1), NULL);
	}
	PQclear(res);
}

/* Writes the dead-letter count and adds to failed (OUT, 60 minutes, oldest
 * first) the letters written in each minute, from their timestamps. */
static void
fleet_letters(struct sl_console_request *rq, struct sl_text *t, int kafka_up, double *failed)
{
	struct sl_ctl_dlq_query q = SL_CTL_DLQ_QUERY_ALL;
	int64_t now = sl_ctl_now_ms(), ts;
	long pending = 0, ago;
	json_t *got, *x;
	char err[1024];
	size_t i;

	if (!kafka_up)
		return;
	got = sl_ctl_dlq_read_json(rq->c->brokers, rq->c->dlq_topic, &q, 0, READ_IDLE_MS, now + READ_BUDGET_MS,
	                           err, sizeof(err));
	if (got == NULL) {
		sl_console_error_box(t, "could not read the dead letters", err);
		return;
	}
	json_array_foreach(json_object_get(got, "letters"), i, x) {
		if (!json_is_true(json_object_get(x, "replayed")))
			pending++;
		if (!json_is_string(json_object_get(x, "timestamp")) ||
		    sl_ctl_parse_time(json_string_value(json_object_get(x, "timestamp")), &ts) != 0)
			continue;
		ago = (long)((now - ts) / 60000);
		if (ago >= 0 && ago < 60)
			failed[59 - ago] += 1;
	}
	sl_console_putf(t, "<div class=\"figures\"><div class=\"figure\" id=\"dead-letters\"><b>%zu</b> dead letters "
	        "(%ld not replayed)</div></div>\n",
	     json_array_size(json_object_get(got, "letters")), pending);
	json_decref(got);
}

/* The partitions a worker holds, from its lag metrics ("topic[p]"). */
static void
worker_partitions(struct sl_text *t, json_t *sum)
{
	const char *k;
	json_t *v;
	int first = 1;

	json_object_foreach(json_object_get(sum, "lag"), k, v) {
		(void)v;
		if (!first)
			put(t, ", ");
		esc(t, k);
		first = 0;
	}
	if (first)
		put(t, "none");
}

static void
fleet_workers(struct sl_console_request *rq, struct sl_text *t)
{
	struct console *c = rq->c;
	char err[512];
	json_t *sum, *v;
	double jps;
	int64_t at, now = sl_ctl_now_ms();
	size_t i;

	sl_console_putf(t, "<h2>Workers</h2>\n");
	if (c->n_workers == 0) {
		put(t, "<p class=\"notice\">No worker to poll: give --worker URL, or -c with a worker configuration "
		       "whose http.listen is set.</p>\n");
		return;
	}
	put(t, "<table id=\"workers\"><tr><th>worker</th><th>ready</th><th>partitions</th><th class=\"n\">in flight</th>"
	       "<th class=\"n\">jobs/s</th><th class=\"n\">utilisation</th><th>version</th><th>sampled</th></tr>\n");
	for (i = 0; i < c->n_workers; i++) {
		sl_console_sampler_worker(c, i, &sum, err, sizeof(err), &jps, &at);
		put(t, "<tr><td class=\"id\">");
		esc(t, c->workers[i]);
		put(t, "</td>");
		if (sum == NULL) {
			if (at == 0)
				put(t, "<td colspan=\"7\" class=\"warn\">not sampled yet</td></tr>\n");
			else {
				put(t, "<td colspan=\"7\" class=\"down\">unreachable: ");
				esc(t, err);
				put(t, "</td></tr>\n");
			}
			continue;
		}
		if (json_is_true(json_object_get(sum, "ready"))) {
			put(t, "<td class=\"up\">ready</td>");
		} else {
			put(t, "<td class=\"down\">not ready: ");
			esc(t, json_string_value(json_object_get(sum, "ready_reason")));
			put(t, "</td>");
		}
		put(t, "<td>");
		worker_partitions(t, sum);
		put(t, "</td><td class=\"n\">");
		sl_console_cell(t, json_object_get(sum, "in_flight"));
		put(t, "</td><td class=\"n\">");
		if (jps >= 0)
			sl_console_putf(t, "%.1f", jps);
		else
			put(t, "&ndash;");
		put(t, "</td><td class=\"n\">");
		v = json_object_get(sum, "executor_utilisation");
		if (json_is_number(v))
			sl_console_putf(t, "%.0f%%", json_number_value(v) * 100);
		else
			put(t, "&ndash;");
		put(t, "</td><td>");
		sl_console_cell(t, json_object_get(sum, "version"));
		sl_console_putf(t, "</td><td>%.0f s ago</td></tr>\n", (double)(now - at) / 1000.0);
		json_decref(sum);
	}
	put(t, "</table>\n");
}

static void
fleet_lag(struct sl_console_request *rq, struct sl_text *t, int kafka_up)
{
	struct console *c = rq->c;
	char err[1024];
	json_t *lag, *o;
	size_t i;

	put(t, "<h2>Lag per partition (group ");
	esc(t, c->group);
	put(t, ")</h2>\n");
	if (!kafka_up) {
		put(t, "<p class=\"down\">not available: Kafka is down</p>\n");
		return;
	}
	lag = sl_ctl_lag_json(c->brokers, c->group, c->topics, c->n_topics, READ_IDLE_MS, NULL, err,
	                      sizeof(err));
	if (lag == NULL) {
		sl_console_error_box(t, "could not read the lag", err);
		return;
	}
	put(t, "<table id=\"lag\"><tr><th>topic</th><th class=\"n\">partition</th><th class=\"n\">committed</th>"
	       "<th class=\"n\">end</th><th class=\"n\">lag (messages)</th><th class=\"n\">lag (seconds)</th></tr>\n");
	json_array_foreach(json_object_get(lag, "partitions"), i, o) {
		put(t, "<tr><td>");
		sl_console_cell(t, json_object_get(o, "topic"));
		put(t, "</td><td class=\"n\">");
		sl_console_cell(t, json_object_get(o, "partition"));
		put(t, "</td><td class=\"n\">");
		sl_console_cell(t, json_object_get(o, "committed"));
		put(t, "</td><td class=\"n\">");
		sl_console_cell(t, json_object_get(o, "end"));
		put(t, "</td><td class=\"n\">");
		sl_console_cell(t, json_object_get(o, "lag"));
		put(t, "</td><td class=\"n\">");
		sl_console_cell(t, json_object_get(o, "lag_seconds"));
		put(t, "</td></tr>\n");
	}
	sl_console_putf(t, "</table>\n<p id=\"lag-total\">%" JSON_INTEGER_FORMAT " messages behind; the oldest unconsumed is "
	        "%.1f s old.</p>\n",
	     json_integer_value(json_object_get(lag, "total")), json_number_value(json_object_get(lag, "oldest_seconds")));
	json_decref(lag);
}

void
sl_console_page_fleet(struct sl_console_request *rq, struct sl_console_reply *r)
{
	double per_min[60] = { 0 }, failed[60] = { 0 }, fail_pct[60] = { 0 };
	struct sl_text *t = &r->body;
	struct sl_console_point *pts;
	struct sl_console_sources s;
	size_t n, i;

	sl_console_page_begin(r, "Fleet", "/", 1);
	sl_console_sources_open(rq, r, &s, 1, 1);
	fleet_workers(rq, t);
	fleet_lag(rq, t, s.kafka_up);
	fleet_ledger(t, s.pg, per_min);
	fleet_letters(rq, t, s.kafka_up, failed);
	for (i = 0; i < 60; i++) {
		per_min[i] += failed[i];
		fail_pct[i] = per_min[i] > 0 ? 100.0 * failed[i] / per_min[i] : 0;
	}
	put(t, "<h2>The last hour</h2>\n<div class=\"charts\">");
	svg_bars(t, "chart-throughput", "Jobs finished per minute: the ledger's succeeded and rejected, "
	         "plus dead letters", per_min, 60, "jobs", "bar");
	svg_bars(t, "chart-failures", "Failure rate per minute: dead letters, % of jobs finished", fail_pct, 60, "%",
	         "fail");
	/* A copy of the points for this request: pages run on many threads. */
	pts = malloc(sizeof(*pts) * SL_CONSOLE_POINTS);
	if (pts != NULL) {
		n = sl_console_sampler_points(rq->c, pts);
		svg_line(t, pts, n, sl_ctl_now_ms());
		free(pts);
	} else {
		t->oom = 1;
	}
	put(t, "</div>\n");
	sl_console_sources_close(&s);
	sl_console_page_end(r);
}

/* ---- a job's story ------------------------------------------------------- */

static const char JOB_SQL[] =
	"select source, id, type, status, attempts, result,"
	" to_char(created_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
	" to_char(finished_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
	" from sluice.jobs where id = $1 and ($2::text is null or source = $2) order by created_at limit 20";

/* The result topic of a job type: its own, else the configuration's. */
static const char *
result_topic_of(const struct console *c, const char *type)
{
	const struct sl_job_type *jt = c->cfg != NULL ? sl_config_job_type(c->cfg, type) : NULL;

	return jt != NULL && jt->result_topic != NULL ? jt->result_topic : c->result_topic;
}

/* Every result of a job in its result topic. Those with the stored result's
 * event id are copies of it and are compared byte for byte with the
 * ledger's; others are outcomes published without a ledger row (a failed
 * attempt before a replay, say). */
static void
job_copies(struct sl_console_request *rq, struct sl_text *t, const char *source, const char *id, const char *type,
           const char *stored, int kafka_up)
{
	struct sl_ctl_dlq_query q = SL_CTL_DLQ_QUERY_ALL;
	const char *topic = result_topic_of(rq->c, type), *v, *ev_source, *ev_id, *stored_id = NULL;
	char err[1024];
	json_t *got, *x, *ev, *st;
	size_t i, n = 0, same = 0;

	put(t, "<h3>Results in ");
	esc(t, topic);
	put(t, "</h3>\n");
	if (!kafka_up) {
		put(t, "<p class=\"down\">not available: Kafka is down</p>\n");
		return;
	}
	q.subject = id;
	got = sl_ctl_dlq_read_json(rq->c->brokers, topic, &q, 1, READ_IDLE_MS, sl_ctl_now_ms() + READ_BUDGET_MS,
	                           err, sizeof(err));
	if (got == NULL) {
		sl_console_error_box(t, "could not read the result topic", err);
		return;
	}
	st = stored != NULL ? json_loads(stored, 0, NULL) : NULL;
	stored_id = json_string_value(json_object_get(st, "id"));
	put(t, "<table id=\"copies\"><tr><th>partition/offset</th><th>time</th><th>result event id</th><th>status</th>"
	       "<th>compared with the ledger's</th></tr>\n");
	json_array_foreach(json_object_get(got, "letters"), i, x) {
		v = json_string_value(json_object_get(x, "value"));
		ev = v != NULL ? json_loads(v, 0, NULL) : NULL;
		ev_source = json_string_value(json_object_get(json_object_get(ev, "data"), "source"));
		ev_id = json_string_value(json_object_get(ev, "id"));
		/* The same id from another source is another job. */
		if (ev_source == NULL || strcmp(ev_source, source) != 0) {
			json_decref(ev);
			continue;
		}
		sl_console_putf(t, "<tr><td>%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT "</td><td>",
		     json_integer_value(json_object_get(x, "partition")), json_integer_value(json_object_get(x, "offset")));
		sl_console_cell(t, json_object_get(x, "timestamp"));
		put(t, "</td><td class=\"id\">");
		esc(t, ev_id);
		put(t, "</td><td>");
		sl_console_cell(t, json_object_get(json_object_get(ev, "data"), "status"));
		if (stored_id != NULL && ev_id != NULL && strcmp(ev_id, stored_id) == 0) {
			n++;
			if (strcmp(v, stored) == 0) {
				same++;
				put(t, "</td><td class=\"up\">a copy, identical</td></tr>\n");
			} else {
				put(t, "</td><td class=\"down\">a copy that differs</td></tr>\n");
			}
		} else {
			put(t, "</td><td class=\"warn\">another outcome (no ledger row: e.g. failed before a replay)</td></tr>\n");
		}
		json_decref(ev);
	}
	put(t, "</table>\n");
	if (n == 0)
		put(t, "<p id=\"copies-summary\">No copy of the ledger's result in the topic (yet).</p>\n");
	else if (same == n)
		sl_console_putf(t, "<p id=\"copies-summary\" class=\"up\">%zu cop%s of the ledger's result, all identical to it.</p>\n", n,
		     n == 1 ? "y" : "ies");
	else
		sl_console_putf(t, "<p id=\"copies-summary\" class=\"down\">%zu cop%s of the ledger's result, %zu differ from it.</p>\n",
		     n, n == 1 ? "y" : "ies", n - same);
	json_decref(st);
	json_decref(got);
}

static void
job_row(struct sl_console_request *rq, struct sl_text *t, const PGresult *res, int i, int kafka_up)
{
	static const char *const names[] = { "source", "id", "type", "status", "attempts", NULL, "created", "finished" };
	const char *status = PQgetvalue(res, i, 3);
	int k;

	put(t, "<section class=\"job\"><table class=\"ledger\">");
	for (k = 0; k < 8; k++) {
		if (names[k] == NULL)
			continue;
		sl_console_putf(t, "<tr><th>%s</th><td class=\"%s\">", names[k], k == 3 ? status[0] == 's' ? "up" : status[0] == 'f' ? "down" : "warn" : "id");
		if (PQgetisnull(res, i, k))
			put(t, "&ndash;");
		else
			esc(t, PQgetvalue(res, i, k));
		put(t, "</td></tr>");
	}
	put(t, "</table>\n<h3>Result event as stored</h3>\n");
	if (PQgetisnull(res, i, 5)) {
		put(t, "<p>none yet</p>\n");
	} else {
		put(t, "<pre class=\"result\">");
		esc(t, PQgetvalue(res, i, 5));
		put(t, "</pre>\n");
	}
	job_copies(rq, t, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
	           PQgetisnull(res, i, 5) ? NULL : PQgetvalue(res, i, 5), kafka_up);
	put(t, "</section>\n");
}

void
sl_console_page_job(struct sl_console_request *rq, struct sl_console_reply *r)
{
	struct sl_ctl_dlq_query q = SL_CTL_DLQ_QUERY_ALL;
	const char *id = sl_console_arg(rq, "id"), *source = sl_console_arg(rq, "source");
	const char *key = sl_console_arg(rq, "key");
	const char *params[2] = { id, source };
	struct sl_text *t = &r->body;
	struct sl_console_sources s;
	PGresult *res = NULL;
	json_t *letters;
	char err[1024];
	int i;

	sl_console_page_begin(r, "A job's story", "/job", 0);
	put(t, "<form method=\"get\" action=\"/job\" class=\"card\">"
	       "<label>id <input name=\"id\" size=\"36\" value=\"");
	esc(t, id);
	put(t, "\"></label> <label>source <input name=\"source\" size=\"20\" value=\"");
	esc(t, source);
	put(t, "\"></label> <label>or key <input name=\"key\" size=\"20\" value=\"");
	esc(t, key);
	put(t, "\"></label> <button>find</button></form>\n");
	if (id == NULL && key == NULL) {
		put(t, "<p>Search by the job's id (and source, when ids repeat across sources), or by its Kafka key "
		       "(looked up in the dead letters, which keep the key).</p>\n");
		sl_console_page_end(r);
		return;
	}
	sl_console_sources_open(rq, r, &s, id != NULL, 1);
	if (id != NULL) {
		put(t, "<h2>Ledger</h2>\n");
		if (s.pg == NULL)
			put(t, "<p class=\"down\">not available: PostgreSQL is down</p>\n");
		else if ((res = sl_console_query(t, s.pg, "could not read the ledger", JOB_SQL, 2, params)) != NULL) {
			if (PQntuples(res) == 0)
				put(t, "<p id=\"no-ledger-row\">No ledger row: the job has not run (or not under this id).</p>\n");
			for (i = 0; i < PQntuples(res); i++)
				job_row(rq, t, res, i, s.kafka_up);
			PQclear(res);
		}
	}
	put(t, "<h2>Dead letters</h2>\n");
	if (!s.kafka_up) {
		put(t, "<p class=\"down\">not available: Kafka is down</p>\n");
	} else {
		q.id = id;
		q.key = id == NULL ? key : NULL;
		letters = sl_ctl_dlq_read_json(rq->c->brokers, rq->c->dlq_topic, &q, 0, READ_IDLE_MS,
		                               sl_ctl_now_ms() + READ_BUDGET_MS, err, sizeof(err));
		if (letters == NULL)
			sl_console_error_box(t, "could not read the dead letters", err);
		else if (json_array_size(json_object_get(letters, "letters")) == 0)
			put(t, "<p id=\"no-letters\">None.</p>\n");
		else
			sl_console_letters_table(t, json_object_get(letters, "letters"), "job-letters", 1, rq->c->csrf);
		json_decref(letters);
	}
	sl_console_sources_close(&s);
	sl_console_page_end(r);
}

/* ---- outbox and schedules ------------------------------------------------ */

static void
object_table(struct sl_text *t, const char *id, json_t *rows, const char *const *cols, size_t n)
{
	json_t *x;
	size_t i, k;

	sl_console_putf(t, "<table id=\"%s\"><tr>", id);
	for (k = 0; k < n; k++)
		sl_console_putf(t, "<th>%s</th>", cols[k]);
	put(t, "</tr>\n");
	json_array_foreach(rows, i, x) {
		put(t, "<tr>");
		for (k = 0; k < n; k++) {
			put(t, "<td>");
			sl_console_cell(t, json_object_get(x, cols[k]));
			put(t, "</td>");
		}
		put(t, "</tr>\n");
	}
	put(t, "</table>\n");
}

void
sl_console_page_outbox(struct sl_console_request *rq, struct sl_console_reply *r)
{
	static const char *const lease_cols[] = { "shard", "holder", "epoch", "expires_in_seconds", "relayed",
	                                           "last_relayed_seconds_ago" };
	static const char *const relay_cols[] = { "holder", "seen_seconds_ago" };
	static const char *const sched_cols[] = { "name", "cron", "tz", "type", "key", "next", "last", "fires",
	                                          "last_error" };
	struct sl_text *t = &r->body;
	json_t *o, *a, *x;
	struct sl_console_sources s;
	char err[1024];

	sl_console_page_begin(r, "Outbox & schedules", "/outbox", 1);
	sl_console_sources_open(rq, r, &s, 1, 0);
	if (s.pg == NULL) {
		put(t, "<p class=\"down\">not available: PostgreSQL is down</p>\n");
		sl_console_page_end(r);
		return;
	}
	put(t, "<h2>Outbox</h2>\n");
	o = sl_ctl_outbox_json(s.pg, err, sizeof(err));
	if (o == NULL) {
		sl_console_error_box(t, "could not read the outbox", err);
	} else {
		put(t, "<div class=\"figures\">");
		put(t, "<div class=\"figure\" id=\"outbox-depth\"><b>");
		sl_console_cell(t, json_object_get(o, "depth"));
		put(t, "</b> rows waiting</div><div class=\"figure\" id=\"outbox-watermark\"><b>");
		sl_console_cell(t, json_object_get(o, "behind_watermark"));
		put(t, "</b> behind the watermark</div><div class=\"figure\" id=\"outbox-lag\"><b>");
		sl_console_cell(t, json_object_get(o, "lag_seconds"));
		put(t, "</b> oldest row, s (relay lag)</div><div class=\"figure\" id=\"outbox-delayed\"><b>");
		sl_console_cell(t, json_object_get(o, "delayed"));
		put(t, "</b> delayed jobs</div></div>\n<h3>Shard leases</h3>\n");
		object_table(t, "leases", json_object_get(o, "leases"), lease_cols, sizeof(lease_cols) / sizeof(lease_cols[0]));
		put(t, "<h3>Relays</h3>\n");
		object_table(t, "relays", json_object_get(o, "relays"), relay_cols, sizeof(relay_cols) / sizeof(relay_cols[0]));
		put(t, "<h3>What holds the watermark</h3>\n<p id=\"oldest-xact\">");
		x = json_object_get(o, "oldest_transaction");
		if (json_is_object(x)) {
			put(t, "The oldest running transaction: pid ");
			sl_console_cell(t, json_object_get(x, "pid"));
			put(t, ", database ");
			sl_console_cell(t, json_object_get(x, "database"));
			put(t, ", application ");
			sl_console_cell(t, json_object_get(x, "application_name"));
			put(t, ", ");
			sl_console_cell(t, json_object_get(x, "state"));
			put(t, ", open ");
			sl_console_cell(t, json_object_get(x, "age_seconds"));
			put(t, " s.");
		} else {
			put(t, "No transaction holds it back.");
		}
		put(t, "</p>\n");
		json_decref(o);
	}
	put(t, "<h2>Recurring jobs</h2>\n");
	a = sl_ctl_schedules_json(s.pg, err, sizeof(err));
	if (a == NULL) {
		sl_console_error_box(t, "could not read the schedules", err);
	} else if (json_array_size(a) == 0) {
		put(t, "<p id=\"no-schedules\">No schedules (sluice.schedule() adds one).</p>\n");
	} else {
		object_table(t, "schedules", a, sched_cols, sizeof(sched_cols) / sizeof(sched_cols[0]));
	}
	json_decref(a);
	sl_console_sources_close(&s);
	sl_console_page_end(r);
}

void
sl_console_page_not_found(struct sl_console_request *rq, struct sl_console_reply *r)
{
	(void)rq;
	r->status = 404;
	sl_console_page_begin(r, "Not found", "", 0);
	put(&r->body, "<p>No such page. <a href=\"/\">The fleet</a>.</p>\n");
	sl_console_page_end(r);
}
