/* metrics.c -- the metrics registry behind metrics.h, and the walk that renders it.
 *
 * Families and series sit in singly linked lists that only grow: a writer
 * holding the registry's mutex initialises a node completely and then links
 * it with a release store, so readers (lookups, renders) walk the lists with
 * acquire loads and no lock. Values are C11 atomics: counters and histogram
 * buckets are uint64_t, gauges and histogram sums are doubles kept as their
 * bit patterns in a uint64_t and updated with compare-and-swap. The text
 * format itself (escaping, numbers) is metrics_text.c's. Not a
 * general-purpose client library: no summaries, no series removal, no
 * OpenMetrics.
 */
#include "metrics.h"
#include "metrics_int.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "version.h"

struct sl_metrics_series {
	struct sl_metrics_family *family;
	_Atomic(struct sl_metrics_series *) next;
	uint64_t hash;                          /* of the label values, to skip strcmp */
	char *values[SL_METRICS_MAX_LABELS];
	_Atomic uint64_t value;                 /* counter count, or gauge bits */
	_Atomic uint64_t sum;                   /* histogram: bits of the sum */
	_Atomic uint64_t buckets[];             /* histogram: n_bounds + 1, not cumulative; last is +Inf */
};

struct sl_metrics_family {
	struct sl_metrics *registry;
	_Atomic(struct sl_metrics_family *) next;
	enum sl_metrics_type type;
	char *name;
	char *help;
	size_t n_labels;
	char *labels[SL_METRICS_MAX_LABELS];
	double *bounds;
	size_t n_bounds;
	_Atomic(struct sl_metrics_series *) series;
	/* The fields below are guarded by registry->lock. */
	struct sl_metrics_series *series_tail;
	size_t n_series;
	int warned_full;
};

struct collector {
	_Atomic(struct collector *) next;
	sl_metrics_collect_fn fn;
	void *arg;
};

struct sl_metrics {
	pthread_mutex_t lock;
	_Atomic(struct sl_metrics_family *) families;
	_Atomic(struct collector *) collectors;
	/* Guarded by lock. */
	struct sl_metrics_family *families_tail;
	struct collector *collectors_tail;
};

static const double default_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };

static uint64_t
double_bits(double d)
{
	uint64_t u;

	memcpy(&u, &d, sizeof(u));
	return u;
}

static double
bits_double(uint64_t u)
{
	double d;

	memcpy(&d, &u, sizeof(d));
	return d;
}

/* ---- registry ---- */

static uint64_t
hash_values(const char *const *values, size_t n)
{
	uint64_t h = 14695981039346656037ULL;
	const unsigned char *p;
	size_t i;

	for (i = 0; i < n; i++) {
		for (p = (const unsigned char *)values[i]; *p; p++)
			h = (h ^ *p) * 1099511628211ULL;
		h = (h ^ 0xff) * 1099511628211ULL;
	}
	return h;
}

static void
series_free(struct sl_metrics_series *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < SL_METRICS_MAX_LABELS; i++)
		free(s->values[i]);
	free(s);
}

static void
family_free(struct sl_metrics_family *f)
{
	struct sl_metrics_series *s, *next;
	size_t i;

	if (f == NULL)
		return;
	for (s = atomic_load(&f->series); s != NULL; s = next) {
		next = atomic_load(&s->next);
		series_free(s);
	}
	for (i = 0; i < SL_METRICS_MAX_LABELS; i++)
		free(f->labels[i]);
	free(f->name);
	free(f->help);
	free(f->bounds);
	free(f);
}

/* Creates a series and links it at the tail of f's list. Called with the
 * registry's lock held; returns NULL when out of memory or f is full. */
static struct sl_metrics_series *
series_create(struct sl_metrics_family *f, const char *const *values, uint64_t hash)
{
	struct sl_metrics_series *s;
	size_t i, n_buckets = f->type == SL_METRICS_HISTOGRAM ? f->n_bounds + 1 : 0;

	if (f->n_series >= SL_METRICS_MAX_SERIES) {
		if (!f->warned_full)
			sl_log_warn("could not add a series to metric \"%s\": it has %d series already",
			            f->name, SL_METRICS_MAX_SERIES);
		f->warned_full = 1;
		return NULL;
	}
	s = calloc(1, sizeof(*s) + n_buckets * sizeof(s->buckets[0]));
	if (s == NULL)
		return NULL;
	s->family = f;
	s->hash = hash;
	for (i = 0; i < f->n_labels; i++) {
		if ((s->values[i] = strdup(values[i])) == NULL) {
			series_free(s);
			return NULL;
		}
	}
	atomic_init(&s->next, NULL);
	atomic_init(&s->value, f->type == SL_METRICS_GAUGE ? double_bits(0.0) : 0);
	atomic_init(&s->sum, double_bits(0.0));
	for (i = 0; i < n_buckets; i++)
		atomic_init(&s->buckets[i], 0);
	/* Publish only now that every field is set. */
	if (f->series_tail == NULL)
		atomic_store_explicit(&f->series, s, memory_order_release);
	else
		atomic_store_explicit(&f->series_tail->next, s, memory_order_release);
	f->series_tail = s;
	f->n_series++;
	return s;
}

static struct sl_metrics_series *
series_find(struct sl_metrics_family *f, const char *const *values, uint64_t hash)
{
	struct sl_metrics_series *s;
	size_t i;

	for (s = atomic_load_explicit(&f->series, memory_order_acquire); s != NULL;
	     s = atomic_load_explicit(&s->next, memory_order_acquire)) {
		if (s->hash != hash)
			continue;
		for (i = 0; i < f->n_labels; i++)
			if (strcmp(s->values[i], values[i]) != 0)
				break;
		if (i == f->n_labels)
			return s;
	}
	return NULL;
}

sl_metrics_series_t *
sl_metrics_series_v(sl_metrics_family_t *f, const char *const *values)
{
	struct sl_metrics_series *s;
	size_t n = 0;
	uint64_t hash;

	if (f == NULL)
		return NULL;
	while (values != NULL && n <= SL_METRICS_MAX_LABELS && values[n] != NULL)
		n++;
	assert(n == f->n_labels);
	if (n != f->n_labels)
		return NULL;
	hash = hash_values(values, n);
	if ((s = series_find(f, values, hash)) != NULL)
		return s;
	pthread_mutex_lock(&f->registry->lock);
	/* Another thread may have created it since the lock-free look. */
	if ((s = series_find(f, values, hash)) == NULL)
		s = series_create(f, values, hash);
	pthread_mutex_unlock(&f->registry->lock);
	return s;
}

/* Splits "a,b" into f->labels; asserts that the names are valid. Returns 0,
 * or -1 when out of memory. */
static int
parse_labels(struct sl_metrics_family *f, const char *labels)
{
	const char *p = labels, *end;
	size_t n;

	while (p != NULL && *p) {
		while (*p == ' ')
			p++;
		end = p + strcspn(p, ",");
		n = (size_t)(end - p);
		while (n > 0 && p[n - 1] == ' ')
			n--;
		assert(f->n_labels < SL_METRICS_MAX_LABELS);
		if (f->n_labels == SL_METRICS_MAX_LABELS)
			return 0;
		if ((f->labels[f->n_labels] = strndup(p, n)) == NULL)
			return -1;
		assert(sl__metrics_valid_label_name(f->labels[f->n_labels]));
		assert(f->type != SL_METRICS_HISTOGRAM || strcmp(f->labels[f->n_labels], "le") != 0);
		f->n_labels++;
		p = *end ? end + 1 : end;
	}
	return 0;
}

static int
same_shape(const struct sl_metrics_family *a, const struct sl_metrics_family *b)
{
	size_t i;

	if (a->type != b->type || a->n_labels != b->n_labels || a->n_bounds != b->n_bounds)
		return 0;
	for (i = 0; i < a->n_labels; i++)
		if (strcmp(a->labels[i], b->labels[i]) != 0)
			return 0;
	for (i = 0; i < a->n_bounds; i++)
		if (a->bounds[i] != b->bounds[i])
			return 0;
	return 1;
}

/* Builds a family, then either returns the registered one of the same name
 * (dropping the new one) or links the new one. */
static struct sl_metrics_family *
family_register(sl_metrics_t *m, enum sl_metrics_type type, const char *name, const char *help,
                const char *labels, const double *bounds, size_t n_bounds)
{
	struct sl_metrics_family *f = NULL, *old, *ret = NULL;
	size_t i;

	assert(sl__metrics_valid_name(name, 1));
	if (m == NULL)
		return NULL;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		goto out;
	f->registry = m;
	f->type = type;
	atomic_init(&f->next, NULL);
	atomic_init(&f->series, NULL);
	if ((f->name = strdup(name)) == NULL || (f->help = strdup(help ? help : "")) == NULL)
		goto out;
	if (parse_labels(f, labels) != 0)
		goto out;
	if (type == SL_METRICS_HISTOGRAM) {
		if (bounds == NULL) {
			bounds = default_bounds;
			n_bounds = sizeof(default_bounds) / sizeof(default_bounds[0]);
		}
		/* +Inf is implicit; a caller who spells it out gets it once. */
		while (n_bounds > 0 && isinf(bounds[n_bounds - 1]) && bounds[n_bounds - 1] > 0)
			n_bounds--;
		if ((f->bounds = calloc(n_bounds ? n_bounds : 1, sizeof(double))) == NULL)
			goto out;
		for (i = 0; i < n_bounds; i++) {
			assert(isfinite(bounds[i]) && (i == 0 || bounds[i] > bounds[i - 1]));
			f->bounds[i] = bounds[i];
		}
		f->n_bounds = n_bounds;
	}

	pthread_mutex_lock(&m->lock);
	for (old = atomic_load_explicit(&m->families, memory_order_acquire); old != NULL;
	     old = atomic_load_explicit(&old->next, memory_order_acquire))
		if (strcmp(old->name, name) == 0)
			break;
	if (old != NULL) {
		/* Registering the same family twice is fine (a module started
		 * again); the same name with another shape is a bug. */
		assert(same_shape(old, f));
		ret = same_shape(old, f) ? old : NULL;
	} else if (f->n_labels > 0 || series_create(f, NULL, hash_values(NULL, 0)) != NULL) {
		if (m->families_tail == NULL)
			atomic_store_explicit(&m->families, f, memory_order_release);
		else
			atomic_store_explicit(&m->families_tail->next, f, memory_order_release);
		m->families_tail = f;
		ret = f;
		f = NULL; /* now owned by m */
	}
	pthread_mutex_unlock(&m->lock);
out:
	family_free(f);
	return ret;
}

sl_metrics_family_t *
sl_metrics_counter(sl_metrics_t *m, const char *name, const char *help, const char *labels)
{
	return family_register(m, SL_METRICS_COUNTER, name, help, labels, NULL, 0);
}

sl_metrics_family_t *
sl_metrics_gauge(sl_metrics_t *m, const char *name, const char *help, const char *labels)
{
	return family_register(m, SL_METRICS_GAUGE, name, help, labels, NULL, 0);
}

sl_metrics_family_t *
sl_metrics_histogram(sl_metrics_t *m, const char *name, const char *help, const char *labels,
                     const double *bounds, size_t n_bounds)
{
	return family_register(m, SL_METRICS_HISTOGRAM, name, help, labels, bounds, n_bounds);
}

sl_metrics_t *
sl_metrics_new(void)
{
	sl_metrics_t *m;
	sl_metrics_series_t *build;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	pthread_mutex_init(&m->lock, NULL);
	atomic_init(&m->families, NULL);
	atomic_init(&m->collectors, NULL);
	build = sl_metrics_series(sl_metrics_gauge(m, "sluice_build_info",
	                                           "Build information; the value is always 1.",
	                                           "version"),
	                          SL_VERSION);
	if (build == NULL) {
		sl_metrics_destroy(m);
		return NULL;
	}
	sl_metrics_gauge_set(build, 1);
	return m;
}

void
sl_metrics_destroy(sl_metrics_t *m)
{
	struct sl_metrics_family *f, *fnext;
	struct collector *c, *cnext;

	if (m == NULL)
		return;
	for (f = atomic_load(&m->families); f != NULL; f = fnext) {
		fnext = atomic_load(&f->next);
		family_free(f);
	}
	for (c = atomic_load(&m->collectors); c != NULL; c = cnext) {
		cnext = atomic_load(&c->next);
		free(c);
	}
	pthread_mutex_destroy(&m->lock);
	free(m);
}

int
sl_metrics_add_collector(sl_metrics_t *m, sl_metrics_collect_fn fn, void *arg)
{
	struct collector *c;

	assert(m != NULL && fn != NULL);
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return -1;
	atomic_init(&c->next, NULL);
	c->fn = fn;
	c->arg = arg;
	pthread_mutex_lock(&m->lock);
	if (m->collectors_tail == NULL)
		atomic_store_explicit(&m->collectors, c, memory_order_release);
	else
		atomic_store_explicit(&m->collectors_tail->next, c, memory_order_release);
	m->collectors_tail = c;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

/* ---- updates ---- */

void
sl_metrics_counter_add(sl_metrics_series_t *s, uint64_t n)
{
	if (s == NULL)
		return;
	assert(s->family->type == SL_METRICS_COUNTER);
	atomic_fetch_add_explicit(&s->value, n, memory_order_relaxed);
}

void
sl_metrics_counter_inc(sl_metrics_series_t *s)
{
	sl_metrics_counter_add(s, 1);
}

void
sl_metrics_gauge_set(sl_metrics_series_t *s, double v)
{
	if (s == NULL)
		return;
	assert(s->family->type == SL_METRICS_GAUGE);
	atomic_store_explicit(&s->value, double_bits(v), memory_order_relaxed);
}

/* Adds delta to the double whose bits are in *a. */
static void
atomic_add_double(_Atomic uint64_t *a, double delta)
{
	uint64_t old = atomic_load_explicit(a, memory_order_relaxed);

	while (!atomic_compare_exchange_weak_explicit(a, &old, double_bits(bits_double(old) + delta),
	                                              memory_order_relaxed, memory_order_relaxed))
		;
}

void
sl_metrics_gauge_add(sl_metrics_series_t *s, double delta)
{
	if (s == NULL)
		return;
	assert(s->family->type == SL_METRICS_GAUGE);
	atomic_add_double(&s->value, delta);
}

void
sl_metrics_histogram_observe(sl_metrics_series_t *s, double v)
{
	const struct sl_metrics_family *f;
	size_t i;

	if (s == NULL || isnan(v))
		return;
	f = s->family;
	assert(f->type == SL_METRICS_HISTOGRAM);
	for (i = 0; i < f->n_bounds && v > f->bounds[i]; i++)
		;
	atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
	atomic_add_double(&s->sum, v);
}

uint64_t
sl_metrics_counter_get(const sl_metrics_series_t *s)
{
	if (s == NULL)
		return 0;
	assert(s->family->type == SL_METRICS_COUNTER);
	return atomic_load_explicit(&((sl_metrics_series_t *)s)->value, memory_order_relaxed);
}

double
sl_metrics_gauge_get(const sl_metrics_series_t *s)
{
	if (s == NULL)
		return 0;
	assert(s->family->type == SL_METRICS_GAUGE);
	return bits_double(atomic_load_explicit(&((sl_metrics_series_t *)s)->value,
	                                        memory_order_relaxed));
}

uint64_t
sl_metrics_histogram_count(const sl_metrics_series_t *s)
{
	uint64_t total = 0;
	size_t i;

	if (s == NULL)
		return 0;
	assert(s->family->type == SL_METRICS_HISTOGRAM);
	for (i = 0; i <= s->family->n_bounds; i++)
		total += atomic_load_explicit(&((sl_metrics_series_t *)s)->buckets[i],
		                              memory_order_relaxed);
	return total;
}

double
sl_metrics_histogram_sum(const sl_metrics_series_t *s)
{
	if (s == NULL)
		return 0;
	assert(s->family->type == SL_METRICS_HISTOGRAM);
	return bits_double(atomic_load_explicit(&((sl_metrics_series_t *)s)->sum,
	                                        memory_order_relaxed));
}

/* ---- rendering ---- */

static void
w_suffixed(sl_metrics_writer_t *w, const char *name, const char *suffix)
{
	sl__metrics_puts(w, name);
	sl__metrics_puts(w, suffix);
}

/* Writes a histogram's buckets cumulatively; _count is the +Inf bucket, so
 * the two always agree even while other threads observe. */
static void
render_histogram(sl_metrics_writer_t *w, const struct sl_metrics_family *f,
                 struct sl_metrics_series *s)
{
	char le[40];
	uint64_t cumulative = 0;
	size_t i;

	for (i = 0; i <= f->n_bounds; i++) {
		cumulative += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
		if (i < f->n_bounds)
			sl__metrics_format_double(le, sizeof(le), f->bounds[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		w_suffixed(w, f->name, "_bucket");
		sl__metrics_put_labels(w, f->n_labels, f->labels, s->values, le);
		sl__metrics_puts(w, " ");
		sl__metrics_put_u64(w, cumulative);
		sl__metrics_puts(w, "\n");
	}
	w_suffixed(w, f->name, "_sum");
	sl__metrics_put_labels(w, f->n_labels, f->labels, s->values, NULL);
	sl__metrics_puts(w, " ");
	sl__metrics_put_double(w, bits_double(atomic_load_explicit(&s->sum, memory_order_relaxed)));
	sl__metrics_puts(w, "\n");
	w_suffixed(w, f->name, "_count");
	sl__metrics_put_labels(w, f->n_labels, f->labels, s->values, NULL);
	sl__metrics_puts(w, " ");
	sl__metrics_put_u64(w, cumulative);
	sl__metrics_puts(w, "\n");
}

char *
sl_metrics_render(sl_metrics_t *m, size_t *len)
{
	sl_metrics_writer_t w = { { NULL, 0, 0, 0 } };
	struct sl_metrics_family *f;
	struct sl_metrics_series *s;
	struct collector *c;

	if (len != NULL)
		*len = 0;
	if (m == NULL)
		return NULL;
	sl__metrics_append(&w, "", 0);
	for (f = atomic_load_explicit(&m->families, memory_order_acquire); f != NULL;
	     f = atomic_load_explicit(&f->next, memory_order_acquire)) {
		sl_metrics_write_family(&w, f->name, f->type, f->help);
		for (s = atomic_load_explicit(&f->series, memory_order_acquire); s != NULL;
		     s = atomic_load_explicit(&s->next, memory_order_acquire)) {
			if (f->type == SL_METRICS_HISTOGRAM) {
				render_histogram(&w, f, s);
				continue;
			}
			sl__metrics_puts(&w, f->name);
			sl__metrics_put_labels(&w, f->n_labels, f->labels, s->values, NULL);
			sl__metrics_puts(&w, " ");
			if (f->type == SL_METRICS_COUNTER)
				sl__metrics_put_u64(&w, atomic_load_explicit(&s->value, memory_order_relaxed));
			else
				sl__metrics_put_double(&w, bits_double(atomic_load_explicit(&s->value,
				                                              memory_order_relaxed)));
			sl__metrics_puts(&w, "\n");
		}
	}
	for (c = atomic_load_explicit(&m->collectors, memory_order_acquire); c != NULL;
	     c = atomic_load_explicit(&c->next, memory_order_acquire))
		c->fn(&w, c->arg);
	if (w.text.oom) {
		free(w.text.p);
		return NULL;
	}
	if (len != NULL)
		*len = w.text.len;
	return w.text.p;
}
