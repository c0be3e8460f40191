/* test_metrics.c -- unit tests for metrics.c: families, series, escaping, rendering, threads. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "metrics.h"
#include "version.h"

/* Renders m and checks that `line` is one whole line of the output. */
static void
assert_has_line(sl_metrics_t *m, const char *line)
{
	char *text, *p;
	size_t len, n = strlen(line);
	int found = 0;

	text = sl_metrics_render(m, &len);
	assert_non_null(text);
	assert_int_equal(len, strlen(text));
	for (p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			found = 1;
	if (!found)
		print_error("line not found: %s\nin:\n%s", line, text);
	free(text);
	assert_true(found);
}

static void
assert_lacks(sl_metrics_t *m, const char *s)
{
	char *text = sl_metrics_render(m, NULL);

	assert_non_null(text);
	if (strstr(text, s) != NULL)
		print_error("unexpected: %s\nin:\n%s", s, text);
	assert_null(strstr(text, s));
	free(text);
}

static void
test_build_info(void **state)
{
	sl_metrics_t *m = sl_metrics_new();

	(void)state;
	assert_non_null(m);
	assert_has_line(m, "# TYPE sluice_build_info gauge");
	assert_has_line(m, "sluice_build_info{version=\"" SL_VERSION "\"} 1");
	sl_metrics_destroy(m);
	sl_metrics_destroy(NULL);
}

static void
test_counter(void **state)
{
	sl_metrics_t *m = sl_metrics_new();
	sl_metrics_family_t *plain, *jobs;
	sl_metrics_series_t *s, *ok, *ok2, *bad;

	(void)state;
	plain = sl_metrics_counter(m, "sluice_retries_total", "Retries of transient failures.", NULL);
	assert_non_null(plain);
	/* A family without labels is exposed before its first update. */
	assert_has_line(m, "# HELP sluice_retries_total Retries of transient failures.");
	assert_has_line(m, "# TYPE sluice_retries_total counter");
	assert_has_line(m, "sluice_retries_total 0");
	s = sl_metrics_series(plain, NULL);
	assert_non_null(s);
	sl_metrics_counter_inc(s);
	sl_metrics_counter_add(s, 41);
	assert_int_equal(sl_metrics_counter_get(s), 42);
	assert_has_line(m, "sluice_retries_total 42");

	jobs = sl_metrics_counter(m, "sluice_jobs_total", "Jobs finished.", "type, status");
	assert_non_null(jobs);
	ok = sl_metrics_series(jobs, "ledger.transfer", "succeeded");
	ok2 = sl_metrics_series(jobs, "ledger.transfer", "succeeded");
	bad = sl_metrics_series(jobs, "ledger.transfer", "failed");
	assert_ptr_equal(ok, ok2);
	assert_ptr_not_equal(ok, bad);
	sl_metrics_counter_add(ok, 3);
	sl_metrics_counter_inc(bad);
	assert_has_line(m, "sluice_jobs_total{type=\"ledger.transfer\",status=\"succeeded\"} 3");
	assert_has_line(m, "sluice_jobs_total{type=\"ledger.transfer\",status=\"failed\"} 1");
	/* Registering the same family again returns it. */
	assert_ptr_equal(sl_metrics_counter(m, "sluice_jobs_total", "Jobs finished.", "type,status"),
	                 jobs);
	sl_metrics_destroy(m);
}

static void
test_gauge(void **state)
{
	sl_metrics_t *m = sl_metrics_new();
	sl_metrics_series_t *s;

	(void)state;
	s = sl_metrics_series(sl_metrics_gauge(m, "sluice_in_flight_jobs", "Jobs in flight.", NULL),
	                      NULL);
	assert_has_line(m, "sluice_in_flight_jobs 0");
	sl_metrics_gauge_set(s, 10);
	sl_metrics_gauge_add(s, -2.5);
	assert_true(sl_metrics_gauge_get(s) == 7.5);
	assert_has_line(m, "sluice_in_flight_jobs 7.5");
	sl_metrics_gauge_set(s, 0.1);
	assert_has_line(m, "sluice_in_flight_jobs 0.1");
	sl_metrics_gauge_set(s, 1e21);
	assert_has_line(m, "sluice_in_flight_jobs 1e+21");
	sl_metrics_gauge_set(s, -INFINITY);
	assert_has_line(m, "sluice_in_flight_jobs -Inf");
	sl_metrics_gauge_set(s, INFINITY);
	assert_has_line(m, "sluice_in_flight_jobs +Inf");
	sl_metrics_gauge_set(s, NAN);
	assert_has_line(m, "sluice_in_flight_jobs NaN");
	sl_metrics_destroy(m);
}

static void
test_histogram(void **state)
{
	static const double bounds[] = { 0.01, 0.1, 1 };
	sl_metrics_t *m = sl_metrics_new();
	sl_metrics_family_t *f;
	sl_metrics_series_t *s;

	(void)state;
	f = sl_metrics_histogram(m, "sluice_job_duration_seconds", "Job run time.", "type", bounds, 3);
	s = sl_metrics_series(f, "ledger.open");
	assert_non_null(s);
	sl_metrics_histogram_observe(s, 0.005);
	sl_metrics_histogram_observe(s, 0.1); /* le is inclusive */
	sl_metrics_histogram_observe(s, 0.5);
	sl_metrics_histogram_observe(s, 7);
	sl_metrics_histogram_observe(s, NAN); /* ignored */
	assert_int_equal(sl_metrics_histogram_count(s), 4);
	assert_true(fabs(sl_metrics_histogram_sum(s) - 7.605) < 1e-12);
	assert_has_line(m, "# TYPE sluice_job_duration_seconds histogram");
	assert_has_line(m, "sluice_job_duration_seconds_bucket{type=\"ledger.open\",le=\"0.01\"} 1");
	assert_has_line(m, "sluice_job_duration_seconds_bucket{type=\"ledger.open\",le=\"0.1\"} 2");
	assert_has_line(m, "sluice_job_duration_seconds_bucket{type=\"ledger.open\",le=\"1\"} 3");
	assert_has_line(m, "sluice_job_duration_seconds_bucket{type=\"ledger.open\",le=\"+Inf\"} 4");
	assert_has_line(m, "sluice_job_duration_seconds_sum{type=\"ledger.open\"} 7.605");
	assert_has_line(m, "sluice_job_duration_seconds_count{type=\"ledger.open\"} 4");

	/* Default buckets, no labels. */
	s = sl_metrics_series(sl_metrics_histogram(m, "sluice_poll_seconds", "Poll time.", NULL, NULL, 0),
	                      NULL);
	sl_metrics_histogram_observe(s, 3);
	assert_has_line(m, "sluice_poll_seconds_bucket{le=\"0.005\"} 0");
	assert_has_line(m, "sluice_poll_seconds_bucket{le=\"2.5\"} 0");
	assert_has_line(m, "sluice_poll_seconds_bucket{le=\"5\"} 1");
	assert_has_line(m, "sluice_poll_seconds_bucket{le=\"+Inf\"} 1");
	assert_has_line(m, "sluice_poll_seconds_count 1");
	sl_metrics_destroy(m);
}

static void
test_escaping(void **state)
{
	sl_metrics_t *m = sl_metrics_new();
	sl_metrics_family_t *f;

	(void)state;
	f = sl_metrics_counter(m, "sluice_odd_total", "Help with a \\ and a\nnewline.", "type");
	sl_metrics_counter_inc(sl_metrics_series(f, "a\"b\\c\nd"));
	/* Not UTF-8: a lone continuation byte, a truncated sequence, an overlong '/'. */
	sl_metrics_counter_inc(sl_metrics_series(f, "x\x80y\xe2\x82z\xc0\xaf"));
	sl_metrics_counter_inc(sl_metrics_series(f, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
	assert_has_line(m, "# HELP sluice_odd_total Help with a \\\\ and a\\nnewline.");
	assert_has_line(m, "sluice_odd_total{type=\"a\\\"b\\\\c\\nd\"} 1");
	assert_has_line(m, "sluice_odd_total{type=\"x\xef\xbf\xbdy\xef\xbf\xbd\xef\xbf\xbdz"
	                   "\xef\xbf\xbd\xef\xbf\xbd\"} 1");
	assert_has_line(m, "sluice_odd_total{type=\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"} 1");
	sl_metrics_destroy(m);
}

static void
test_series_limit_and_null(void **state)
{
	sl_metrics_t *m = sl_metrics_new();
	sl_metrics_family_t *f;
	sl_metrics_series_t *s;
	char value[32];
	int i;

	(void)state;
	f = sl_metrics_counter(m, "sluice_types_total", "One series per type.", "type");
	for (i = 0; i < SL_METRICS_MAX_SERIES; i++) {
		snprintf(value, sizeof(value), "t%d", i);
		assert_non_null(sl_metrics_series(f, value));
	}
	/* Existing series are still found; new ones are refused. */
	assert_non_null(sl_metrics_series(f, "t0"));
	assert_null(sl_metrics_series(f, "one-too-many"));
	assert_lacks(m, "one-too-many");

	/* Every update and read takes NULL. */
	s = NULL;
	sl_metrics_counter_inc(s);
	sl_metrics_counter_add(s, 2);
	sl_metrics_gauge_set(s, 1);
	sl_metrics_gauge_add(s, 1);
	sl_metrics_histogram_observe(s, 1);
	assert_int_equal(sl_metrics_counter_get(s), 0);
	assert_true(sl_metrics_gauge_get(s) == 0);
	assert_int_equal(sl_metrics_histogram_count(s), 0);
	assert_null(sl_metrics_series(NULL, "x"));
	assert_null(sl_metrics_counter(NULL, "x", "y", NULL));
	assert_null(sl_metrics_render(NULL, NULL));
	sl_metrics_destroy(m);
}

static void
collect_lag(sl_metrics_writer_t *w, void *arg)
{
	int *calls = arg;

	(*calls)++;
	sl_metrics_write_family(w, "sluice_consumer_lag_messages", SL_METRICS_GAUGE,
	                        "Messages behind the high watermark, per owned partition.");
	sl_metrics_write_sample(w, "sluice_consumer_lag_messages", 42, "topic", "jobs", "partition",
	                        "0", NULL);
	sl_metrics_write_sample(w, "sluice_consumer_lag_messages", 0.25, "topic", "a\"b",
	                        "partition", "1", NULL);
	sl_metrics_write_family(w, "sluice_executor_utilisation", SL_METRICS_GAUGE,
	                        "Busy share of the executor threads.");
	sl_metrics_write_sample(w, "sluice_executor_utilisation", 0.5, NULL);
}

static void
test_collector(void **state)
{
	sl_metrics_t *m = sl_metrics_new();
	int calls = 0;
	char *text;

	(void)state;
	assert_int_equal(sl_metrics_add_collector(m, collect_lag, &calls), 0);
	sl_metrics_counter(m, "sluice_dead_letters_total", "Dead letters.", NULL);
	assert_has_line(m, "# TYPE sluice_consumer_lag_messages gauge");
	assert_has_line(m, "sluice_consumer_lag_messages{topic=\"jobs\",partition=\"0\"} 42");
	assert_has_line(m, "sluice_consumer_lag_messages{topic=\"a\\\"b\",partition=\"1\"} 0.25");
	assert_has_line(m, "sluice_executor_utilisation 0.5");
	/* One call per render: four renders above. */
	assert_int_equal(calls, 4);
	/* Registered families come first, then the collectors. */
	text = sl_metrics_render(m, NULL);
	assert_true(strstr(text, "sluice_dead_letters_total 0") <
	            strstr(text, "sluice_consumer_lag_messages"));
	free(text);
	sl_metrics_destroy(m);
}

/* Every line is a comment or `name{labels} value`, and the text ends in a
 * newline: the shape Prometheus' text parser expects. */
static void
test_exposition_shape(void **state)
{
	sl_metrics_t *m = sl_metrics_new();
	char *text, *line, *save = NULL;
	size_t len;

	(void)state;
	sl_metrics_counter_inc(sl_metrics_series(sl_metrics_counter(m, "a_total", "A.", "x"), "1"));
	sl_metrics_histogram_observe(
		sl_metrics_series(sl_metrics_histogram(m, "b_seconds", "B.", NULL, NULL, 0), NULL), 1);
	text = sl_metrics_render(m, &len);
	assert_true(len > 0 && text[len - 1] == '\n');
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		const char *sp = strrchr(line, ' ');
		if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0)
			continue;
		assert_non_null(sp);
		assert_true(line[0] >= 'a' && line[0] <= 'z');
		assert_true(strchr("0123456789+-N", sp[1]) != NULL);
	}
	free(text);
	sl_metrics_destroy(m);
}

#define THREADS 8
#define ROUNDS 50000

struct thread_arg {
	sl_metrics_family_t *counter, *gauge, *hist;
	int index;
};

/* Each thread looks its series up by label on every round, as a worker that
 * does not cache handles would, so creation races with lookups. */
static void *
hammer(void *p)
{
	struct thread_arg *a = p;
	const char *status = (a->index % 2) ? "odd" : "even";
	int i;

	for (i = 0; i < ROUNDS; i++) {
		sl_metrics_counter_inc(sl_metrics_series(a->counter, "t", status));
		sl_metrics_gauge_add(sl_metrics_series(a->gauge, NULL), 1);
		sl_metrics_histogram_observe(sl_metrics_series(a->hist, status), 0.5);
	}
	return NULL;
}

static void *
render_loop(void *p)
{
	sl_metrics_t *m = p;
	int i;

	for (i = 0; i < 50; i++)
		free(sl_metrics_render(m, NULL));
	return NULL;
}

static void
test_threads(void **state)
{
	sl_metrics_t *m = sl_metrics_new();
	struct thread_arg args[THREADS];
	pthread_t tids[THREADS], renderer;
	int i;

	(void)state;
	for (i = 0; i < THREADS; i++) {
		args[i].counter = sl_metrics_counter(m, "c_total", "C.", "type,status");
		args[i].gauge = sl_metrics_gauge(m, "g", "G.", NULL);
		args[i].hist = sl_metrics_histogram(m, "h_seconds", "H.", "status", NULL, 0);
		args[i].index = i;
	}
	assert_int_equal(pthread_create(&renderer, NULL, render_loop, m), 0);
	for (i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&tids[i], NULL, hammer, &args[i]), 0);
	for (i = 0; i < THREADS; i++)
		pthread_join(tids[i], NULL);
	pthread_join(renderer, NULL);
	assert_int_equal(sl_metrics_counter_get(sl_metrics_series(args[0].counter, "t", "odd")),
	                 THREADS / 2 * ROUNDS);
	assert_int_equal(sl_metrics_counter_get(sl_metrics_series(args[0].counter, "t", "even")),
	                 THREADS / 2 * ROUNDS);
	assert_true(sl_metrics_gauge_get(sl_metrics_series(args[0].gauge, NULL)) ==
	            (double)THREADS * ROUNDS);
	assert_int_equal(sl_metrics_histogram_count(sl_metrics_series(args[0].hist, "odd")),
	                 THREADS / 2 * ROUNDS);
	assert_true(sl_metrics_histogram_sum(sl_metrics_series(args[0].hist, "even")) ==
	            0.5 * THREADS / 2 * ROUNDS);
	assert_has_line(m, "c_total{type=\"t\",status=\"odd\"} 200000");
	sl_metrics_destroy(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build_info),
		cmocka_unit_test(test_counter),
		cmocka_unit_test(test_gauge),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_series_limit_and_null),
		cmocka_unit_test(test_collector),
		cmocka_unit_test(test_exposition_shape),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
