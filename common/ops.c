/* ops.c -- what operators see of a running worker: metrics, HTTP, systemd.
 *
 * The consumer thread calls sl_ops_tick() on every loop iteration. Once a
 * second it takes a snapshot of what only it may read (partitions, lag,
 * executor activity) for the HTTP thread's collector, sends STATUS= every
 * few seconds, and pings WATCHDOG=1 at half the watchdog interval, but only
 * while the worker makes progress or has nothing to do: an executor running
 * one job longer than limits.stall_timeout, or a partition whose committable
 * offset has not moved for that long while it has jobs in flight, stops the
 * pings and lets systemd restart the worker. A wedged consumer thread stops
 * them by itself.
 *
 * Not for: the metrics registry or the HTTP server (metrics.c, http.c).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "log.h"
#include "notify.h"
#include "ops.h"

#include "clock.h"

static const double duration_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	                                  0.1,    0.25,  0.5,    1,     2.5,  5,     10 };

/* HTTP thread: ready when no job waits because PostgreSQL cannot judge it
 * now, PostgreSQL answers, and the group is joined; the reason names the
 * first of these that fails (a worker waiting for PostgreSQL at start has
 * not joined the group yet either). */
static int
ready(void *arg, char *reason, size_t reason_size)
{
	struct sl_worker *w = arg;

	if (atomic_load(&w->ops.waiting) > 0) {
		pthread_mutex_lock(&w->ops.wait_mu);
		snprintf(reason, reason_size, "waiting for postgresql, %ld jobs held: %s",
		         atomic_load(&w->ops.jobs_waiting), w->ops.wait_reason);
		pthread_mutex_unlock(&w->ops.wait_mu);
		return 0;
	}
	if (!atomic_load(&w->ops.pg_ok)) {
		pthread_mutex_lock(&w->ops.wait_mu);
		snprintf(reason, reason_size, "postgresql unreachable%s%s", *w->ops.wait_reason ? ": " : "",
		         w->ops.wait_reason);
		pthread_mutex_unlock(&w->ops.wait_mu);
		return 0;
	}
	if (!atomic_load(&w->ops.joined)) {
		if (atomic_load(&w->ops.brokers_down)) {
			pthread_mutex_lock(&w->ops.wait_mu);
			snprintf(reason, reason_size, "kafka brokers unreachable: %s", w->ops.kafka_reason);
			pthread_mutex_unlock(&w->ops.wait_mu);
		} else {
			snprintf(reason, reason_size, "not in the consumer group (not yet, or its assignment was lost)");
		}
		return 0;
	}
	return 1;
}

/* HTTP thread: lag per owned partition, from the last snapshot. */
static void
collect(sl_metrics_writer_t *mw, void *arg)
{
	struct sl_worker *w = arg;
	char part[16];
	size_t i;

	pthread_mutex_lock(&w->ops.lag_mu);
	sl_metrics_write_family(mw, "sluice_consumer_lag_messages", SL_METRICS_GAUGE,
	                        "messages behind the end of each owned partition, from the committable offset");
	for (i = 0; i < w->ops.n_lag; i++) {
		snprintf(part, sizeof(part), "%d", (int)w->ops.lag[i].partition);
		sl_metrics_write_sample(mw, "sluice_consumer_lag_messages", (double)w->ops.lag[i].messages, "topic",
		                        w->ops.lag[i].topic, "partition", part, NULL);
	}
	sl_metrics_write_family(mw, "sluice_consumer_lag_seconds", SL_METRICS_GAUGE,
	                        "age of the oldest unfinished message of each owned partition");
	for (i = 0; i < w->ops.n_lag; i++) {
		snprintf(part, sizeof(part), "%d", (int)w->ops.lag[i].partition);
		sl_metrics_write_sample(mw, "sluice_consumer_lag_seconds", w->ops.lag[i].seconds, "topic",
		                        w->ops.lag[i].topic, "partition", part, NULL);
	}
	pthread_mutex_unlock(&w->ops.lag_mu);
}

int
sl_ops_start(struct sl_worker *w, char *errbuf, size_t errbuf_size)
{
	struct sl_ops *o = &w->ops;
	sl_metrics_family_t *jobs, *dur, *retries, *f;
	struct sl_http_handlers hh;
	size_t i;

	pthread_mutex_init(&o->lag_mu, NULL);
	pthread_mutex_init(&o->wait_mu, NULL);
	if (sl_notify_init(errbuf, errbuf_size) < 0)
		return -1;
	if ((o->metrics = sl_metrics_new()) == NULL) {
		snprintf(errbuf, errbuf_size, "out of memory");
		return -1;
	}
	jobs = sl_metrics_counter(o->metrics, "sluice_jobs_total", "jobs finished, by type and status", "type,status");
	dur = sl_metrics_histogram(o->metrics, "sluice_job_duration_seconds",
	                           "time an executor spent on a job, retries included", "type", duration_bounds,
	                           sizeof(duration_bounds) / sizeof(duration_bounds[0]));
	retries = sl_metrics_counter(o->metrics, "sluice_job_retries_total", "transient failures retried", "type");
	for (i = 0; i < w->n_types; i++) {
		struct sl_job_type_rt *t = &w->types[i];
		t->m_ok = sl_metrics_series(jobs, t->conf->type, "succeeded");
		t->m_rejected = sl_metrics_series(jobs, t->conf->type, "rejected");
		t->m_failed = sl_metrics_series(jobs, t->conf->type, "failed");
		t->m_retries = sl_metrics_series(retries, t->conf->type);
		t->m_duration = sl_metrics_series(dur, t->conf->type);
	}
	o->m_unknown[0] = sl_metrics_series(jobs, "unknown", "succeeded");
	o->m_unknown[1] = sl_metrics_series(jobs, "unknown", "rejected");
	o->m_unknown[2] = sl_metrics_series(jobs, "unknown", "failed");
	o->f_dead_letters = sl_metrics_counter(o->metrics, "sluice_dead_letters_total", "dead letters published",
	                                       "type,code");
	o->f_kafka_errors = sl_metrics_counter(o->metrics, "sluice_kafka_errors_total",
	                                       "kafka client, produce and delivery errors", "error");
	f = sl_metrics_counter(o->metrics, "sluice_pg_errors_total", "postgresql failures, by class", "class");
	o->m_pg[0] = sl_metrics_series(f, "transient");
	o->m_pg[1] = sl_metrics_series(f, "permanent");
	o->m_pg[2] = sl_metrics_series(f, "unavailable");
	o->m_waiting = sl_metrics_series(
		sl_metrics_gauge(o->metrics, "sluice_jobs_waiting",
		                 "jobs held, without counting attempts, because postgresql cannot judge them now", NULL),
		NULL);
	o->m_round_trips = sl_metrics_series(
		sl_metrics_counter(o->metrics, "sluice_pg_round_trips_total",
		                   "waits of the executors for postgresql (one per pipeline or statement)", NULL),
		NULL);
	o->m_replays = sl_metrics_series(
		sl_metrics_counter(o->metrics, "sluice_group_replays_total",
		                   "group transactions rolled back and run again more carefully (savepoints, no "
		                   "plans) because a job in them did not succeed",
		                   NULL),
		NULL);
	o->m_in_flight = sl_metrics_series(
		sl_metrics_gauge(o->metrics, "sluice_jobs_in_flight", "jobs fetched and not yet acknowledged", NULL),
		NULL);
	o->m_util = sl_metrics_series(sl_metrics_gauge(o->metrics, "sluice_executor_utilisation_ratio",
	                                               "share of executor time spent running jobs (last second)",
	                                               NULL),
	                              NULL);
	o->m_assigned = sl_metrics_series(
		sl_metrics_gauge(o->metrics, "sluice_partitions_assigned", "partitions owned", NULL), NULL);
	o->m_duplicates = sl_metrics_series(
		sl_metrics_counter(o->metrics, "sluice_duplicates_total",
		                   "redelivered jobs answered with their stored result (their new run rolled back)", NULL),
		NULL);
	if (sl_metrics_add_collector(o->metrics, collect, w) < 0) {
		snprintf(errbuf, errbuf_size, "out of memory");
		return -1;
	}
	atomic_store(&o->pg_ok, 1);
	if (*w->cfg->http_listen != '\0') {
		hh.metrics = o->metrics;
		hh.ready = ready;
		hh.ready_arg = w;
		if ((o->http = sl_http_start(w->cfg->http_listen, &hh, errbuf, errbuf_size)) == NULL)
			return -1;
		sl_log_info("http listening on %s (port %d)", w->cfg->http_listen, sl_http_port(o->http));
	}
	o->last_util_at = sl_now();
	return 0;
}

/* Consumer thread: refreshes the lag snapshot and the rate. */
static void
snapshot(struct sl_worker *w, double now)
{
	struct sl_ops *o = &w->ops;
	struct sl_partition *p;
	struct sl_lag *lag;
	size_t n = 0, i;
	long long busy = 0, done = 0;
	int64_t lo, hi;
	unsigned e;

	for (p = w->parts; p != NULL; p = p->next)
		n++;
	lag = calloc(n ? n : 1, sizeof(*lag));
	if (lag == NULL)
		return;
	for (p = w->parts, i = 0; p != NULL; p = p->next, i++) {
		int64_t committable = sl_offsets_committable(p->offsets);
		int64_t ts;
		lag[i].topic = strdup(p->topic);
		lag[i].partition = p->partition;
		if (rd_kafka_get_watermark_offsets(w->consumer, p->topic, p->partition, &lo, &hi) !=
		        RD_KAFKA_RESP_ERR_NO_ERROR ||
		    hi < 0)
			continue;
		if (committable < 0)
			committable = p->stored >= 0 ? p->stored : hi;
		if (p->stored > committable)
			committable = p->stored; /* the position, past a commit marker */
		lag[i].messages = hi > committable ? hi - committable : 0;
		if (lag[i].messages == 0)
			continue;
		ts = p->oldest ? rd_kafka_message_timestamp(p->oldest->msg, NULL) : p->last_fetched_ts;
		if (ts > 0) {
			struct timespec rt;
			clock_gettime(CLOCK_REALTIME, &rt);
			double age = (double)rt.tv_sec + rt.tv_nsec / 1e9 - (double)ts / 1000.0;
			lag[i].seconds = age > 0 ? age : 0;
		}
	}
	pthread_mutex_lock(&o->lag_mu);
	for (i = 0; i < o->n_lag; i++)
		free(o->lag[i].topic);
	free(o->lag);
	o->lag = lag;
	o->n_lag = n;
	pthread_mutex_unlock(&o->lag_mu);

	for (e = 0; e < w->n_executors; e++) {
		busy += atomic_load(&w->executors[e].busy_ns);
		done += atomic_load(&w->executors[e].done);
	}
	if (now > o->last_util_at) {
		double util = (double)(busy - o->last_busy_ns) / 1e9 / (now - o->last_util_at) / w->n_executors;
		sl_metrics_gauge_set(o->m_util, util > 1 ? 1 : util);
		o->rate = (double)(done - o->last_done) / (now - o->last_util_at);
	}
	o->last_busy_ns = busy;
	o->last_done = done;
	o->last_util_at = now;
	sl_metrics_gauge_set(o->m_in_flight, (double)w->in_flight);
	sl_metrics_gauge_set(o->m_waiting, (double)atomic_load(&o->jobs_waiting));
	sl_metrics_gauge_set(o->m_assigned, (double)n);
}

/* Adds one reason to why (`; ` between reasons); counts a later one that
 * does not fit in *more. */
static void
add_reason(char *why, size_t why_size, int *more, const char *fmt, ...)
{
	size_t len = strlen(why);
	va_list ap;
	int n;

	if (len > 0) {
		if (len + 2 >= why_size) {
			(*more)++;
			return;
		}
		memcpy(why + len, "; ", 3);
		len += 2;
	}
	va_start(ap, fmt);
	n = vsnprintf(why + len, why_size - len, fmt, ap);
	va_end(ap);
	if (len > 0 && (n < 0 || (size_t)n >= why_size - len)) {
		why[len - 2] = '\0'; /* a later reason is counted, not cut (the first is) */
		(*more)++;
	}
}

/* Consumer thread: is anything stuck? Names what is in why: every stuck
 * executor and partition that fits, then how many more. */
static int
stuck(struct sl_worker *w, double now, char *why, size_t why_size)
{
	struct sl_partition *p;
	unsigned e;
	int more = 0;
	char tail[32];

	why[0] = '\0';
	for (e = 0; e < w->n_executors; e++) {
		struct sl_executor *ex = &w->executors[e];
		double since = now - (double)atomic_load(&ex->progress_at) / 1000.0;
		if (atomic_load(&ex->busy) && !atomic_load(&ex->waiting) && since > w->stall_timeout)
			add_reason(why, why_size - sizeof(tail), &more, "executor %u has run one job for %.0f s", e, since);
	}
	for (p = w->parts; p != NULL; p = p->next) {
		/* Partitions do not move while jobs wait for PostgreSQL; a
		 * restart would not make it answer sooner. */
		if (p->oldest == NULL || atomic_load(&w->ops.waiting) > 0) {
			p->progress_at = now;
			continue;
		}
		if (now - p->progress_at > w->stall_timeout)
			add_reason(why, why_size - sizeof(tail), &more, "partition %s [%d] has not moved for %.0f s",
			           p->topic, (int)p->partition, now - p->progress_at);
	}
	if (more > 0) {
		snprintf(tail, sizeof(tail), "; and %d more", more);
		strcat(why, tail);
	}
	return why[0] != '\0';
}

void
sl_ops_tick(struct sl_worker *w, int draining)
{
	struct sl_ops *o = &w->ops;
	double now = sl_now();
	uint64_t wd = sl_notify_watchdog_usec();
	char why[512];
	static int was_stuck;

	if (!o->ready_sent && atomic_load(&o->joined) && atomic_load(&o->pg_ok)) {
		sl_notify("READY=1\nSTATUS=joined group %s", w->cfg->group);
		o->ready_sent = 1;
	}
	if (now >= o->next_snapshot) {
		snapshot(w, now);
		o->next_snapshot = now + 1.0;
	}
	if (now >= o->next_status && sl_notify_enabled()) {
		int64_t lag = 0;
		size_t i;
		pthread_mutex_lock(&o->lag_mu);
		for (i = 0; i < o->n_lag; i++)
			lag += o->lag[i].messages;
		pthread_mutex_unlock(&o->lag_mu);
		sl_notify("STATUS=%s%zu partitions, %.0f jobs/s, %ld in flight, lag %" PRId64, draining ? "stopping: " : "",
		          o->n_lag, o->rate, w->in_flight, lag);
		o->next_status = now + 5.0;
	}
	if (wd > 0 && o->ready_sent && now >= o->next_watchdog) {
		if (stuck(w, now, why, sizeof(why))) {
			if (!was_stuck)
				sl_log_error("not pinging the systemd watchdog: %s", why);
			was_stuck = 1;
		} else {
			if (was_stuck)
				sl_log_info("making progress again; pinging the systemd watchdog");
			was_stuck = 0;
			sl_notify("WATCHDOG=1");
		}
		o->next_watchdog = now + (double)wd / 2e6;
	}
}

/* Consumer thread: counts a job handed back with a result. */
void
sl_ops_job_done(struct sl_worker *w, const struct sl_job *job)
{
	struct sl_ops *o = &w->ops;
	const struct sl_job_type_rt *t = job->jt;
	int k = (int)job->status; /* the index of m_unknown[] too */
	if (t != NULL) {
		sl_metrics_counter_inc(k == 0 ? t->m_ok : k == 1 ? t->m_rejected : t->m_failed);
		sl_metrics_histogram_observe(t->m_duration, job->run_seconds);
	} else {
		sl_metrics_counter_inc(o->m_unknown[k]);
	}
	if (job->duplicate)
		sl_metrics_counter_inc(o->m_duplicates);
	if (job->dlq_code != NULL)
		sl_metrics_counter_inc(sl_metrics_series(o->f_dead_letters, t ? t->conf->type : "unknown", job->dlq_code));
}

/* Any thread. */
void
sl_ops_kafka_error(struct sl_worker *w, const char *name)
{
	sl_metrics_counter_inc(sl_metrics_series(w->ops.f_kafka_errors, name));
}

void
sl_ops_stop(struct sl_worker *w)
{
	struct sl_ops *o = &w->ops;
	size_t i;

	sl_http_stop(o->http);
	o->http = NULL;
	sl_metrics_destroy(o->metrics);
	o->metrics = NULL;
	for (i = 0; i < o->n_lag; i++)
		free(o->lag[i].topic);
	free(o->lag);
	o->lag = NULL;
	o->n_lag = 0;
	sl_notify_close();
}
