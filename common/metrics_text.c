/* metrics_text.c -- the Prometheus text format 0.0.4: escaping, numbers, sample lines.
 *
 * The writer behind sl_metrics_render() and the collectors' writer API in
 * metrics.h: a growing buffer that remembers an allocation failure instead
 * of reporting each one, so that callers write straight through and the
 * render checks once at the end. Not for: the registry (metrics.c), or
 * parsing the format.
 */
#include "metrics_int.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[] = { "counter", "gauge", "histogram" };

int
sl__metrics_valid_name(const char *s, int colon_ok)
{
	const char *p;

	if (s == NULL || *s == '\0' || (*s >= '0' && *s <= '9'))
		return 0;
	for (p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '_' || (colon_ok && *p == ':')))
			return 0;
	return 1;
}

int
sl__metrics_valid_label_name(const char *s)
{
	return sl__metrics_valid_name(s, 0) && strncmp(s, "__", 2) != 0;
}

void
sl__metrics_append(sl_metrics_writer_t *w, const char *s, size_t n)
{
	sl_text_put(&w->text, s, n);
}

void
sl__metrics_puts(sl_metrics_writer_t *w, const char *s)
{
	sl__metrics_append(w, s, strlen(s));
}

/* Returns the length of the valid UTF-8 sequence at p, or 0 if it is not one
 * (overlong forms, surrogates and code points above U+10FFFF included). */
static size_t
utf8_len(const unsigned char *p)
{
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (p[0] >= 0xe0 && p[0] <= 0xef) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0))
			return 0;
		return 3;
	}
	if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
			return 0;
		if ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

/* Appends s escaped as the exposition format asks: backslash and newline
 * always, the double quote in label values; bytes that are not UTF-8 become
 * U+FFFD so that one bad job type cannot make a whole scrape unparseable. The
 * checks above stop at the NUL, which is never a continuation byte. */
static void
escaped(sl_metrics_writer_t *w, const char *s, int label_value)
{
	const unsigned char *p = (const unsigned char *)s, *run = p;
	size_t n;

	while (*p) {
		n = utf8_len(p);
		if (n == 1 && *p != '\\' && *p != '\n' && !(label_value && *p == '"')) {
			p++;
			continue;
		}
		if (n > 1) {
			p += n;
			continue;
		}
		sl__metrics_append(w, (const char *)run, (size_t)(p - run));
		if (n == 0)
			sl__metrics_puts(w, "\xef\xbf\xbd");
		else if (*p == '\n')
			sl__metrics_puts(w, "\\n");
		else if (*p == '\\')
			sl__metrics_puts(w, "\\\\");
		else
			sl__metrics_puts(w, "\\\"");
		run = ++p;
	}
	sl__metrics_append(w, (const char *)run, (size_t)(p - run));
}

/* Formats v with the fewest digits that read back as v. The worker never
 * calls setlocale(), so the decimal point is '.'. */
void
sl__metrics_format_double(char *buf, size_t size, double v)
{
	int prec;

	if (isnan(v)) {
		snprintf(buf, size, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	for (prec = 15; prec < 17; prec++) {
		snprintf(buf, size, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
	snprintf(buf, size, "%.17g", v);
}

void
sl__metrics_put_double(sl_metrics_writer_t *w, double v)
{
	char buf[40];

	sl__metrics_format_double(buf, sizeof(buf), v);
	sl__metrics_puts(w, buf);
}

void
sl__metrics_put_u64(sl_metrics_writer_t *w, uint64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
	sl__metrics_puts(w, buf);
}

/* Writes `{a="x",b="y",le="..."}`, or nothing when there is no label. */
void
sl__metrics_put_labels(sl_metrics_writer_t *w, size_t n, char *const *names, char *const *values,
         const char *le)
{
	size_t i;

	if (n == 0 && le == NULL)
		return;
	sl__metrics_puts(w, "{");
	for (i = 0; i < n; i++) {
		if (i > 0)
			sl__metrics_puts(w, ",");
		sl__metrics_puts(w, names[i]);
		sl__metrics_puts(w, "=\"");
		escaped(w, values[i], 1);
		sl__metrics_puts(w, "\"");
	}
	if (le != NULL) {
		sl__metrics_puts(w, n > 0 ? ",le=\"" : "le=\"");
		sl__metrics_puts(w, le);
		sl__metrics_puts(w, "\"");
	}
	sl__metrics_puts(w, "}");
}

void
sl_metrics_write_family(sl_metrics_writer_t *w, const char *name, enum sl_metrics_type type,
                        const char *help)
{
	assert(sl__metrics_valid_name(name, 1));
	assert(type >= SL_METRICS_COUNTER && type <= SL_METRICS_HISTOGRAM);
	sl__metrics_puts(w, "# HELP ");
	sl__metrics_puts(w, name);
	sl__metrics_puts(w, " ");
	escaped(w, help ? help : "", 0);
	sl__metrics_puts(w, "\n# TYPE ");
	sl__metrics_puts(w, name);
	sl__metrics_puts(w, " ");
	sl__metrics_puts(w, type_names[type]);
	sl__metrics_puts(w, "\n");
}

void
sl_metrics_write_sample(sl_metrics_writer_t *w, const char *name, double value, ...)
{
	char *names[SL_METRICS_MAX_LABELS], *values[SL_METRICS_MAX_LABELS];
	const char *k, *v;
	size_t n = 0;
	va_list ap;

	assert(sl__metrics_valid_name(name, 1));
	va_start(ap, value);
	while ((k = va_arg(ap, const char *)) != NULL) {
		v = va_arg(ap, const char *);
		assert(n < SL_METRICS_MAX_LABELS && sl__metrics_valid_label_name(k) && v != NULL);
		if (n == SL_METRICS_MAX_LABELS || v == NULL)
			break;
		/* w_labels only reads them. */
		names[n] = (char *)k;
		values[n] = (char *)v;
		n++;
	}
	va_end(ap);
	sl__metrics_puts(w, name);
	sl__metrics_put_labels(w, n, names, values, NULL);
	sl__metrics_puts(w, " ");
	sl__metrics_put_double(w, value);
	sl__metrics_puts(w, "\n");
}
