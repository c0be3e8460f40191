/* metrics.h -- a thread-safe registry of Prometheus metrics and its text exposition.
 *
 * For: counters, gauges and fixed-bucket histograms with up to
 * SL_METRICS_MAX_LABELS labels, updated from any thread and rendered in the
 * Prometheus text format 0.0.4 for /metrics; collectors that write values
 * computed at scrape time (consumer lag per partition, in-flight jobs,
 * executor utilisation); and the build info sample
 * `sluice_build_info{version="..."} 1`, which every registry carries.
 * Not for: serving HTTP (http.h), summaries or quantiles, removing a series
 * (a series lives as long as its registry), or other exposition formats.
 *
 * Model: a family (name, help, type, label names) holds series, one per
 * combination of label values. sl_metrics_series() finds or creates a series
 * and returns a borrowed handle, valid until sl_metrics_destroy(). Updating
 * through a handle is one or two atomic instructions and takes no lock;
 * finding an existing series takes no lock either (the lists only grow and are
 * published with release stores); creating a family or a series takes the
 * registry's mutex. A hot path may look a series up per event, or look it up
 * once and keep the handle.
 *
 * Failure: metric and label names are part of the program, so an invalid
 * name, or one family registered twice with different shapes, is a bug and
 * fails an assert. Out of memory, or a family that already has
 * SL_METRICS_MAX_SERIES series (label values that come from outside, such as
 * job types, must not grow memory without bound), yields NULL; every update
 * and read function takes NULL and does nothing, so a missing series costs
 * samples, never a crash.
 *
 * Threads: everything may be called from any thread, except
 * sl_metrics_destroy(), which must be the last call on the registry.
 */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define SL_METRICS_MAX_LABELS 4
#define SL_METRICS_MAX_SERIES 1000

typedef struct sl_metrics sl_metrics_t;
typedef struct sl_metrics_family sl_metrics_family_t;
typedef struct sl_metrics_series sl_metrics_series_t;
typedef struct sl_metrics_writer sl_metrics_writer_t;

enum sl_metrics_type {
	SL_METRICS_COUNTER = 0,
	SL_METRICS_GAUGE = 1,
	SL_METRICS_HISTOGRAM = 2,
};

/* Returns a new registry that already holds sluice_build_info, or NULL when
 * out of memory. The caller owns it and frees it with sl_metrics_destroy(). */
sl_metrics_t *sl_metrics_new(void);

/* Frees the registry, its families and series; every handle obtained from it
 * becomes invalid. No other thread may use the registry any more (stop the
 * HTTP server first). NULL is a no-op. */
void sl_metrics_destroy(sl_metrics_t *m);

/* Registers a family, or returns the one already registered under `name`
 * when its type, labels (and bucket bounds) are the same. `name` must match
 * [a-zA-Z_:][a-zA-Z0-9_:]*; `help` is one line of free text (escaped on
 * output); `labels` names the labels, comma-separated ("type,status"), or is
 * NULL or "" for none. A family without labels has its one series from the
 * start, so it is exposed with 0 before the first update. Returns a borrowed
 * handle owned by the registry, or NULL when out of memory (or m is NULL). */
sl_metrics_family_t *sl_metrics_counter(sl_metrics_t *m, const char *name, const char *help,
                                        const char *labels);
sl_metrics_family_t *sl_metrics_gauge(sl_metrics_t *m, const char *name, const char *help,
                                      const char *labels);

/* As above, for a histogram with the given upper bounds (finite, strictly
 * increasing, copied; the +Inf bucket is implicit). bounds NULL selects
 * Prometheus' default latency buckets, 0.005 s to 10 s. The label name "le"
 * is reserved. */
sl_metrics_family_t *sl_metrics_histogram(sl_metrics_t *m, const char *name, const char *help,
                                          const char *labels, const double *bounds,
                                          size_t n_bounds);

/* Finds or creates the series of family f with the given label values: a
 * NULL-terminated array with exactly as many values as f has labels (NULL
 * itself for a family without labels). Values are copied, and may be any
 * string; they are escaped on output, and bytes that are not UTF-8 are
 * written as U+FFFD. Returns a borrowed handle owned by the registry, or NULL
 * when f is NULL, out of memory, or f already has SL_METRICS_MAX_SERIES
 * series (logged once per family). */
sl_metrics_series_t *sl_metrics_series_v(sl_metrics_family_t *f, const char *const *values);

/* sl_metrics_series(f, "ledger.transfer", "succeeded"); for a family
 * without labels, sl_metrics_series(f, NULL). */
#define sl_metrics_series(f, ...) sl_metrics_series_v((f), (const char *const[]){ __VA_ARGS__, NULL })

/* Updates; each takes no lock and does nothing when s is NULL. Calling the
 * update of another type than the series' is a bug (assert). */
void sl_metrics_counter_add(sl_metrics_series_t *s, uint64_t n);
void sl_metrics_counter_inc(sl_metrics_series_t *s);
void sl_metrics_gauge_set(sl_metrics_series_t *s, double v);
void sl_metrics_gauge_add(sl_metrics_series_t *s, double delta);
/* Counts v in the first bucket whose bound is >= v and adds it to the sum;
 * NaN is ignored. */
void sl_metrics_histogram_observe(sl_metrics_series_t *s, double v);

/* Current values, for STATUS= lines and tests; 0 when s is NULL. */
uint64_t sl_metrics_counter_get(const sl_metrics_series_t *s);
double sl_metrics_gauge_get(const sl_metrics_series_t *s);
uint64_t sl_metrics_histogram_count(const sl_metrics_series_t *s);
double sl_metrics_histogram_sum(const sl_metrics_series_t *s);

/* A collector writes families computed at scrape time through the writer
 * functions below. It runs on the thread that renders (the HTTP server's),
 * with no registry lock held, after the registered families; two renders may
 * run it concurrently. `arg` is borrowed and must stay valid as long as
 * sl_metrics_render() may run, in practice until sl_http_stop(). */
typedef void (*sl_metrics_collect_fn)(sl_metrics_writer_t *w, void *arg);

/* Adds a collector; collectors run in the order they were added. Returns 0,
 * or -1 when out of memory. Collectors cannot be removed. */
int sl_metrics_add_collector(sl_metrics_t *m, sl_metrics_collect_fn fn, void *arg);

/* Writes the # HELP and # TYPE lines of a family; call it once per family,
 * before its samples, and keep a family's samples together. Names follow
 * the rules of sl_metrics_counter() and must not clash with registered
 * families. */
void sl_metrics_write_family(sl_metrics_writer_t *w, const char *name, enum sl_metrics_type type,
                             const char *help);

/* Writes one sample: `name`, then label name/value pairs (at most
 * SL_METRICS_MAX_LABELS), then NULL. Label values are escaped.
 * Example: sl_metrics_write_sample(w, "sluice_consumer_lag_messages", 42,
 *                                  "topic", "jobs", "partition", "3", NULL); */
void sl_metrics_write_sample(sl_metrics_writer_t *w, const char *name, double value, ...)
	__attribute__((sentinel));

/* Renders every family and then every collector in the text format 0.0.4.
 * Returns a new NUL-terminated string that the caller frees with free(), its
 * length (without the NUL) in *len when len is not NULL; or NULL when out of
 * memory, *len then 0. Families without series show only their HELP and
 * TYPE lines. Any thread; takes no lock. */
char *sl_metrics_render(sl_metrics_t *m, size_t *len /* OUT */);

#endif
