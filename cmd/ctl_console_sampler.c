/* ctl_console_sampler.c -- the console's sampler: the workers' /metrics every few seconds.
 *
 * One thread polls each worker's /metrics and /readyz (sl_ctl_status_json(),
 * what `sluicectl status` prints from) every SL_CONSOLE_SAMPLE_S seconds,
 * keeps the latest summary of each for the fleet page, and turns the job
 * counters into jobs/s: per worker, and fleet-wide in a ring of an hour of
 * points. Pages read it under its lock, from any thread. Not for history
 * from before the console started: the pages read that from the ledger and
 * the dead letters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "ctl_common.h"
#include "ctl_console.h"
#include "ctl_sources.h"

/* Sums the "jobs" counters of a status summary: all of them, and the failed. */
static void
job_totals(json_t *sum, double *all, double *failed)
{
	json_t *by_status, *n;
	const char *type, *status;

	*all = 0;
	*failed = 0;
	json_object_foreach(json_object_get(sum, "jobs"), type, by_status) {
		json_object_foreach(by_status, status, n) {
			*all += json_number_value(n);
			if (strcmp(status, "failed") == 0)
				*failed += json_number_value(n);
		}
	}
}

/* Polls every worker once and records a fleet-wide point. Runs on the
 * sampler thread; takes the lock only to store what it fetched. */
static void
sample_once(struct console *c)
{
	struct sl_console_sampler *s = &c->sampler;
	struct sl_console_point p = { sl_ctl_now_ms(), 0, 0 };
	char errbuf[512];
	json_t *sum;
	double all, failed, dt;
	size_t i;
	int any = 0;

	for (i = 0; i < c->n_workers; i++) {
		sum = sl_ctl_status_json(c->workers[i], SL_CONSOLE_TIMEOUT_MS, errbuf, sizeof(errbuf));
		pthread_mutex_lock(&s->lock);
		json_decref(s->latest[i]);
		free(s->error[i]);
		s->latest[i] = sum;
		s->error[i] = sum == NULL ? strdup(errbuf) : NULL;
		s->sampled_ms[i] = sl_ctl_now_ms();
		s->jobs_per_s[i] = -1;
		if (sum != NULL) {
			job_totals(sum, &all, &failed);
			dt = (double)(s->sampled_ms[i] - s->prev_ms[i]) / 1000.0;
			/* A restarted worker starts its counters from zero. */
			if (s->prev_jobs[i] >= 0 && dt > 0 && all >= s->prev_jobs[i]) {
				s->jobs_per_s[i] = (all - s->prev_jobs[i]) / dt;
				p.jobs_per_s += s->jobs_per_s[i];
				p.failed_per_s += (failed - s->prev_failed[i]) / dt;
				any = 1;
			}
			s->prev_jobs[i] = all;
			s->prev_failed[i] = failed;
			s->prev_ms[i] = s->sampled_ms[i];
		} else {
			s->prev_jobs[i] = -1;
		}
		pthread_mutex_unlock(&s->lock);
	}
	if (!any)
		return;
	pthread_mutex_lock(&s->lock);
	s->points[s->next] = p;
	s->next = (s->next + 1) % SL_CONSOLE_POINTS;
	if (s->n_points < SL_CONSOLE_POINTS)
		s->n_points++;
	pthread_mutex_unlock(&s->lock);
}

void *
sl_console_sampler_main(void *arg)
{
	struct console *c = arg;
	struct sl_console_sampler *s = &c->sampler;
	struct timespec until;

	for (;;) {
		sample_once(c);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += SL_CONSOLE_SAMPLE_S;
		pthread_mutex_lock(&s->lock);
		while (!s->stop && pthread_cond_timedwait(&s->wake, &s->lock, &until) == 0)
			;
		if (s->stop) {
			pthread_mutex_unlock(&s->lock);
			return NULL;
		}
		pthread_mutex_unlock(&s->lock);
	}
}

/* Allocates the sampler's per-worker arrays. Returns 0, or -1 when out of memory. */
int
sl_console_sampler_init(struct console *c)
{
	struct sl_console_sampler *s = &c->sampler;
	size_t n = c->n_workers ? c->n_workers : 1, i;

	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	s->latest = calloc(n, sizeof(*s->latest));
	s->error = calloc(n, sizeof(*s->error));
	s->sampled_ms = calloc(n, sizeof(*s->sampled_ms));
	s->jobs_per_s = calloc(n, sizeof(*s->jobs_per_s));
	s->prev_jobs = calloc(n, sizeof(*s->prev_jobs));
	s->prev_failed = calloc(n, sizeof(*s->prev_failed));
	s->prev_ms = calloc(n, sizeof(*s->prev_ms));
	if (!s->latest || !s->error || !s->sampled_ms || !s->jobs_per_s || !s->prev_jobs || !s->prev_failed ||
	    !s->prev_ms)
		return -1;
	for (i = 0; i < n; i++) {
		s->prev_jobs[i] = -1;
		s->jobs_per_s[i] = -1;
	}
	return 0;
}

void
sl_console_sampler_destroy(struct console *c)
{
	struct sl_console_sampler *s = &c->sampler;
	size_t i;

	for (i = 0; s->latest != NULL && i < c->n_workers; i++) {
		json_decref(s->latest[i]);
		free(s->error[i]);
	}
	free(s->latest);
	free(s->error);
	free(s->sampled_ms);
	free(s->jobs_per_s);
	free(s->prev_jobs);
	free(s->prev_failed);
	free(s->prev_ms);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->lock);
}

void
sl_console_sampler_worker(struct console *c, size_t i, json_t **latest, char *errbuf, size_t errbuf_size,
                          double *jobs_per_s, int64_t *sampled_ms)
{
	struct sl_console_sampler *s = &c->sampler;

	pthread_mutex_lock(&s->lock);
	*latest = json_incref(s->latest[i]);
	snprintf(errbuf, errbuf_size, "%s", s->error[i] ? s->error[i] : "");
	*jobs_per_s = s->jobs_per_s[i];
	*sampled_ms = s->sampled_ms[i];
	pthread_mutex_unlock(&s->lock);
}

size_t
sl_console_sampler_points(struct console *c, struct sl_console_point *out)
{
	struct sl_console_sampler *s = &c->sampler;
	size_t i, n, first;

	pthread_mutex_lock(&s->lock);
	n = s->n_points;
	first = n < SL_CONSOLE_POINTS ? 0 : s->next;
	for (i = 0; i < n; i++)
		out[i] = s->points[(first + i) % SL_CONSOLE_POINTS];
	pthread_mutex_unlock(&s->lock);
	return n;
}
